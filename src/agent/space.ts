/** The agent's storage pre-flight: a plan against the store's filesystem and the engine's data root. */
import type { Store } from "../store/store.ts";
import type { Engine } from "../docker/engine.ts";
import type { PullPlan } from "../fetch/pull.ts";
import { checkPlanSpace, type SpacePolicy } from "../fetch/preflight.ts";

/**
 * Refuses (insufficient_storage) a plan that would fill the store's or the engine's filesystem beyond the
 * policy. Returns why the store's filesystem was not measured (one that reports no capacity), if it was not.
 */
export async function checkSpace(
  store: Store,
  engine: Engine | undefined,
  plan: PullPlan,
  policy: SpacePolicy,
  arch: string,
): Promise<string | undefined> {
  // An app's own blobs (a partial plan) are never loaded into the engine: only the store is asked.
  const loadsInto = plan.partial ? undefined : engine;
  const dataRoot = loadsInto ? (await loadsInto.info().catch(() => undefined))?.DockerRootDir : undefined;
  const report = await checkPlanSpace(store, plan, {
    policy,
    engine: loadsInto,
    engineDataRoot: dataRoot,
    arch,
  });
  return report.storeSkipped;
}
