/**
 * Registry authentication: answers a 401's `WWW-Authenticate` challenge with a bearer token (anonymous, or
 * fetched with Basic credentials) or with Basic itself. Tokens are cached per registry and scope until
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

/** Tokens live at least this long when the server gives no expires_in (the distribution spec's default). */
const DEFAULT_TOKEN_SECONDS = 60;
/** Renew a little before expiry so a token never dies mid-request. */
const EXPIRY_MARGIN_MS = 5_000;

export function basicHeader(credentials: Credentials): string {
  const bytes = new TextEncoder().encode(`${credentials.username}:${credentials.password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

/** Caches Authorization headers per registry and scope. */
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
 * (so the caller's transport, certificates and timeouts apply).
 */
export async function answerChallenge(
  challenge: Challenge,
  registry: string,
  scope: string,
  credentials: Credentials | undefined,
  fetchToken: (url: URL, headers: Headers) => Promise<Response>,
  credentialFiles: string[] = [],
): Promise<{ header: string; lifetimeMs: number }> {
  const noCredentials = `no credentials for ${registry} in ${
    credentialFiles.join(" or ") || "any credentials file"
  }`;
  if (challenge.scheme === "basic") {
    if (!credentials) {
      throw new BerthError(
        "auth_failed",
        `registry ${registry} requires a login for ${scope}; ${noCredentials}`,
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
  url.searchParams.set("scope", challenge.params.scope ?? scope);
  const headers = new Headers();
  if (credentials) headers.set("Authorization", basicHeader(credentials));
  const response = await fetchToken(url, headers);
  if (response.status === 401 || response.status === 403) {
    await response.body?.cancel();
    throw new BerthError(
      "auth_failed",
      `registry ${registry} refused ${credentials ? "the configured credentials" : "anonymous access"} ` +
        `for ${scope} (token service answered HTTP ${response.status})${
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
