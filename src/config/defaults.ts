/**
 * The config file's location and defaults, apart from the parser so that a command run without a config file
 * does not load yaml and zod (~50 ms of start-up on a small device).
 */
import type { Config } from "./types.ts";
import type { BlobLimits } from "../fetch/limits.ts";

const MiB = 1024 * 1024;

/** Where berth looks for its config file when neither --config nor BERTH_CONFIG names one. */
export const DEFAULT_CONFIG_FILE = "/etc/berth/config.yml";
/** berth's store: on the device's persistent data partition, outside the engine's data root. */
export const DEFAULT_STORE = "/var/lib/berth/store";
/** Where installed compose projects live. */
export const DEFAULT_COMPOSE_ROOT = "/var/lib/berth/apps";
/** The engine berth loads into and runs apps on: the system's docker. */
export const DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock";
/** Registry credentials, docker config.json format. */
export const DEFAULT_CREDENTIALS_FILE = "/etc/berth/credentials.json";
/** Extra CAs and client certificates per registry host; docker's own directory is read after it. */
export const DEFAULT_CERTS_DIR = "/etc/berth/certs.d";
/** The signature policy read when none is named and this file exists (containers-policy.json(5)). */
export const DEFAULT_POLICY_FILE = "/etc/berth/policy.json";

/** Seconds between checks of an app's tag for a new digest. */
export const DEFAULT_POLL_INTERVAL = 300;
/** Fleets started together must not poll the registry together: up to 10% of the interval is added. */
export const DEFAULT_POLL_JITTER_FRACTION = 0.1;
/** Loopback only: the status endpoint needs no token there. */
export const DEFAULT_STATUS_LISTEN = "127.0.0.1:8470";
/**
 * `berth serve`'s address when neither --listen nor peer.listen names one: loopback, beside the status
 * endpoint; neighbours need it opened (with a token) on purpose.
 */
export const DEFAULT_PEER_LISTEN = "127.0.0.1:8471";
/** Maximum % of a filesystem berth fills (store and engine data root). */
export const DEFAULT_WATERMARK = 95;
/** Bytes always left free, so the device's logs and databases keep working after a big download. */
export const DEFAULT_RESERVE = 64 * MiB;
/** Previous app versions kept besides the current one: one, to go back to without a download. */
export const DEFAULT_KEEP = 1;
/**
 * Caps on blobs read whole, by their declared sizes. composectl reads a bundle of up to about 1 GiB, so
 * berth accepts as much; the storage pre-flight counts the declared sizes before anything is fetched.
 */
export const DEFAULT_BLOB_LIMITS: Readonly<BlobLimits> = {
  bundle: 1024 * MiB,
  // Tens of thousands of files fit in a few MiB of index; these are read and parsed in memory.
  bundleIndex: 16 * MiB,
  layersMeta: 16 * MiB,
  // Configs of real images are kilobytes (a long history makes tens); a config is parsed in memory.
  imageConfig: 8 * MiB,
};
/**
 * Seconds: a download without progress is stalled; services must be up this long after `up`; back-off cap;
 * an engine or compose call (a load, an up) that makes no progress this long means the agent is stuck; a
 * new version must then stay up this long, with no restart, before it is kept.
 */
export const DEFAULT_TIMEOUTS = { stall: 60, start: 60, retryMax: 300, engine: 300, soak: 10 } as const;

/** The configuration when there is no config file: every default applied, CLI-defaulted keys unset. */
export function defaultConfig(): Config {
  return {
    docker: {},
    composeEnvironment: [],
    apps: [],
    pollInterval: DEFAULT_POLL_INTERVAL,
    pollJitter: DEFAULT_POLL_INTERVAL * DEFAULT_POLL_JITTER_FRACTION,
    status: { listen: DEFAULT_STATUS_LISTEN, hosts: [] },
    peer: {},
    storage: { watermark: DEFAULT_WATERMARK, reserve: DEFAULT_RESERVE },
    registries: { insecure: [] },
    keep: DEFAULT_KEEP,
    timeouts: { ...DEFAULT_TIMEOUTS },
    limits: { ...DEFAULT_BLOB_LIMITS },
    logLevel: "info",
  };
}
