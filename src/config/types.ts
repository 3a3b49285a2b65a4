/** What the operator set: the configuration every command and the agent read, once parsed. */
import type { LogLevel } from "../util/log.ts";
import type { BlobLimits } from "../fetch/limits.ts";

/** The parsed config file with its defaults applied (CLI-defaulted keys stay unset). */
export interface Config {
  /** As --store. */
  store?: string;
  /** As --compose-root. */
  composeRoot?: string;
  /** host: as --docker-host. */
  docker: { host?: string };
  /** The compose command, as --compose. */
  compose?: string;
  /** Names of variables in berth's environment that compose may interpolate into apps; none by default. */
  composeEnvironment: string[];
  /** As --platform, normalised ("linux/arm/v7"). */
  platform?: string;
  /** References of the apps the agent keeps installed and running, as written; each parses. */
  apps: string[];
  /** Seconds between checks of each app's tag. */
  pollInterval: number;
  /** Seconds of random extra wait per poll, at most. */
  pollJitter: number;
  /**
   * The status endpoint: host:port, [v6]:port or an absolute unix socket path; a token for Bearer auth;
   * host names requests may name besides the listen address and localhost (against DNS rebinding).
   */
  status: { listen: string; token?: string; hosts: string[] };
  /**
   * The store served read-only to neighbouring devices (OCI distribution API): host:port, unset when the
   * agent serves none; the Bearer token required beyond loopback.
   */
  peer: { listen?: string; token?: string };
  /** Blobs downloaded at once, as --parallel. */
  parallel?: number;
  /** Download bytes per second; undefined is unlimited. */
  rateLimit?: number;
  /** watermark: maximum % of a filesystem used; reserve: bytes kept free. */
  storage: { watermark: number; reserve: number };
  /**
   * As --credentials, --certs-dir and --insecure-registry (the flags add to this list); seconds without a
   * body byte, and for one whole registry operation (defaults in registry/options.ts).
   */
  registries: {
    credentials?: string;
    certsDir?: string;
    /** The signature policy (containers-policy.json), as --policy. */
    policy?: string;
    insecure: string[];
    stallTimeout?: number;
    timeout?: number;
  };
  /** Previous app versions kept besides the current one. */
  keep: number;
  /** Seconds: no progress before "stalled"; services running after `up`; cap of the retry back-off. */
  timeouts: { stall: number; start: number; retryMax: number; engine: number; soak: number };
  /** Bytes: the largest bundle, bundle index, layers meta and image config berth fetches. */
  limits: BlobLimits;
  logLevel: LogLevel;
}
