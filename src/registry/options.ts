/**
 * The registry client's settings, with their defaults and the reasons for them, and what one request is;
 * apart from client.ts so that the bounds berth keeps are read in one place.
 */
import { DEFAULT_STALL_TIMEOUT_MS } from "./body.ts";
import type { TransportOptions } from "./transport.ts";

/** The registry client's bounds, and where it finds credentials and certificates; times in milliseconds. */
export interface RegistryOptions extends TransportOptions {
  /** Credential files in docker's config.json format, searched in order. */
  credentialFiles: string[];
  /** Attempts per request before giving up (network faults, 429, 5xx). */
  attempts: number;
  /** Milliseconds to wait for response headers. */
  requestTimeoutMs: number;
  /** Milliseconds without a body byte after which a read is abandoned (a blob's transfer then resumes). */
  stallTimeoutMs: number;
  /**
   * Milliseconds one operation may take, all its attempts and backoff included: a manifest (headers and
   * body), one request's headers (a blob's), and for a blob the time without a byte received. So a
   * registry that answers and then never sends cannot hold a pull, or the agent, for longer.
   */
  deadlineMs: number;
  /** First backoff delay in milliseconds; doubles per attempt up to `maxBackoffMs`. */
  backoffMs: number;
  /** Milliseconds the backoff delay never exceeds. */
  maxBackoffMs: number;
}

/** The settings when the operator sets none: no insecure hosts, no extra certificates or credentials. */
export const DEFAULT_REGISTRY_OPTIONS: RegistryOptions = {
  insecureRegistries: [],
  certsDirs: [],
  credentialFiles: [],
  attempts: 5,
  requestTimeoutMs: 30_000,
  // Five stalls of 20 s with backoff (~104 s), or 90 s of failing attempts, keep a `berth pull` against a
  // registry that never sends a body under two minutes; 20 s without a byte is already a broken transfer.
  stallTimeoutMs: DEFAULT_STALL_TIMEOUT_MS,
  deadlineMs: 90_000,
  backoffMs: 250,
  maxBackoffMs: 8_000,
};

/** One exchange with the registry, as `RegistryClient.request` takes it. */
export interface RegistryRequest {
  /** Default GET. */
  method?: "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** A path below the registry's base URL ("/v2/…"), or an absolute URL (an upload's Location). */
  target: string;
  headers?: Headers;
  /** Sent with its Content-Length; held in memory so that a retry, a 401 or a 307 can send it again. */
  body?: Uint8Array;
  /**
   * The token scopes the request needs, e.g. `repositoryScope(repo, "pull,push")`; default pull on the
   * reference's repository. Tokens are cached per set of scopes.
   */
  scopes?: readonly string[];
  /** Names the request in errors: "manifest host/a/b:1", "upload of blob sha256:… to a/b". */
  what: string;
  /** Attempts for this request; 1 for one that must not be repeated as it is (an upload's PUT). */
  attempts?: number;
  /** Milliseconds to wait for the response headers; an upload sends its body within them. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The final response of `RegistryClient.request`, its body unread. */
export interface RegistryResponse {
  response: Response;
  /** Aborting it ends the exchange and its body: call `abort.abort()` when done. */
  abort: AbortController;
  /** Stops the caller's signal from covering the body. */
  release: () => void;
}
