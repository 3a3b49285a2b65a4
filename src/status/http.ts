/**
 * A small HTTP/1.1 server for the status endpoint, on a listener it accepts from itself. Deno.serve has no
 * connection cap and no header timeout, and an accept error in it (EMFILE: the process is out of file
 * descriptors) ends the process; a status endpoint must survive whatever its clients do.
 *
 * The rules:
 * - Nothing a client does ends the process: accept, read, write and handler errors are all caught. An accept
 *   error (EMFILE) closes the oldest connection still waiting for its request, freeing a descriptor, and
 *   accepting goes on at once; with none to close, after ACCEPT_RETRY_MS.
 * - At most MAX_CONNECTIONS are open. Accepting one more closes the oldest connection that has not sent a
 *   complete request head (a slow, silent or idle client); when every one is busy being answered, the new
 *   one is closed instead. So a flood of slow connections only ever delays a fresh client by the time it
 *   takes to accept past the flood, never by a timeout.
 * - A request head must be complete within HEADER_TIMEOUT_MS (from the connection, or from the first byte
 *   of a later request on a kept-alive one) and within MAX_HEAD_BYTES; a kept-alive connection with no new
 *   request for IDLE_TIMEOUT_MS is closed; an answer not handed to the client within RESPONSE_TIMEOUT_MS
 *   closes the connection. An answer whose handler declared its length (a blob) is streamed instead of
 *   held in memory, and then each chunk must be handed over within RESPONSE_TIMEOUT_MS.
 * - Only GET and HEAD, without a body (every route is a read): any other method is answered 405, a body 413,
 *   a malformed head 400, a large one 431, and the connection is closed after those.
 */

/** Most open connections: a supervisor, a poller and a browser or two (a browser opens up to 6) need a few;
 * 256 stays far below the 1024 open files a service commonly gets, leaving the rest to the agent's own work. */
export const MAX_CONNECTIONS = 256;
/** A client has this long to send its request head: any real client sends it in one packet at once. */
export const HEADER_TIMEOUT_MS = 5_000;
/** A kept-alive connection waits this long for the next request: longer than a poller's usual interval
 * would only hold descriptors; a poller reconnecting costs one handshake. */
export const IDLE_TIMEOUT_MS = 30_000;
/** Producing and writing one answer: answers come from memory and are a few KiB, so only a client that
 * does not read can take this long. */
export const RESPONSE_TIMEOUT_MS = 10_000;
/** A request head (request line and headers): real ones are well under 2 KiB, cookies included. */
export const MAX_HEAD_BYTES = 16 * 1024;
/** The pause after an accept error that closing a connection cannot help, so that it does not spin the CPU. */
export const ACCEPT_RETRY_MS = 100;
/** At most one warning about refused or closed connections this often, so a flood does not fill the log. */
export const WARN_INTERVAL_MS = 60_000;
/**
 * While connections queue, each accept returns at once and reads would wait for the whole queue: after every
 * this many accepts one turn of the event loop (about 3 ms) lets ready reads finish, so a client that did send
 * its request is not taken for a slow one and closed at the cap. Well under MAX_CONNECTIONS for that reason.
 */
export const ACCEPT_BATCH = 16;
/** Bytes asked for by one read: a whole request head usually arrives in one. */
const READ_CHUNK_BYTES = 4096;

/** The bounds serveHttp keeps on every connection: times in milliseconds, sizes in bytes. */
export interface HttpLimits {
  maxConnections: number;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  responseTimeoutMs: number;
  maxHeadBytes: number;
}

/** The bounds the agent serves with: the constants above, whose comments give the reasons. */
export const DEFAULT_HTTP_LIMITS: Readonly<HttpLimits> = {
  maxConnections: MAX_CONNECTIONS,
  headerTimeoutMs: HEADER_TIMEOUT_MS,
  idleTimeoutMs: IDLE_TIMEOUT_MS,
  responseTimeoutMs: RESPONSE_TIMEOUT_MS,
  maxHeadBytes: MAX_HEAD_BYTES,
};

/** serveHttp's optional settings; without them it keeps the agent's defaults and warns nowhere. */
export interface HttpOptions {
  /** Tests shorten the timeouts; the agent uses the defaults. */
  limits?: Partial<HttpLimits>;
  /** Where trouble with clients is reported (at most once per WARN_INTERVAL_MS). */
  warn?: (message: string) => void;
  /** Names the listener in warnings ("127.0.0.1:8470"). */
  name?: string;
}

/** A running server: nothing a client does makes it throw or end the process. */
export interface HttpServer {
  /** Open connections now. */
  readonly connections: number;
  /** Stops accepting, closes idle connections and waits for answers in flight (RESPONSE_TIMEOUT_MS at most). */
  close(): Promise<void>;
}

const REASONS: Record<number, string> = {
  200: "OK",
  206: "Partial Content",
  204: "No Content",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  413: "Content Too Large",
  416: "Range Not Satisfiable",
  421: "Misdirected Request",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const encoder = new TextEncoder();

/** One accepted connection; `waiting` while it owes us a request head (so it may be evicted at the cap). */
class Connection {
  waiting = true;
  closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly conn: Deno.Conn, private readonly onClose: (connection: Connection) => void) {}

  /** Closes the connection if it is still open `ms` from now (replacing any earlier deadline). */
  deadline(ms: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.close(), ms);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.#timer);
    try {
      this.conn.close();
    } catch {
      // closed by the peer's reset already
    }
    this.onClose(this);
  }
}

/** A request head, parsed; `error` when it must be refused (status and the sentence saying why). */
interface Head {
  method: string;
  target: string;
  version: string;
  headers: [string, string][];
  error?: { status: number; message: string };
}

function parseHead(text: string): Head {
  const lines = text.split("\r\n");
  const [method = "", target = "", version = "", ...extra] = lines[0].split(" ");
  const head: Head = { method, target, version, headers: [] };
  if (extra.length > 0 || !TOKEN.test(method) || target === "") {
    return { ...head, error: { status: 400, message: "malformed request line" } };
  }
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
    return { ...head, error: { status: 505, message: `${version || "no HTTP version"}: only HTTP/1.x` } };
  }
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    if (colon <= 0 || !TOKEN.test(name) || /[\r\n\0]/.test(line)) {
      return { ...head, error: { status: 400, message: `malformed header line ${JSON.stringify(line)}` } };
    }
    head.headers.push([name.toLowerCase(), line.slice(colon + 1).trim()]);
  }
  return head;
}

/** The refusal a head earns before any route sees it, or undefined when it may go on. */
function refusal(head: Head): { status: number; message: string; allow?: string } | undefined {
  if (head.error) return head.error;
  const values = (name: string) => head.headers.filter(([key]) => key === name).map(([, value]) => value);
  if (head.method !== "GET" && head.method !== "HEAD") {
    return {
      status: 405,
      message: `${head.method} is not served: every route is GET or HEAD`,
      allow: "GET, HEAD",
    };
  }
  if (values("transfer-encoding").length > 0 || values("content-length").some((value) => value !== "0")) {
    return { status: 413, message: "GET and HEAD requests here take no body" };
  }
  const hosts = values("host");
  if (hosts.length > 1 || (head.version === "HTTP/1.1" && hosts.length === 0)) {
    return { status: 400, message: "an HTTP/1.1 request needs exactly one Host header" };
  }
  if (!head.target.startsWith("/") && !/^https?:\/\/[^/]+(\/|$)/i.test(head.target)) {
    return { status: 400, message: `request target ${JSON.stringify(head.target)}: expected a path` };
  }
  return undefined;
}

/** The URL handed to the routes: only its path and query matter to them (the Host header is kept as sent). */
function requestUrl(target: string): string {
  const path = target.startsWith("/") ? target : new URL(target).pathname + new URL(target).search;
  return `http://berth${path}`;
}

/** Status line, headers and body; a HEAD answer keeps the length of the body it leaves out. */
async function encodeResponse(response: Response, head: boolean, keepAlive: boolean): Promise<Uint8Array> {
  const status = response.status;
  const bodyless = status === 204 || status === 304 || status < 200;
  const body = bodyless ? new Uint8Array(0) : new Uint8Array(await response.arrayBuffer());
  if (bodyless) await response.body?.cancel();
  let text = `HTTP/1.1 ${status} ${response.statusText || REASONS[status] || "Status"}\r\n`;
  response.headers.forEach((value, name) => {
    if (name !== "content-length" && name !== "transfer-encoding" && name !== "connection") {
      text += `${name}: ${value}\r\n`;
    }
  });
  if (!bodyless) text += `content-length: ${body.length}\r\n`;
  text += keepAlive ? "\r\n" : "connection: close\r\n\r\n";
  const start = encoder.encode(text);
  if (head || body.length === 0) return start;
  const all = new Uint8Array(start.length + body.length);
  all.set(start);
  all.set(body, start.length);
  return all;
}

/**
 * Whether an answer is written as it is read instead of whole: one whose handler declared its length and
 * has a body (a blob of the store, too big to hold in memory).
 */
function streamed(response: Response): boolean {
  const length = response.headers.get("content-length");
  return response.body !== null && length !== null && /^[0-9]{1,15}$/.test(length) &&
    response.status >= 200 && response.status !== 204 && response.status !== 304;
}

/** The status line and headers of a streamed answer, with the length its handler declared. */
function streamHead(response: Response, keepAlive: boolean): Uint8Array {
  let text = `HTTP/1.1 ${response.status} ${response.statusText || REASONS[response.status] || "Status"}\r\n`;
  response.headers.forEach((value, name) => {
    if (name !== "transfer-encoding" && name !== "connection") text += `${name}: ${value}\r\n`;
  });
  text += keepAlive ? "\r\n" : "connection: close\r\n\r\n";
  return encoder.encode(text);
}

function errorResponse(status: number, message: string, allow?: string): Response {
  const headers: Record<string, string> = { "content-type": "application/json; charset=utf-8" };
  if (allow) headers.allow = allow;
  const error = REASONS[status]?.toLowerCase().replaceAll(" ", "_") ?? "bad_request";
  return new Response(JSON.stringify({ error, message }), { status, headers });
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

/** The first byte of a TLS ClientHello (a handshake record); no HTTP method starts with it. */
const TLS_HANDSHAKE = 0x16;

/** Where "\r\n\r\n" ends in `buffer`, looking from `from`; -1 when the head is not complete yet. */
function headEnd(buffer: Uint8Array, from: number): number {
  for (let i = Math.max(3, from); i < buffer.length; i++) {
    if (buffer[i] === 10 && buffer[i - 1] === 13 && buffer[i - 2] === 10 && buffer[i - 3] === 13) {
      return i + 1;
    }
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const all = new Uint8Array(a.length + b.length);
  all.set(a);
  all.set(b, a.length);
  return all;
}

/**
 * Serves `handler` on `listener` under the rules above, until close(). The handler gets a GET request for
 * a HEAD one (the answer's body is then left out), so routes need not know HEAD.
 */
export function serveHttp(
  listener: Deno.Listener,
  handler: (request: Request) => Response | Promise<Response>,
  options: HttpOptions = {},
): HttpServer {
  return new HttpLoop(listener, handler, options);
}

/** One listener's accept loop and its connections. */
class HttpLoop implements HttpServer {
  readonly #limits: HttpLimits;
  readonly #name: string;
  // Insertion order is age order: the first waiting one is the oldest.
  readonly #open = new Set<Connection>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;
  #closing = false;
  #lastWarn = -Infinity;
  #unwarned = 0;

  constructor(
    readonly listener: Deno.Listener,
    readonly handler: (request: Request) => Response | Promise<Response>,
    readonly options: HttpOptions,
  ) {
    this.#limits = { ...DEFAULT_HTTP_LIMITS, ...options.limits };
    this.#name = options.name ?? "the status endpoint";
    this.#accepting = this.#accept();
  }

  get connections(): number {
    return this.#open.size;
  }

  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    try {
      this.listener.close();
    } catch {
      // already closed
    }
    for (const connection of [...this.#open]) if (connection.waiting) connection.close();
    await this.#accepting;
    await Promise.allSettled([...this.#tasks]);
  }

  /** Warns at most once per WARN_INTERVAL_MS, counting what it kept quiet about. */
  #warn(message: string): void {
    const now = Date.now();
    if (now - this.#lastWarn < WARN_INTERVAL_MS) {
      this.#unwarned++;
      return;
    }
    const more = this.#unwarned > 0 ? ` (${this.#unwarned} more such events since the last warning)` : "";
    this.#lastWarn = now;
    this.#unwarned = 0;
    this.options.warn?.(`${this.#name}: ${message}${more}`);
  }

  /** Closes the oldest connection still waiting for its request; false when every one is being answered. */
  #evictOldestWaiting(): boolean {
    for (const connection of this.#open) {
      if (connection.waiting) {
        connection.close();
        return true;
      }
    }
    return false;
  }

  /** Accepts until close(): a failed accept frees a waiting connection or waits; the cap is kept. */
  async #accept(): Promise<void> {
    let accepted = 0;
    while (!this.#closing) {
      if (++accepted > ACCEPT_BATCH) {
        accepted = 0;
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      let conn: Deno.Conn;
      try {
        conn = await this.listener.accept();
      } catch (error) {
        if (this.#closing) return;
        const freed = this.#evictOldestWaiting();
        this.#warn(
          `cannot accept a connection (${error instanceof Error ? error.message : error}); ` +
            (freed
              ? "closed the oldest connection still waiting for its request and retrying"
              : `retrying every ${ACCEPT_RETRY_MS} ms`),
        );
        // After closing one, only a turn of the event loop: the descriptor is released when its read ends.
        await new Promise((resolve) => setTimeout(resolve, freed ? 0 : ACCEPT_RETRY_MS));
        continue;
      }
      if (this.#closing) {
        conn.close();
        return;
      }
      if (this.#admit()) this.#start(conn);
      else conn.close();
    }
  }

  /** Whether a new connection fits under the cap, after closing the oldest waiting one if need be. */
  #admit(): boolean {
    const { maxConnections } = this.#limits;
    if (this.#open.size < maxConnections) return true;
    const freed = this.#evictOldestWaiting();
    this.#warn(
      `${this.#open.size + (freed ? 1 : 0)} connections, the cap (${maxConnections}): ` +
        (freed
          ? "closed the oldest one still waiting for its request"
          : "every one is being answered, so the new one was closed"),
    );
    return freed;
  }

  #start(conn: Deno.Conn): void {
    const connection = new Connection(conn, (closed) => this.#open.delete(closed));
    this.#open.add(connection);
    const task: Promise<void> = this.#serve(connection)
      .catch(() => {
        // the client went away mid-answer, or a deadline closed the connection: nothing to tell anyone
      })
      .finally(() => {
        connection.close();
        this.#tasks.delete(task);
      });
    this.#tasks.add(task);
  }

  /** Answers one request after another on a connection, each head and answer within its deadline. */
  async #serve(connection: Connection): Promise<void> {
    const limits = this.#limits;
    let pending: Uint8Array = new Uint8Array(0);
    let first = true;
    while (!connection.closed && !this.#closing) {
      connection.waiting = true;
      connection.deadline(first || pending.length > 0 ? limits.headerTimeoutMs : limits.idleTimeoutMs);
      const read = await this.#readHead(connection, pending, first);
      if (read === undefined || connection.closed) return;
      connection.waiting = false;
      connection.deadline(limits.responseTimeoutMs);
      first = false;
      if (read !== "too_large" && read !== "tls") pending = read.rest;
      const { response, isHead, keepAlive } = read === "too_large" || read === "tls"
        ? {
          response: read === "tls"
            ? errorResponse(400, "this endpoint speaks plain HTTP, not HTTPS")
            : errorResponse(431, `the request head is over ${limits.maxHeadBytes} bytes`),
          isHead: false,
          keepAlive: false,
        }
        : await this.#answer(read.text);
      if (streamed(response)) {
        if (!await this.#stream(connection, response, isHead, keepAlive)) return;
      } else await writeAll(connection.conn, await encodeResponse(response, isHead, keepAlive));
      if (!keepAlive) return;
    }
  }

  /**
   * Writes a streamed answer (see `streamed`): each chunk must be handed to the client within
   * RESPONSE_TIMEOUT_MS, so a big blob may take as long as it takes while the client reads. False when the
   * body ended at another length than it declared: the connection must close, its framing is lost.
   */
  async #stream(connection: Connection, response: Response, isHead: boolean, keepAlive: boolean) {
    const declared = Number(response.headers.get("content-length"));
    const start = streamHead(response, keepAlive);
    if (isHead) {
      await response.body!.cancel();
      await writeAll(connection.conn, start);
      return true;
    }
    const reader = response.body!.getReader();
    let sent = 0;
    try {
      await writeAll(connection.conn, start);
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        sent += value.length;
        if (sent > declared) return false;
        connection.deadline(this.#limits.responseTimeoutMs);
        await writeAll(connection.conn, value);
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
    return sent === declared;
  }

  /** The answer to one request head: a refusal, or the handler's response. */
  async #answer(text: string): Promise<{ response: Response; isHead: boolean; keepAlive: boolean }> {
    const head = parseHead(text);
    const refused = refusal(head);
    const isHead = head.method === "HEAD";
    if (refused) {
      return {
        response: errorResponse(refused.status, refused.message, refused.allow),
        isHead,
        keepAlive: false,
      };
    }
    const connectionHeader = head.headers.find(([key]) => key === "connection")?.[1] ?? "";
    const keepAlive = head.version === "HTTP/1.1" && !/\bclose\b/i.test(connectionHeader) && !this.#closing;
    try {
      const request = new Request(requestUrl(head.target), { method: "GET", headers: head.headers });
      return { response: await this.handler(request), isHead, keepAlive };
    } catch (error) {
      // A header value the Request refuses is the client's fault; anything else is a route's bug.
      const bad = error instanceof TypeError;
      if (!bad) console.error(`${this.#name}: ${head.method} ${head.target} failed: ${error}`);
      const response = bad
        ? errorResponse(400, `the request was refused: ${error.message}`)
        : errorResponse(500, "the agent could not produce this answer; see its log");
      return { response, isHead, keepAlive: false };
    }
  }

  /** The next request head, or undefined when the client went away or a deadline closed it. */
  async #readHead(
    connection: Connection,
    pending: Uint8Array,
    first: boolean,
  ): Promise<{ text: string; rest: Uint8Array } | "too_large" | "tls" | undefined> {
    const { maxHeadBytes, headerTimeoutMs } = this.#limits;
    let buffer = pending;
    let scanned = 0;
    for (;;) {
      const end = headEnd(buffer, scanned);
      if (end >= 0 && end <= maxHeadBytes) {
        return { text: String.fromCharCode(...buffer.subarray(0, end - 4)), rest: buffer.subarray(end) };
      }
      if (end >= 0 || buffer.length >= maxHeadBytes) return "too_large";
      scanned = buffer.length;
      const chunk = new Uint8Array(READ_CHUNK_BYTES);
      let count: number | null;
      try {
        count = await connection.conn.read(chunk);
      } catch {
        return undefined; // reset by the client, or closed by a deadline or the cap
      }
      if (count === null || connection.closed) return undefined;
      // On a kept-alive connection the head timeout starts with the next request's first byte.
      if (!first && buffer.length === 0) connection.deadline(headerTimeoutMs);
      buffer = concat(buffer, chunk.subarray(0, count));
      // A TLS handshake record: a client trying HTTPS first (dockerd, skopeo) is told at once, not after
      // the head timeout, so that it falls back to plain HTTP without waiting.
      if (buffer[0] === TLS_HANDSHAKE) return "tls";
    }
  }
}
