/**
 * The agent's start-up audit, before any registry request: what a killed agent left behind is dealt with,
 * and every installed app is brought back from the store with the same code as `berth restore`.
 *
 * 1. Compose processes a killed agent left running on the compose root are stopped (they would race the
 *    installs and starts below).
 * 2. An update a crash interrupted is taken up where agent.json says it was (verified again, or its
 *    roll-back finished: see update.ts).
 * 3. Every other installed app is re-created from the store where its project or images are missing (a
 *    factory reset), at its recorded digest, and started when recorded as running and a service is down.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import type { Store } from "../store/store.ts";
import { type AppRecord, readApps } from "../store/apps.ts";
import { stopLeftoverCompose } from "../docker/compose_leftovers.ts";
import { type Device, installedServices, restoreApps } from "../app/lifecycle.ts";
import type { StatusModel } from "./model.ts";
import { anyServiceDown } from "./services.ts";
import { readAgentState } from "./state.ts";
import { resumeUpdate, type UpdateContext } from "./update.ts";

/** What the audit needs of the agent. */
export interface AuditContext {
  store: Store;
  model: StatusModel;
  log: Logger;
  composeRoot: string;
  /** The device (engine connection, compose), connecting first when needed. */
  device: () => Promise<Device>;
  update: UpdateContext;
  /** Forgets an engine connection that failed, so the next step reconnects. */
  engineFailed: (error: unknown) => void;
}

/**
 * Runs the audit once. Each app's failure is shown on it and the audit goes on with the next, except an
 * engine that cannot be reached: that is thrown, for the caller to retry the whole audit.
 */
export async function audit(context: AuditContext, signal: AbortSignal): Promise<void> {
  const { store, model, log } = context;
  const leftovers = await stopLeftoverCompose(context.composeRoot);
  for (const leftover of leftovers) {
    log.warn(`stopped a compose process a previous agent left running on app ${leftover.project}`, {
      app: leftover.project,
      pid: leftover.pid,
    });
  }
  const device = await context.device();
  const state = await readAgentState(store);
  const records = await readApps(store);
  for (const [name, managed] of Object.entries(state.apps)) {
    model.setApp(name, managed.ref, { desiredDigest: managed.desiredDigest });
  }
  const refOf = (record: AppRecord) => state.apps[record.name]?.ref ?? record.ref;
  await restoreApps(device, {
    signal,
    takeOver: async (record) => {
      model.phaseProgress();
      model.setApp(record.name, refOf(record), {
        currentDigest: record.digest,
        previousDigests: record.previous ?? [],
      });
      const managed = state.apps[record.name];
      // An update a killed agent left half-way is verified again, or its roll-back finished.
      return managed !== undefined &&
        await resumeUpdate(context.update, device, record.name, managed, record);
    },
    needsStart: async (record) =>
      anyServiceDown(device.engine, record.name, await installedServices(device, record.name)),
    onApp: (outcome) => {
      model.phaseProgress();
      const ref = state.apps[outcome.name]?.ref ?? outcome.ref;
      if (!outcome.ok) {
        context.engineFailed(outcome.error);
        model.transition(outcome.name, ref, "failed", outcome.error);
        log.warn(`app ${outcome.name} could not be brought back: ${errorMessage(outcome.error)}`, {
          app: outcome.name,
          digest: outcome.digest,
        });
        if (outcome.error instanceof BerthError && outcome.error.reason === "engine_unavailable") {
          throw outcome.error;
        }
        return;
      }
      if (!outcome.installed.alreadyInstalled) {
        log.info(`re-created app ${outcome.name} from the store`, {
          app: outcome.name,
          digest: outcome.digest,
          images: outcome.installed.imagesLoaded,
        });
      }
      if (outcome.started) {
        log.info(`started app ${outcome.name}`, { app: outcome.name, digest: outcome.digest });
      }
      model.transition(outcome.name, ref, records[outcome.name]?.running ? "running" : "installed");
    },
  });
}
