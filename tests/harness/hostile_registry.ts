/**
 * A hostile registry for tests: a plain-HTTP server on 127.0.0.1 (a random free port; berth speaks plain
 * HTTP to loopback hosts) that answers whatever a test tells it to — what a real registry would never
 * send. Normal behaviour is tested against the real docker-registry; this is for the rest.
 *
 *     const registry = await startHostileRegistry();
 *     const image = await registry.serveImage("evil/app", "1");   // a valid small image to start from
 *     registry.route("GET", `/v2/evil/app/blobs/${image.layer.digest}`, () =>
 *       new Response(registry.stallingBody("half a la"), { headers: { "Content-Length": "1000" } }));
 *     // … run berth against image.ref …
 *     registry.count("GET", /\/blobs\//);                       // requests seen
 *     await registry.close();
 *
 * - `route(method, path, handler)`: `method` is "GET", "HEAD", … or "*"; `path` is the exact path or a
 *   RegExp tested against it (the query is not part of it). The latest registration wins, so a test
 *   serves an image and then overrides one of its routes. A handler returns any Response: any status,
 *   headers (lying Content-Length, Content-Range, Docker-Content-Digest, Location: file:///…, a
 *   WWW-Authenticate with any realm) and body.
 * - Bodies: `stallingBody(prefix)` sends `prefix` and then nothing, ever (until `close()`);
 *   `generatedBody(size)` streams `size` bytes made on the fly (hundreds of MB cost nothing to hold).
 * - Unrouted: `/v2/` answers 200 (berth's plain-HTTP probe), anything else 404 with a registry error.
 * - `requests` lists every request (method, path, query, Authorization, Range); `count` counts matching ones.
 */

export type Handler = (request: Request, match: RegExpExecArray) => Response | Promise<Response>;

export interface SeenRequest {
  method: string;
  path: string;
  /** The query string with its "?", or "". */
  search: string;
  authorization: string | null;
  range: string | null;
}

export interface ServedBlob {
  digest: string;
  size: number;
  bytes: Uint8Array<ArrayBuffer>;
}

/** A valid single-platform image (linux, this host's architecture): OCI manifest, config, one layer. */
export interface ServedImage {
  /** "127.0.0.1:PORT/repo:tag". */
  ref: string;
  repo: string;
  manifest: ServedBlob;
  config: ServedBlob;
  layer: ServedBlob;
}

export interface HostileRegistry {
  /** "127.0.0.1:PORT", the registry part of a reference. */
  host: string;
  route(method: string, path: string | RegExp, handler: Handler): void;
  requests: SeenRequest[];
  count(method: string, path: string | RegExp): number;
  /** A body that sends `prefix` and then stalls until `close()`. */
  stallingBody(prefix?: Uint8Array | string): ReadableStream<Uint8Array>;
  /** `layer`: the layer's bytes instead of an empty tar.gz (berth stores layers, it does not open them). */
  serveImage(repo: string, tag: string, options?: { layer?: Uint8Array<ArrayBuffer> }): Promise<ServedImage>;
  /** Ends stalled bodies and stops the server. */
  close(): Promise<void>;
}

/** Chunk size of generated bodies: big enough to be fast, small enough to hold nothing much. */
const CHUNK = 64 * 1024;

/** `size` bytes of `fill`, produced as they are read: nothing is held but one chunk. */
export function generatedBody(size: number, fill = "a"): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(CHUNK).fill(fill.charCodeAt(0));
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= size) return controller.close();
      const length = Math.min(CHUNK, size - sent);
      // A fresh view each time: the server may hold on to an enqueued chunk.
      controller.enqueue(chunk.slice(0, length));
      sent += length;
    },
  }, { highWaterMark: 0 });
}

/** A registry-style JSON response. */
export function jsonResponse(status: number, value: unknown, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

function matches(path: string | RegExp, actual: string): RegExpExecArray | null {
  if (typeof path === "string") return path === actual ? /^.*$/s.exec(actual) : null;
  path.lastIndex = 0;
  return path.exec(actual);
}

/** An empty tar archive (two zero blocks), gzipped: a layer any unpacker accepts. */
async function emptyLayer(): Promise<{ tar: Uint8Array<ArrayBuffer>; gzip: Uint8Array<ArrayBuffer> }> {
  const tar = new Uint8Array(1024);
  const gzip = new Uint8Array(
    await new Response(new Blob([tar]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer(),
  );
  return { tar, gzip };
}

const encoder = new TextEncoder();

/** "sha256:<hex>" of `bytes`, computed here: the harness depends on nothing in src/. */
export async function sha256Digest(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return `sha256:${Array.from(hash, (byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

const blob = async (bytes: Uint8Array<ArrayBuffer>): Promise<ServedBlob> => ({
  digest: await sha256Digest(bytes),
  size: bytes.length,
  bytes,
});

export async function startHostileRegistry(): Promise<HostileRegistry> {
  const routes: { method: string; path: string | RegExp; handler: Handler }[] = [];
  const requests: SeenRequest[] = [];
  const stalled = new Set<ReadableStreamDefaultController<Uint8Array>>();
  const route = (method: string, path: string | RegExp, handler: Handler) => {
    routes.unshift({ method: method.toUpperCase(), path, handler });
  };
  route("*", "/v2/", () => jsonResponse(200, {}, { "Docker-Distribution-API-Version": "registry/2.0" }));

  const handle = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    requests.push({
      method: request.method,
      path: url.pathname,
      search: url.search,
      authorization: request.headers.get("authorization"),
      range: request.headers.get("range"),
    });
    for (const entry of routes) {
      if (entry.method !== "*" && entry.method !== request.method) continue;
      const match = matches(entry.path, url.pathname);
      if (match) return await entry.handler(request, match);
    }
    return jsonResponse(404, {
      errors: [{ code: "NAME_UNKNOWN", message: "no route in the hostile registry" }],
    });
  };

  const { promise: listening, resolve } = Promise.withResolvers<number>();
  const server = Deno.serve(
    {
      hostname: "127.0.0.1",
      port: 0,
      onListen: ({ port }) => resolve(port),
      onError: () => new Response(null, { status: 500 }),
    },
    handle,
  );
  const host = `127.0.0.1:${await listening}`;

  const serveBlob = (repo: string, served: ServedBlob, mediaType?: string) => {
    route(
      "*",
      `/v2/${repo}/blobs/${served.digest}`,
      (request) =>
        new Response(request.method === "HEAD" ? null : served.bytes, {
          headers: {
            "Content-Length": String(served.size),
            "Docker-Content-Digest": served.digest,
            "Content-Type": mediaType ?? "application/octet-stream",
          },
        }),
    );
  };

  return {
    host,
    route,
    requests,
    count: (method, path) =>
      requests.filter((seen) =>
        (method === "*" || seen.method === method.toUpperCase()) && matches(path, seen.path) !== null
      ).length,
    stallingBody(prefix: Uint8Array | string = new Uint8Array(0)) {
      const bytes = typeof prefix === "string" ? encoder.encode(prefix) : prefix;
      let held: ReadableStreamDefaultController<Uint8Array>;
      return new ReadableStream<Uint8Array>({
        start(controller) {
          held = controller;
          stalled.add(controller);
          if (bytes.length > 0) controller.enqueue(bytes);
        },
        // Never resolves: no more bytes until close() errors the stream.
        pull: () => new Promise<void>(() => {}),
        cancel() {
          stalled.delete(held);
        },
      }, { highWaterMark: 0 });
    },
    async serveImage(repo, tag, options = {}): Promise<ServedImage> {
      const { tar, gzip } = await emptyLayer();
      const layer = await blob(options.layer ?? gzip);
      const arch = Deno.build.arch === "aarch64" ? "arm64" : "amd64";
      const config = await blob(encoder.encode(JSON.stringify({
        architecture: arch,
        os: "linux",
        config: {},
        rootfs: { type: "layers", diff_ids: [await sha256Digest(tar)] },
      })));
      const manifestType = "application/vnd.oci.image.manifest.v1+json";
      const manifest = await blob(encoder.encode(JSON.stringify({
        schemaVersion: 2,
        mediaType: manifestType,
        config: {
          mediaType: "application/vnd.oci.image.config.v1+json",
          digest: config.digest,
          size: config.size,
        },
        layers: [{
          mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
          digest: layer.digest,
          size: layer.size,
        }],
      })));
      serveBlob(repo, config, "application/vnd.oci.image.config.v1+json");
      serveBlob(repo, layer);
      for (const selector of [tag, manifest.digest]) {
        route(
          "*",
          `/v2/${repo}/manifests/${selector}`,
          (request) =>
            new Response(request.method === "HEAD" ? null : manifest.bytes, {
              headers: {
                "Content-Type": manifestType,
                "Content-Length": String(manifest.size),
                "Docker-Content-Digest": manifest.digest,
              },
            }),
        );
      }
      return { ref: `${host}/${repo}:${tag}`, repo, manifest, config, layer };
    },
    async close() {
      for (const controller of stalled) {
        try {
          controller.error(new Error("hostile registry closed"));
        } catch {
          // already closed or cancelled
        }
      }
      stalled.clear();
      await server.shutdown();
    },
  };
}
