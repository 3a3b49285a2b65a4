/**
 * HTTP/1.1 by hand over a TCP connection, for the status server's tests: fetch hides what these tests are
 * about (when a connection is closed, what a malformed or slow request gets).
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface RawResponse {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string>;
  body: string;
}

/** A connection that reads whole responses, keeping what arrives past one for the next. */
export class RawConnection {
  #buffer = new Uint8Array(0);

  private constructor(readonly conn: Deno.TcpConn) {}

  static async open(port: number, hostname = "127.0.0.1"): Promise<RawConnection> {
    return new RawConnection(await Deno.connect({ hostname, port }));
  }

  async send(text: string): Promise<void> {
    const bytes = encoder.encode(text);
    let offset = 0;
    while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
  }

  /** More bytes, or false at the end of the stream (a reset counts as an end). */
  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(8192);
    let count: number | null;
    try {
      count = await this.conn.read(chunk);
    } catch {
      return false;
    }
    if (count === null) return false;
    const all = new Uint8Array(this.#buffer.length + count);
    all.set(this.#buffer);
    all.set(chunk.subarray(0, count), this.#buffer.length);
    this.#buffer = all;
    return true;
  }

  /** The next response (its body read by Content-Length; `head` for a HEAD request: none), or undefined at EOF. */
  async response(head = false): Promise<RawResponse | undefined> {
    for (;;) {
      const text = decoder.decode(this.#buffer);
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
        const headers: Record<string, string> = {};
        for (const line of lines) {
          const colon = line.indexOf(":");
          headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
        }
        const length = head ? 0 : Number(headers["content-length"] ?? 0);
        const headBytes = encoder.encode(text.slice(0, end + 4)).length;
        while (this.#buffer.length < headBytes + length) {
          if (!await this.#fill()) throw new Error(`the connection ended inside a response body`);
        }
        const body = decoder.decode(this.#buffer.subarray(headBytes, headBytes + length));
        this.#buffer = this.#buffer.subarray(headBytes + length);
        return { status: Number(statusLine.split(" ")[1]), headers, body };
      }
      if (!await this.#fill()) return undefined;
    }
  }

  /** Resolves true when the server closes the connection, false when it is still open after `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
    const ended = (async () => {
      while (await this.#fill()) { /* discard */ }
      return true as const;
    })();
    const result = await Promise.race([ended, timeout]);
    clearTimeout(timer);
    if (!result) this.close();
    return result;
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/** One request on a fresh connection (closed afterwards); the response, or undefined if none came. */
export async function request(
  port: number,
  path: string,
  options: { method?: string; host?: string; headers?: Record<string, string> } = {},
): Promise<RawResponse | undefined> {
  const connection = await RawConnection.open(port);
  try {
    const headers = Object.entries({ Host: options.host ?? `127.0.0.1:${port}`, ...options.headers })
      .map(([name, value]) => `${name}: ${value}\r\n`).join("");
    await connection.send(
      `${options.method ?? "GET"} ${path} HTTP/1.1\r\n${headers}Connection: close\r\n\r\n`,
    );
    return await connection.response(options.method === "HEAD");
  } finally {
    connection.close();
  }
}

/** The port a server's URL names ("http://127.0.0.1:PORT"). */
export function portOf(url: string): number {
  return Number(new URL(url).port);
}
