/**
 * `GET /metrics`: the status document and the agent's counters in the Prometheus text exposition format
 * 0.0.4. Every family has its HELP and TYPE lines even before it has a sample, so dashboards and alerts can
 * be written against a fresh device.
 */
import { APP_STATES, type Counters, type Status } from "../agent/status_schema.ts";

/** The Content-Type of /metrics: the Prometheus text format version renderMetrics writes. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Record<string, string>;
type MetricType = "counter" | "gauge" | "summary";

/** Label values: backslash, double quote and line feed are escaped, as the format requires. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** HELP text: backslash and line feed are escaped (quotes are not). */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Go's float syntax, which Prometheus parses: NaN, +Inf, -Inf, or a JavaScript number. */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function formatLabels(labels: Labels): string {
  const pairs = Object.entries(labels).map(([name, value]) => `${name}="${escapeLabelValue(value)}"`);
  return pairs.length ? `{${pairs.join(",")}}` : "";
}

/** Collects families in order; each family's samples follow its HELP and TYPE lines. */
class Exposition {
  #lines: string[] = [];

  family(name: string, type: MetricType, help: string, samples: [string, Labels, number][] = []): void {
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    for (const [sampleName, labels, value] of samples) {
      this.#lines.push(`${sampleName}${formatLabels(labels)} ${formatValue(value)}`);
    }
  }

  /** A family of one unlabelled gauge; declared without a sample while the value is unknown. */
  gauge(name: string, help: string, value: number | undefined): void {
    this.family(name, "gauge", help, value === undefined ? [] : [[name, {}, value]]);
  }

  /** A family of one unlabelled counter. */
  counter(name: string, help: string, value: number): void {
    this.family(name, "counter", help, [[name, {}, value]]);
  }

  text(): string {
    return this.#lines.join("\n") + "\n";
  }
}

function seconds(isoTime: string): number {
  return Date.parse(isoTime) / 1000;
}

/** The whole exposition for one scrape; reads only its arguments. */
export function renderMetrics(status: Status, counters: Counters): string {
  const out = new Exposition();
  agentFamilies(out, status, counters);
  storeAndEngineFamilies(out, status);
  registryHostFamilies(out, status);
  appFamilies(out, status);
  return out.text();
}

/** The agent: version, start, reconciles, downloads, errors and phase durations. */
function agentFamilies(out: Exposition, status: Status, counters: Counters): void {
  out.family("berth_agent_info", "gauge", "The running agent's version (always 1).", [
    ["berth_agent_info", { version: status.agent.version }, 1],
  ]);
  out.gauge(
    "berth_agent_start_time_seconds",
    "When the agent started, in seconds since the epoch.",
    seconds(status.agent.startedAt),
  );
  if (status.agent.lastReconcileAt) {
    out.gauge(
      "berth_agent_last_reconcile_time_seconds",
      "When the last reconcile finished, in seconds since the epoch.",
      seconds(status.agent.lastReconcileAt),
    );
  }
  out.counter(
    "berth_reconciles_total",
    "Reconcile passes finished since the agent started.",
    counters.reconciles,
  );

  out.counter(
    "berth_fetched_bytes_total",
    "Blob bytes downloaded from registries since the agent started.",
    counters.bytesFetched,
  );
  out.counter(
    "berth_fetched_blobs_total",
    "Blobs downloaded and verified since the agent started.",
    counters.blobsFetched,
  );
  out.family(
    "berth_errors_total",
    "counter",
    "Failures since the agent started, by machine reason.",
    Object.entries(counters.errorsByReason).sort(([a], [b]) => a.localeCompare(b)).map((
      [reason, count],
    ) => ["berth_errors_total", { reason }, count]),
  );
  out.family(
    "berth_phase_duration_seconds",
    "summary",
    "Time spent per phase (fetch, install, reconcile): the sum in seconds and how many.",
    Object.entries(counters.durations).sort(([a], [b]) => a.localeCompare(b)).flatMap((
      [phase, { sum, count }],
    ): [string, Labels, number][] => [
      ["berth_phase_duration_seconds_sum", { phase }, sum],
      ["berth_phase_duration_seconds_count", { phase }, count],
    ]),
  );
}

/** The store's size and free space, the engine's reachability, and whether a restore needs no network. */
function storeAndEngineFamilies(out: Exposition, status: Status): void {
  out.gauge("berth_store_used_bytes", "Bytes of the blobs in the store.", status.store.bytesUsed);
  out.gauge("berth_store_blobs", "Blobs in the store.", status.store.blobs);
  out.gauge(
    "berth_store_reclaimable_bytes",
    "Bytes that pruning would free now.",
    status.store.reclaimableBytes,
  );
  out.gauge("berth_store_free_bytes", "Free bytes on the store's filesystem.", status.store.freeBytes);

  out.gauge(
    "berth_engine_reachable",
    "Whether the docker engine answers (1) or not (0).",
    status.engine.reachable ? 1 : 0,
  );
  out.gauge(
    "berth_can_restore_offline",
    "Whether every installed app could be brought back after a factory reset with no network (1) or not (0).",
    status.canRestoreOffline ? 1 : 0,
  );
}

/** Per registry host (mirrors from hosts.toml, and registries themselves): bytes, errors, back-off. */
function registryHostFamilies(out: Exposition, status: Status): void {
  const hosts = status.registryHosts.map((host) => ({
    host,
    labels: { host: host.host, registry: host.registry, mirror: host.mirror ? "true" : "false" },
  }));
  out.family(
    "berth_registry_host_served_bytes_total",
    "counter",
    "Blob and manifest bytes a registry host (a mirror or the registry itself) delivered.",
    hosts.map(({ host, labels }) => ["berth_registry_host_served_bytes_total", labels, host.bytesServed]),
  );
  out.family(
    "berth_registry_host_errors_total",
    "counter",
    "Requests and transfers that failed on a registry host (berth moved on to the next host or retried).",
    hosts.map(({ host, labels }) => ["berth_registry_host_errors_total", labels, host.errors]),
  );
  out.family(
    "berth_registry_host_backoff",
    "gauge",
    "Whether a registry host is skipped for now after a failure (1) or not (0).",
    hosts.map(({ host, labels }) => ["berth_registry_host_backoff", labels, host.backoffUntil ? 1 : 0]),
  );
}

/** Per app: its state, and the progress of a fetch while one runs. */
function appFamilies(out: Exposition, status: Status): void {
  out.family(
    "berth_app_state",
    "gauge",
    "An app's state: 1 for the state it is in, 0 for the others.",
    status.apps.flatMap((app) =>
      APP_STATES.map((state): [string, Labels, number] => [
        "berth_app_state",
        { app: app.name, state },
        app.state === state ? 1 : 0,
      ])
    ),
  );
  const withProgress = status.apps.filter((app) => app.progress);
  out.family(
    "berth_app_progress_done_bytes",
    "gauge",
    "Bytes of the app version being fetched that are stored (stored blobs count as done).",
    withProgress.map((app) => ["berth_app_progress_done_bytes", { app: app.name }, app.progress!.bytesDone]),
  );
  out.family(
    "berth_app_progress_total_bytes",
    "gauge",
    "Bytes of every blob of the app version being fetched, for this device's platform.",
    withProgress.map((
      app,
    ) => ["berth_app_progress_total_bytes", { app: app.name }, app.progress!.bytesTotal]),
  );
  out.family(
    "berth_app_progress_bytes_per_second",
    "gauge",
    "Download speed of the app version being fetched, over the last few seconds.",
    withProgress.map((app) => [
      "berth_app_progress_bytes_per_second",
      { app: app.name },
      app.progress!.bytesPerSecond,
    ]),
  );
}
