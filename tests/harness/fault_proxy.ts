/**
 * A byte-counting, fault-injecting HTTP reverse proxy for tests, placed in front of a real OCI registry
 * (plain HTTP on loopback). It is not a mock: every request is forwarded to the registry and every answer
 * passed back, streamed, except where a fault is armed for a blob GET or for a request (`RequestFault`).
 *
 * What a Deno `fetch` client sees for the two connection faults (checked against Deno 2.9):
 * - "drop" (response stream errored after `atByte` bytes) and "truncate" (response stream closed cleanly
 *   after `atByte` bytes, with the full Content-Length already sent) look the same to the client: reading
 *   the body rejects with `TypeError: error reading a body from connection` once the bytes before the cut
 *   have been delivered. Deno.serve ends the connection with a FIN in both cases, and Deno's fetch reports
 *   a real TCP reset with the very same error, so no HTTP-level variant with a full Content-Length could
 *   make them distinguishable to the client; they differ only in how the proxy ends the stream.
 */

/** One armed fault for blob GETs (`GET /v2/<name>/blobs/<digest>`). */
export interface BlobFault {
  /** Which blob: a digest "sha256:…", or "*" for any blob GET. */
  digest: string;
  /**
   * - "flip-bit": flip the lowest bit of the body byte at `byteOffset` (default: the middle of the body).
   * - "truncate": send the full Content-Length, then end the body stream cleanly after `atByte` bytes.
   * - "drop": send the full Content-Length, then error the body stream after `atByte` bytes (an abrupt
   *   end, as after a connection reset).
   * - "ignore-range": strip Range/If-Range before forwarding, so the answer is 200 with the whole body, as
   *   from a registry without Range support. Only requests that carry a Range header consume this fault.
   * - "status": answer with HTTP `status` (default 500) and a small OCI error body, without contacting
   *   upstream.
   *
   * Offsets count from the start of the body of this response (for a 206, the start of the range).
   * `atByte` defaults to half the body length (0 when the upstream sent no Content-Length).
   */
  kind: "flip-bit" | "truncate" | "drop" | "ignore-range" | "status";
  /** Where "truncate" and "drop" cut the body. */
  atByte?: number;
  /** Which byte "flip-bit" alters; nothing is altered when the body is shorter. */
  byteOffset?: number;
  /** The status "status" answers with. */
  status?: number;
  /** How many times the fault fires before disarming itself; default 1; Infinity for always. */
  times?: number;
}

/**
 * One armed fault for any request (uploads, manifest PUTs, HEADs …), matched by method and path: the
 * client gets HTTP `status` with a small OCI error body. Blob GET body faults are `BlobFault`s.
 */
export interface RequestFault {
  /** The request method, e.g. "PUT". */
  method: string;
  /** Tested against the path with its query, e.g. /\/blobs\/uploads\//. */
  path: RegExp;
  /** The status answered; default 500. */
  status?: number;
  /**
   * Forward the request first and answer `status` in place of the registry's answer: the registry acted,
   * but the client sees a failure (as when an answer is lost). Default: upstream never sees the request.
   */
  afterUpstream?: boolean;
  /** How many times the fault fires before disarming itself; default 1; Infinity for always. */
  times?: number;
}

/** What the proxy has seen since it started or since the last `resetStats()`. */
export interface ProxyStats {
  /** Body bytes handed to clients for blob GETs, by digest. */
  blobBytes: Map<string, number>;
  /** Every request: method, path (with query), Range header (or null), status sent. */
  requests: { method: string; path: string; range: string | null; status: number }[];
}

/** A running proxy; see `startFaultProxy`. */
export interface FaultProxy {
  /** "127.0.0.1:PORT", to use as the registry host in place of the upstream. */
  host: string;
  /** Live statistics; the object stays the same across `resetStats()`. */
  stats: ProxyStats;
  /**
   * Bytes per second for each blob GET body (responses are throttled independently and share nothing);
   * 0 = unthrottled. Takes effect for responses already in flight too.
   */
  setThrottle(bytesPerSecond: number): void;
  /** Arms a fault; the first armed fault matching a blob GET fires. */
  addFault(fault: BlobFault): void;
  /**
   * Answers GETs of `path` (e.g. "/v2/repo/manifests/1") with this body and Content-Type instead of the
   * registry's: a registry serving what the real one refuses to store (oversized or unsupported manifests).
   */
  overrideResponse(path: string, answer: { contentType: string; body: Uint8Array<ArrayBuffer> }): void;
  /** Arms a request fault; the first armed one matching a request fires, before any blob fault. */
  addRequestFault(fault: RequestFault): void;
  /** Disarms all faults and overrides. */
  clearFaults(): void;
  /** Empties `stats`. */
  resetStats(): void;
  /** The sum of `stats.blobBytes`. */
  totalBlobBytes(): number;
  /** Stops listening, aborts in-flight requests and responses, and releases every timer and connection. */
  close(): Promise<void>;
}

// Chunks are kept this small so throttling is smooth and a client killed at a random moment has a partial
// download.
const MAX_CHUNK = 64 * 1024;
// Request bodies up to this size (manifests, small blobs) are buffered so upstream still gets a
// Content-Length; larger ones are streamed, which Deno's fetch sends chunked.
const BUFFER_REQUEST_BODY_LIMIT = 4 * 1024 * 1024;
const BLOB_PATH = /^\/v2\/(.+)\/blobs\/([a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+)$/;
const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

/** The error the proxy ends streams with; recognised so Deno.serve's error hook stays quiet about it. */
class InjectedFault extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InjectedFault";
  }
}

/** Copies `headers` without hop-by-hop headers, including those the Connection header names. */
function endToEndHeaders(headers: Headers): Headers {
  const out = new Headers(headers);
  const listed = (headers.get("connection") ?? "").split(",").map((name) => name.trim().toLowerCase());
  for (const name of [...HOP_BY_HOP, ...listed]) if (name) out.delete(name);
  return out;
}

/** A blob body on its way to the client: re-chunked, throttled, faulted and counted. */
class BodyPump {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #pending: Uint8Array | null = null;
  #sent = 0;
  #finished = false;
  #controller: ReadableStreamDefaultController<Uint8Array> | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #wake: (() => void) | null = null;
  #nextAt = 0;
  #lastRate = 0;
  readonly stream: ReadableStream<Uint8Array>;

  constructor(
    upstream: ReadableStream<Uint8Array>,
    private readonly options: {
      /** Where the body is cut, and how. */
      cut?: { at: number; kind: "truncate" | "drop" };
      /** Which byte gets a bit flipped. */
      flipAt?: number;
      /** Current throttle in bytes per second (0 = none); read per chunk so changes apply at once. */
      rate: () => number;
      /** Called with each chunk length as it is enqueued. */
      count: (bytes: number) => void;
      /** Called once when the pump is done, however it ends. */
      onDone: () => void;
    },
  ) {
    this.#reader = upstream.getReader();
    // highWaterMark 0: pull only runs when the server asks for more, so nothing sits in our queue and
    // counted bytes are bytes the server has taken for the client.
    this.stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: (controller) => this.#pull(controller),
      cancel: () => this.#finish(),
    }, { highWaterMark: 0 });
  }

  /** Ends the body abruptly (used by close()). */
  abort(reason: string): void {
    if (this.#finished) return;
    const controller = this.#controller;
    this.#finish();
    controller?.error(new InjectedFault(reason));
  }

  async #pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    if (this.#finished) return;
    const { cut, flipAt } = this.options;
    if (cut && this.#sent >= cut.at) {
      // The cut happens on the pull after the last piece, so that piece is delivered before the end:
      // erroring a stream discards whatever is still queued.
      this.#finish();
      if (cut.kind === "truncate") controller.close();
      else controller.error(new InjectedFault(`fault-proxy: connection dropped after ${this.#sent} bytes`));
      return;
    }
    let chunk = this.#pending;
    this.#pending = null;
    if (!chunk || chunk.length === 0) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await this.#reader.read();
      } catch (error) {
        // Upstream broke off: the client must see a broken body too, not a clean end.
        if (this.#finished) return;
        this.#finish();
        controller.error(error);
        return;
      }
      const { done, value } = result;
      if (this.#finished) return;
      if (done) {
        this.#finish();
        controller.close();
        return;
      }
      chunk = value;
    }
    const rate = this.options.rate();
    let limit = rate > 0 ? Math.max(1, Math.min(MAX_CHUNK, Math.floor(rate / 20))) : MAX_CHUNK;
    if (cut) limit = Math.min(limit, cut.at - this.#sent);
    let piece = chunk.subarray(0, limit);
    if (chunk.length > limit) this.#pending = chunk.subarray(limit);
    if (flipAt !== undefined && flipAt >= this.#sent && flipAt < this.#sent + piece.length) {
      piece = piece.slice();
      piece[flipAt - this.#sent] ^= 0x01;
    }
    await this.#throttle(rate, piece.length);
    if (this.#finished) return;
    controller.enqueue(piece);
    this.#sent += piece.length;
    this.options.count(piece.length);
  }

  /** Waits so that, counting this piece, the body does not run ahead of `rate`. */
  async #throttle(rate: number, bytes: number): Promise<void> {
    const now = performance.now();
    if (rate <= 0) {
      this.#lastRate = 0;
      return;
    }
    // No credit is carried over from idle time (a slow reader, a changed rate): the next piece is
    // scheduled from now at the latest, so the rate holds over any window.
    if (rate !== this.#lastRate || this.#nextAt < now) this.#nextAt = now;
    this.#lastRate = rate;
    this.#nextAt += (bytes / rate) * 1000;
    const wait = this.#nextAt - now;
    if (wait < 1) return;
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#wake = null;
        resolve();
      }, wait);
    });
  }

  /** Releases the upstream body and any pending timer; idempotent. */
  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#wake?.();
    this.#wake = null;
    this.#reader.cancel().catch(() => {});
    this.options.onDone();
  }
}

/** Starts a proxy on 127.0.0.1 (ephemeral port) forwarding to `upstream` ("127.0.0.1:PORT", plain HTTP). */
export function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const stats: ProxyStats = { blobBytes: new Map(), requests: [] };
  let faults: (BlobFault & { left: number })[] = [];
  let requestFaults: (RequestFault & { left: number })[] = [];
  let throttle = 0;
  let closed = false;
  const abort = new AbortController();
  const pumps = new Set<BodyPump>();
  // A client of our own, so closing the proxy also closes its pooled upstream connections.
  const client = Deno.createHttpClient({});

  /** Takes one firing of the first armed fault that applies to this blob GET. */
  const overrides = new Map<string, { contentType: string; body: Uint8Array<ArrayBuffer> }>();

  function takeFault(digest: string, hasRange: boolean): BlobFault | undefined {
    const index = faults.findIndex((fault) =>
      (fault.digest === "*" || fault.digest === digest) && (fault.kind !== "ignore-range" || hasRange)
    );
    if (index < 0) return undefined;
    const fault = faults[index];
    fault.left -= 1;
    if (fault.left <= 0) faults.splice(index, 1);
    return fault;
  }

  /** Takes one firing of the first armed request fault that matches. */
  function takeRequestFault(method: string, path: string): RequestFault | undefined {
    const index = requestFaults.findIndex((fault) => fault.method === method && fault.path.test(path));
    if (index < 0) return undefined;
    const fault = requestFaults[index];
    fault.left -= 1;
    if (fault.left <= 0) requestFaults.splice(index, 1);
    return fault;
  }

  /** The answer of a "status" fault: the status and an OCI error body saying it was injected. */
  function injectedStatus(status: number): Response {
    const body = JSON.stringify({
      errors: [{ code: "UNKNOWN", message: `fault-proxy: injected status ${status}`, detail: null }],
    });
    return new Response(body, { status, headers: { "content-type": "application/json" } });
  }

  async function handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname + url.search;
    const range = req.headers.get("range");
    const record = (response: Response): Response => {
      stats.requests.push({ method: req.method, path, range, status: response.status });
      return response;
    };
    if (closed) return record(new Response("fault proxy closed\n", { status: 503 }));
    const requestFault = takeRequestFault(req.method, path);
    if (requestFault && !requestFault.afterUpstream) {
      await req.body?.cancel();
      return record(injectedStatus(requestFault.status ?? 500));
    }

    const override = req.method === "GET" ? overrides.get(url.pathname) : undefined;
    if (override) {
      return record(
        new Response(override.body, { status: 200, headers: { "content-type": override.contentType } }),
      );
    }
    const blob = req.method === "GET" ? BLOB_PATH.exec(url.pathname) : null;
    const digest = blob?.[2];
    const fault = digest !== undefined ? takeFault(digest, range !== null) : undefined;
    if (fault?.kind === "status") return record(injectedStatus(fault.status ?? 500));

    const headers = endToEndHeaders(req.headers);
    // fetch sets these itself; Host cannot be overridden, so the registry learns the client-facing host
    // from X-Forwarded-* and builds upload Locations that lead back through the proxy.
    headers.delete("host");
    headers.delete("content-length");
    headers.set("x-forwarded-host", req.headers.get("host") ?? url.host);
    headers.set("x-forwarded-proto", "http");
    // Without this Deno's fetch would negotiate compression and transparently decode, breaking
    // Content-Length and byte counts.
    headers.set("accept-encoding", "identity");
    if (fault?.kind === "ignore-range") {
      headers.delete("range");
      headers.delete("if-range");
    }
    let body: BodyInit | null = req.body;
    const declared = Number(req.headers.get("content-length") ?? NaN);
    if (body && declared <= BUFFER_REQUEST_BODY_LIMIT) body = await req.arrayBuffer();

    let answer: Response;
    try {
      answer = await fetch(`http://${upstream}${path}`, {
        method: req.method,
        headers,
        body,
        redirect: "manual",
        signal: abort.signal,
        client,
      });
    } catch (error) {
      const message = `fault-proxy: upstream ${upstream} failed: ${
        error instanceof Error ? error.message : error
      }`;
      return record(new Response(message + "\n", { status: 502 }));
    }
    if (requestFault) {
      await answer.body?.cancel();
      return record(injectedStatus(requestFault.status ?? 500));
    }
    const outHeaders = endToEndHeaders(answer.headers);
    if (!answer.body || req.method === "HEAD" || [204, 205, 304].includes(answer.status)) {
      await answer.body?.cancel();
      return record(new Response(null, { status: answer.status, headers: outHeaders }));
    }
    if (digest === undefined) {
      // Not a blob GET: passed through, but still via a pump so close() can end it.
      const pump = new BodyPump(answer.body, {
        rate: () => 0,
        count: () => {},
        onDone: () => pumps.delete(pump),
      });
      pumps.add(pump);
      return record(new Response(pump.stream, { status: answer.status, headers: outHeaders }));
    }

    const length = Number(answer.headers.get("content-length") ?? NaN);
    const middle = Number.isFinite(length) ? Math.floor(length / 2) : 0;
    const pump = new BodyPump(answer.body, {
      cut: fault?.kind === "truncate" || fault?.kind === "drop"
        ? { at: fault.atByte ?? middle, kind: fault.kind }
        : undefined,
      flipAt: fault?.kind === "flip-bit" ? fault.byteOffset ?? middle : undefined,
      rate: () => throttle,
      count: (bytes) => stats.blobBytes.set(digest, (stats.blobBytes.get(digest) ?? 0) + bytes),
      onDone: () => pumps.delete(pump),
    });
    pumps.add(pump);
    return record(new Response(pump.stream, { status: answer.status, headers: outHeaders }));
  }

  return new Promise((resolve) => {
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen: (addr) => {
        resolve({
          host: `127.0.0.1:${addr.port}`,
          stats,
          setThrottle(bytesPerSecond) {
            throttle = Math.max(0, bytesPerSecond);
          },
          addFault(fault) {
            const left = fault.times ?? 1;
            // times <= 0 (or NaN) would otherwise fire once; it means "never".
            if (left > 0) faults.push({ ...fault, left });
          },
          overrideResponse(path, answer) {
            overrides.set(path, answer);
          },
          addRequestFault(fault) {
            const left = fault.times ?? 1;
            if (left > 0) requestFaults.push({ ...fault, left });
          },
          clearFaults() {
            faults = [];
            requestFaults = [];
            overrides.clear();
          },
          resetStats() {
            stats.blobBytes.clear();
            stats.requests.length = 0;
          },
          totalBlobBytes() {
            let total = 0;
            for (const bytes of stats.blobBytes.values()) total += bytes;
            return total;
          },
          async close() {
            if (closed) return;
            closed = true;
            // shutdown() stops listening at once but waits for in-flight responses, so those are
            // ended (and pending upstream fetches aborted) before it is awaited.
            const stopped = server.shutdown();
            abort.abort();
            for (const pump of [...pumps]) pump.abort("fault-proxy: closed");
            await stopped;
            await server.finished;
            client.close();
          },
        });
      },
      onError: (error) => {
        // Faults end streams on purpose; anything else is a bug worth seeing.
        if (!(error instanceof InjectedFault)) console.error("fault-proxy:", error);
        return new Response("fault-proxy: internal error\n", { status: 502 });
      },
    }, handle);
  });
}
