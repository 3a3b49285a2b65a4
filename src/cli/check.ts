/**
 * `berth check REF...`: the storage pre-flight on its own — would these references fit? It plans the pull
 * (for an app this stores its own blobs, the bundle naming the images, once their declared sizes fit) and
 * checks the store's filesystem and, when the engine answers, its data root's, then stops before any layer
 * is downloaded. A filesystem that reports no capacity is reported as not checked, not as a failure.
 */
import { readAppArtifact } from "../app/artifact.ts";
import { errorMessage, UsageError } from "../util/errors.ts";
import { parseReference } from "../oci/reference.ts";
import { RegistryClient } from "../registry/client.ts";
import { Store } from "../store/store.ts";
import { pull, type PullPlan } from "../fetch/pull.ts";
import { Engine } from "../docker/engine.ts";
import { checkSpace, insufficientStorage, type SpaceReport } from "../fetch/preflight.ts";
import { type Context, formatBytes } from "./context.ts";

/** Thrown by the pre-flight hook to stop the pull once the plan is checked. */
class Planned extends Error {
  constructor(readonly report: SpaceReport) {
    super("planned");
  }
}

/**
 * The pre-flight `check` and `pull` both run: the store's filesystem, and the engine's data root when the
 * engine answers — when it does not, the store alone is checked and the report says why. Never throws for
 * lack of space.
 */
export async function checkPlan(context: Context, store: Store, plan: PullPlan): Promise<SpaceReport> {
  let engine: Engine | undefined;
  let engineDataRoot: string | undefined;
  let engineSkipped: string | undefined;
  // An app's own blobs (a partial plan) are never loaded into the engine: only the store is asked.
  if (plan.partial) engineSkipped = "engine not checked: an app's own blobs only";
  else {
    try {
      engine = await Engine.connect(context.dockerHost);
      engineDataRoot = (await engine.info()).DockerRootDir;
    } catch (error) {
      engineSkipped = `engine not checked (${context.dockerHost}): ${errorMessage(error)}`;
    }
  }
  try {
    const report = await checkSpace(store, plan, {
      policy: context.config.storage,
      engine: engineDataRoot ? engine : undefined,
      engineDataRoot,
      arch: context.platform.architecture,
    });
    return engineSkipped ? { ...report, engineSkipped } : report;
  } finally {
    engine?.close();
  }
}

/**
 * `pull`'s pre-flight hook: throws `insufficient_storage` when the plan does not fit, else returns the
 * report (whose `storeSkipped` the caller shows).
 */
export async function refuseIfNoRoom(context: Context, store: Store, plan: PullPlan): Promise<SpaceReport> {
  const report = await checkPlan(context, store, plan);
  if (!report.fits) {
    throw insufficientStorage(plan.refs.map((ref) => ref.name).join(", "), report, context.config.storage);
  }
  return report;
}

/** `berth check REF...`: the pull's plan and pre-flight, fetching no layer; exit 1 when it does not fit. */
export async function checkCommand(context: Context): Promise<number> {
  if (context.args.positional.length === 0) throw new UsageError("check needs at least one reference");
  const refs = context.args.positional.map(parseReference);
  const store = await Store.open(context.storePath, { write: true, command: "check" });
  const client = new RegistryClient(context.registry);
  const policy = context.config.storage;
  try {
    let report: SpaceReport | undefined;
    try {
      await pull(client, store, refs, {
        readArtifact: readAppArtifact,
        platform: context.platform,
        parallel: context.parallel,
        limits: context.config.limits,
        preflight: async (plan) => {
          const report = await checkPlan(context, store, plan);
          // An app's own blobs that fit are fetched, to learn its images; what does not fit, is not.
          if (!plan.partial || !report.fits) throw new Planned(report);
        },
      });
    } catch (error) {
      if (!(error instanceof Planned)) throw error;
      report = error.report;
    }
    if (!report) return 0; // unreachable: the hook always throws
    if (context.json) context.emit({ ...report, policy });
    else {
      for (const check of report.checks) {
        context.say(
          `${check.what} (${check.path}, on ${check.mountedOn}): needs ${formatBytes(check.needBytes)}, ` +
            `${formatBytes(check.freeBytes)} free, ${formatBytes(Math.max(0, check.freeAfter))} free after ` +
            `(${check.usedPercentAfter.toFixed(1)}% used): ${check.fits ? "fits" : "does NOT fit"}`,
        );
      }
      if (report.storeSkipped) context.say(report.storeSkipped);
      if (report.engineSkipped) context.say(report.engineSkipped);
    }
    if (!report.fits) {
      context.note(
        `berth: ${insufficientStorage(context.args.positional.join(", "), report, policy).message}`,
      );
      return 1;
    }
    return 0;
  } finally {
    await client.close();
    store.close();
  }
}
