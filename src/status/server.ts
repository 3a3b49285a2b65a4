/**
 * The status endpoint: a read-only view of the agent, declared as one table of routes.
 *
 *   GET /          the human page (no data in it, so no token needed)
 *   GET /status    the status document (schema.ts), with a strong ETag and 304 on If-None-Match
 *   GET /healthz   200 {ok:true} or 503 {ok:false, reason}; never needs the token (for supervisors)
 *   GET /metrics   Prometheus text format (metrics.ts)
 *
 * Handlers only read the StatusSource, which answers from memory: a slow download, a stuck engine or a
 * full disk never holds up an answer. Nothing secret goes out: the document carries no credentials, and
 * the token is never echoed.
 */
import { Hono } from "hono";
import { BerthError } from "../util/errors.ts";
import type { Counters, Status } from "./schema.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";
import { STATUS_PAGE_HTML } from "./page.ts";
import { connectHost, formatListen, isLoopback, type ListenAddress, parseListen } from "./listen.ts";

/** What the server reads; the agent implements it. Every method answers from memory, at once. */
export interface StatusSource {
  /** The current status document. */
  snapshot(): Status;
  /** Whether the loop is alive and reconciled recently; the agent decides (2 × poll interval). */
  health(): { ok: boolean; reason?: string };
  /** Monotonic counters since the agent started. */
  counters(): Counters;
}

export interface StatusOptions {
  /** When set, every route but `GET /` and `GET /healthz` needs `Authorization: Bearer <token>`. */
  token?: string;
}

/** Routes without a token: the page carries no data; health is for supervisors and load balancers. */
const OPEN_PATHS = new Set(["/", "/healthz"]);

const encoder = new TextEncoder();

/**
 * Compares in time that depends only on the lengths, so response timing does not reveal how much of a
 * guessed token was right.
 */
function tokenMatches(presented: string, expected: string): boolean {
  const a = encoder.encode(presented);
  const b = encoder.encode(expected);
  let difference = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) difference |= (a[i] ?? 0) ^ b[i];
  return difference === 0;
}

/** Whether an If-None-Match header matches `etag` (weak comparison, as RFC 9110 wants for it). */
function noneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === "*") return true;
  return header.split(",").some((candidate) => candidate.trim().replace(/^W\//, "") === etag);
}

/** The strong ETag of a body: its SHA-256, so equal documents give equal tags across restarts. */
async function etagOf(body: string): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(body)));
  return `"${Array.from(hash.subarray(0, 16), (byte) => byte.toString(16).padStart(2, "0")).join("")}"`;
}

/** The routes, without a listener: test them with `app.request()`. */
export function statusRoutes(source: StatusSource, options: StatusOptions = {}): Hono {
  const app = new Hono();
  const token = options.token;
  // Polling fleets mostly ask for an unchanged document: hash it once.
  let lastBody = "";
  let lastEtag = "";

  if (token !== undefined) {
    app.use("*", async (c, next) => {
      if (OPEN_PATHS.has(c.req.path) && (c.req.method === "GET" || c.req.method === "HEAD")) {
        await next();
        return;
      }
      const header = c.req.header("authorization") ?? "";
      const presented = /^Bearer +(.+)$/i.exec(header)?.[1]?.trim();
      if (presented === undefined || !tokenMatches(presented, token)) {
        c.header("WWW-Authenticate", 'Bearer realm="berth"');
        return c.json({
          error: "unauthorized",
          message: presented === undefined
            ? "this agent needs its status token: send Authorization: Bearer <status.token>"
            : "the bearer token is not this agent's status.token",
        }, 401);
      }
      await next();
    });
  }

  app.get("/", (c) => {
    c.header("Cache-Control", "no-cache");
    // Only the inline script and style run, and the page talks only to this server.
    c.header(
      "Content-Security-Policy",
      "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; " +
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    );
    c.header("X-Content-Type-Options", "nosniff");
    c.header("Referrer-Policy", "no-referrer");
    return c.html(STATUS_PAGE_HTML);
  });

  app.get("/status", async (c) => {
    const body = JSON.stringify(source.snapshot());
    if (body !== lastBody) {
      lastEtag = await etagOf(body);
      lastBody = body;
    }
    const etag = lastEtag;
    c.header("ETag", etag);
    c.header("Cache-Control", "no-cache");
    if (noneMatch(c.req.header("if-none-match"), etag)) return c.body(null, 304);
    c.header("Content-Type", "application/json; charset=utf-8");
    return c.body(body);
  });

  app.get("/healthz", (c) => {
    const { ok, reason } = source.health();
    c.header("Cache-Control", "no-store");
    return ok ? c.json({ ok: true }, 200) : c.json({ ok: false, reason: reason ?? "unhealthy" }, 503);
  });

  app.get("/metrics", (c) => {
    c.header("Cache-Control", "no-store");
    c.header("Content-Type", METRICS_CONTENT_TYPE);
    return c.body(renderMetrics(source.snapshot(), source.counters()));
  });

  app.notFound((c) =>
    c.json({
      error: "not_found",
      message: `no ${c.req.method} ${c.req.path}; try /, /status, /healthz or /metrics`,
    }, 404)
  );
  app.onError((error, c) => {
    // A bug in a source, not the client's fault; the details go to the agent's log, not to the network.
    console.error(`status endpoint: ${c.req.method} ${c.req.path} failed: ${error.stack ?? error}`);
    return c.json({
      error: "internal_error",
      message: "the agent could not produce this answer; see its log",
    }, 500);
  });
  return app;
}

export interface StatusServer {
  /** "http://127.0.0.1:8470", or "unix:/run/berth/status.sock" for a unix socket. */
  url: string;
  /** The address actually bound, in `status.listen` syntax (the real port when 0 was asked). */
  listen: string;
  /** Stops listening, lets requests in flight finish, and removes the unix socket. */
  close(): Promise<void>;
}

/**
 * Refuses a listen address anyone on the network can reach unless a token guards it.
 * Throws BerthError("invalid_input").
 */
export function checkListenAllowed(address: ListenAddress, options: StatusOptions): void {
  if (!isLoopback(address) && !options.token) {
    throw new BerthError(
      "invalid_input",
      `status.listen "${formatListen(address)}": a non-loopback address needs status.token ` +
        `(set one, or listen on 127.0.0.1:PORT or a unix socket path)`,
    );
  }
}

/**
 * A leftover socket file from an agent that died is removed; one some process still answers on is not
 * (this can be racy with a second agent starting at the same moment; its bind then fails, which is right).
 */
async function clearStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (!info.isSocket) {
    throw new BerthError(
      "invalid_input",
      `status.listen "${path}": exists and is not a socket; choose another path or remove it`,
    );
  }
  try {
    const connection = await Deno.connect({ transport: "unix", path });
    connection.close();
  } catch {
    await Deno.remove(path).catch(() => {});
    return;
  }
  throw new BerthError(
    "invalid_input",
    `status.listen "${path}": another process answers on this socket (is another berth agent running?)`,
  );
}

/** Listens on `listen` (host:port, [v6]:port or a unix socket path) and serves statusRoutes. */
export async function serveStatus(
  listen: string,
  source: StatusSource,
  options: StatusOptions = {},
): Promise<StatusServer> {
  const address = parseListen(listen);
  checkListenAllowed(address, options);
  const app = statusRoutes(source, options);
  const handler = (request: Request) => app.fetch(request);
  try {
    if (address.transport === "unix") {
      await clearStaleSocket(address.path);
      const server = Deno.serve({ path: address.path, onListen: () => {} }, handler);
      return {
        url: `unix:${address.path}`,
        listen: address.path,
        close: async () => {
          await server.shutdown();
          await Deno.remove(address.path).catch(() => {});
        },
      };
    }
    const server = Deno.serve(
      { hostname: address.hostname, port: address.port, onListen: () => {} },
      handler,
    );
    const bound = { ...address, port: server.addr.port };
    const urlHost = connectHost(bound);
    return {
      url: `http://${urlHost.includes(":") ? `[${urlHost}]` : urlHost}:${bound.port}`,
      listen: formatListen(bound),
      close: () => server.shutdown(),
    };
  } catch (error) {
    if (error instanceof BerthError) throw error;
    throw new BerthError(
      "invalid_input",
      `status.listen "${listen}": cannot listen: ${error instanceof Error ? error.message : error}`,
      { cause: error },
    );
  }
}
