/**
 * The status server's own HTTP/1.1 handling (src/status/http.ts) over real TCP connections: timeouts, the
 * connection cap, what is refused, keep-alive and HEAD. Timeouts are shortened so the tests take seconds;
 * the flood against the real agent with the real limits is flood_test.ts.
 */
import assert from "node:assert/strict";
import { type ServeOptions, serveStatus, type StatusServer } from "../../src/status/server.ts";
import { DEFAULT_HTTP_LIMITS, MAX_HEAD_BYTES, serveHttp } from "../../src/status/http.ts";
import { FixedSource } from "./fixture.ts";
import { portOf, RawConnection, request } from "./raw_http.ts";

async function withServer(
  options: ServeOptions,
  work: (server: StatusServer, port: number) => Promise<void>,
) {
  const server = await serveStatus("127.0.0.1:0", new FixedSource(), options);
  try {
    await work(server, portOf(server.url));
  } finally {
    await server.close();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("the limits are the documented ones: 256 connections, 5 s for a head, 30 s idle, 16 KiB heads", () => {
  assert.deepEqual(DEFAULT_HTTP_LIMITS, {
    maxConnections: 256,
    headerTimeoutMs: 5_000,
    idleTimeoutMs: 30_000,
    responseTimeoutMs: 10_000,
    maxHeadBytes: 16 * 1024,
  });
});

Deno.test("a client that does not complete its request head within the header timeout is closed", async () => {
  await withServer({ limits: { headerTimeoutMs: 400 } }, async (_server, port) => {
    const silent = await RawConnection.open(port);
    const partial = await RawConnection.open(port);
    await partial.send("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    // a byte every 100 ms does not keep it open: the deadline counts from the connection
    const trickle = await RawConnection.open(port);
    const started = Date.now();
    const dripping = (async () => {
      for (const char of "GET /status HTTP/1.1\r\n") {
        if (!await trickle.send(char).then(() => true, () => false)) return;
        await sleep(100);
      }
    })();
    const closed = await Promise.all(
      [2000, 2000, 2000].map((ms, i) => [silent, partial, trickle][i].closedWithin(ms)),
    );
    const elapsed = Date.now() - started;
    await dripping;
    assert.deepEqual(closed, [true, true, true]);
    assert.ok(elapsed >= 300 && elapsed < 1500, `closed after ${elapsed} ms; the timeout is 400 ms`);
    const answered = await request(port, "/healthz");
    assert.equal(answered?.status, 200, "the server goes on answering");
  });
});

Deno.test("at the connection cap the oldest connection without a complete head is closed and a new client answered", async () => {
  const warnings: string[] = [];
  await withServer(
    { limits: { maxConnections: 4, headerTimeoutMs: 30_000 }, warn: (message) => warnings.push(message) },
    async (_server, port) => {
      const slow: RawConnection[] = [];
      for (let i = 0; i < 4; i++) {
        slow.push(await RawConnection.open(port));
        await slow[i].send("GET / HTTP/1.1\r\n");
        await sleep(20); // accepted in this order
      }
      const started = Date.now();
      const answered = await request(port, "/healthz");
      assert.equal(answered?.status, 200);
      assert.ok(Date.now() - started < 1000, `answered after ${Date.now() - started} ms`);
      assert.equal(await slow[0].closedWithin(1000), true, "the oldest waiting connection was closed");
      // the answered client is gone, so a second one finds a free slot and closes nobody
      assert.equal((await request(port, "/healthz"))?.status, 200);
      // Proof that they are open, rather than a wait for a close that does not come: each completes its
      // head and is answered on the same connection.
      for (const [index, connection] of slow.entries()) {
        if (index === 0) continue;
        await connection.send(`Host: localhost:${port}\r\n\r\n`).catch(() => {});
        const answer = await connection.response().catch(() => undefined);
        assert.equal(answer?.status, 200, `connection ${index + 1} of 4 was kept and answered`);
        connection.close();
      }
      assert.equal(warnings.length, 1, `one warning per minute at most: ${warnings.join(" | ")}`);
      assert.match(
        warnings[0],
        /^status endpoint 127\.0\.0\.1:\d+: 4 connections, the cap \(4\): closed the oldest/,
      );
    },
  );
});

Deno.test("a TLS handshake is answered 400 at once (a client trying HTTPS first falls back without waiting)", async () => {
  await withServer({}, async (_server, port) => {
    const client = await RawConnection.open(port);
    const started = Date.now();
    // The first bytes of a TLS ClientHello: a handshake record, TLS 1.0 record version.
    await client.conn.write(
      new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]),
    );
    const answer = await client.response();
    assert.equal(answer?.status, 400);
    assert.ok(Date.now() - started < 1000, `answered after ${Date.now() - started} ms`);
    assert.ok(await client.closedWithin(1000));
  });
});

Deno.test("a kept-alive connection answers several requests, pipelined too, and is closed when idle", async () => {
  await withServer({ limits: { idleTimeoutMs: 400 } }, async (_server, port) => {
    const connection = await RawConnection.open(port);
    await connection.send(`GET /healthz HTTP/1.1\r\nHost: localhost:${port}\r\n\r\n`);
    assert.equal((await connection.response())?.status, 200);
    await connection.send(
      `GET /status HTTP/1.1\r\nHost: localhost\r\n\r\nGET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\n`,
    );
    const status = await connection.response();
    assert.equal(status?.status, 200);
    assert.equal(JSON.parse(status!.body).schemaVersion, 1);
    assert.equal((await connection.response())?.status, 404);
    const idleSince = Date.now();
    assert.equal(await connection.closedWithin(3000), true);
    const idle = Date.now() - idleSince;
    assert.ok(idle >= 300 && idle < 2000, `closed after ${idle} ms idle; the idle timeout is 400 ms`);
  });
});

Deno.test("only GET and HEAD without a body: 405, 413, 400, 431 and 505 are answered, then the connection closed", async () => {
  await withServer({}, async (_server, port) => {
    const cases: [string, number, RegExp][] = [
      ["POST /status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}", 405, /POST is not served/],
      ["GET /status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello", 413, /take no body/],
      [
        "GET /status HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        413,
        /no body/,
      ],
      ["GET /status HTTP/1.1\r\n\r\n", 400, /exactly one Host header/],
      ["GET /status HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, /exactly one Host header/],
      ["GET /status HTTP/1.1\r\nHost: localhost\r\n folded\r\n\r\n", 400, /malformed header line/],
      ["GET status HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, /expected a path/],
      ["GET /a b HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, /malformed request line/],
      ["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, /only HTTP\/1\.x/],
      [
        `GET /status HTTP/1.1\r\nHost: localhost\r\nX-Big: ${"a".repeat(MAX_HEAD_BYTES)}\r\n\r\n`,
        431,
        /over 16384 bytes/,
      ],
    ];
    for (const [text, status, message] of cases) {
      const connection = await RawConnection.open(port);
      await connection.send(text).catch(() => {}); // the 431 may close before all is sent
      const response = await connection.response();
      assert.equal(response?.status, status, text.slice(0, 60));
      assert.match(JSON.parse(response!.body).message, message);
      assert.equal(response!.headers.connection, "close");
      if (status === 405) assert.equal(response!.headers.allow, "GET, HEAD");
      assert.equal(await connection.closedWithin(1000), true, `closed after ${status}`);
    }
  });
});

Deno.test("HEAD answers GET's headers and Content-Length without the body; HTTP/1.0 is answered and closed", async () => {
  await withServer({}, async (_server, port) => {
    const get = await request(port, "/status");
    const head = await request(port, "/status", { method: "HEAD" });
    assert.equal(head?.status, 200);
    assert.equal(head?.body, "");
    assert.equal(head?.headers["content-length"], String(new TextEncoder().encode(get!.body).length));
    assert.equal(head?.headers.etag, get?.headers.etag);

    const old = await RawConnection.open(port);
    await old.send("GET /healthz HTTP/1.0\r\n\r\n");
    assert.equal((await old.response())?.status, 200);
    assert.equal(await old.closedWithin(1000), true);
  });
});

Deno.test("an answer with a declared length is streamed, kept alive; one shorter than declared closes the connection", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const chunks = (count: number) =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < count; i++) controller.enqueue(new TextEncoder().encode("0123456789"));
        controller.close();
      },
    });
  const server = serveHttp(
    listener,
    (request) =>
      new Response(chunks(request.url.endsWith("/short") ? 2 : 3), { headers: { "Content-Length": "30" } }),
  );
  try {
    const connection = await RawConnection.open(port);
    await connection.send("GET /whole HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const whole = await connection.response();
    assert.equal(whole?.headers["content-length"], "30");
    assert.equal(whole?.body, "0123456789".repeat(3));
    await connection.send("HEAD /whole HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert.equal((await connection.response(true))?.headers["content-length"], "30", "kept alive, HEAD too");
    await connection.send("GET /short HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    await assert.rejects(connection.response(), /ended inside a response body/);
    connection.close();
  } finally {
    await server.close();
  }
});
