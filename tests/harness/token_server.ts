/**
 * A token server for docker-registry's `auth.token` (the docker token protocol), on 127.0.0.1: it answers
 * `GET /token?service=…&scope=…` with an ES256 JWT that the real registry verifies against the signing
 * certificate (`rootcertbundle`). It stands in for a real authorization service, which is the test's own
 * business: it records every request so tests can check what a client asked for and with which
 * credentials.
 *
 * Policy: a request with valid Basic credentials gets every action it asks for on any repository;
 * a request without credentials gets `pull` when `anonymousPull` is set and an empty grant otherwise (as
 * Docker Hub does, the registry then refuses); wrong credentials get 401.
 */
import { type KeyPair, pemToDer, publicKeyDer } from "./pki.ts";

/** One `access` claim entry. */
export interface Access {
  type: string;
  name: string;
  actions: string[];
}

/** What the token server saw in one request. */
export interface TokenRequest {
  service: string | null;
  scopes: string[];
  account: string | null;
  /** "none", "basic" (with `user`) or the scheme of any other Authorization header. */
  authorization: string;
  user?: string;
  status: number;
}

export interface TokenServerOptions {
  /** Users and passwords accepted with Basic. */
  users: Record<string, string>;
  /** Whether requests without credentials may pull. */
  anonymousPull?: boolean;
  /** The `expires_in` answered, in seconds (default 300). */
  expiresIn?: number;
}

export interface TokenServer {
  /** "http://127.0.0.1:PORT/token", the registry's `auth.token.realm`. */
  realm: string;
  service: string;
  issuer: string;
  /** Every request, in order. */
  requests: TokenRequest[];
  /** Every token handed out, to check that none shows up where it must not. */
  tokens: string[];
  /** The `auth.token` section for the registry's config. */
  registryAuth(): Record<string, unknown>;
  /** A token with exactly `access`, as the server would sign it (e.g. to push test images). */
  mint(access: Access[]): Promise<string>;
  close(): Promise<void>;
}

const encoder = new TextEncoder();

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** RFC 4648 base32, unpadded. */
function base32(bytes: Uint8Array): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/**
 * The libtrust key ID the registry computes for each certificate in its root bundle, and looks the JWT's
 * `kid` header up by: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32, in groups of four
 * joined by ':'.
 */
export async function libtrustKeyId(spki: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", spki)).subarray(0, 30);
  return base32(digest).match(/.{4}/g)!.join(":");
}

/** Parses `repository:name:pull,push` (the name may contain ':' only before a port, e.g. host:5000/x). */
function parseScope(scope: string): Access | undefined {
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (first < 0 || last === first) return undefined;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope.slice(last + 1).split(",").filter((action) => action),
  };
}

/** Starts the token server; `signer` is the key pair whose certificate the registry trusts. */
export async function startTokenServer(signer: KeyPair, options: TokenServerOptions): Promise<TokenServer> {
  const service = "berth-test-registry";
  const issuer = "berth-test-token-server";
  const key = await crypto.subtle.importKey(
    "pkcs8",
    pemToDer(await Deno.readTextFile(signer.key), "PRIVATE KEY"),
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["sign"],
  );
  const kid = await libtrustKeyId(await publicKeyDer(signer.cert));
  const requests: TokenRequest[] = [];
  const tokens: string[] = [];
  const expiresIn = options.expiresIn ?? 300;

  const mint = async (access: Access[]): Promise<string> => {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: "JWT", alg: "ES256", kid };
    const claims = {
      iss: issuer,
      sub: "berth-test",
      aud: service,
      iat: now,
      nbf: now - 10,
      exp: now + expiresIn,
      jti: crypto.randomUUID(),
      access,
    };
    const input = `${base64url(encoder.encode(JSON.stringify(header)))}.${
      base64url(encoder.encode(JSON.stringify(claims)))
    }`;
    // WebCrypto's ECDSA signature is r || s, which is exactly JWS's ES256 format.
    const signature = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      key,
      encoder.encode(input),
    );
    const token = `${input}.${base64url(new Uint8Array(signature))}`;
    tokens.push(token);
    return token;
  };

  const handle = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const seen: TokenRequest = {
      service: url.searchParams.get("service"),
      scopes: url.searchParams.getAll("scope"),
      account: url.searchParams.get("account"),
      authorization: "none",
      status: 200,
    };
    requests.push(seen);
    const answer = (status: number, body: unknown) => {
      seen.status = status;
      return Response.json(body, { status });
    };
    if (url.pathname !== "/token") return answer(404, { errors: [{ code: "NOT_FOUND" }] });
    const authorization = request.headers.get("authorization");
    let user: string | undefined;
    if (authorization) {
      const [scheme, value] = authorization.split(" ", 2);
      seen.authorization = scheme.toLowerCase();
      if (seen.authorization !== "basic") return answer(401, { details: "only Basic is accepted" });
      const decoded = atob(value ?? "");
      const colon = decoded.indexOf(":");
      seen.user = decoded.slice(0, colon);
      if (colon < 0 || options.users[seen.user] !== decoded.slice(colon + 1)) {
        return answer(401, { details: "wrong user name or password" });
      }
      user = seen.user;
    }
    const access = seen.scopes.map(parseScope).filter((entry): entry is Access => entry !== undefined)
      .map((entry) => {
        if (user !== undefined) return entry;
        const actions = options.anonymousPull ? entry.actions.filter((action) => action === "pull") : [];
        return { ...entry, actions };
      });
    const token = await mint(access);
    return answer(200, {
      token,
      access_token: token,
      expires_in: expiresIn,
      issued_at: new Date().toISOString(),
    });
  };

  const { promise: listening, resolve } = Promise.withResolvers<number>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: ({ port }) => resolve(port) },
    handle,
  );
  const port = await listening;
  const realm = `http://127.0.0.1:${port}/token`;
  return {
    realm,
    service,
    issuer,
    requests,
    tokens,
    registryAuth: () => ({ token: { realm, service, issuer, rootcertbundle: signer.cert } }),
    mint,
    close: () => server.shutdown(),
  };
}
