/**
 * The registry client: manifests (verified against their digest, size-capped) and blob streams that start
 * at any byte offset. Connection faults, timeouts, 429 and 5xx are retried with exponential backoff;
 * 401 challenges are answered once per scope; redirects are followed here so that Authorization is never
 * sent to another host.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { sha256Of } from "../util/digest.ts";
import { answerChallenge, parseChallenge, TokenCache } from "./auth.ts";
import { type Credentials, findCredentials } from "./credentials.ts";
import { bareMediaType, isIndexType, isManifestType, MANIFEST_TYPES } from "./mediatypes.ts";
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

/** Reads the registry's JSON error body ({errors: [{code, message}]}) into one short phrase. */
async function registryErrorText(response: Response): Promise<string> {
  try {
    const text = (await response.text()).slice(0, 4096);
    const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const first = parsed.errors?.[0];
    if (first) return [first.code, first.message].filter(Boolean).join(": ");
  } catch {
    // not JSON: the status line says enough
  }
  return `HTTP ${response.status}`;
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
   * One HTTP exchange with retries, auth and redirects. Returns the final response with its body unread;
   * the headers-phase timeout does not cover the body (the caller watches the body for stalls).
   */
  async #request(
    ref: Reference,
    path: string,
    headers: Headers,
    what: string,
    signal?: AbortSignal,
  ): Promise<{ response: Response; abort: AbortController; release: () => void }> {
    const scope = `repository:${ref.repository}:pull`;
    let lastError: unknown;
    for (let attempt = 1; attempt <= this.options.attempts; attempt++) {
      if (attempt > 1) await sleep(backoffDelay(attempt - 1, this.options), signal);
      const abort = new AbortController();
      const onAbort = () => abort.abort(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      const timer = setTimeout(
        () => abort.abort(new BerthError("registry_unreachable", "timed out", { transient: true })),
        this.options.requestTimeoutMs,
      );
      try {
        const transport = await this.#transport(ref.registry, signal);
        let response = await this.#follow(ref, transport, path, headers, scope, abort.signal);
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
            scope,
            await this.#credentialsFor(ref.registry),
            (url, tokenHeaders) =>
              fetch(url, { headers: tokenHeaders, client: transport.client, signal: abort.signal }),
            this.options.credentialFiles,
          );
          this.#tokens.set(ref.registry, scope, answer.header, answer.lifetimeMs);
          // The fresh answer is used directly: a token may live shorter than the cache keeps it.
          response = await this.#follow(ref, transport, path, headers, scope, abort.signal, answer.header);
          if (response.status === 401 || response.status === 403) {
            const detail = await registryErrorText(response);
            throw new BerthError("auth_failed", `registry ${ref.registry} denied ${what} (${detail})`);
          }
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
      `cannot reach registry ${ref.registry} for ${what} after ${this.options.attempts} attempts: ${
        errorMessage(lastError)
      }`,
      { cause: lastError, transient: true },
    );
  }

  /** GET with manual redirects: Authorization goes only to the registry's own host. */
  async #follow(
    ref: Reference,
    transport: HostTransport,
    path: string,
    headers: Headers,
    scope: string,
    signal: AbortSignal,
    freshAuthorization?: string,
  ): Promise<Response> {
    let url = new URL(transport.baseUrl + path);
    const registryOrigin = url.origin;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const sameHost = url.origin === registryOrigin;
      const requestHeaders = new Headers(headers);
      const authorization = sameHost
        ? freshAuthorization ?? this.#tokens.get(ref.registry, scope)
        : undefined;
      if (authorization) requestHeaders.set("Authorization", authorization);
      const response = await fetch(url, {
        headers: requestHeaders,
        redirect: "manual",
        signal,
        client: sameHost ? transport.client : undefined,
      });
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location) {
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
   * Fetches a manifest or index by tag or digest. The body is hashed here: it must match a digest
   * reference, and the registry's Docker-Content-Digest when given. Its `mediaType` must agree with the
   * Content-Type, and it must be one of the four supported types and at most 4 MiB.
   */
  async getManifest(ref: Reference, signal?: AbortSignal): Promise<Manifest> {
    const selector = manifestSelector(ref);
    const name = formatReference(ref);
    const headers = new Headers({ Accept: MANIFEST_TYPES.join(", ") });
    const { response, abort, release } = await this.#request(
      ref,
      `/v2/${ref.repository}/manifests/${selector}`,
      headers,
      `manifest ${name}`,
      signal,
    );
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
      const bytes = await readCapped(response, MAX_MANIFEST_BYTES, name);
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
    const { response, abort, release } = await this.#request(
      ref,
      `/v2/${ref.repository}/blobs/${digest}`,
      headers,
      what,
      signal,
    );
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

/** Reads a whole response body, refusing more than `cap` bytes. */
async function readCapped(response: Response, cap: number, name: string): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of response.body ?? new ReadableStream<Uint8Array>()) {
    total += chunk.length;
    if (total > cap) throw new BerthError("unsupported", `${name}: manifest is over the ${cap}-byte limit`);
    chunks.push(chunk);
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
 * `stallMs`. Read errors become transient BerthErrors so the caller resumes; an abort by the caller
 * surfaces as the caller's reason.
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
        if (abort.signal.aborted && abort.signal.reason instanceof BerthError) throw abort.signal.reason;
        throw new BerthError(
          "registry_unreachable",
          `${what}: transfer interrupted (${errorMessage(error)})`,
          {
            cause: error,
            transient: true,
          },
        );
      }
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
    abort.abort();
    reader.releaseLock();
  }
}
