/** /metrics output: valid text format, the expected series, escaped label values. */
import assert from "node:assert/strict";
import { escapeLabelValue, renderMetrics } from "../../src/status/metrics.ts";
import { APP_STATES } from "../../src/agent/status_schema.ts";
import { parseExposition } from "./metrics_check.ts";
import { sampleCounters, sampleStatus } from "./fixture.ts";

function value(samples: ReturnType<typeof parseExposition>["samples"], name: string, labels = {}): number {
  const found = samples.filter((sample) =>
    sample.name === name && Object.entries(labels).every(([key, v]) => sample.labels[key] === v)
  );
  assert.equal(found.length, 1, `${name} ${JSON.stringify(labels)}: ${found.length} samples`);
  return found[0].value;
}

Deno.test("metrics: every series prefixed berth_, with HELP/TYPE, and the values of the document", () => {
  const { samples, types } = parseExposition(renderMetrics(sampleStatus(), sampleCounters()));
  for (const sample of samples) assert.match(sample.name, /^berth_/);
  for (const name of types.keys()) assert.match(name, /^berth_/);
  assert.equal(types.get("berth_fetched_bytes_total"), "counter");
  assert.equal(value(samples, "berth_fetched_bytes_total"), 229_932_960);
  assert.equal(value(samples, "berth_fetched_blobs_total"), 48);
  assert.equal(value(samples, "berth_errors_total", { reason: "registry_unreachable" }), 3);
  assert.equal(value(samples, "berth_errors_total", { reason: "stalled" }), 1);
  assert.equal(types.get("berth_phase_duration_seconds"), "summary");
  assert.equal(value(samples, "berth_phase_duration_seconds_sum", { phase: "fetch" }), 183.2);
  assert.equal(value(samples, "berth_phase_duration_seconds_count", { phase: "install" }), 2);
  assert.equal(value(samples, "berth_store_used_bytes"), 187_432_960);
  assert.equal(value(samples, "berth_store_blobs"), 41);
  assert.equal(value(samples, "berth_store_reclaimable_bytes"), 12_582_912);
  assert.equal(value(samples, "berth_store_free_bytes"), 3_221_225_472);
  assert.equal(value(samples, "berth_engine_reachable"), 1);
  assert.equal(value(samples, "berth_can_restore_offline"), 1);
  assert.equal(value(samples, "berth_agent_start_time_seconds"), Date.parse("2025-03-01T08:00:00Z") / 1000);
  assert.equal(value(samples, "berth_agent_info", { version: "0.1.0" }), 1);
  // one gauge per app and state, 1 for the current one
  for (const state of APP_STATES) {
    assert.equal(value(samples, "berth_app_state", { app: "shop", state }), state === "updating" ? 1 : 0);
    assert.equal(value(samples, "berth_app_state", { app: "sensor", state }), state === "running" ? 1 : 0);
  }
  assert.equal(value(samples, "berth_app_progress_done_bytes", { app: "shop" }), 42_500_000);
  assert.equal(value(samples, "berth_app_progress_total_bytes", { app: "shop" }), 100_000_000);
  assert.equal(
    samples.filter((sample) => sample.labels.app === "sensor" && /progress/.test(sample.name)).length,
    0,
  );
});

Deno.test("metrics: a fresh agent (no apps, no errors yet) still declares every family", () => {
  const status = { ...sampleStatus(), apps: [], lastError: undefined };
  status.engine = { reachable: false, error: "connection refused" };
  const text = renderMetrics(status, {
    bytesFetched: 0,
    blobsFetched: 0,
    errorsByReason: {},
    reconciles: 0,
    durations: {},
  });
  const { samples, types } = parseExposition(text);
  for (const family of ["berth_errors_total", "berth_app_state", "berth_phase_duration_seconds"]) {
    assert.ok(types.has(family), family);
  }
  assert.equal(value(samples, "berth_engine_reachable"), 0);
});

Deno.test("metrics: label values with quotes, backslashes and line feeds are escaped and read back", () => {
  assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  const status = sampleStatus();
  const awkward = 'we"ird\\app\nname';
  status.apps[0].name = awkward;
  const counters = sampleCounters();
  counters.errorsByReason = { 'bad"reason': 1 };
  const { samples } = parseExposition(renderMetrics(status, counters));
  assert.equal(value(samples, "berth_app_state", { app: awkward, state: "updating" }), 1);
  assert.equal(value(samples, "berth_errors_total", { reason: 'bad"reason' }), 1);
});

Deno.test("metrics checker rejects what a scraper would", () => {
  const ok = "# HELP berth_x X.\n# TYPE berth_x gauge\nberth_x 1\n";
  parseExposition(ok);
  const bad = [
    "berth_x 1\n", // no HELP/TYPE
    "# HELP berth_x X.\n# TYPE berth_x gauge\nberth_x one\n",
    '# HELP berth_x X.\n# TYPE berth_x gauge\nberth_x{a="b"c"} 1\n',
    '# HELP berth_x X.\n# TYPE berth_x gauge\nberth_x{a="b\\t"} 1\n',
    "# HELP berth_x X.\n# TYPE berth_x gauge\nberth_x_sum 1\n",
    "# HELP berth_x X.\n# TYPE berth_x gauge\nberth_x 1",
  ];
  for (const text of bad) assert.throws(() => parseExposition(text), Error, JSON.stringify(text));
});

Deno.test("metrics: free bytes not known (a filesystem that reports no capacity) is declared with no sample", () => {
  const status = sampleStatus();
  delete status.store.freeBytes;
  const { samples, types } = parseExposition(renderMetrics(status, sampleCounters()));
  assert.equal(types.get("berth_store_free_bytes"), "gauge");
  assert.deepEqual(samples.filter((sample) => sample.name === "berth_store_free_bytes"), []);
});
