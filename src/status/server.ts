/**
 * The status endpoint: a read-only view of the agent, declared as one table of routes.
 *
 *   GET /          the human page (no data in it, so no token needed)
 *   GET /status    the status document (agent/status_schema.ts), with a strong ETag and 304 on If-None-Match
 *   GET /healthz   200 {ok:true} or 503 {ok:false, reason}; never needs the token (for supervisors)
 *   GET /metrics   Prometheus text format (metrics.ts)
 *
 * Handlers only read the StatusSource, which answers from memory: a slow download, a stuck engine or a
 * full disk never holds up an answer. Nothing secret goes out: the document carries no credentials, and
 * the token is never echoed. Connections are accepted, capped and timed out by http.ts.
 *
 * Without a token, a TCP listener answers only requests whose Host names it (the listen address, localhost,
 * a loopback address or a name in status.hosts): a web page that rebinds its own DNS name to 127.0.0.1
 * must not be able to read /status from a browser on the device.
 */
import { type Context, type Handler, Hono, type MiddlewareHandler } from "hono";
import { BerthError } from "../util/errors.ts";
import type { Counters, Status } from "../agent/status_schema.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";
import { STATUS_PAGE_HTML } from "./page.ts";
import {
  connectHost,
  formatListen,
  isLoopback,
  type ListenAddress,
  parseListen,
} from "../util/listen_address.ts";
import { type HttpLimits, type HttpServer, serveHttp } from "./http.ts";

/** What the server reads; the agent implements it. Every method answers from memory, at once. */
export interface StatusSource {
  /** The current status document. */
  snapshot(): Status;
  /** Whether the loop is alive and reconciled recently; the agent decides (2 × poll interval). */
  health(): { ok: boolean; reason?: string };
  /** Monotonic counters since the agent started. */
  counters(): Counters;
}

/** The status config that guards the routes; a reload may change it without a restart. */
export interface StatusOptions {
  /** When set, every route but `GET /` and `GET /healthz` needs `Authorization: Bearer <token>`. */
  token?: string;
  /** Host names besides the listen address and localhost that requests may name (status.hosts). */
  hosts?: string[];
}

/** What the routes check each request against; the server swaps it on a config reload. */
export interface RouteSettings extends StatusOptions {
  /** The address served; undefined (as in tests through app.request) or a unix socket: any Host. */
  listen?: ListenAddress;
}

/** serveStatus's settings: the route guards, plus http.ts's limits and warning sink. */
export interface ServeOptions extends StatusOptions {
  /** Trouble with clients (a flood at the connection cap, accept errors), rate-limited by http.ts. */
  warn?: (message: string) => void;
  /** Tests shorten the timeouts; the agent keeps http.ts's defaults. */
  limits?: Partial<HttpLimits>;
}

/** Routes without a token: the page carries no data; health is for supervisors and load balancers. */
const OPEN_PATHS = new Set(["/", "/healthz"]);

const encoder = new TextEncoder();

/**
 * Compares in time that depends only on the lengths, so response timing does not reveal how much of a
 * guessed token was right.
 */
export function tokenMatches(presented: string, expected: string): boolean {
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

/** The host name a Host header names: "Device.Example.:8470" → "device.example", "[::1]:8470" → "::1". */
export function hostName(header: string): string | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+))(?::\d*)?$/.exec(header.trim());
  if (!match) return undefined;
  return (match[1] ?? match[2]).toLowerCase().replace(/\.$/, "");
}

/**
 * Whether a request with this Host header may be answered. The port is not compared: DNS rebinding
 * controls the name, not the port, and a tunnel (ssh -L 9000:127.0.0.1:8470) changes the port a browser
 * names. IP literals of loopback cannot be rebound, so they pass too.
 */
export function hostAllowed(header: string | undefined, settings: RouteSettings): boolean {
  const listen = settings.listen;
  // No Host: not a browser (they always send one). A token: the token is the guard. Unix: no browser.
  if (header === undefined || settings.token !== undefined || !listen || listen.transport === "unix") {
    return true;
  }
  const name = hostName(header);
  if (name === undefined) return false;
  if (name === listen.hostname.toLowerCase() || isLoopback({ transport: "tcp", hostname: name, port: 0 })) {
    return true;
  }
  return (settings.hosts ?? []).some((host) => host.toLowerCase().replace(/\.$/, "") === name);
}

/**
 * The routes, without a listener: test them with `app.request()`. `settings` is read on every request,
 * so a reloaded token or host list takes effect at once.
 */
export function statusRoutes(
  source: StatusSource,
  settings: RouteSettings | (() => RouteSettings) = {},
): Hono {
  const app = new Hono();
  const current = typeof settings === "function" ? settings : () => settings;
  app.use("*", hostGuard(current));
  app.use("*", tokenGuard(current));
  app.get("/", statusPage);
  app.get("/status", statusDocument(source));
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

/** Answers 421 to a request whose Host is not a name of this agent (against DNS rebinding). */
function hostGuard(current: () => RouteSettings): MiddlewareHandler {
  return async (c, next) => {
    const host = c.req.header("host");
    const now = current();
    if (!hostAllowed(host, now)) {
      const shown = JSON.stringify(host!.length > 100 ? `${host!.slice(0, 97)}...` : host);
      c.header("X-Content-Type-Options", "nosniff");
      return c.json({
        error: "misdirected_request",
        message: `Host ${shown} is not a name of this agent (status.listen ${
          formatListen(now.listen!)
        }): ask for localhost or the listen address, or add the name to status.hosts`,
      }, 421);
    }
    await next();
  };
}

/** With a token set, answers 401 to a request without it (except GET/HEAD of the open paths). */
function tokenGuard(current: () => RouteSettings): MiddlewareHandler {
  return async (c, next) => {
    const token = current().token;
    const open = OPEN_PATHS.has(c.req.path) && (c.req.method === "GET" || c.req.method === "HEAD");
    if (token !== undefined && !open) {
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
    }
    await next();
  };
}

/** `GET /`: the status page, which runs only its inline script and style and talks only to this server. */
function statusPage(c: Context): Response | Promise<Response> {
  c.header("Cache-Control", "no-cache");
  c.header(
    "Content-Security-Policy",
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; " +
      "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
  );
  c.header("X-Content-Type-Options", "nosniff");
  c.header("Referrer-Policy", "no-referrer");
  return c.html(STATUS_PAGE_HTML);
}

/** `GET /status`: the document, with an ETag so that an unchanged one is answered 304. */
function statusDocument(source: StatusSource): Handler {
  // Polling fleets mostly ask for an unchanged document: hash it once.
  let lastBody = "";
  let lastEtag = "";
  return async (c) => {
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
  };
}

/** A running status endpoint; a failed reconfigure leaves the old listener serving. */
export interface StatusServer {
  /** "http://127.0.0.1:8470", or "unix:/run/berth/status.sock" for a unix socket. */
  readonly url: string;
  /** The address actually bound, in `status.listen` syntax (the real port when 0 was asked). */
  readonly listen: string;
  /**
   * Applies a reloaded `status` config. The token and hosts take effect at once. A changed listen address
   * is bound before the old one is closed; when that fails the old one keeps serving (with the new token
   * and hosts, if its address allows them) and a BerthError names the address.
   */
  reconfigure(listen: string, options: StatusOptions): Promise<void>;
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

/** Binds `address`; errors name `listen` and say what to do. */
async function bind(address: ListenAddress, listen: string): Promise<Deno.Listener> {
  try {
    if (address.transport === "unix") {
      await clearStaleSocket(address.path);
      return Deno.listen({ transport: "unix", path: address.path });
    }
    return Deno.listen({ hostname: address.hostname, port: address.port });
  } catch (error) {
    if (error instanceof BerthError) throw error;
    throw new BerthError(
      "invalid_input",
      `status.listen "${listen}": cannot listen: ${error instanceof Error ? error.message : error} ` +
        `(choose a free address, or stop what holds it)`,
      { cause: error },
    );
  }
}

/** One bound listener and what it answers as. */
interface Bound {
  /** As configured: a reload with the same text keeps the listener, even for port 0. */
  requested: string;
  address: ListenAddress;
  url: string;
  listen: string;
  http: HttpServer;
}

/** Listens on `listen` (host:port, [v6]:port or a unix socket path) and serves statusRoutes. */
export async function serveStatus(
  listen: string,
  source: StatusSource,
  options: ServeOptions = {},
): Promise<StatusServer> {
  checkListenAllowed(parseListen(listen), options);
  const server = new StatusListener(source, listen, options);
  await server.start(listen);
  return server;
}

/** The status routes on one listener at a time; a reload may move them to another. */
class StatusListener implements StatusServer {
  // Set before the first connection is accepted: no request is ever answered without the checks.
  #settings: RouteSettings;
  #handler: (request: Request) => Response | Promise<Response>;
  #current?: Bound;

  constructor(source: StatusSource, listen: string, readonly options: ServeOptions) {
    this.#settings = settingsFor(parseListen(listen), options);
    const app = statusRoutes(source, () => this.#settings);
    this.#handler = (request) => app.fetch(request);
  }

  get url(): string {
    return this.#current!.url;
  }

  get listen(): string {
    return this.#current!.listen;
  }

  /** Binds the first address. */
  async start(listen: string): Promise<void> {
    this.#current = await this.#open(listen);
    this.#settings = settingsFor(this.#current.address, this.options);
  }

  async reconfigure(listen: string, next: StatusOptions): Promise<void> {
    const current = this.#current!;
    if (listen === current.requested) {
      checkListenAllowed(current.address, next);
      this.#settings = settingsFor(current.address, next);
      return;
    }
    checkListenAllowed(parseListen(listen), next);
    let fresh: Bound;
    try {
      fresh = await this.#open(listen);
    } catch (error) {
      let allowed = true;
      try {
        checkListenAllowed(current.address, next);
      } catch {
        allowed = false;
      }
      if (allowed) this.#settings = settingsFor(current.address, next);
      throw new BerthError(
        "invalid_input",
        `${error instanceof Error ? error.message : error}; still serving on ${current.listen}` +
          (allowed ? "" : " with the previous token"),
        { cause: error },
      );
    }
    this.#current = fresh;
    this.#settings = settingsFor(fresh.address, next);
    await stopBound(current);
  }

  close(): Promise<void> {
    return stopBound(this.#current!);
  }

  /** Binds `requested` and serves the routes on it. */
  async #open(requested: string): Promise<Bound> {
    const address = parseListen(requested);
    const listener = await bind(address, requested);
    if (address.transport === "unix") {
      const name = `status endpoint ${address.path}`;
      const http = serveHttp(listener, this.#handler, { ...this.options, name });
      return { requested, address, url: `unix:${address.path}`, listen: address.path, http };
    }
    const bound = { ...address, port: (listener.addr as Deno.NetAddr).port };
    const urlHost = connectHost(bound);
    const name = `status endpoint ${formatListen(bound)}`;
    const http = serveHttp(listener, this.#handler, { ...this.options, name });
    return {
      requested,
      address: bound,
      url: `http://${urlHost.includes(":") ? `[${urlHost}]` : urlHost}:${bound.port}`,
      listen: formatListen(bound),
      http,
    };
  }
}

/** The route settings of a listen address and a (re)loaded config. */
function settingsFor(address: ListenAddress, next: StatusOptions): RouteSettings {
  return { token: next.token, hosts: [...(next.hosts ?? [])], listen: address };
}

/** Stops a listener, letting requests in flight finish, and removes its unix socket. */
async function stopBound(bound: Bound): Promise<void> {
  await bound.http.close();
  if (bound.address.transport === "unix") await Deno.remove(bound.address.path).catch(() => {});
}
