/** The agent's status model: progress from pull events, stall detection, health, the schema. */
import assert from "node:assert/strict";
import { StatusModel } from "../../src/agent/model.ts";
import { StatusSchema } from "../../src/agent/status_schema.ts";
import { createLogger } from "../../src/util/log.ts";

const A = `sha256:${"a".repeat(64)}`;
const B = `sha256:${"b".repeat(64)}`;
const lines: string[] = [];
/** The test's clock (ms since the epoch): tests step it instead of waiting. */
let clock = Date.parse("2026-01-01T00:00:00Z");
const model = (stallSeconds = 60, pollIntervalSeconds = 300) =>
  new StatusModel({
    version: "test",
    storePath: "/store",
    pollIntervalSeconds,
    stallSeconds,
    log: createLogger("debug", (line) => lines.push(line)),
    now: () => clock,
  });

/** "shop" starts fetching one 600-byte blob from byte 0. */
function startOneBlobFetch(status: StatusModel): void {
  status.transition("shop", "r/shop:1", "fetching");
  status.fetchEvent("shop", {
    type: "planned",
    name: "r/shop@x",
    digest: A,
    bytesTotal: 600,
    bytesDone: 0,
    blobsTotal: 1,
    blobsDone: 0,
    blobs: [{ digest: A, size: 600, bytesDone: 0 }],
  });
  status.fetchEvent("shop", { type: "blob-start", digest: A, size: 600, offset: 0 });
}

Deno.test("progress: fixed total, stored and partial blobs count as done, never goes back", () => {
  const status = model();
  status.transition("shop", "r/shop:1", "fetching");
  status.fetchStarted("shop");
  status.fetchEvent("shop", {
    type: "planned",
    name: "r/shop@x",
    digest: A,
    bytesTotal: 1100,
    bytesDone: 400,
    blobsTotal: 2,
    blobsDone: 0,
    blobs: [{ digest: A, size: 600, bytesDone: 300 }, { digest: B, size: 400, bytesDone: 0 }],
  });
  const progress = () => status.snapshot().apps[0].progress!;
  assert.deepEqual([progress().bytesTotal, progress().bytesDone], [1100, 400]);
  status.fetchEvent("shop", { type: "blob-start", digest: A, size: 600, offset: 300 });
  status.fetchEvent("shop", { type: "blob-progress", digest: A, bytesDone: 500, size: 600 });
  assert.equal(progress().bytesDone, 600);
  assert.equal(status.snapshot().apps[0].blobs[0].bytesDone, 500);
  // A verification retry starts the blob again from 0: the progress shown does not go back.
  status.fetchEvent("shop", { type: "blob-retry", digest: A, offset: 0, error: "digest mismatch" });
  status.fetchEvent("shop", { type: "blob-progress", digest: A, bytesDone: 100, size: 600 });
  assert.equal(progress().bytesDone, 600);
  status.fetchEvent("shop", {
    type: "blob-done",
    digest: A,
    size: 600,
    bytesFetched: 900,
    alreadyStored: false,
  });
  status.fetchEvent("shop", {
    type: "blob-done",
    digest: B,
    size: 400,
    bytesFetched: 400,
    alreadyStored: false,
  });
  assert.deepEqual([progress().bytesDone, progress().blobsDone], [1100, 2]);
  assert.equal(status.counters().bytesFetched, 1300);
  assert.ok(StatusSchema.safeParse(status.snapshot()).success);
});

Deno.test("a fetch with no progress for the stall timeout is stalled, and fetching again when bytes flow", () => {
  const status = model(60);
  startOneBlobFetch(status);
  clock += 60_000;
  status.checkStalls();
  assert.equal(status.snapshot().apps[0].state, "fetching", "not stalled at the timeout itself");
  clock += 1;
  status.checkStalls();
  const app = status.snapshot().apps[0];
  assert.equal(app.state, "stalled");
  assert.equal(app.reason?.code, "stalled");
  assert.equal(app.blobs[0].state, "stalled");
  status.fetchEvent("shop", { type: "blob-progress", digest: A, bytesDone: 10, size: 600 });
  assert.equal(status.snapshot().apps[0].state, "fetching");
  assert.ok(lines.some((line) => /state=stalled reason=stalled/.test(line)), "the stall is logged");
});

Deno.test("health: ok after a recent reconcile; not ok when stopping", () => {
  const status = model(60, 300);
  assert.deepEqual(status.health(), { ok: true });
  status.setLastReconcile(true);
  assert.deepEqual(status.health(), { ok: true });
  status.setAgentState("stopping");
  assert.equal(status.health().ok, false);
});

Deno.test("health: not ok once no reconcile has finished for two poll intervals, unless bytes still flow", () => {
  const status = model(60, 300);
  clock += 600_000;
  assert.deepEqual(status.health(), { ok: true });
  clock += 1_000;
  assert.deepEqual(status.health(), {
    ok: false,
    reason: "no reconcile has finished in the 601 s since the start",
  });
  status.setLastReconcile(true);
  assert.deepEqual(status.health(), { ok: true });
  clock += 601_000;
  assert.match(status.health().reason ?? "", /^the last reconcile finished 601 s ago \(limit 600 s\)$/);
  // A long download outlasts two intervals: it counts as alive while bytes arrive within the stall timeout.
  startOneBlobFetch(status);
  assert.deepEqual(status.health(), { ok: true });
  clock += 50_000;
  status.fetchEvent("shop", { type: "blob-progress", digest: A, bytesDone: 10, size: 600 });
  clock += 60_000;
  assert.deepEqual(status.health(), { ok: true }, "bytes came within the stall timeout");
  clock += 1_000;
  assert.equal(status.health().ok, false);
});

Deno.test("health in a phase: alive while it makes progress within its timeout, else 503 naming it", () => {
  const status = model(60, 2); // two-second polls: a reconcile older than 4 s counts between phases
  status.setLastReconcile(true);
  const outer = status.beginPhase("install", 5_000);
  assert.equal(outer, undefined);
  clock += 4_000;
  assert.deepEqual(status.health(), { ok: true }, "4 s into the install, older than two polls");
  status.phaseProgress(); // image bytes streamed to the engine
  clock += 4_000;
  assert.deepEqual(status.health(), { ok: true }, "4 s after the last progress");
  clock += 2_000;
  assert.deepEqual(status.health(), {
    ok: false,
    reason: "the agent made no progress in its install for 6 s (limit 5 s)",
  });
  // A nested phase has its own timeout; ending it makes the outer one current again, as of now.
  const previous = status.beginPhase("compose", 20_000);
  clock += 15_000;
  assert.deepEqual(status.health(), { ok: true });
  status.endPhase(previous);
  assert.deepEqual(status.health(), { ok: true }, "the install is back in hand, its clock restarted");
  clock += 6_000;
  assert.match(status.health().reason ?? "", /no progress in its install for 6 s/);
  status.endPhase();
  assert.match(status.health().reason ?? "", /^the last reconcile finished \d+ s ago \(limit 4 s\)$/);
});

Deno.test("errors are counted by reason and kept as the last error; a state change logs one line", () => {
  const status = model();
  const before = lines.length;
  status.transition("shop", "r/shop:1", "blocked", {
    code: "insufficient_storage",
    message: "not enough space",
    details: { needBytes: 10, freeBytes: 1 },
    at: new Date().toISOString(),
  });
  status.transition("shop", "r/shop:1", "blocked", {
    code: "insufficient_storage",
    message: "not enough space",
    at: new Date().toISOString(),
  });
  assert.equal(lines.length - before, 1, "the same state and reason again logs nothing");
  assert.equal(status.counters().errorsByReason.insufficient_storage, 1);
  assert.equal(status.snapshot().lastError?.app, "shop");
});
