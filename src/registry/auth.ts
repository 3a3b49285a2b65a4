/**
 * Registry authentication: answers a 401's `WWW-Authenticate` challenge with a bearer token (anonymous, or
 * fetched with Basic credentials) or with Basic itself. Tokens are cached per registry and scope set until
 * `expires_in` runs out. No credential or token is ever put in a message or a log.
 */
import { BerthError } from "../util/errors.ts";
import { readAtMost } from "./body.ts";
import type { Credentials } from "./credentials.ts";
import { isLoopbackHost } from "../oci/reference.ts";
import { checkRegistryUrl } from "./transport.ts";

/** A 401's WWW-Authenticate, parsed: scheme and parameters (realm, service, scope), names lower-cased. */
export interface Challenge {
  scheme: "bearer" | "basic";
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="…"` (or Basic); undefined when absent or unknown. */
export function parseChallenge(header: string | null): Challenge | undefined {
  if (!header) return undefined;
  const match = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!match) return undefined;
  const scheme = match[1].toLowerCase();
  if (scheme !== "bearer" && scheme !== "basic") return undefined;
  const params: Record<string, string> = {};
  for (const param of match[2].matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) {
    params[param[1].toLowerCase()] = param[2] !== undefined ? param[2].replace(/\\(.)/g, "$1") : param[3];
  }
  return { scheme, params };
}

/** What a request may do to a repository: read it, or read and write it (a push also checks what exists). */
export type RepositoryAccess = "pull" | "pull,push";

/** The token scope for `access` to `repository`: "repository:a/b:pull" or "repository:a/b:pull,push". */
export function repositoryScope(repository: string, access: RepositoryAccess = "pull"): string {
  return `repository:${repository}:${access}`;
}

/** Splits "type:name:a,b" at its first and last colon (a name may hold a registry port's colon). */
function splitScope(scope: string): { resource: string; actions: string[] } | undefined {
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (first < 0 || last === first) return undefined;
  return { resource: scope.slice(0, last), actions: scope.slice(last + 1).split(",").filter(Boolean) };
}

/**
 * The scopes to ask the token service for: ours, plus any the challenge names that ours do not cover.
 * Ours come first because the challenge only names what the refused request needed: a push's first request
 * (a HEAD) is challenged for `pull` alone, and a token for just that would be refused again by the upload.
 */
export function tokenScopes(ours: readonly string[], challenged: string | undefined): string[] {
  const scopes = [...ours];
  for (const theirs of (challenged ?? "").split(" ").filter(Boolean)) {
    const wanted = splitScope(theirs);
    const covered = scopes.some((scope) => {
      if (scope === theirs) return true;
      const held = splitScope(scope);
      return wanted !== undefined && held?.resource === wanted.resource &&
        wanted.actions.every((action) => held.actions.includes(action) || held.actions.includes("*"));
    });
    if (!covered) scopes.push(theirs);
  }
  return scopes;
}

/** Tokens live at least this long when the server gives no expires_in (the distribution spec's default). */
const DEFAULT_TOKEN_SECONDS = 60;
/** Renew a little before expiry so a token never dies mid-request. */
const EXPIRY_MARGIN_MS = 5_000;

/** `Basic base64(user:password)`, the password UTF-8 encoded; the result is a secret, never logged. */
export function basicHeader(credentials: Credentials): string {
  const bytes = new TextEncoder().encode(`${credentials.username}:${credentials.password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

/**
 * Caches Authorization headers per registry and scope; a request that needs several scopes (a
 * cross-repository mount) passes them joined by spaces, as one key.
 */
export class TokenCache {
  #entries = new Map<string, { header: string; expiresAt: number }>();
  readonly #now: () => number;

  /** `now` (ms since the epoch, Date.now by default) is what expiry is measured by; tests pass their own. */
  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  /** The header cached for `registry` and `scope`, or undefined when there is none or it has expired. */
  get(registry: string, scope: string): string | undefined {
    const entry = this.#entries.get(`${registry} ${scope}`);
    if (!entry) return undefined;
    if (this.#now() >= entry.expiresAt) {
      this.#entries.delete(`${registry} ${scope}`);
      return undefined;
    }
    return entry.header;
  }

  /** Caches `header` for `lifetimeMs` from now. */
  set(registry: string, scope: string, header: string, lifetimeMs: number): void {
    this.#entries.set(`${registry} ${scope}`, { header, expiresAt: this.#now() + lifetimeMs });
  }
}

/**
 * A token response is a JSON object with one token (a JWT of a few KiB at most in practice); the cap leaves
 * room for tokens with large claims and keeps a hostile token service from filling memory.
 */
export const MAX_TOKEN_RESPONSE_BYTES = 256 * 1024;
/** A token goes into a header: visible ASCII only, so a hostile one cannot add headers or lines. */
const TOKEN_CHARS = /^[\x21-\x7e]+$/;

/** How the token GET is made, and what the registry's transport allows. */
export interface TokenExchange {
  /** Performs the token GET (so the caller's transport, certificates and timeouts apply). */
  fetch: (url: URL, headers: Headers) => Promise<Response>;
  /** The registry is spoken to over TLS: credentials then never go to a plain-HTTP realm on the network. */
  tls: boolean;
  /** The registry may be spoken to in plain HTTP (loopback, insecure): its realm may be http: too. */
  plainHttpAllowed: boolean;
  /** Milliseconds without a byte of the token response before it fails. */
  stallMs: number;
  signal?: AbortSignal;
  /** Named when there are no credentials and the registry wants some. */
  credentialFiles?: string[];
}

/**
 * Turns a challenge into an Authorization header and its lifetime. `scope` is what the request needs,
 * one scope or several; see `tokenScopes` for what is asked. The realm must be https: (or http: for a
 * registry allowed plain HTTP), and Basic credentials go to a plain-HTTP realm only from a plain-HTTP
 * registry or on this machine (loopback): never from a TLS registry across the network.
 */
export async function answerChallenge(
  challenge: Challenge,
  registry: string,
  scope: string | readonly string[],
  credentials: Credentials | undefined,
  exchange: TokenExchange,
): Promise<{ header: string; lifetimeMs: number }> {
  const scopes = typeof scope === "string" ? [scope] : scope;
  const scopeText = scopes.join(" ");
  const noCredentials = `no credentials for ${registry} in ${
    exchange.credentialFiles?.join(" or ") || "any credentials file"
  }`;
  if (challenge.scheme === "basic") {
    if (!credentials) {
      throw new BerthError(
        "auth_failed",
        `registry ${registry} requires a login for ${scopeText}; ${noCredentials}`,
      );
    }
    return { header: basicHeader(credentials), lifetimeMs: Number.POSITIVE_INFINITY };
  }
  const url = tokenUrl(challenge, registry, scopes, credentials !== undefined, exchange);
  const headers = new Headers();
  if (credentials) headers.set("Authorization", basicHeader(credentials));
  const response = await exchange.fetch(url, headers);
  if (response.status === 401 || response.status === 403) {
    await response.body?.cancel();
    throw new BerthError(
      "auth_failed",
      `registry ${registry} refused ${credentials ? "the configured credentials" : "anonymous access"} ` +
        `for ${scopeText} (token service answered HTTP ${response.status})${
          credentials ? "" : `; ${noCredentials}`
        }`,
    );
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new BerthError("registry_error", `token service of ${registry} answered HTTP ${response.status}`, {
      transient: response.status >= 500,
    });
  }
  const body = await readTokenResponse(response, registry, exchange);
  const seconds = typeof body.expires_in === "number" && body.expires_in > 0
    ? body.expires_in
    : DEFAULT_TOKEN_SECONDS;
  const lifetimeMs = seconds * 1000;
  return {
    header: `Bearer ${body.token}`,
    lifetimeMs: lifetimeMs - Math.min(EXPIRY_MARGIN_MS, lifetimeMs / 2),
  };
}

/**
 * The token URL of a bearer challenge, with its service and scopes: the realm must be https: (or http:
 * for a registry allowed plain HTTP), and credentials never go from a TLS registry to a plain-HTTP realm
 * across the network.
 */
function tokenUrl(
  challenge: Challenge,
  registry: string,
  scopes: readonly string[],
  withCredentials: boolean,
  exchange: TokenExchange,
): URL {
  const realm = challenge.params.realm;
  if (!realm) {
    throw new BerthError("auth_failed", `registry ${registry} sent a bearer challenge without a realm`);
  }
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new BerthError("auth_failed", `registry ${registry} sent an invalid token realm`);
  }
  checkRegistryUrl(url, registry, exchange.plainHttpAllowed, "a token realm");
  if (withCredentials && exchange.tls && url.protocol === "http:" && !isLoopbackHost(url.host)) {
    throw new BerthError(
      "auth_failed",
      `registry ${registry} is spoken to over TLS but its token realm ${url.origin} is plain HTTP: ` +
        `berth does not send the registry's credentials there`,
    );
  }
  if (challenge.params.service) url.searchParams.set("service", challenge.params.service);
  for (const each of tokenScopes(scopes, challenge.params.scope)) url.searchParams.append("scope", each);
  return url;
}

/** The token service's JSON answer, size-capped and stall-bounded, with a header-safe token. */
async function readTokenResponse(
  response: Response,
  registry: string,
  exchange: TokenExchange,
): Promise<{ token: string; expires_in?: unknown }> {
  const { bytes, truncated } = await readAtMost(response.body, MAX_TOKEN_RESPONSE_BYTES, {
    what: `token response of ${registry}`,
    stallMs: exchange.stallMs,
    signal: exchange.signal,
  });
  if (truncated) {
    throw new BerthError(
      "registry_error",
      `token service of ${registry} answered with more than ${MAX_TOKEN_RESPONSE_BYTES} bytes`,
    );
  }
  let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
  try {
    body = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new BerthError("registry_error", `token service of ${registry} answered with invalid JSON`);
  }
  const token = body?.token ?? body?.access_token;
  if (!token) throw new BerthError("auth_failed", `token service of ${registry} returned no token`);
  if (typeof token !== "string" || !TOKEN_CHARS.test(token)) {
    throw new BerthError(
      "auth_failed",
      `token service of ${registry} returned a token that is not plain text`,
    );
  }
  return { token, expires_in: body.expires_in };
}
