/**
 * `berth status`: asks a running agent over its status endpoint (TCP or unix socket) and prints what it is
 * doing for a person, or the raw document with --json. It reads nothing from the store, so it works while
 * the agent holds it.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { type AppStatus, type Status, STATUS_SCHEMA_VERSION, StatusSchema } from "../agent/status_schema.ts";
import { connectHost, formatListen, parseListen } from "../util/listen_address.ts";
import { UNIX_SOCKET_ORIGIN, unixSocketClient } from "../util/unix_http.ts";
import { DEFAULT_STATUS_LISTEN } from "../config/defaults.ts";
import { type Context, formatBytes, shortDigest } from "./context.ts";

/** How long `berth status` waits for an agent; it answers from memory, so this is generous. */
const STATUS_TIMEOUT_MS = 10_000;

/** Where the agent's status endpoint is and the token it wants. */
export interface StatusTarget {
  listen: string;
  token?: string;
}

/**
 * Fetches and validates `/status` from the agent at `listen` (host:port, [v6]:port or a unix socket path).
 * Throws BerthError: `agent_unavailable` when nothing answers, `auth_failed` on 401, `invalid_input` for a
 * document this berth cannot read.
 */
export async function fetchAgentStatus(listen: string, token?: string): Promise<Status> {
  const address = parseListen(listen);
  const where = formatListen(address);
  let client: Deno.HttpClient | undefined;
  let url: string;
  if (address.transport === "unix") {
    client = unixSocketClient(address.path);
    url = `${UNIX_SOCKET_ORIGIN}/status`;
  } else {
    const host = connectHost(address);
    url = `http://${host.includes(":") ? `[${host}]` : host}:${address.port}/status`;
  }
  try {
    let response: Response;
    try {
      response = await fetch(url, {
        client,
        headers: token ? { Authorization: `Bearer ${token}` } : {},
        signal: AbortSignal.timeout(STATUS_TIMEOUT_MS),
      });
    } catch (error) {
      throw new BerthError(
        "agent_unavailable",
        `no berth agent answers at ${where} (${connectionProblem(error)}); is \`berth agent\` running?`,
        { cause: error, transient: true },
      );
    }
    if (response.status === 401) {
      await response.body?.cancel();
      throw new BerthError(
        "auth_failed",
        token
          ? `the berth agent at ${where} refused the status token; use the agent's status.token`
          : `the berth agent at ${where} needs its status token (status.token in the config)`,
      );
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new BerthError(
        "agent_unavailable",
        `the berth agent at ${where} answered HTTP ${response.status}`,
        {
          transient: response.status >= 500,
        },
      );
    }
    const document = await response.json().catch((error) => {
      throw new BerthError(
        "invalid_input",
        `the answer at ${where}/status is not JSON: ${errorMessage(error)}`,
      );
    });
    const parsed = StatusSchema.safeParse(document);
    if (!parsed.success) {
      const version = (document as { schemaVersion?: unknown })?.schemaVersion;
      const issue = parsed.error.issues[0];
      throw new BerthError(
        "invalid_input",
        version !== STATUS_SCHEMA_VERSION
          ? `the berth agent at ${where} speaks status schema ${version}; this berth reads ${STATUS_SCHEMA_VERSION} (use the agent's own berth, or --json)`
          : `the status from ${where} does not match schema ${STATUS_SCHEMA_VERSION}: ${
            issue.path.join(".") || "(document)"
          }: ${issue.message}`,
      );
    }
    return parsed.data;
  } finally {
    client?.close();
  }
}

/** "connection refused", "no such socket", "timed out", from fetch's wrapped error. */
function connectionProblem(error: unknown): string {
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return `no answer within ${STATUS_TIMEOUT_MS / 1000} s`;
  }
  const message = errorMessage(error);
  if (/refused/i.test(message)) return "connection refused";
  if (/No such file|not found|ENOENT/i.test(message)) return "no such socket";
  if (/permission denied/i.test(message)) return "permission denied";
  return message;
}

/** "45s", "3m 20s", "5m", "2h 5m", "4d 1h". */
function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const two = (big: number, bigUnit: string, small: number, smallUnit: string) =>
    small ? `${big}${bigUnit} ${small}${smallUnit}` : `${big}${bigUnit}`;
  if (s < 60) return `${s}s`;
  if (s < 3600) return two(Math.floor(s / 60), "m", s % 60, "s");
  if (s < 86400) return two(Math.floor(s / 3600), "h", Math.floor(s % 3600 / 60), "m");
  return two(Math.floor(s / 86400), "d", Math.floor(s % 86400 / 3600), "h");
}

function ago(isoTime: string, now: number): string {
  return `${formatDuration((now - Date.parse(isoTime)) / 1000)} ago`;
}

/** The lines `berth status` prints for one app. */
function appLines(app: AppStatus): string[] {
  const version = app.currentDigest ? shortDigest(app.currentDigest) : "not installed";
  const lines = [`  ${app.name}  ${app.state}  ${version}  (${app.ref})`];
  if (app.desiredDigest && app.desiredDigest !== app.currentDigest) {
    lines.push(`    desired ${shortDigest(app.desiredDigest)}`);
  }
  if (app.progress) {
    const { bytesDone, bytesTotal, blobsDone, blobsTotal, bytesPerSecond } = app.progress;
    const percent = bytesTotal > 0 ? Math.floor(bytesDone / bytesTotal * 100) : 100;
    lines.push(
      `    ${percent}%  ${formatBytes(bytesDone)} of ${
        formatBytes(bytesTotal)
      }, ${blobsDone}/${blobsTotal} blobs, ${formatBytes(bytesPerSecond)}/s`,
    );
  }
  if (app.reason) {
    const details = Object.entries(app.reason.details ?? {}).map(([key, value]) => `${key}=${value}`).join(
      " ",
    );
    lines.push(`    reason: ${app.reason.code}: ${app.reason.message}${details ? ` (${details})` : ""}`);
  }
  for (const service of app.services) {
    let line = `    service ${service.name}: ${service.state}`;
    if (service.health) line += ` (${service.health})`;
    if (service.state === "exited" && service.exitCode !== undefined) line += `, exit ${service.exitCode}`;
    if (service.restartCount) line += `, ${service.restartCount} restarts`;
    lines.push(line);
  }
  return lines;
}

/** The whole report for a person; `now` is a parameter so tests get fixed output. */
export function formatStatus(status: Status, now = Date.now()): string[] {
  const { agent, engine, store } = status;
  const lines = [
    `agent   berth ${agent.version}, ${agent.state}, up ${
      formatDuration((now - Date.parse(agent.startedAt)) / 1000)
    }` +
    (agent.lastReconcileAt ? `, last reconcile ${ago(agent.lastReconcileAt, now)}` : "") +
    `, polls every ${formatDuration(agent.pollIntervalSeconds)}`,
    `engine  ${
      engine.reachable
        ? `docker ${engine.version ?? "?"}${engine.apiVersion ? ` (API ${engine.apiVersion})` : ""}`
        : `unreachable${engine.error ? `: ${engine.error}` : ""}`
    }`,
    `store   ${store.path}: ${formatBytes(store.bytesUsed)} in ${store.blobs} blobs, ${
      formatBytes(store.reclaimableBytes)
    } reclaimable, ${
      store.freeBytes === undefined ? "free space unknown" : `${formatBytes(store.freeBytes)} free`
    }`,
    `offline restore: ${status.canRestoreOffline ? "yes" : "no"}`,
  ];
  for (const host of status.registryHosts) {
    const role = host.mirror ? `mirror of ${host.registry}` : "registry";
    const backoff = host.backoffUntil ? `, skipped until ${host.backoffUntil.slice(11, 19)}Z` : "";
    lines.push(
      `host    ${host.host} (${role}): ${
        formatBytes(host.bytesServed)
      } served, ${host.errors} errors${backoff}`,
    );
  }
  if (status.apps.length === 0) lines.push("apps: none configured");
  else {
    lines.push("apps:");
    for (const app of status.apps) lines.push(...appLines(app));
  }
  if (status.lastError) {
    const { app, code, message, at } = status.lastError;
    lines.push(`last error: ${app ? `${app}: ` : ""}${code}: ${message} (${ago(at, now)})`);
  }
  return lines;
}

/**
 * Where `berth status` looks: `--listen`, else BERTH_STATUS_LISTEN, else the config's status.listen (which
 * has the default); the token from BERTH_STATUS_TOKEN, else the config's status.token (not a flag: command
 * lines are visible to every user of the device).
 */
export function statusTargetFrom(context: Context): StatusTarget {
  const flag = context.args.options.listen;
  return {
    listen: (typeof flag === "string" ? flag : undefined) ?? Deno.env.get("BERTH_STATUS_LISTEN") ??
      context.config.status.listen ?? DEFAULT_STATUS_LISTEN,
    token: Deno.env.get("BERTH_STATUS_TOKEN") || context.config.status.token || undefined,
  };
}

/** `berth status [--listen ADDR] [--json]`: exit 0 when an agent answered, 1 otherwise. */
export async function statusCommand(context: Context, target = statusTargetFrom(context)): Promise<number> {
  const status = await fetchAgentStatus(target.listen, target.token);
  if (context.json) context.emit(status);
  else for (const line of formatStatus(status)) context.say(line);
  return 0;
}
