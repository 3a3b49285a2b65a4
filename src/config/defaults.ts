/**
 * The config file's location and defaults, apart from the parser so that a command run without a config file
 * does not load yaml and zod (~50 ms of start-up on a small device).
 */
import type { Config } from "./config.ts";
import { DEFAULT_BLOB_LIMITS } from "../fetch/limits.ts";

/** Where berth looks for its config file when neither --config nor BERTH_CONFIG names one. */
export const DEFAULT_CONFIG_FILE = "/etc/berth/config.yml";

/** Seconds between checks of an app's tag for a new digest. */
export const DEFAULT_POLL_INTERVAL = 300;
/** Fleets started together must not poll the registry together: up to 10% of the interval is added. */
export const DEFAULT_POLL_JITTER_FRACTION = 0.1;
/** Loopback only: the status endpoint needs no token there. */
export const DEFAULT_STATUS_LISTEN = "127.0.0.1:8470";
/** Maximum % of a filesystem berth fills (store and engine data root). */
export const DEFAULT_WATERMARK = 95;
/** Bytes always left free, so the device's logs and databases keep working after a big download. */
export const DEFAULT_RESERVE = 64 * 1024 * 1024;
/** Previous app versions kept besides the current one: one, to go back to without a download. */
export const DEFAULT_KEEP = 1;
/** Seconds: a download without progress is stalled; services must run this long after `up`; back-off cap. */
export const DEFAULT_TIMEOUTS = { stall: 60, start: 60, retryMax: 300 } as const;

/** The configuration when there is no config file: every default applied, CLI-defaulted keys unset. */
export function defaultConfig(): Config {
  return {
    docker: {},
    composeEnvironment: [],
    apps: [],
    pollInterval: DEFAULT_POLL_INTERVAL,
    pollJitter: DEFAULT_POLL_INTERVAL * DEFAULT_POLL_JITTER_FRACTION,
    status: { listen: DEFAULT_STATUS_LISTEN, hosts: [] },
    storage: { watermark: DEFAULT_WATERMARK, reserve: DEFAULT_RESERVE },
    registries: { insecure: [] },
    keep: DEFAULT_KEEP,
    timeouts: { ...DEFAULT_TIMEOUTS },
    limits: { ...DEFAULT_BLOB_LIMITS },
    logLevel: "info",
  };
}
