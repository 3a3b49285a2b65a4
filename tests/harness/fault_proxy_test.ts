/**
 * Unit tests of the fault proxy against a tiny in-process upstream that serves one 1 MiB random blob with
 * Range support, a redirecting blob, and an echo endpoint for everything else.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { type FaultProxy, startFaultProxy } from "./fault_proxy.ts";

const SIZE = 1024 * 1024;
// node:crypto because Web Crypto hands out at most 64 KiB per call.
const BLOB = new Uint8Array(randomBytes(SIZE));
const DIGEST = "sha256:" + createHash("sha256").update(BLOB).digest("hex");
const OTHER_DIGEST = "sha256:" + "0".repeat(64);
const BLOB_PATH = `/v2/x/blobs/${DIGEST}`;

interface Upstream {
  host: string;
  /** Requests as upstream saw them. */
  seen: { method: string; path: string; range: string | null; forwardedHost: string | null }[];
  close(): Promise<void>;
}

/** Serves BLOB (with single-range support), a 307 for OTHER_DIGEST, and echoes anything else. */
function startUpstream(): Promise<Upstream> {
  const seen: Upstream["seen"] = [];
  return new Promise((resolve) => {
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen: (addr) => resolve({ host: `127.0.0.1:${addr.port}`, seen, close: () => server.shutdown() }),
    }, async (req) => {
      const url = new URL(req.url);
      const range = req.headers.get("range");
      seen.push({
        method: req.method,
        path: url.pathname + url.search,
        range,
        forwardedHost: req.headers.get("x-forwarded-host"),
      });
      if (url.pathname === `/v2/x/blobs/${OTHER_DIGEST}`) {
        return new Response(null, { status: 307, headers: { location: "http://elsewhere.invalid/blob" } });
      }
      if (url.pathname !== BLOB_PATH) {
        const body = req.body ? new Uint8Array(await req.arrayBuffer()) : new Uint8Array();
        return Response.json({ method: req.method, length: body.length }, {
          status: 201,
          headers: { location: `http://${req.headers.get("x-forwarded-host")}/v2/x/blobs/uploads/u1` },
        });
      }
      const headers = { "docker-content-digest": DIGEST, "content-type": "application/octet-stream" };
      if (req.method === "HEAD") {
        return new Response(null, { headers: { ...headers, "content-length": String(SIZE) } });
      }
      const match = range ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
      if (!match) return new Response(BLOB, { headers });
      const start = Number(match[1]);
      const end = match[2] ? Math.min(Number(match[2]), SIZE - 1) : SIZE - 1;
      return new Response(BLOB.subarray(start, end + 1), {
        status: 206,
        headers: { ...headers, "content-range": `bytes ${start}-${end}/${SIZE}` },
      });
    });
  });
}

/** Runs `fn` with an upstream and a proxy in front of it, closing both whatever happens. */
async function withProxy(fn: (proxy: FaultProxy, upstream: Upstream) => Promise<void>): Promise<void> {
  const upstream = await startUpstream();
  const proxy = await startFaultProxy(upstream.host);
  try {
    await fn(proxy, upstream);
  } finally {
    await proxy.close();
    await upstream.close();
  }
}

/** Reads a whole body, returning the bytes read and the error that ended it, if any. */
async function readBody(response: Response): Promise<{ bytes: Uint8Array; error?: unknown }> {
  const chunks: Uint8Array[] = [];
  let error: unknown;
  try {
    for await (const chunk of response.body!) chunks.push(chunk);
  } catch (caught) {
    error = caught;
  }
  const bytes = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return { bytes, error };
}

/** The number of differing bits between two equally long byte strings. */
function bitDifference(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let bits = 0;
  for (let i = 0; i < a.length; i++) {
    for (let x = a[i] ^ b[i]; x; x &= x - 1) bits++;
  }
  return bits;
}

Deno.test("passes blobs through byte for byte, with ranges, and counts them", async () => {
  await withProxy(async (proxy) => {
    const full = await fetch(`http://${proxy.host}${BLOB_PATH}`);
    assert.equal(full.status, 200);
    assert.equal(full.headers.get("content-length"), String(SIZE));
    assert.equal(full.headers.get("docker-content-digest"), DIGEST);
    const { bytes, error } = await readBody(full);
    assert.equal(error, undefined);
    assert.deepEqual(bytes, BLOB);

    const partial = await fetch(`http://${proxy.host}${BLOB_PATH}`, { headers: { range: "bytes=1000-" } });
    assert.equal(partial.status, 206);
    assert.equal(partial.headers.get("content-range"), `bytes 1000-${SIZE - 1}/${SIZE}`);
    assert.deepEqual((await readBody(partial)).bytes, BLOB.subarray(1000));

    assert.equal(proxy.stats.blobBytes.get(DIGEST), SIZE + SIZE - 1000);
    assert.equal(proxy.totalBlobBytes(), SIZE + SIZE - 1000);
    assert.deepEqual(proxy.stats.requests, [
      { method: "GET", path: BLOB_PATH, range: null, status: 200 },
      { method: "GET", path: BLOB_PATH, range: "bytes=1000-", status: 206 },
    ]);
    proxy.resetStats();
    assert.equal(proxy.totalBlobBytes(), 0);
    assert.equal(proxy.stats.requests.length, 0);
  });
});

Deno.test("passes HEAD, other requests with bodies, and redirects through", async () => {
  await withProxy(async (proxy, upstream) => {
    const head = await fetch(`http://${proxy.host}${BLOB_PATH}`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), String(SIZE));
    assert.equal(head.headers.get("docker-content-digest"), DIGEST);

    const put = await fetch(`http://${proxy.host}/v2/x/manifests/latest?x=1`, {
      method: "PUT",
      body: new Uint8Array(1234),
    });
    assert.equal(put.status, 201);
    assert.deepEqual(await put.json(), { method: "PUT", length: 1234 });
    // The registry is told the client-facing host, so its Locations lead back through the proxy.
    assert.equal(put.headers.get("location"), `http://${proxy.host}/v2/x/blobs/uploads/u1`);

    const redirect = await fetch(`http://${proxy.host}/v2/x/blobs/${OTHER_DIGEST}`, { redirect: "manual" });
    assert.equal(redirect.status, 307);
    assert.equal(redirect.headers.get("location"), "http://elsewhere.invalid/blob");
    await redirect.body?.cancel();

    assert.deepEqual(upstream.seen.map((request) => request.path), [
      BLOB_PATH,
      "/v2/x/manifests/latest?x=1",
      `/v2/x/blobs/${OTHER_DIGEST}`,
    ]);
    assert.deepEqual(proxy.stats.requests.map((request) => request.status), [200, 201, 307]);
    assert.equal(proxy.totalBlobBytes(), 0);
  });
});

Deno.test("flip-bit changes exactly one bit, in the middle by default", async () => {
  await withProxy(async (proxy) => {
    proxy.addFault({ digest: DIGEST, kind: "flip-bit" });
    const { bytes } = await readBody(await fetch(`http://${proxy.host}${BLOB_PATH}`));
    assert.equal(bitDifference(bytes, BLOB), 1);
    assert.notEqual(bytes[SIZE / 2], BLOB[SIZE / 2]);

    proxy.addFault({ digest: "*", kind: "flip-bit", byteOffset: 7 });
    const again = await readBody(await fetch(`http://${proxy.host}${BLOB_PATH}`));
    assert.equal(bitDifference(again.bytes, BLOB), 1);
    assert.notEqual(again.bytes[7], BLOB[7]);
  });
});

for (const kind of ["drop", "truncate"] as const) {
  Deno.test(`${kind} makes the client's body read fail after atByte bytes`, async () => {
    await withProxy(async (proxy) => {
      proxy.addFault({ digest: DIGEST, kind, atByte: 300_000 });
      const response = await fetch(`http://${proxy.host}${BLOB_PATH}`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-length"), String(SIZE));
      const { bytes, error } = await readBody(response);
      assert.ok(error instanceof TypeError, `expected a TypeError, got ${error}`);
      assert.equal(error.message, "error reading a body from connection");
      assert.deepEqual(bytes, BLOB.subarray(0, 300_000));
      assert.equal(proxy.stats.blobBytes.get(DIGEST), 300_000);
    });
  });
}

Deno.test("ignore-range answers a Range request with 200 and the whole body", async () => {
  await withProxy(async (proxy, upstream) => {
    proxy.addFault({ digest: DIGEST, kind: "ignore-range" });
    // A request without Range does not use up the fault.
    await readBody(await fetch(`http://${proxy.host}${BLOB_PATH}`));
    const response = await fetch(`http://${proxy.host}${BLOB_PATH}`, { headers: { range: "bytes=500000-" } });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-range"), null);
    assert.deepEqual((await readBody(response)).bytes, BLOB);
    assert.equal(upstream.seen[1].range, null);
    assert.equal(proxy.stats.requests[1].range, "bytes=500000-");

    const ranged = await fetch(`http://${proxy.host}${BLOB_PATH}`, { headers: { range: "bytes=500000-" } });
    assert.equal(ranged.status, 206);
    assert.deepEqual((await readBody(ranged)).bytes, BLOB.subarray(500_000));
  });
});

Deno.test("status answers without contacting upstream, and times=1 disarms", async () => {
  await withProxy(async (proxy, upstream) => {
    proxy.addFault({ digest: DIGEST, kind: "status", status: 503 });
    const failed = await fetch(`http://${proxy.host}${BLOB_PATH}`);
    assert.equal(failed.status, 503);
    assert.equal((await failed.json()).errors[0].code, "UNKNOWN");
    assert.equal(upstream.seen.length, 0);

    const ok = await fetch(`http://${proxy.host}${BLOB_PATH}`);
    assert.equal(ok.status, 200);
    assert.deepEqual((await readBody(ok)).bytes, BLOB);
    assert.deepEqual(proxy.stats.requests.map((request) => request.status), [503, 200]);
    assert.equal(proxy.stats.blobBytes.get(DIGEST), SIZE);
  });
});

Deno.test("times counts firings, other digests do not match, clearFaults disarms", async () => {
  await withProxy(async (proxy) => {
    proxy.addFault({ digest: OTHER_DIGEST, kind: "status", status: 500, times: Infinity });
    proxy.addFault({ digest: "*", kind: "status", status: 500, times: 2 });
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const response = await fetch(`http://${proxy.host}${BLOB_PATH}`);
      statuses.push(response.status);
      await response.body?.cancel();
    }
    assert.deepEqual(statuses, [500, 500, 200]);
    const other = await fetch(`http://${proxy.host}/v2/x/blobs/${OTHER_DIGEST}`, { redirect: "manual" });
    assert.equal(other.status, 500);
    await other.body?.cancel();
    proxy.clearFaults();
    const cleared = await fetch(`http://${proxy.host}/v2/x/blobs/${OTHER_DIGEST}`, { redirect: "manual" });
    assert.equal(cleared.status, 307);
    await cleared.body?.cancel();
  });
});

Deno.test("throttle at 4 MiB/s makes a 1 MiB body take at least 0.2 s", async () => {
  await withProxy(async (proxy) => {
    proxy.setThrottle(4 * 1024 * 1024);
    const started = performance.now();
    const { bytes } = await readBody(await fetch(`http://${proxy.host}${BLOB_PATH}`));
    const elapsed = performance.now() - started;
    assert.deepEqual(bytes, BLOB);
    assert.ok(elapsed >= 200, `took only ${elapsed} ms`);
    assert.ok(elapsed < 2000, `took ${elapsed} ms`);
  });
});

Deno.test("a client that gives up mid-body is counted only for what was sent", async () => {
  await withProxy(async (proxy) => {
    proxy.setThrottle(1024 * 1024);
    const response = await fetch(`http://${proxy.host}${BLOB_PATH}`);
    const reader = response.body!.getReader();
    let read = 0;
    while (read < 100_000) read += (await reader.read()).value!.length;
    await reader.cancel();
    // Give the proxy a moment to notice the client is gone.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const counted = proxy.stats.blobBytes.get(DIGEST)!;
    assert.ok(counted >= read, `counted ${counted} < read ${read}`);
    assert.ok(counted < 300_000, `counted ${counted}`);
  });
});

Deno.test("close ends in-flight responses", async () => {
  const upstream = await startUpstream();
  const proxy = await startFaultProxy(upstream.host);
  try {
    proxy.setThrottle(256 * 1024);
    const response = await fetch(`http://${proxy.host}${BLOB_PATH}`);
    const reading = readBody(response);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await proxy.close();
    const { bytes, error } = await reading;
    assert.ok(error instanceof TypeError);
    assert.ok(bytes.length < SIZE);
  } finally {
    await proxy.close();
    await upstream.close();
  }
});
