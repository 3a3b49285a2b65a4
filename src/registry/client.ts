/**
 * The registry client: manifests (verified against their digest, size-capped) and blob streams that start
 * at any byte offset, and the one request path that the push side (push.ts) builds on. Connection faults,
 * timeouts, 429 and 5xx are retried with exponential backoff; 401 challenges are answered once per scope
 * (pull, or pull and push); redirects are followed here so that Authorization is never sent to another host.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { sha256Of } from "../oci/digest.ts";
import { outsideText } from "../util/text.ts";
import { answerChallenge, parseChallenge, repositoryScope, TokenCache } from "./auth.ts";
import { readAtMost, readRegistryError, watchBody } from "./body.ts";
import { type Credentials, findCredentials } from "./credentials.ts";
import { bareMediaType, isIndexType, isManifestType, MANIFEST_TYPES } from "../oci/mediatypes.ts";
import { apiHost, formatReference, manifestSelector, type Reference } from "../oci/reference.ts";
import {
  allowsPlainHttp,
  checkRegistryUrl,
  type HostTransport,
  isTlsError,
  resolveTransport,
  tlsHint,
} from "./transport.ts";

import {
  DEFAULT_REGISTRY_OPTIONS,
  type RegistryOptions,
  type RegistryRequest,
  type RegistryResponse,
} from "./options.ts";
import { backoffDelay, sleep } from "../util/async.ts";
import { MAX_MANIFEST_BYTES } from "../oci/manifest.ts";

/** Redirects followed for one request: real registries use one (to a CDN or object store); more is a loop. */
export const MAX_REDIRECTS = 5;

export interface Manifest {
  bytes: Uint8Array;
  digest: string;
  mediaType: string;
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

  /** Reads an error body within the stall timeout, cleaned for a message. */
  async #errorText(response: Response, signal?: AbortSignal): Promise<string> {
    return (await readRegistryError(response, this.options.stallTimeoutMs, signal)).text;
  }

  /**
   * A signal that aborts when `signal` does or when `deadlineMs` has passed, with a transient
   * registry_unreachable naming `what`: the bound on one whole operation. Call `done()` when finished.
   */
  #deadline(what: string, registry: string, signal?: AbortSignal): { signal: AbortSignal; done: () => void } {
    const abort = new AbortController();
    const onAbort = () => abort.abort(signal!.reason);
    if (signal?.aborted) onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    const seconds = this.options.deadlineMs / 1000;
    const timer = setTimeout(() =>
      abort.abort(
        new BerthError(
          "registry_unreachable",
          `registry ${registry} did not deliver ${what} within ${seconds} s`,
          {
            transient: true,
          },
        ),
      ), this.options.deadlineMs);
    return {
      signal: abort.signal,
      done: () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      },
    };
  }

  /**
   * One HTTP exchange with retries, auth and redirects: the one path every registry request takes, pulls
   * and pushes alike. Returns the final response with its body unread; the headers-phase timeout does not
   * cover the body (the caller watches the body for stalls). A request body is sent within that timeout.
   * All attempts together stop at `deadlineMs`.
   */
  protected async request(ref: Reference, request: RegistryRequest): Promise<RegistryResponse> {
    const { what, signal } = request;
    const scopes = request.scopes ?? [repositoryScope(ref.repository)];
    // One cache entry per set of scopes: a push token is not handed to a pull, nor the other way round.
    const scopeKey = scopes.join(" ");
    const attempts = request.attempts ?? this.options.attempts;
    // An upload is given time for its body (`timeoutMs`); the deadline never cuts that short.
    const deadlineAt = Date.now() + Math.max(this.options.deadlineMs, request.timeoutMs ?? 0);
    let lastError: unknown;
    let attempt = 1;
    for (; attempt <= attempts; attempt++) {
      if (attempt > 1) {
        const delay = backoffDelay(attempt - 1, this.options);
        if (Date.now() + delay >= deadlineAt) break;
        await sleep(delay, signal);
      }
      const abort = new AbortController();
      const onAbort = () => abort.abort(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      const timer = setTimeout(
        () => abort.abort(new BerthError("registry_unreachable", "timed out", { transient: true })),
        Math.min(request.timeoutMs ?? this.options.requestTimeoutMs, deadlineAt - Date.now()),
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
            {
              fetch: (url, tokenHeaders) => this.#fetchToken(ref, transport, url, tokenHeaders, abort.signal),
              tls: transport.baseUrl.startsWith("https:"),
              plainHttpAllowed: allowsPlainHttp(ref.registry, this.options.insecureRegistries),
              stallMs: this.options.stallTimeoutMs,
              signal: abort.signal,
              credentialFiles: this.options.credentialFiles,
            },
          ).catch((error) => {
            throw inContext(error, what);
          });
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
          const detail = await this.#errorText(response, abort.signal);
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
    // The loop ends past the last attempt, or breaks before one the deadline leaves no time for.
    const tried = attempt - 1;
    throw new BerthError(
      "registry_unreachable",
      `cannot reach registry ${ref.registry} for ${what} after ${tried} attempt${tried === 1 ? "" : "s"}: ${
        errorMessage(lastError)
      }`,
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
    const detail = await this.#errorText(response);
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
    const plainHttpAllowed = allowsPlainHttp(ref.registry, this.options.insecureRegistries);
    // An upload's Location may be absolute, and on another host (a storage front end).
    let url = new URL(request.target, transport.baseUrl);
    checkRegistryUrl(url, ref.registry, plainHttpAllowed, `a location for ${request.what}`);
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
        url = parseLocation(location, url, ref.registry, request.what);
        checkRegistryUrl(url, ref.registry, plainHttpAllowed, `a redirect for ${request.what}`);
        continue;
      }
      return response;
    }
    throw new BerthError(
      "registry_error",
      `registry ${ref.registry} redirected ${request.what} more than ${MAX_REDIRECTS} times (a redirect loop?)`,
    );
  }

  /**
   * The token GET: with the registry's certificates, and with redirects followed here, each checked as a
   * realm is, and Authorization (the credentials) only ever sent to the realm's own origin.
   */
  async #fetchToken(
    ref: Reference,
    transport: HostTransport,
    realm: URL,
    headers: Headers,
    signal: AbortSignal,
  ): Promise<Response> {
    const plainHttpAllowed = allowsPlainHttp(ref.registry, this.options.insecureRegistries);
    let url = realm;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const sent = new Headers(headers);
      if (url.origin !== realm.origin) sent.delete("Authorization");
      const response = await fetch(url, {
        headers: sent,
        client: transport.client,
        signal,
        redirect: "manual",
      });
      const location = response.headers.get("location");
      if (response.status < 300 || response.status >= 400 || !location) return response;
      await response.body?.cancel();
      url = parseLocation(location, url, ref.registry, "the token request");
      checkRegistryUrl(url, ref.registry, plainHttpAllowed, "a redirect for the token request");
    }
    throw new BerthError(
      "registry_error",
      `token service of ${ref.registry} redirected more than ${MAX_REDIRECTS} times (a redirect loop?)`,
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
    // Headers and body together within the deadline: the request's own bound ends with its headers.
    const deadline = this.#deadline(`manifest ${formatReference(ref)}`, ref.registry, signal);
    try {
      // A body that stalls or drops is asked for again, as a failed request is; the deadline bounds both.
      let failure: BerthError | undefined;
      for (let attempt = 1; attempt <= this.options.attempts; attempt++) {
        if (attempt > 1) await sleep(backoffDelay(attempt - 1, this.options), deadline.signal);
        const result = await this.#getManifest(ref, deadline.signal);
        if (!(result instanceof BerthError)) return result;
        failure = result;
      }
      throw failure;
    } finally {
      deadline.done();
    }
  }

  /** One GET of a manifest; a transient failure to read its body is returned, to be tried again. */
  async #getManifest(ref: Reference, signal: AbortSignal): Promise<Manifest | BerthError> {
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
        const detail = await this.#errorText(response, abort.signal);
        throw new BerthError("not_found", `${name}: not found in registry ${ref.registry} (${detail})`);
      }
      if (!response.ok) {
        const detail = await this.#errorText(response, abort.signal);
        throw new BerthError("registry_error", `${name}: registry ${ref.registry} answered ${detail}`);
      }
      const length = Number(response.headers.get("content-length") ?? "0");
      if (length > MAX_MANIFEST_BYTES) {
        await response.body?.cancel();
        throw new BerthError(
          "unsupported",
          `${name}: manifest is ${length} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`,
        );
      }
      // Content-Length may lie or be absent: the cap holds whatever arrives.
      let read: { bytes: Uint8Array; truncated: boolean };
      try {
        read = await readAtMost(response.body, MAX_MANIFEST_BYTES, {
          what: `manifest ${name}`,
          stallMs: this.options.stallTimeoutMs,
          signal: abort.signal,
        });
      } catch (error) {
        if (signal.aborted || !(error instanceof BerthError) || !error.transient) throw error;
        return error;
      }
      const { bytes, truncated } = read;
      if (truncated) {
        throw new BerthError("unsupported", `${name}: manifest is over the ${MAX_MANIFEST_BYTES}-byte limit`);
      }
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
          `${name}: manifest body hashes to ${digest} but the registry says ${outsideText(served, 80)}`,
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
          `${name}: manifest says mediaType ${outsideText(bodyType, 100)} but was served as ${
            outsideText(contentType, 100)
          }`,
        );
      }
      const mediaType = bodyType ?? contentType;
      if (!isIndexType(mediaType) && !isManifestType(mediaType)) {
        throw new BerthError(
          "unsupported",
          `${name}: unsupported manifest media type "${
            outsideText(mediaType, 100) || "(none)"
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
    const what = `blob ${digest} of ${formatReference(ref)}`;
    const { response, abort, release } = await this.request(ref, {
      target: `/v2/${ref.repository}/blobs/${digest}`,
      headers,
      what,
      signal,
    });
    try {
      return await this.#blobBody(response, abort, release, { offset, size, what, ref });
    } catch (error) {
      release();
      abort.abort();
      throw error;
    }
  }

  async #blobBody(
    response: Response,
    abort: AbortController,
    release: () => void,
    { offset, size, what, ref }: { offset: number; size: number; what: string; ref: Reference },
  ): Promise<AsyncIterable<Uint8Array>> {
    let skip = 0;
    if (response.status === 404) {
      const detail = await this.#errorText(response, abort.signal);
      throw new BerthError("not_found", `${what}: not found in ${ref.registry} (${detail})`);
    }
    if (response.status === 206) {
      // Exactly the range asked for: another start would splice wrong bytes in, another end or total
      // means the registry serves something else than the blob of `size` bytes.
      const header = response.headers.get("content-range") ?? "";
      const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header);
      if (
        !range || Number(range[1]) !== offset || Number(range[2]) !== size - 1 ||
        (range[3] !== "*" && Number(range[3]) !== size)
      ) {
        await response.body?.cancel();
        throw new BerthError(
          "registry_error",
          `${what}: asked for bytes ${offset}-${size - 1} of ${size}, registry answered Content-Range "${
            outsideText(header, 80)
          }"`,
          { transient: true },
        );
      }
    } else if (response.status === 200) {
      skip = offset;
    } else {
      const detail = await this.#errorText(response, abort.signal);
      throw new BerthError("registry_error", `${what}: registry ${ref.registry} answered ${detail}`);
    }
    if (!response.body) {
      throw new BerthError("registry_error", `${what}: empty response body`, { transient: true });
    }
    return watchBody(response.body, abort, release, skip, this.options.stallTimeoutMs, what);
  }
}

/** A Location header as a URL against the one it answered; a malformed one is the registry's error. */
function parseLocation(location: string, base: URL, registry: string, what: string): URL {
  try {
    return new URL(location, base);
  } catch {
    throw new BerthError(
      "registry_error",
      `registry ${registry} sent an invalid redirect for ${what}: "${outsideText(location, 120)}"`,
    );
  }
}

/** A failure of the token exchange names the request it was for (the reference), unless it already does. */
function inContext(error: unknown, what: string): unknown {
  if (!(error instanceof BerthError) || error.message.includes(what)) return error;
  return new BerthError(error.reason, `${what}: ${error.message}`, {
    cause: error,
    transient: error.transient,
    details: error.details,
  });
}
