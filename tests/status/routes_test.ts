/**
 * The status routes through `app.request()`: schema, ETag/304, health, auth, and that nothing leaks; and
 * what the agent's model puts in the document.
 */
import assert from "node:assert/strict";
import { StatusSchema } from "../../src/agent/status_schema.ts";
import { StatusModel } from "../../src/agent/model.ts";
import { createLogger } from "../../src/util/log.ts";
import { statusRoutes } from "../../src/status/server.ts";
import { parseExposition } from "./metrics_check.ts";
import { FixedSource, sampleStatus } from "./fixture.ts";

const TOKEN = "s3cret-token-for-tests";

Deno.test("GET /status: the snapshot, valid against the schema, not cached without revalidation", async () => {
  const source = new FixedSource();
  const response = await statusRoutes(source).request("/status");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
  assert.equal(response.headers.get("cache-control"), "no-cache");
  const body = await response.json();
  assert.deepEqual(StatusSchema.parse(body), sampleStatus());
});

Deno.test("GET /status: strong ETag from the body; If-None-Match gives 304 until the document changes", async () => {
  const source = new FixedSource();
  const app = statusRoutes(source);
  const first = await app.request("/status");
  const etag = first.headers.get("etag")!;
  assert.match(etag, /^"[0-9a-f]{32}"$/);
  await first.body?.cancel();

  const again = await app.request("/status", { headers: { "If-None-Match": etag } });
  assert.equal(again.status, 304);
  assert.equal(await again.text(), "");
  assert.equal(again.headers.get("etag"), etag);
  // a list and a weak form of the same tag also match; another tag does not
  assert.equal(
    (await app.request("/status", { headers: { "If-None-Match": `"x", W/${etag}` } })).status,
    304,
  );
  const other = await app.request("/status", { headers: { "If-None-Match": '"0000"' } });
  assert.equal(other.status, 200);
  await other.body?.cancel();

  // same content from a fresh server: same tag (derived from the bytes, not from time or a counter)
  const fresh = await statusRoutes(new FixedSource()).request("/status");
  assert.equal(fresh.headers.get("etag"), etag);
  await fresh.body?.cancel();

  source.status = sampleStatus();
  source.status.apps[0].progress!.bytesDone += 1;
  const changed = await app.request("/status", { headers: { "If-None-Match": etag } });
  assert.equal(changed.status, 200);
  assert.notEqual(changed.headers.get("etag"), etag);
  assert.equal((await changed.json()).apps[0].progress.bytesDone, 42_500_001);
});

Deno.test("GET /healthz: 200 {ok:true}, 503 {ok:false, reason}", async () => {
  const source = new FixedSource();
  const app = statusRoutes(source, { token: TOKEN });
  const ok = await app.request("/healthz"); // no token needed
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { ok: true });
  source.healthy = { ok: false, reason: "no reconcile finished in 612 s (limit 600 s)" };
  const sick = await app.request("/healthz");
  assert.equal(sick.status, 503);
  assert.deepEqual(await sick.json(), { ok: false, reason: "no reconcile finished in 612 s (limit 600 s)" });
});

Deno.test("GET /metrics: Prometheus text 0.0.4 that parses", async () => {
  const response = await statusRoutes(new FixedSource()).request("/metrics");
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  const { samples } = parseExposition(await response.text());
  assert.ok(samples.length > 30);
});

Deno.test("GET /: the page, self-contained, served without the token", async () => {
  const response = await statusRoutes(new FixedSource(), { token: TOKEN }).request("/");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(response.headers.get("content-security-policy") ?? "", /default-src 'none'/);
  const html = await response.text();
  assert.match(html, /<script>/);
  assert.doesNotMatch(html, /<script src|<link |https?:\/\//, "no external assets");
  assert.doesNotMatch(html, /shop|s3cret/, "the page holds no data");
});

Deno.test("token: 401 without or with a wrong one (never echoed), 200 with it", async () => {
  const app = statusRoutes(new FixedSource(), { token: TOKEN });
  for (const path of ["/status", "/metrics", "/nowhere"]) {
    for (
      const headers of <Record<string, string>[]> [
        {},
        { Authorization: "Bearer wrong" },
        { Authorization: `Bearer ${TOKEN}x` },
        { Authorization: `Bearer ${TOKEN.slice(0, -1)}` },
        { Authorization: `Basic ${btoa(`berth:${TOKEN}`)}` },
      ]
    ) {
      const response = await app.request(path, { headers });
      assert.equal(response.status, 401, `${path} ${JSON.stringify(headers)}`);
      assert.equal(response.headers.get("www-authenticate"), 'Bearer realm="berth"');
      const text = await response.text();
      assert.doesNotMatch(text, /s3cret/);
      assert.doesNotMatch(text, /shop/);
    }
  }
  const status = await app.request("/status", { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(status.status, 200);
  StatusSchema.parse(await status.json());
  const metrics = await app.request("/metrics", { headers: { authorization: `bearer ${TOKEN}` } });
  assert.equal(metrics.status, 200);
  await metrics.body?.cancel();
  // without a token configured, no header is needed
  const open = await statusRoutes(new FixedSource()).request("/status");
  assert.equal(open.status, 200);
  await open.body?.cancel();
});

Deno.test("a source that throws gives 500 without its message; unknown paths 404", async () => {
  const source = new FixedSource();
  source.snapshot = () => {
    throw new Error("internal detail /var/lib/berth/secret");
  };
  const app = statusRoutes(source);
  const originalError = console.error;
  console.error = () => {};
  try {
    const response = await app.request("/status");
    assert.equal(response.status, 500);
    assert.doesNotMatch(await response.text(), /secret/);
  } finally {
    console.error = originalError;
  }
  const missing = await app.request("/nowhere");
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
});

Deno.test("GET /status from the agent's model: progress only while a fetch runs, exit codes only of exited containers", async () => {
  const model = new StatusModel({
    version: "test",
    storePath: "/store",
    pollIntervalSeconds: 300,
    stallSeconds: 60,
    log: createLogger("error", () => {}),
  });
  const routes = statusRoutes(model);
  const shop = async () => {
    const body = StatusSchema.parse(await (await routes.request("/status")).json());
    return body.apps.find((app) => app.name === "shop")!;
  };
  const digest = `sha256:${"a".repeat(64)}`;
  model.transition("shop", "r/shop:1", "fetching");
  model.fetchStarted("shop");
  model.fetchEvent("shop", {
    type: "planned",
    name: "r/shop:1",
    digest,
    bytesTotal: 600,
    bytesDone: 0,
    blobsTotal: 1,
    blobsDone: 0,
    blobs: [{ digest, size: 600, bytesDone: 0 }],
  });
  model.fetchEvent("shop", { type: "blob-start", digest, size: 600, offset: 0 });
  assert.equal((await shop()).progress?.bytesTotal, 600, "progress while the fetch runs");
  model.fetchEvent("shop", { type: "blob-done", digest, size: 600, bytesFetched: 600, alreadyStored: false });
  model.fetchEnded("shop");
  model.transition("shop", "r/shop:1", "running");
  // What the engine reports: every container carries an exit code, 0 when it never exited.
  model.setServices("shop", [
    { name: "web", state: "running", exitCode: 0, restartCount: 0 },
    { name: "worker", state: "restarting", exitCode: 137, restartCount: 3 },
    { name: "once", state: "exited", exitCode: 2, restartCount: 0 },
  ]);
  const running = await shop();
  assert.equal(running.progress, undefined, "no 100 % and 0 B/s left behind once the fetch is over");
  assert.deepEqual(running.blobs, []);
  assert.deepEqual(running.services.map((service) => [service.name, service.exitCode]), [
    ["web", undefined],
    ["worker", undefined],
    ["once", 2],
  ]);
  model.setApp("shop", "r/shop:1", { services: [{ name: "web", state: "created", exitCode: 0 }] });
  assert.equal((await shop()).services[0].exitCode, undefined, "setApp's services are shown the same way");
});
