/**
 * Requests to registries: the one path every registry request takes, pulls and pushes alike. Connection
 * faults, timeouts, 429 and 5xx are retried with exponential backoff; 401 challenges are answered once per
 * scope (pull, or pull and push); redirects are followed here so that Authorization is never sent to
 * another host. The client (client.ts) and the push side (push.ts) build on it.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { outsideText } from "../util/text.ts";
import { backoffDelay, sleep } from "../util/async.ts";
import { apiHost, type Reference } from "../oci/reference.ts";
import { answerChallenge, parseChallenge, repositoryScope, TokenCache } from "./auth.ts";
import { readRegistryError } from "./body.ts";
import { type Credentials, findCredentials } from "./credentials.ts";
import type { RegistryHost } from "./hosts.ts";
import {
  allowsPlainHttp,
  checkRegistryUrl,
  configuredTransport,
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

/** Redirects followed for one request: real registries use one (to a CDN or object store); more is a loop. */
export const MAX_REDIRECTS = 5;

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

/** Statuses worth asking again: the registry is busy or failing, not refusing. */
function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** Sends requests to registries: transports, credentials and tokens per registry, shared by every request. */
export class RegistryConnection {
  readonly options: RegistryOptions;
  #transports = new Map<string, Promise<HostTransport>>();
  #credentials = new Map<string, Promise<Credentials | undefined>>();
  #tokens = new TokenCache();
  /** Token requests under way, by registry and scopes. */
  #answering = new Map<string, Promise<{ header: string; lifetimeMs: number }>>();
  /** Hosts a hosts.toml describes (scheme, certificates, headers), by the host name requests use. */
  #hosts = new Map<string, RegistryHost>();

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

  /**
   * Makes requests to `host.host` follow what hosts.toml says of it: its scheme, certificates, headers and
   * timeout. The first description of a host is kept (a host named by several files is one host).
   */
  protected useHost(host: RegistryHost): void {
    if (!this.#hosts.has(host.host)) this.#hosts.set(host.host, host);
  }

  /** Whether plain HTTP may be spoken to `registry`: loopback, --insecure-registry, or http:// in hosts.toml. */
  #plainHttpAllowed(registry: string): boolean {
    return this.#hosts.get(registry)?.scheme === "http" ||
      allowsPlainHttp(registry, this.options.insecureRegistries);
  }

  /** The transport (scheme, TLS client) of a registry, probed once and shared. */
  #transport(registry: string, signal?: AbortSignal): Promise<HostTransport> {
    let transport = this.#transports.get(registry);
    if (!transport) {
      const host = this.#hosts.get(registry);
      transport = host?.scheme
        ? configuredTransport(registry, host.scheme, this.options, host)
        : resolveTransport(apiHost(registry), registry, this.options, signal, host);
      this.#transports.set(registry, transport);
      transport.catch(() => this.#transports.delete(registry));
    }
    return transport;
  }

  /** The credentials for a registry, looked up once. */
  #credentialsFor(registry: string): Promise<Credentials | undefined> {
    let credentials = this.#credentials.get(registry);
    if (!credentials) {
      credentials = findCredentials(registry, this.options.credentialFiles);
      this.#credentials.set(registry, credentials);
    }
    return credentials;
  }

  /** Reads an error body within the stall timeout, cleaned for a message. */
  protected async errorText(response: Response, signal?: AbortSignal): Promise<string> {
    return (await readRegistryError(response, this.options.stallTimeoutMs, signal)).text;
  }

  /**
   * A signal that aborts when `signal` does or when `deadlineMs` has passed, with a transient
   * registry_unreachable naming `what`: the bound on one whole operation. Call `done()` when finished.
   */
  protected deadline(
    what: string,
    registry: string,
    signal?: AbortSignal,
  ): { signal: AbortSignal; done: () => void } {
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
      try {
        return await this.#attempt(ref, request, scopes, deadlineAt);
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (error instanceof BerthError && !error.transient) throw error;
        throwIfFinal(error, ref, what, this.options.certsDirs);
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

  /** One try of a request, within its own timeout: a 401 is answered, a busy or failing registry thrown. */
  async #attempt(
    ref: Reference,
    request: RegistryRequest,
    scopes: readonly string[],
    deadlineAt: number,
  ): Promise<RegistryResponse> {
    const { what, signal } = request;
    const abort = new AbortController();
    const onAbort = () => abort.abort(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(
      () => abort.abort(new BerthError("registry_unreachable", "timed out", { transient: true })),
      Math.min(
        request.timeoutMs ?? this.#hosts.get(ref.registry)?.timeoutMs ?? this.options.requestTimeoutMs,
        deadlineAt - Date.now(),
      ),
    );
    try {
      const transport = await this.#transport(ref.registry, signal);
      let response = await this.#follow(ref, transport, request, scopes.join(" "), abort.signal);
      if (response.status === 401) {
        response = await this.#authenticate(ref, transport, request, scopes, response, abort.signal);
      } else if (response.status === 403 && wantsPush(scopes)) {
        // A login that may read but not write is refused with 403 and no challenge (Basic registries).
        throw new BerthError("auth_failed", await this.#deniedMessage(ref, scopes, what, response));
      }
      if (isRetryableStatus(response.status)) {
        const detail = await this.errorText(response, abort.signal);
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
      throw error;
    }
  }

  /** Answers a 401's challenge (a token or Basic credentials) and sends the request again with it. */
  async #authenticate(
    ref: Reference,
    transport: HostTransport,
    request: RegistryRequest,
    scopes: readonly string[],
    response: Response,
    signal: AbortSignal,
  ): Promise<Response> {
    // One cache entry per set of scopes: a push token is not handed to a pull, nor the other way round.
    const scopeKey = scopes.join(" ");
    const challenge = parseChallenge(response.headers.get("www-authenticate"));
    await response.body?.cancel();
    if (!challenge) {
      throw new BerthError("auth_failed", `registry ${ref.registry} answered 401 without a usable challenge`);
    }
    // Requests sent at once (a pull resolves its references concurrently) that are all challenged share one
    // token request: one token per registry and scopes, as before they ran one after another.
    const key = `${ref.registry} ${scopeKey}`;
    let answering = this.#answering.get(key);
    if (!answering) {
      answering = (async () =>
        answerChallenge(challenge, ref.registry, scopes, await this.#credentialsFor(ref.registry), {
          fetch: (url, tokenHeaders) =>
            this.#fetchToken(ref, transport, url, tokenHeaders, signal),
          tls: transport.baseUrl.startsWith("https:"),
          plainHttpAllowed: this.#plainHttpAllowed(ref.registry),
          stallMs: this.options.stallTimeoutMs,
          signal,
          credentialFiles: this.options.credentialFiles,
        }))().finally(() => this.#answering.delete(key));
      this.#answering.set(key, answering);
    }
    const answer = await answering.catch((error) => {
      throw inContext(error, request.what);
    });
    this.#tokens.set(ref.registry, scopeKey, answer.header, answer.lifetimeMs);
    // The fresh answer is used directly: a token may live shorter than the cache keeps it.
    const again = await this.#follow(ref, transport, request, scopeKey, signal, answer.header);
    if (again.status === 401 || again.status === 403) {
      throw new BerthError("auth_failed", await this.#deniedMessage(ref, scopes, request.what, again));
    }
    return again;
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
    const detail = await this.errorText(response);
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
    const plainHttpAllowed = this.#plainHttpAllowed(ref.registry);
    const hostHeaders = this.#hosts.get(ref.registry)?.headers ?? [];
    // An upload's Location may be absolute, and on another host (a storage front end).
    let url = new URL(request.target, transport.baseUrl);
    checkRegistryUrl(url, ref.registry, plainHttpAllowed, `a location for ${request.what}`);
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const sameHost = url.origin === registryOrigin;
      const requestHeaders = new Headers(request.headers);
      // hosts.toml's headers (a peer's token) go to that host only, as Authorization does.
      if (sameHost) { for (const [name, value] of hostHeaders) requestHeaders.append(name, value); }
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
    const plainHttpAllowed = this.#plainHttpAllowed(ref.registry);
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

/**
 * Throws at once for a failure that asking again cannot change: an untrusted certificate (it stays
 * untrusted however often it is asked), or a host name that does not resolve (the agent retries later).
 * Anything else returns, to be tried again.
 */
function throwIfFinal(error: unknown, ref: Reference, what: string, certsDirs: string[]): void {
  const message = errorMessage(error);
  const host = apiHost(ref.registry);
  if (isTlsError(message) && !(error instanceof BerthError)) {
    throw new BerthError(
      "registry_unreachable",
      `TLS connection to registry ${host} failed (${message}); ${tlsHint(host, certsDirs)}`,
      { cause: error },
    );
  }
  if (/failed to lookup address|Name or service not known|No address associated/i.test(message)) {
    throw new BerthError(
      "registry_unreachable",
      `cannot resolve registry host ${host} for ${what}: ${message}`,
      { cause: error },
    );
  }
}
