/**
 * Registry authentication: answers a 401's `WWW-Authenticate` challenge with a bearer token (anonymous, or
 * fetched with Basic credentials) or with Basic itself. Tokens are cached per registry and scope set until
 * `expires_in` runs out. No credential or token is ever put in a message or a log.
 */
import { BerthError } from "../util/errors.ts";
import type { Credentials } from "./credentials.ts";

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

  get(registry: string, scope: string): string | undefined {
    const entry = this.#entries.get(`${registry} ${scope}`);
    if (!entry) return undefined;
    if (Date.now() >= entry.expiresAt) {
      this.#entries.delete(`${registry} ${scope}`);
      return undefined;
    }
    return entry.header;
  }

  set(registry: string, scope: string, header: string, lifetimeMs: number): void {
    this.#entries.set(`${registry} ${scope}`, { header, expiresAt: Date.now() + lifetimeMs });
  }
}

/**
 * Turns a challenge into an Authorization header and its lifetime. `fetchToken` performs the token GET
 * (so the caller's transport, certificates and timeouts apply). `scope` is what the request needs, one
 * scope or several; see `tokenScopes` for what is asked.
 */
export async function answerChallenge(
  challenge: Challenge,
  registry: string,
  scope: string | readonly string[],
  credentials: Credentials | undefined,
  fetchToken: (url: URL, headers: Headers) => Promise<Response>,
  credentialFiles: string[] = [],
): Promise<{ header: string; lifetimeMs: number }> {
  const scopes = typeof scope === "string" ? [scope] : scope;
  const scopeText = scopes.join(" ");
  const noCredentials = `no credentials for ${registry} in ${
    credentialFiles.join(" or ") || "any credentials file"
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
  const realm = challenge.params.realm;
  if (!realm) {
    throw new BerthError("auth_failed", `registry ${registry} sent a bearer challenge without a realm`);
  }
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new BerthError("auth_failed", `registry ${registry} sent an invalid token realm "${realm}"`);
  }
  if (challenge.params.service) url.searchParams.set("service", challenge.params.service);
  for (const each of tokenScopes(scopes, challenge.params.scope)) url.searchParams.append("scope", each);
  const headers = new Headers();
  if (credentials) headers.set("Authorization", basicHeader(credentials));
  const response = await fetchToken(url, headers);
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
  let body: { token?: string; access_token?: string; expires_in?: number };
  try {
    body = await response.json();
  } catch {
    throw new BerthError("registry_error", `token service of ${registry} answered with invalid JSON`);
  }
  const token = body.token ?? body.access_token;
  if (!token) throw new BerthError("auth_failed", `token service of ${registry} returned no token`);
  const seconds = typeof body.expires_in === "number" && body.expires_in > 0
    ? body.expires_in
    : DEFAULT_TOKEN_SECONDS;
  const lifetimeMs = seconds * 1000;
  return { header: `Bearer ${token}`, lifetimeMs: lifetimeMs - Math.min(EXPIRY_MARGIN_MS, lifetimeMs / 2) };
}
