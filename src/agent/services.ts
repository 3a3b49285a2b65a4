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
/** A service must look up on consecutive checks this long apart before the version counts as up. */
const START_STABLE_MS = 3_000;

interface ServiceCheck {
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

/** Why this service does not count as up, or undefined when it does. */
function notUp(service: ServiceStatus): string | undefined {
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
 * Waits until every service is up and stays up (same restart counts) for a few seconds, or fails with
 * `compose_failed` naming the first service that is not, once `timeoutMs` has passed. A container that
 * exited with no restart policy will not come back, so that fails at once.
 */
export async function waitUntilUp(
  engine: Engine,
  project: string,
  names: string[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<ServiceStatus[]> {
  const deadline = Date.now() + timeoutMs;
  let upSince: number | undefined;
  let restartsWhenUp = "";
  for (;;) {
    const checks = await checkServices(engine, project, names);
    const statuses = checks.map((check) => check.status);
    const problems = statuses.map(notUp).filter((problem): problem is string => problem !== undefined);
    const restarts = statuses.map((service) => service.restartCount ?? 0).join(",");
    if (problems.length === 0) {
      if (upSince === undefined || restarts !== restartsWhenUp) {
        upSince = Date.now();
        restartsWhenUp = restarts;
      } else if (Date.now() - upSince >= START_STABLE_MS) {
        return statuses;
      }
    } else {
      upSince = undefined;
      const final = checks.find((check) =>
        !check.restarts && (check.status.state === "exited" || check.status.state === "dead")
      )?.status;
      if (final || Date.now() >= deadline) {
        throw new BerthError(
          "compose_failed",
          `app ${project} did not come up${final ? "" : ` within ${Math.round(timeoutMs / 1000)} s`}: ${
            final ? notUp(final) : problems.join("; ")
          }`,
        );
      }
    }
    await sleep(START_POLL_MS, signal);
  }
}
