import assert from "node:assert/strict";
import {
  formatDuration,
  formatProgressLine,
  type ProgressSnapshot,
  PullProgress,
  SPEED_WINDOW_MS,
} from "../../src/cli/progress.ts";

const MiB = 1024 * 1024;
const A = `sha256:${"a".repeat(64)}`;
const B = `sha256:${"b".repeat(64)}`;

const snapshot = (fields: Partial<ProgressSnapshot>): ProgressSnapshot => ({
  bytesDone: 0,
  bytesTotal: 0,
  blobsDone: 0,
  blobsTotal: 0,
  bytesPerSecond: 0,
  finished: false,
  ...fields,
});

Deno.test("the line shows bytes done of the total, percent, speed, time left and blobs", () => {
  const line = formatProgressLine(
    snapshot({
      bytesDone: 12 * MiB,
      bytesTotal: 41 * MiB,
      blobsDone: 2,
      blobsTotal: 4,
      bytesPerSecond: 4 * MiB,
    }),
    120,
  );
  assert.equal(line, "[#####...............]  12.0 MiB / 41.0 MiB   29%  4.0 MiB/s  ETA 0:07  blobs 2/4");
});

Deno.test("a narrow terminal drops the estimate, then the bar, and never gets a line that wraps", () => {
  const state = snapshot({
    bytesDone: 12 * MiB,
    bytesTotal: 41 * MiB,
    blobsDone: 2,
    blobsTotal: 4,
    bytesPerSecond: 4 * MiB,
  });
  assert.equal(
    formatProgressLine(state, 80),
    "[#####...............]  12.0 MiB / 41.0 MiB   29%  4.0 MiB/s  blobs 2/4",
  );
  assert.equal(formatProgressLine(state, 60), "12.0 MiB / 41.0 MiB   29%  4.0 MiB/s  ETA 0:07  blobs 2/4");
  assert.equal(formatProgressLine(state, 50), "12.0 MiB / 41.0 MiB   29%  4.0 MiB/s  blobs 2/4");
  for (const columns of [1, 10, 30, 49]) {
    assert.ok(formatProgressLine(state, columns).length <= Math.max(0, columns - 1), `${columns} columns`);
  }
});

Deno.test("100% only when done; no estimate without speed; an empty total is not NaN", () => {
  const almost = formatProgressLine(snapshot({ bytesDone: 999, bytesTotal: 1000, blobsTotal: 1 }), 100);
  assert.match(almost, / 99% {2}0 B\/s {2}blobs 0\/1$/);
  assert.doesNotMatch(almost, /ETA/);
  const done = formatProgressLine(
    snapshot({ bytesDone: 1000, bytesTotal: 1000, blobsDone: 1, blobsTotal: 1, finished: true }),
    100,
  );
  assert.match(done, /^\[#{20}\] {2}1000 B \/ 1000 B {2}100%/);
  assert.doesNotMatch(formatProgressLine(snapshot({}), 100), /NaN/);
});

Deno.test("durations read as m:ss or h:mm:ss", () => {
  assert.equal(formatDuration(7.4), "0:07");
  assert.equal(formatDuration(65), "1:05");
  assert.equal(formatDuration(3723), "1:02:03");
});

Deno.test("counting: stored and resumed bytes count as done, only received bytes count for speed", () => {
  const progress = new PullProgress();
  progress.update({ type: "resolved", name: "r/a:1", digest: A, blobs: 2, bytesTotal: 10 * MiB + 500 }, 0);
  progress.update(
    { type: "blob-done", digest: A, size: 2 * MiB, bytesFetched: 0, alreadyStored: true },
    0,
  );
  // Resumed at 4 MiB: those bytes are held already, not received now.
  progress.update({ type: "blob-start", digest: B, size: 8 * MiB, offset: 4 * MiB }, 0);
  progress.update({ type: "blob-progress", digest: B, bytesDone: 5 * MiB, size: 8 * MiB }, 500);
  progress.update({ type: "blob-progress", digest: B, bytesDone: 6 * MiB, size: 8 * MiB }, 1000);
  let state = progress.snapshot(1000);
  assert.equal(state.bytesDone, 8 * MiB);
  assert.equal(state.bytesTotal, 10 * MiB + 500);
  assert.equal(state.blobsDone, 1);
  assert.equal(state.blobsTotal, 2);
  assert.equal(state.bytesPerSecond, 2 * MiB);
  assert.equal(state.finished, false);

  // A verification failure starts the blob again from 0: its bytes are given back.
  progress.update({ type: "blob-retry", digest: B, offset: 0, error: "digest mismatch" }, 1000);
  assert.equal(progress.snapshot(1000).bytesDone, 2 * MiB);

  progress.update({
    type: "blob-done",
    digest: B,
    size: 8 * MiB,
    bytesFetched: 8 * MiB,
    alreadyStored: false,
  }, 1500);
  progress.update({ type: "ref-done", name: "r/a:1", digest: A }, 1500);
  state = progress.snapshot(1500);
  assert.equal(state.finished, true);
  assert.equal(state.bytesDone, state.bytesTotal, "manifests and shared blobs are done when the ref is");
  assert.equal(state.blobsDone, 2);
});

Deno.test("speed falls to zero when nothing arrives for the whole window", () => {
  const progress = new PullProgress();
  progress.update({ type: "resolved", name: "r/a:1", digest: A, blobs: 1, bytesTotal: 10 * MiB }, 0);
  progress.update({ type: "blob-start", digest: A, size: 10 * MiB, offset: 0 }, 0);
  progress.update({ type: "blob-progress", digest: A, bytesDone: MiB, size: 10 * MiB }, 1000);
  assert.ok(progress.snapshot(1000).bytesPerSecond > 0);
  assert.equal(progress.snapshot(1000 + SPEED_WINDOW_MS + 1).bytesPerSecond, 0);
});

Deno.test("totals grow as an app's images resolve", () => {
  const progress = new PullProgress();
  progress.update({ type: "resolved", name: "r/app:1", digest: A, blobs: 2, bytesTotal: 3000 }, 0);
  progress.update({ type: "resolved", name: "r/img:1", digest: B, blobs: 3, bytesTotal: 7000 }, 0);
  const state = progress.snapshot(0);
  assert.equal(state.bytesTotal, 10000);
  assert.equal(state.blobsTotal, 5);
});

Deno.test("with a plan the totals are exact from the start: a blob shared by two references counts once", () => {
  const progress = new PullProgress();
  const C = `sha256:${"c".repeat(64)}`;
  // Two references sharing blob A; B is half downloaded already (a partial ingest), C is stored.
  const blobs = [{ digest: A, size: 4 * MiB, bytesDone: 0 }, { digest: B, size: 2 * MiB, bytesDone: MiB }];
  progress.update({
    type: "planned",
    name: "one",
    digest: A,
    bytesTotal: 6 * MiB + 100,
    bytesDone: MiB + 100,
    blobsTotal: 2,
    blobsDone: 0,
    blobs,
  }, 0);
  progress.update({
    type: "planned",
    name: "two",
    digest: B,
    bytesTotal: 5 * MiB + 50,
    bytesDone: MiB + 50,
    blobsTotal: 2,
    blobsDone: 1,
    blobs: [blobs[0], { digest: C, size: MiB, bytesDone: MiB }],
  }, 0);
  let state = progress.snapshot(10);
  assert.equal(state.bytesTotal, 7 * MiB + 150);
  assert.equal(state.bytesDone, 2 * MiB + 150);
  assert.deepEqual([state.blobsDone, state.blobsTotal], [1, 3]);
  progress.update({ type: "blob-progress", digest: A, bytesDone: 3 * MiB, size: 4 * MiB }, 20);
  progress.update(
    { type: "blob-done", digest: B, size: 2 * MiB, bytesFetched: MiB, alreadyStored: false },
    30,
  );
  state = progress.snapshot(40);
  assert.equal(state.bytesTotal, 7 * MiB + 150, "the total stays fixed");
  assert.equal(state.bytesDone, 6 * MiB + 150);
  assert.deepEqual([state.blobsDone, state.blobsTotal], [2, 3]);
});
