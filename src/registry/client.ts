/**
 * The registry client: manifests (verified against their digest, size-capped) and blob streams that start
 * at any byte offset, and the one request path that the push side (push.ts) builds on. Connection faults,
 * timeouts, 429 and 5xx are retried with exponential backoff; 401 challenges are answered once per scope
 * (pull, or pull and push); redirects are followed here so that Authorization is never sent to another host.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { sha256Of } from "../oci/digest.ts";
import { answerChallenge, parseChallenge, repositoryScope, TokenCache } from "./auth.ts";
import { type Credentials, findCredentials } from "./credentials.ts";
import { bareMediaType, isIndexType, isManifestType, MANIFEST_TYPES } from "../oci/mediatypes.ts";
import { apiHost, formatReference, manifestSelector, type Reference } from "./reference.ts";
import {
  type HostTransport,
  isTlsError,
  resolveTransport,
  tlsHint,
  type TransportOptions,
} from "./transport.ts";

/** The distribution spec lets registries refuse manifests over 4 MiB; berth refuses to read larger ones. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_REDIRECTS = 5;

export interface RegistryOptions extends TransportOptions {
  /** Credential files in docker's config.json format, searched in order. */
  credentialFiles: string[];
  /** Attempts per request before giving up (network faults, 429, 5xx). */
  attempts: number;
  /** Milliseconds to wait for response headers. */
  requestTimeoutMs: number;
  /** Milliseconds without a body byte after which a transfer is abandoned and resumed. */
  stallTimeoutMs: number;
  /** First backoff delay in milliseconds; doubles per attempt up to `maxBackoffMs`. */
  backoffMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_REGISTRY_OPTIONS: RegistryOptions = {
  insecureRegistries: [],
  certsDirs: [],
  credentialFiles: [],
  attempts: 5,
  requestTimeoutMs: 30_000,
  stallTimeoutMs: 30_000,
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

export interface Manifest {
  bytes: Uint8Array;
  digest: string;
  mediaType: string;
}

/** Backoff before attempt `attempt` (1-based), with jitter so a fleet does not retry in lock step. */
export function backoffDelay(
  attempt: number,
  options: Pick<RegistryOptions, "backoffMs" | "maxBackoffMs">,
): number {
  const base = Math.min(options.maxBackoffMs, options.backoffMs * 2 ** (attempt - 1));
  return base / 2 + Math.random() * base / 2;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** What a registry said when it refused something: its first error code, and one short phrase. */
export interface RegistryErrorBody {
  /** The distribution spec's error code ("NAME_UNKNOWN", "DENIED", …), when the body had one. */
  code?: string;
  /** "CODE: message", or "HTTP <status>" for a body that is not the registry's JSON. */
  text: string;
}

/** Reads (and so consumes) the registry's JSON error body ({errors: [{code, message}]}). */
export async function readRegistryError(response: Response): Promise<RegistryErrorBody> {
  try {
    const text = (await response.text()).slice(0, 4096);
    const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const first = parsed.errors?.[0];
    if (first && (first.code || first.message)) {
      return {
        code: typeof first.code === "string" ? first.code : undefined,
        text: [first.code, first.message].filter(Boolean).join(": "),
      };
    }
  } catch {
    // not JSON: the status line says enough
  }
  return { text: `HTTP ${response.status}` };
}

/** Reads the registry's JSON error body into one short phrase. */
async function registryErrorText(response: Response): Promise<string> {
  return (await readRegistryError(response)).text;
}

/** Whether any of `scopes` asks to write (a push): the refusal then names the missing push access. */
function wantsPush(scopes: readonly string[]): boolean {
  return scopes.some((scope) => scope.slice(scope.lastIndexOf(":") + 1).split(",").includes("push"));
}

/**
 * fetch sends only ArrayBuffer-backed bytes; a view of a SharedArrayBuffer is copied (bodies here are
 * manifests and blobs a caller holds in memory anyway).
 */
function arrayBufferBacked(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? bytes as Uint8Array<ArrayBuffer> : new Uint8Array(bytes);
}

function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

export class RegistryClient {
  readonly options: RegistryOptions;
  #transports = new Map<string, Promise<HostTransport>>();
  #credentials = new Map<string, Promise<Credentials | undefined>>();
  #tokens = new TokenCache();

  constructor(options: Partial<RegistryOptions> = {}) {
    this.options = { ...DEFAULT_REGISTRY_OPTIONS, ...options };
  }

  /** Releases pooled connections and custom TLS clients. */
  async close(): Promise<void> {
    for (const transport of this.#transports.values()) {
      try {
        (await transport).client?.close();
      } catch {
        // a transport that failed to resolve holds nothing
      }
    }
    this.#transports.clear();
  }

  #transport(registry: string, signal?: AbortSignal): Promise<HostTransport> {
    let transport = this.#transports.get(registry);
    if (!transport) {
      transport = resolveTransport(apiHost(registry), registry, this.options, signal);
      this.#transports.set(registry, transport);
      transport.catch(() => this.#transports.delete(registry));
    }
    return transport;
  }

  #credentialsFor(registry: string): Promise<Credentials | undefined> {
    let credentials = this.#credentials.get(registry);
    if (!credentials) {
      credentials = findCredentials(registry, this.options.credentialFiles);
      this.#credentials.set(registry, credentials);
    }
    return credentials;
  }

  /**
   * One HTTP exchange with retries, auth and redirects: the one path every registry request takes, pulls
   * and pushes alike. Returns the final response with its body unread; the headers-phase timeout does not
   * cover the body (the caller watches the body for stalls). A request body is sent within that timeout.
   */
  protected async request(ref: Reference, request: RegistryRequest): Promise<RegistryResponse> {
    const { what, signal } = request;
    const scopes = request.scopes ?? [repositoryScope(ref.repository)];
    // One cache entry per set of scopes: a push token is not handed to a pull, nor the other way round.
    const scopeKey = scopes.join(" ");
    const attempts = request.attempts ?? this.options.attempts;
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) await sleep(backoffDelay(attempt - 1, this.options), signal);
      const abort = new AbortController();
      const onAbort = () => abort.abort(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      const timer = setTimeout(
        () => abort.abort(new BerthError("registry_unreachable", "timed out", { transient: true })),
        request.timeoutMs ?? this.options.requestTimeoutMs,
      );
      try {
        const transport = await this.#transport(ref.registry, signal);
        let response = await this.#follow(ref, transport, request, scopeKey, abort.signal);
        if (response.status === 401) {
          const challenge = parseChallenge(response.headers.get("www-authenticate"));
          await response.body?.cancel();
          if (!challenge) {
            throw new BerthError(
              "auth_failed",
              `registry ${ref.registry} answered 401 without a usable challenge`,
            );
          }
          const answer = await answerChallenge(
            challenge,
            ref.registry,
            scopes,
            await this.#credentialsFor(ref.registry),
            (url, tokenHeaders) =>
              fetch(url, { headers: tokenHeaders, client: transport.client, signal: abort.signal }),
            this.options.credentialFiles,
          );
          this.#tokens.set(ref.registry, scopeKey, answer.header, answer.lifetimeMs);
          // The fresh answer is used directly: a token may live shorter than the cache keeps it.
          response = await this.#follow(ref, transport, request, scopeKey, abort.signal, answer.header);
          if (response.status === 401 || response.status === 403) {
            throw new BerthError("auth_failed", await this.#deniedMessage(ref, scopes, what, response));
          }
        } else if (response.status === 403 && wantsPush(scopes)) {
          // A login that may read but not write is refused with 403 and no challenge (Basic registries).
          throw new BerthError("auth_failed", await this.#deniedMessage(ref, scopes, what, response));
        }
        if (isRetryableStatus(response.status)) {
          const detail = await registryErrorText(response);
          throw new BerthError("registry_error", `registry ${ref.registry} failed ${what}: ${detail}`, {
            transient: true,
          });
        }
        clearTimeout(timer);
        // The caller's signal keeps covering the body until the caller releases it.
        return { response, abort, release: () => signal?.removeEventListener("abort", onAbort) };
      } catch (error) {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (signal?.aborted) throw signal.reason;
        if (error instanceof BerthError && !error.transient) throw error;
        const message = errorMessage(error);
        if (isTlsError(message) && !(error instanceof BerthError)) {
          // An untrusted certificate stays untrusted however often it is asked.
          throw new BerthError(
            "registry_unreachable",
            `TLS connection to registry ${apiHost(ref.registry)} failed (${message}); ${
              tlsHint(apiHost(ref.registry), this.options.certsDirs)
            }`,
            { cause: error },
          );
        }
        if (/failed to lookup address|Name or service not known|No address associated/i.test(message)) {
          // The name does not exist: asking again at once will not change that (the agent retries later).
          throw new BerthError(
            "registry_unreachable",
            `cannot resolve registry host ${apiHost(ref.registry)} for ${what}: ${message}`,
            { cause: error },
          );
        }
        lastError = error;
      }
    }
    if (lastError instanceof BerthError && lastError.reason !== "registry_unreachable") throw lastError;
    throw new BerthError(
      "registry_unreachable",
      `cannot reach registry ${ref.registry} for ${what} after ${attempts} attempt${
        attempts === 1 ? "" : "s"
      }: ${errorMessage(lastError)}`,
      { cause: lastError, transient: true },
    );
  }

  /**
   * The one line for a refused request. A push names the access that is missing and, when berth found no
   * login for the registry, where it looked: the usual cause is a device or CI job without one.
   */
  async #deniedMessage(
    ref: Reference,
    scopes: readonly string[],
    what: string,
    response: Response,
  ): Promise<string> {
    const detail = await registryErrorText(response);
    const denied = `registry ${ref.registry} denied ${what} (${detail})`;
    if (!wantsPush(scopes)) return denied;
    if (await this.#credentialsFor(ref.registry)) {
      return `${denied}: the configured credentials were refused or have no push access to ${ref.repository}`;
    }
    const files = this.options.credentialFiles.join(" or ") || "any credentials file";
    return `${denied}: push access to ${ref.repository} is missing; ` +
      `no credentials for ${ref.registry} in ${files}`;
  }

  /**
   * Sends `request` with manual redirects: Authorization goes only to the registry's own origin. A GET or
   * HEAD follows any redirect; a request with a body follows only 307 and 308, which keep method and body.
   */
  async #follow(
    ref: Reference,
    transport: HostTransport,
    request: RegistryRequest,
    scopeKey: string,
    signal: AbortSignal,
    freshAuthorization?: string,
  ): Promise<Response> {
    const method = request.method ?? "GET";
    const registryOrigin = new URL(transport.baseUrl).origin;
    // An upload's Location may be absolute, and on another host (a storage front end).
    let url = new URL(request.target, transport.baseUrl);
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const sameHost = url.origin === registryOrigin;
      const requestHeaders = new Headers(request.headers);
      const authorization = sameHost
        ? freshAuthorization ?? this.#tokens.get(ref.registry, scopeKey)
        : undefined;
      if (authorization) requestHeaders.set("Authorization", authorization);
      const response = await fetch(url, {
        method,
        headers: requestHeaders,
        body: request.body ? arrayBufferBacked(request.body) : undefined,
        redirect: "manual",
        signal,
        client: sameHost ? transport.client : undefined,
      });
      const location = response.headers.get("location");
      const follows = method === "GET" || method === "HEAD" || response.status === 307 ||
        response.status === 308;
      if (response.status >= 300 && response.status < 400 && location && follows) {
        await response.body?.cancel();
        url = new URL(location, url);
        continue;
      }
      return response;
    }
    throw new BerthError(
      "registry_error",
      `registry ${ref.registry} redirected more than ${MAX_REDIRECTS} times`,
    );
  }

  /**
   * The digest, media type and size a tag (or digest) points to, without downloading it when the registry
   * says: a HEAD with the same Accept list as a pull, so the answer is what a pull would get. A registry
   * that gives no Docker-Content-Digest on HEAD (some do not) is asked with a GET and the body hashed.
   */
  async resolveDigest(
    ref: Reference,
    signal?: AbortSignal,
  ): Promise<{ digest: string; mediaType: string; size: number }> {
    const name = formatReference(ref);
    const { response, abort, release } = await this.request(ref, {
      method: "HEAD",
      target: `/v2/${ref.repository}/manifests/${manifestSelector(ref)}`,
      headers: new Headers({ Accept: MANIFEST_TYPES.join(", ") }),
      what: `manifest ${name}`,
      signal,
    });
    let head: { digest: string; mediaType: string; size: number } | undefined;
    try {
      await response.body?.cancel();
      if (response.status === 404) {
        throw new BerthError("not_found", `${name}: not found in registry ${ref.registry}`);
      }
      if (!response.ok) {
        throw new BerthError(
          "registry_error",
          `${name}: registry ${ref.registry} answered HTTP ${response.status}`,
        );
      }
      const digest = response.headers.get("docker-content-digest") ?? "";
      const mediaType = bareMediaType(response.headers.get("content-type"));
      const size = Number(response.headers.get("content-length") ?? NaN);
      if (
        /^sha256:[a-f0-9]{64}$/.test(digest) && (isIndexType(mediaType) || isManifestType(mediaType)) &&
        Number.isSafeInteger(size) && size > 0 && size <= MAX_MANIFEST_BYTES
      ) {
        head = { digest, mediaType, size };
      }
    } finally {
      release();
      abort.abort();
    }
    if (!head) {
      // getManifest hashes the body itself and refuses what berth could not pull.
      const manifest = await this.getManifest(ref, signal);
      return { digest: manifest.digest, mediaType: manifest.mediaType, size: manifest.bytes.length };
    }
    if (ref.digest && ref.digest !== head.digest) {
      throw new BerthError(
        "verification_failed",
        `${name}: registry says the manifest's digest is ${head.digest}, not ${ref.digest}`,
      );
    }
    return head;
  }

  /**
   * Fetches a manifest or index by tag or digest. The body is hashed here: it must match a digest
   * reference, and the registry's Docker-Content-Digest when given. Its `mediaType` must agree with the
   * Content-Type, and it must be one of the four supported types and at most 4 MiB.
   */
  async getManifest(ref: Reference, signal?: AbortSignal): Promise<Manifest> {
    const selector = manifestSelector(ref);
    const name = formatReference(ref);
    const { response, abort, release } = await this.request(ref, {
      target: `/v2/${ref.repository}/manifests/${selector}`,
      headers: new Headers({ Accept: MANIFEST_TYPES.join(", ") }),
      what: `manifest ${name}`,
      signal,
    });
    try {
      if (response.status === 404) {
        const detail = await registryErrorText(response);
        throw new BerthError("not_found", `${name}: not found in registry ${ref.registry} (${detail})`);
      }
      if (!response.ok) {
        const detail = await registryErrorText(response);
        throw new BerthError("registry_error", `${name}: registry ${ref.registry} answered ${detail}`);
      }
      const length = Number(response.headers.get("content-length") ?? "0");
      if (length > MAX_MANIFEST_BYTES) {
        throw new BerthError(
          "unsupported",
          `${name}: manifest is ${length} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`,
        );
      }
      const bytes = await readCapped(response, MAX_MANIFEST_BYTES, name, abort.signal);
      const digest = sha256Of(bytes);
      if (ref.digest && ref.digest !== digest) {
        throw new BerthError(
          "verification_failed",
          `${name}: registry served a manifest whose digest is ${digest}, not ${ref.digest}`,
        );
      }
      const served = response.headers.get("docker-content-digest");
      if (served?.startsWith("sha256:") && served !== digest) {
        throw new BerthError(
          "verification_failed",
          `${name}: manifest body hashes to ${digest} but the registry says ${served}`,
        );
      }
      const contentType = bareMediaType(response.headers.get("content-type"));
      let parsed: { mediaType?: unknown; schemaVersion?: unknown };
      try {
        parsed = JSON.parse(new TextDecoder().decode(bytes));
      } catch {
        throw new BerthError("unsupported", `${name}: manifest ${digest} is not valid JSON`);
      }
      const bodyType = typeof parsed?.mediaType === "string" ? parsed.mediaType : undefined;
      if (bodyType && contentType && bodyType !== contentType) {
        throw new BerthError(
          "verification_failed",
          `${name}: manifest says mediaType ${bodyType} but was served as ${contentType}`,
        );
      }
      const mediaType = bodyType ?? contentType;
      if (!isIndexType(mediaType) && !isManifestType(mediaType)) {
        throw new BerthError(
          "unsupported",
          `${name}: unsupported manifest media type "${
            mediaType || "(none)"
          }" (berth reads OCI and Docker v2 ` +
            `manifests and indexes)`,
        );
      }
      return { bytes, digest, mediaType };
    } finally {
      release();
      abort.abort();
    }
  }

  /**
   * Opens a blob's bytes from `offset` to its end. Asks with `Range: bytes=offset-(size-1)` and checks the
   * 206's Content-Range; a registry that ignores Range (200) has the first `offset` bytes skipped here.
   * The stream errors with a transient BerthError when the body stalls for `stallTimeoutMs`.
   */
  async openBlob(
    ref: Reference,
    digest: string,
    size: number,
    offset: number,
    signal?: AbortSignal,
  ): Promise<AsyncIterable<Uint8Array>> {
    const headers = new Headers();
    if (offset > 0) headers.set("Range", `bytes=${offset}-${size - 1}`);
    const what = `blob ${digest}`;
    const { response, abort, release } = await this.request(ref, {
      target: `/v2/${ref.repository}/blobs/${digest}`,
      headers,
      what,
      signal,
    });
    try {
      return await this.#blobBody(response, abort, release, offset, what, ref);
    } catch (error) {
      release();
      throw error;
    }
  }

  async #blobBody(
    response: Response,
    abort: AbortController,
    release: () => void,
    offset: number,
    what: string,
    ref: Reference,
  ): Promise<AsyncIterable<Uint8Array>> {
    let skip = 0;
    if (response.status === 404) {
      const detail = await registryErrorText(response);
      throw new BerthError(
        "not_found",
        `${what} of ${formatReference(ref)}: not found in ${ref.registry} (${detail})`,
      );
    }
    if (response.status === 206) {
      const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.headers.get("content-range") ?? "");
      if (!range || Number(range[1]) !== offset) {
        await response.body?.cancel();
        throw new BerthError(
          "registry_error",
          `${what}: asked for bytes from ${offset}, registry answered Content-Range "${
            response.headers.get("content-range")
          }"`,
          { transient: true },
        );
      }
    } else if (response.status === 200) {
      skip = offset;
    } else {
      const detail = await registryErrorText(response);
      throw new BerthError("registry_error", `${what}: registry ${ref.registry} answered ${detail}`);
    }
    if (!response.body) {
      throw new BerthError("registry_error", `${what}: empty response body`, { transient: true });
    }
    return watchBody(response.body, abort, release, skip, this.options.stallTimeoutMs, what);
  }
}

/**
 * Ties a body's reader to `signal`: an abort cancels the reader at once, so a pending `read()` settles
 * (done) and the connection is closed. Returns the function that unties them.
 *
 * fetch's own signal is not enough once the headers are in: Deno (2.x) forwards an abort to the body only
 * through the Request object's internal signal, which the caller's signal holds weakly. When the Request is
 * unreachable (fetch returned) and a garbage collection ran, the abort never reaches the body and the read
 * runs to the end. Whether that collection happens depends on the heap, so an abort used to work or not
 * depending on which modules were loaded.
 */
function cancelOnAbort(reader: ReadableStreamDefaultReader<Uint8Array>, signal: AbortSignal): () => void {
  const onAbort = () => reader.cancel(signal.reason).catch(() => {});
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

/** Reads a whole response body, refusing more than `cap` bytes; an abort of `signal` ends it at once. */
async function readCapped(
  response: Response,
  cap: number,
  name: string,
  signal: AbortSignal,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = (response.body ?? new ReadableStream<Uint8Array>()).getReader();
  const untie = cancelOnAbort(reader, signal);
  try {
    for (;;) {
      const result = await reader.read().catch((error) => {
        if (signal.aborted) throw signal.reason;
        throw error;
      });
      if (signal.aborted) throw signal.reason;
      if (result.done) break;
      total += result.value.length;
      if (total > cap) throw new BerthError("unsupported", `${name}: manifest is over the ${cap}-byte limit`);
      chunks.push(result.value);
    }
  } finally {
    untie();
    reader.releaseLock();
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

/** How often the stall watchdog looks at a transfer. */
const WATCHDOG_MS = 1_000;

/**
 * Yields a body's chunks: drops the first `skip` bytes, and aborts the request when no byte arrives for
 * `stallMs`. Read errors become transient BerthErrors so the caller resumes; an abort (the caller's, or
 * the stall watchdog's) ends the read at once and surfaces as the abort's reason.
 */
async function* watchBody(
  body: ReadableStream<Uint8Array>,
  abort: AbortController,
  release: () => void,
  skip: number,
  stallMs: number,
  what: string,
): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  const untie = cancelOnAbort(reader, abort.signal);
  let lastByteAt = Date.now();
  // One timer per transfer, not one per chunk: chunks arrive thousands of times a second.
  const watchdog = setInterval(() => {
    if (Date.now() - lastByteAt < stallMs) return;
    abort.abort(
      new BerthError("registry_unreachable", `${what}: no data for ${stallMs / 1000} s`, { transient: true }),
    );
  }, Math.min(stallMs, WATCHDOG_MS));
  let toSkip = skip;
  try {
    for (;;) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        if (abort.signal.aborted) throw abort.signal.reason;
        throw new BerthError(
          "registry_unreachable",
          `${what}: transfer interrupted (${errorMessage(error)})`,
          {
            cause: error,
            transient: true,
          },
        );
      }
      // A cancelled reader reports done: that is the abort, not the end of the body.
      if (abort.signal.aborted) throw abort.signal.reason;
      if (result.done) return;
      lastByteAt = Date.now();
      const chunk = result.value;
      if (toSkip >= chunk.length) {
        toSkip -= chunk.length;
        continue;
      }
      yield toSkip > 0 ? chunk.subarray(toSkip) : chunk;
      toSkip = 0;
    }
  } finally {
    clearInterval(watchdog);
    release();
    // A consumer that stops early leaves the body open: cancelling it closes the connection for sure.
    abort.abort();
    untie();
    reader.releaseLock();
  }
}
