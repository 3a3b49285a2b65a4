/**
 * What an app's services are doing in the engine, and the check that decides whether a freshly started
 * version counts as up: every service's container running (and healthy when it has a health check).
 */
import { BerthError } from "../util/errors.ts";
import type { Engine } from "../docker/engine.ts";
import { sleep } from "../util/async.ts";
import type { ServiceStatus } from "./status_schema.ts";

const SERVICE_LABEL = "com.docker.compose.service";

/** How often the start check looks at the containers. */
const START_POLL_MS = 1_000;

/** A service's container as the start check sees it. */
export interface ServiceCheck {
  status: ServiceStatus;
  /** The container's restart policy: with "no", an exited container stays exited. */
  restarts: boolean;
}

async function checkServices(engine: Engine, project: string, names: string[]): Promise<ServiceCheck[]> {
  const containers = await engine.projectContainers(project);
  const checks: ServiceCheck[] = [];
  for (const name of names) {
    const container = containers.find((candidate) => candidate.Labels[SERVICE_LABEL] === name);
    const details = container && await engine.inspectContainer(container.Id);
    if (!container || !details) {
      checks.push({ status: { name, state: "missing" }, restarts: false });
      continue;
    }
    checks.push({
      status: {
        name,
        container: container.Names[0]?.replace(/^\//, ""),
        state: details.State.Status,
        exitCode: details.State.ExitCode,
        restartCount: details.RestartCount,
        health: details.State.Health?.Status,
      },
      restarts: (details.HostConfig.RestartPolicy?.Name || "no") !== "no",
    });
  }
  return checks;
}

/** Each service of the app (`names`, from its compose file) with its container's state, or "missing". */
export async function serviceStatuses(
  engine: Engine,
  project: string,
  names: string[],
): Promise<ServiceStatus[]> {
  return (await checkServices(engine, project, names)).map((check) => check.status);
}

/**
 * Whether any service of the app is down: its container not running, unless it is a one-shot (no restart
 * policy) that finished with exit 0 — starting that again would run its work again.
 */
export async function anyServiceDown(engine: Engine, project: string, names: string[]): Promise<boolean> {
  return (await checkServices(engine, project, names)).some((check) =>
    check.status.state !== "running" && !oneShotDone(check)
  );
}

/** A one-shot service (no restart policy) that did its work and exited 0. */
function oneShotDone(check: ServiceCheck): boolean {
  return check.status.state === "exited" && check.status.exitCode === 0 && !check.restarts;
}

/** Why this service does not count as up, or undefined when it does. */
function notUp(check: ServiceCheck): string | undefined {
  const service = check.status;
  // A one-shot service that finished its work is done, not down.
  if (oneShotDone(check)) return undefined;
  if (service.state !== "running") {
    return `service ${service.name} is ${service.state}${
      service.exitCode !== undefined && service.state === "exited" ? ` (exit code ${service.exitCode})` : ""
    }`;
  }
  if (service.health !== undefined && service.health !== "healthy") {
    return `service ${service.name} is ${service.health}`;
  }
  return undefined;
}

/**
 * One look at a starting version: `up` when every service counts as up (running, healthy where it has a
 * healthcheck, or a one-shot that exited 0); `final` names a service that will not come back (exited
 * non-zero, or dead, with no restart policy); `problems` says what is not up yet.
 */
export function judgeStart(checks: ServiceCheck[]): { up: boolean; final?: string; problems: string[] } {
  const problems = checks.map(notUp).filter((problem): problem is string => problem !== undefined);
  const final = checks.find((check) =>
    notUp(check) !== undefined && !check.restarts &&
    (check.status.state === "exited" || check.status.state === "dead")
  );
  return { up: problems.length === 0, ...(final ? { final: notUp(final) } : {}), problems };
}

/** How long a version has to come up, and how long it must then stay up. */
export interface StartTimes {
  /** ms for every service to count as up. */
  startMs: number;
  /** ms it must then stay up: no restart, no service going down. */
  soakMs: number;
}

/**
 * Waits until every service is up, then watches it through the soak: a restart, or a service going down,
 * fails the version at once (`compose_failed`, naming the service). A service that will not come back
 * fails at once too; otherwise the version fails once `startMs` passed without it coming up.
 */
export async function waitUntilUp(
  engine: Engine,
  project: string,
  names: string[],
  times: StartTimes,
  signal?: AbortSignal,
): Promise<ServiceStatus[]> {
  const deadline = Date.now() + times.startMs;
  const fail = (why: string) => new BerthError("compose_failed", `app ${project} did not come up: ${why}`);
  let soak: { since: number; restarts: number[] } | undefined;
  for (;;) {
    const checks = await checkServices(engine, project, names);
    const { up, final, problems } = judgeStart(checks);
    const restarts = checks.map((check) => check.status.restartCount ?? 0);
    if (final) throw fail(final);
    if (soak) {
      if (!up) throw fail(`${problems[0]} during the soak`);
      const restarted = checks.find((_, i) => restarts[i] !== soak!.restarts[i]);
      if (restarted) throw fail(`service ${restarted.status.name} restarted during the soak`);
      if (Date.now() - soak.since >= times.soakMs) return checks.map((check) => check.status);
    } else if (up) {
      soak = { since: Date.now(), restarts };
    } else if (Date.now() >= deadline) {
      throw new BerthError(
        "compose_failed",
        `app ${project} did not come up within ${Math.round(times.startMs / 1000)} s: ${problems.join("; ")}`,
      );
    }
    await sleep(START_POLL_MS, signal);
  }
}
