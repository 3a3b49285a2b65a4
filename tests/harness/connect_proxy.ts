/**
 * A minimal HTTPS proxy for tests: it accepts `CONNECT host:port`, records it, and pipes bytes both ways.
 * It only tunnels to 127.0.0.1 (anything else gets 403), so a test can never reach beyond loopback
 * through it. With `refuse` set it answers every CONNECT with 403, as a proxy's access rules would.
 */

export interface ConnectProxy {
  /** "http://127.0.0.1:PORT", for HTTPS_PROXY. */
  url: string;
  /** The target of every CONNECT, in order ("127.0.0.1:PORT"), and the first line of anything else. */
  requests: string[];
  /** Stops listening, ends open tunnels and waits for them. */
  close(): Promise<void>;
}

const encoder = new TextEncoder();
const MAX_HEAD = 16 * 1024;

/** Copies `from` to `to` until EOF or an error (either side closed). */
async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await from.read(buffer);
      if (n === null) return;
      for (let at = 0; at < n;) at += await to.write(buffer.subarray(at, n));
    }
  } catch {
    // One side went away: the tunnel is over.
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Starts the proxy on 127.0.0.1 (ephemeral port). */
export function startConnectProxy(options: { refuse?: boolean } = {}): ConnectProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requests: string[] = [];
  const open = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();

  const serve = async (conn: Deno.Conn): Promise<void> => {
    let upstream: Deno.Conn | undefined;
    try {
      // Read the request head; the client sends nothing more until it has our answer.
      let head = new Uint8Array(0);
      let end = -1;
      while (end < 0 && head.length < MAX_HEAD) {
        const chunk = new Uint8Array(4096);
        const n = await conn.read(chunk);
        if (n === null) return;
        const joined = new Uint8Array(head.length + n);
        joined.set(head);
        joined.set(chunk.subarray(0, n), head.length);
        head = joined;
        end = new TextDecoder().decode(head).indexOf("\r\n\r\n");
      }
      const firstLine = new TextDecoder().decode(head).split("\r\n")[0];
      const connect = /^CONNECT (127\.0\.0\.1:\d+) HTTP\/1\.[01]$/.exec(firstLine);
      requests.push(connect ? connect[1] : firstLine);
      if (!connect || options.refuse) {
        await conn.write(
          encoder.encode("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        );
        return;
      }
      const [hostname, port] = connect[1].split(":");
      upstream = await Deno.connect({ hostname, port: Number(port) });
      open.add(upstream);
      await conn.write(encoder.encode("HTTP/1.1 200 Connection established\r\n\r\n"));
      const up = upstream;
      // Whichever direction ends first ends the tunnel.
      const both = [pump(conn, up), pump(up, conn)];
      await Promise.race(both);
      closeQuietly(conn);
      closeQuietly(up);
      await Promise.all(both);
    } catch {
      // A client that went away mid-handshake.
    } finally {
      closeQuietly(conn);
      if (upstream) {
        closeQuietly(upstream);
        open.delete(upstream);
      }
      open.delete(conn);
    }
  };

  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        open.add(conn);
        const task = serve(conn);
        tasks.add(task);
        task.finally(() => tasks.delete(task));
      }
    } catch {
      // The listener was closed.
    }
  })();

  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    requests,
    async close() {
      try {
        listener.close();
      } catch {
        // Already closed.
      }
      await accepting;
      for (const conn of open) closeQuietly(conn);
      await Promise.all(tasks);
    },
  };
}
