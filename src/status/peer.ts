/**
 * The store served read-only to neighbouring devices over the OCI distribution API (`berth serve`, the
 * agent's `peer.listen`), so that a fleet on one LAN fetches each image from the origin once:
 *
 *   GET /v2/                              200 {} (the API version check)
 *   GET /v2/<name>/manifests/<tag|digest> a stored manifest, with its media type and Docker-Content-Digest
 *   GET /v2/<name>/blobs/<digest>         a committed blob, streamed; one Range (bytes=a-b, a-, -n) → 206
 *   GET /v2/<name>/tags/list              the tags the store records for <name>
 *
 * A tag is looked up among the references the store records: `<ns>/<name>:<tag>` when the request names
 * the origin registry with `?ns=` (as containerd does for mirrors), otherwise the one stored reference with
 * that repository and tag, whatever its registry. It answers what the tag resolved to at the origin
 * (SOURCE_DIGEST) when that is stored, so a neighbour sees the digest the origin gives.
 *
 * Nothing here writes. A digest from a request becomes a path only through Store (digestHex), after it was
 * checked here; only committed blobs are opened, never an ingest. Peers verify everything they receive
 * against its digest, so this trusts the store as fsck left it. Beyond loopback a token is required; it is
 * checked before anything else and a failure is a plain 401 with an OCI UNAUTHORIZED body (no challenge:
 * neighbours send it unasked, from the header table of their hosts.toml).
 */
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { BerthError } from "../util/errors.ts";
import { isDigest } from "../oci/digest.ts";
import { isIndexType, isManifestType, OCI_INDEX, OCI_MANIFEST } from "../oci/mediatypes.ts";
import { DOCKER_HUB, parseReference, type Reference } from "../oci/reference.ts";
import { REF_NAME, SOURCE_DIGEST, SOURCE_MEDIA_TYPE } from "../store/annotations.ts";
import type { Store } from "../store/store.ts";
import { connectHost, formatListen, isLoopback, parseListen } from "../util/listen_address.ts";
import { type HttpLimits, serveHttp } from "./http.ts";
import { hostAllowed, type RouteSettings, tokenMatches } from "./server.ts";

/** A manifest is small; a blob bigger than this is a layer, never read whole to be served as a manifest. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Bytes read from a blob file per chunk written to the client. */
const CHUNK_BYTES = 256 * 1024;
/** One repository path component, as docker and the distribution spec allow it. */
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const MAX_NAME_LENGTH = 255;
/** Sent on every answer: registry clients check for it on /v2/. */
const API_VERSION = { "Docker-Distribution-API-Version": "registry/2.0" };

/** The OCI error codes this server answers with. */
type ErrorCode =
  | "BLOB_UNKNOWN"
  | "DIGEST_INVALID"
  | "MANIFEST_UNKNOWN"
  | "NAME_INVALID"
  | "NAME_UNKNOWN"
  | "UNAUTHORIZED"
  | "DENIED";

/** An OCI error answer: `{"errors":[{"code","message","detail"}]}`. */
function ociError(status: number, code: ErrorCode, message: string): Response {
  return new Response(JSON.stringify({ errors: [{ code, message, detail: null }] }), {
    status,
    headers: { "Content-Type": "application/json; charset=utf-8", ...API_VERSION },
  });
}

/**
 * The routes, without a listener: `settings` (token, listen address) is read on every request. HEAD is
 * answered by http.ts from the GET answer, without its body.
 */
export function peerRoutes(store: Store, settings: RouteSettings | (() => RouteSettings) = {}): Hono {
  const app = new Hono();
  const current = typeof settings === "function" ? settings : () => settings;
  app.use("*", peerGuard(current));
  app.get("*", (c) => route(store, c));
  app.onError((error, c) => {
    console.error(`peer endpoint: ${c.req.method} ${c.req.path} failed: ${error.stack ?? error}`);
    return c.json(
      { errors: [{ code: "UNKNOWN", message: "see the serving device's log", detail: null }] },
      500,
    );
  });
  return app;
}

/** The Host check (against DNS rebinding, as for the status endpoint) and, when set, the token. */
function peerGuard(current: () => RouteSettings): MiddlewareHandler {
  return async (c, next) => {
    const now = current();
    if (!hostAllowed(c.req.header("host"), now)) {
      return ociError(421, "DENIED", "the Host header does not name this device; connect to its address");
    }
    if (now.token !== undefined) {
      const presented = /^Bearer +(.+)$/i.exec(c.req.header("authorization") ?? "")?.[1]?.trim();
      if (presented === undefined || !tokenMatches(presented, now.token)) {
        return ociError(
          401,
          "UNAUTHORIZED",
          presented === undefined
            ? "this store needs its peer token: send Authorization: Bearer <peer.token>"
            : "the bearer token is not this store's peer.token",
        );
      }
    }
    await next();
  };
}

/** Dispatches a path under /v2/; each part of it is checked before it is used. */
async function route(store: Store, c: Context): Promise<Response> {
  const path = c.req.path;
  if (path === "/v2/" || path === "/v2") {
    return new Response("{}", { headers: { "Content-Type": "application/json", ...API_VERSION } });
  }
  const match = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(path) ??
    /^\/v2\/(.+)\/(tags)\/list$/.exec(path);
  if (!match) return ociError(404, "NAME_UNKNOWN", `no route ${path}: this is a read-only OCI registry`);
  const [, name, kind, reference] = match;
  if (name.length > MAX_NAME_LENGTH || !name.split("/").every((part) => COMPONENT.test(part))) {
    return ociError(400, "NAME_INVALID", "not a repository name");
  }
  const ns = c.req.query("ns");
  if (kind === "blobs") {
    if (!isDigest(reference)) return ociError(400, "DIGEST_INVALID", "expected sha256: and 64 hex digits");
    return await blobAnswer(store, reference, c.req.header("range"));
  }
  if (kind === "tags") return await tagsAnswer(store, name, ns);
  if (isDigest(reference)) return await manifestAnswer(store, reference);
  if (!TAG.test(reference)) return ociError(404, "MANIFEST_UNKNOWN", "not a tag or a sha256 digest");
  const found = await resolveTag(store, name, reference, ns);
  if ("error" in found) return found.error;
  return await manifestAnswer(store, found.digest, found.mediaType);
}

/** One reference the store records, parsed, with what its tag is served as. */
interface StoredTag {
  ref: Reference;
  text: string;
  digest: string;
  mediaType: string;
}

/** Every tagged reference in index.json; entries whose name does not parse are left out. */
async function storedTags(store: Store): Promise<StoredTag[]> {
  const tags: StoredTag[] = [];
  for (const entry of (await store.readIndex()).manifests) {
    const text = entry.annotations?.[REF_NAME];
    if (text === undefined) continue;
    let ref: Reference;
    try {
      ref = parseReference(text);
    } catch {
      continue;
    }
    if (ref.tag === undefined) continue;
    const source = entry.annotations?.[SOURCE_DIGEST];
    const sourceType = entry.annotations?.[SOURCE_MEDIA_TYPE];
    const useSource = isDigest(source) && sourceType !== undefined && await store.has(source);
    tags.push({
      ref,
      text,
      digest: useSource ? source : entry.digest,
      mediaType: useSource ? sourceType : entry.mediaType,
    });
  }
  return tags;
}

/**
 * Whether a stored reference is the repository `name` a request names: of registry `ns` when given (as
 * docker normalises it: index.docker.io is docker.io, a one-part Hub name is under library/), of any
 * registry otherwise (a one-part name then also finds docker.io/library/<name>).
 */
function sameRepository(ref: Reference, name: string, ns: string | undefined): boolean {
  if (ns !== undefined) {
    const registry = ns.toLowerCase() === "index.docker.io" ? DOCKER_HUB : ns.toLowerCase();
    const repository = registry === DOCKER_HUB && !name.includes("/") ? `library/${name}` : name;
    return ref.registry.toLowerCase() === registry && ref.repository === repository;
  }
  return ref.repository === name || (ref.registry === DOCKER_HUB && ref.repository === `library/${name}`);
}

/** The stored reference a tag request names, or the OCI error saying why there is none (or several). */
async function resolveTag(
  store: Store,
  name: string,
  tag: string,
  ns: string | undefined,
): Promise<{ digest: string; mediaType: string } | { error: Response }> {
  const repository = (await storedTags(store)).filter((stored) => sameRepository(stored.ref, name, ns));
  const where = ns === undefined ? "" : ` from ${ns}`;
  if (repository.length === 0) {
    return { error: ociError(404, "NAME_UNKNOWN", `no stored reference of ${name}${where}`) };
  }
  const found = repository.filter((stored) => stored.ref.tag === tag);
  if (found.length === 0) {
    return { error: ociError(404, "MANIFEST_UNKNOWN", `${name}:${tag}${where} is not stored`) };
  }
  if (found.length > 1 && new Set(found.map((stored) => stored.digest)).size > 1) {
    const refs = found.map((stored) => stored.text).join(", ");
    return {
      error: ociError(
        404,
        "MANIFEST_UNKNOWN",
        `${name}:${tag} is stored from several registries (${refs}): name one with ?ns=`,
      ),
    };
  }
  return { digest: found[0].digest, mediaType: found[0].mediaType };
}

/** `GET /v2/<name>/tags/list`: the stored tags of the repository, sorted. */
async function tagsAnswer(store: Store, name: string, ns: string | undefined): Promise<Response> {
  const found = (await storedTags(store)).filter((stored) => sameRepository(stored.ref, name, ns));
  if (found.length === 0) return ociError(404, "NAME_UNKNOWN", `no stored reference of ${name}`);
  const tags = [...new Set(found.map((stored) => stored.ref.tag!))].sort();
  return new Response(JSON.stringify({ name, tags }), {
    headers: { "Content-Type": "application/json", ...API_VERSION },
  });
}

/** The media type a stored manifest declares, or the one its shape implies; undefined when not a manifest. */
function manifestType(bytes: Uint8Array): string | undefined {
  let parsed: { mediaType?: unknown; manifests?: unknown; config?: unknown; layers?: unknown };
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null) return undefined;
  const declared = typeof parsed.mediaType === "string" ? parsed.mediaType : undefined;
  if (declared !== undefined) return isIndexType(declared) || isManifestType(declared) ? declared : undefined;
  if (Array.isArray(parsed.manifests)) return OCI_INDEX;
  if (parsed.config !== undefined && Array.isArray(parsed.layers)) return OCI_MANIFEST;
  return undefined;
}

/**
 * A stored manifest by digest, served as `mediaType` (the type the origin served it as) or as the type it
 * declares itself. A blob that is not a manifest (a layer, a config) is not one here.
 */
async function manifestAnswer(store: Store, digest: string, mediaType?: string): Promise<Response> {
  const unknown = () => ociError(404, "MANIFEST_UNKNOWN", `manifest ${digest} is not stored`);
  const size = await store.blobSize(digest);
  if (size === undefined || size > MAX_MANIFEST_BYTES) return unknown();
  let bytes: Uint8Array;
  try {
    bytes = await store.readBlob(digest);
  } catch (error) {
    if (error instanceof BerthError && error.reason === "not_found") return unknown();
    throw error;
  }
  const type = manifestType(bytes);
  if (type === undefined) return unknown();
  return new Response(bytes as Uint8Array<ArrayBuffer>, {
    headers: {
      "Content-Type": mediaType ?? type,
      "Content-Length": String(bytes.length),
      "Docker-Content-Digest": digest,
      ETag: `"${digest}"`,
      ...API_VERSION,
    },
  });
}

/**
 * The part of a blob of `size` bytes a Range header asks for: undefined for the whole blob (no header, or
 * one this does not serve: several ranges, another unit, a malformed one, which RFC 9110 lets a server
 * ignore), "unsatisfiable" when it starts past the end.
 */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | "unsatisfiable" | undefined {
  const match = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header?.trim() ?? "");
  if (!match || (match[1] === "" && match[2] === "")) return undefined;
  if (match[1] === "") {
    const suffix = Number(match[2]);
    if (suffix === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === "" ? Infinity : Number(match[2]);
  if (end < start) return undefined;
  if (start >= size) return "unsatisfiable";
  return { start, end: Math.min(end, size - 1) };
}

/** `GET /v2/<name>/blobs/<digest>`: a committed blob, whole or one range of it, streamed from its file. */
async function blobAnswer(store: Store, digest: string, rangeHeader: string | undefined): Promise<Response> {
  let file: Deno.FsFile;
  try {
    file = await store.openBlob(digest);
  } catch (error) {
    if (error instanceof BerthError && error.reason === "not_found") {
      return ociError(404, "BLOB_UNKNOWN", `blob ${digest} is not stored`);
    }
    throw error;
  }
  try {
    const size = (await file.stat()).size;
    const range = parseRange(rangeHeader, size);
    const headers: Record<string, string> = {
      "Content-Type": "application/octet-stream",
      "Docker-Content-Digest": digest,
      "Accept-Ranges": "bytes",
      ETag: `"${digest}"`,
      ...API_VERSION,
    };
    if (range === "unsatisfiable") {
      file.close();
      return new Response(null, { status: 416, headers: { ...headers, "Content-Range": `bytes */${size}` } });
    }
    const { start, end } = range ?? { start: 0, end: size - 1 };
    const length = end - start + 1;
    if (start > 0) await file.seek(start, Deno.SeekMode.Start);
    headers["Content-Length"] = String(length);
    if (range) headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
    return new Response(fileBody(file, length), { status: range ? 206 : 200, headers });
  } catch (error) {
    file.close();
    throw error;
  }
}

/** `length` bytes of `file` from where it stands, as a stream that closes the file when done or cancelled. */
function fileBody(file: Deno.FsFile, length: number): ReadableStream<Uint8Array> {
  let left = length;
  let open = true;
  const close = () => {
    if (open) file.close();
    open = false;
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (left === 0) {
        close();
        controller.close();
        return;
      }
      const chunk = new Uint8Array(Math.min(CHUNK_BYTES, left));
      const count = await file.read(chunk).catch((error) => {
        close();
        throw error;
      });
      if (count === null) {
        close();
        controller.error(new Error("the blob file is shorter than it was"));
        return;
      }
      left -= count;
      controller.enqueue(chunk.subarray(0, count));
    },
    cancel: close,
  }, { highWaterMark: 0 });
}

/** servePeers' settings. */
export interface PeerOptions {
  /** Required beyond loopback: requests must send `Authorization: Bearer <token>`. */
  token?: string;
  /** Trouble with clients (a flood at the connection cap), rate-limited by http.ts. */
  warn?: (message: string) => void;
  /** Tests shorten the timeouts; otherwise the status endpoint's. */
  limits?: Partial<HttpLimits>;
  /** What names the address and the token in errors: "peer.listen"/"peer.token" or the flags. */
  keys?: { listen: string; token: string };
}

/** A running peer endpoint. */
export interface PeerServer {
  /** "http://10.0.0.5:8471": what neighbours name in their hosts.toml. */
  readonly url: string;
  /** The address bound, in listen syntax (the real port when 0 was asked). */
  readonly listen: string;
  /**
   * A new token (a reload), in force for the next request; refused (BerthError "invalid_input") when the
   * address is beyond loopback and no token is left.
   */
  setToken(token: string | undefined): void;
  /** Stops listening and lets answers in flight finish. */
  close(): Promise<void>;
}

/**
 * Serves `store` read-only on `listen` (host:port or [v6]:port). Throws BerthError("invalid_input") for an
 * address that is not TCP, one beyond loopback without a token, or one that cannot be bound.
 */
export function servePeers(
  listen: string,
  store: Store,
  options: PeerOptions = {},
): PeerServer {
  const keys = options.keys ?? { listen: "peer.listen", token: "peer.token" };
  const address = parseListen(listen, keys.listen);
  if (address.transport !== "tcp") {
    throw new BerthError(
      "invalid_input",
      `${keys.listen} "${listen}": neighbours connect over TCP: give host:port`,
    );
  }
  const needToken = (token: string | undefined) => {
    if (isLoopback(address) || token !== undefined) return;
    throw new BerthError(
      "invalid_input",
      `${keys.listen} "${listen}": a non-loopback address needs ${keys.token} (set one, and send it from the ` +
        `neighbours' hosts.toml), or listen on 127.0.0.1:PORT`,
    );
  };
  needToken(options.token);
  let listener: Deno.Listener;
  try {
    listener = Deno.listen({ hostname: address.hostname, port: address.port });
  } catch (error) {
    throw new BerthError(
      "invalid_input",
      `${keys.listen} "${listen}": cannot listen: ${error instanceof Error ? error.message : error} ` +
        `(choose a free address, or stop what holds it)`,
      { cause: error },
    );
  }
  const bound = { ...address, port: (listener.addr as Deno.NetAddr).port };
  const settings: RouteSettings = { token: options.token, listen: bound };
  const app = peerRoutes(store, settings);
  const name = `peer endpoint ${formatListen(bound)}`;
  const http = serveHttp(listener, (request) => app.fetch(request), { ...options, name });
  const host = connectHost(bound);
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${bound.port}`,
    listen: formatListen(bound),
    setToken(token) {
      needToken(token);
      settings.token = token;
    },
    close: () => http.close(),
  };
}
