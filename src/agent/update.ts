/**
 * An app's update as a transaction. Each step is written to agent.json (atomically, fsynced) before it
 * runs, so an agent that is killed or loses power takes the update up where it stopped:
 * - before `installing` ended, apps.json still names the old version: the next pass fetches (resuming what
 *   is stored) and installs again;
 * - in `installing` (once apps.json names the new version), `installed`, `starting` or `verifying`: the new
 *   version is started and verified again at start-up — never accepted unverified — and rolled back if it
 *   fails;
 * - in `rolling-back`: the roll-back is finished at start-up. The failed version is recorded (failedDigest)
 *   before a roll-back begins, so it is not tried again whatever happens next.
 */
import { BerthError, POLICY_REASONS } from "../util/errors.ts";
import { writeApp } from "../store/apps.ts";
import type { AppRecord } from "../store/apps.ts";
import type { Store } from "../store/store.ts";
import { type Device, installApp, installedServices, runApp } from "../app/lifecycle.ts";
import { installWhilePulling, type PullHooks } from "../app/install_pull.ts";
import type { Logger } from "../util/log.ts";
import { reasonOf, type StatusModel } from "./model.ts";
import { waitUntilUp } from "./services.ts";
import { type ManagedApp, saveManaged, type UpdateRecord } from "./state.ts";
import type { AppState, UpdateStep } from "./status_schema.ts";

/** What an update needs of the agent. */
export interface UpdateContext {
  store: Store;
  model: StatusModel;
  log: Logger;
  /** How long the services have to come up, in ms. */
  startTimeoutMs: number;
  /** How long they must then stay up, in ms. */
  soakMs: number;
  /** How long an engine or compose call may go without progress, in ms. */
  engineTimeoutMs: number;
  /** Runs `work` as a phase the agent's health watches (see StatusModel.beginPhase). */
  inPhase: <T>(name: string, timeoutMs: number, work: () => Promise<T>) => Promise<T>;
  signal: AbortSignal;
}

/** Steps after which apps.json may already name the new version: a restart verifies it again. */
const TO_VERIFY: readonly UpdateStep[] = ["installing", "installed", "starting", "verifying"];

/** One app's move to one version, step by step, each step recorded before it runs. */
export class AppUpdate {
  #record: UpdateRecord;

  /** An update of `name` (configured as `ref`) to `digest`, from the installed `previous` if there is one. */
  constructor(
    readonly context: UpdateContext,
    readonly name: string,
    readonly ref: string,
    record: UpdateRecord,
  ) {
    this.#record = record;
  }

  /** A new update to `digest`, from `installed` (the app's record) when the app has a version installed. */
  static begin(
    context: UpdateContext,
    name: string,
    ref: string,
    digest: string,
    installed?: AppRecord,
    supersedes?: string,
  ) {
    const previous = installed?.installed
      ? { ref: installed.ref, digest: installed.digest, previous: installed.previous ?? [] }
      : undefined;
    return new AppUpdate(context, name, ref, {
      digest,
      step: "fetching",
      since: new Date().toISOString(),
      ...(previous ? { previous } : {}),
      ...(supersedes ? { supersedes } : {}),
    });
  }

  /**
   * An unfinished update that will not go on: the tag moved to another new version (`superseded`) or back
   * to the installed one (`cancelled`). Recorded durably, and shown, before whatever comes next.
   */
  static async end(
    context: UpdateContext,
    name: string,
    managed: ManagedApp,
    outcome: "superseded" | "cancelled",
  ): Promise<void> {
    if (!managed.update || managed.update.outcome) return;
    const record: UpdateRecord = { ...managed.update, outcome };
    const { desiredDigest: _, ...rest } = managed;
    await saveManaged(context.store, name, { ...rest, update: record });
    const { previous: __, ...shown } = record;
    context.model.setApp(name, managed.ref, { update: shown });
  }

  /** The version this update installs. */
  get digest(): string {
    return this.#record.digest;
  }

  /**
   * Records `step` (durably) before the caller runs it; `extra` goes into the same write. `newStep` false
   * rewrites the step in hand (keeping its `since`) with what else the record gained.
   */
  async step(
    step: UpdateStep,
    extra: Partial<ManagedApp> = {},
    outcome?: UpdateRecord["outcome"],
    newStep = true,
  ) {
    this.#record = {
      ...this.#record,
      step,
      ...(newStep ? { since: new Date().toISOString() } : {}),
      ...(outcome ? { outcome } : {}),
    };
    await saveManaged(this.context.store, this.name, {
      ref: this.ref,
      ...(outcome ? {} : { desiredDigest: this.#record.digest }),
      ...extra,
      update: this.#record,
    });
    const { previous: _, ...shown } = this.#record;
    this.context.model.setApp(this.name, this.ref, { update: shown });
  }

  /**
   * Runs the update from its first step: `fetch`, install `pinned`, start and verify. True when the new
   * version runs, false when it did not come up and was rolled back. While `updating`, the version before
   * runs on and the app's state stays `updating`.
   */
  async apply(
    device: Device,
    fetch: (hooks: PullHooks) => Promise<void>,
    options: { updating: boolean; stallMs: number },
  ): Promise<boolean> {
    const { model, log, inPhase, engineTimeoutMs } = this.context;
    const show = (state: AppState) => {
      if (!options.updating) model.transition(this.name, this.ref, state);
    };
    await this.step("fetching");
    model.transition(this.name, this.ref, options.updating ? "updating" : "fetching");
    const installStarted = performance.now();
    const installing = async () => {
      await this.step("installing");
      show("installing");
    };
    // Images are loaded as they arrive: `installing` is recorded before the first load, and the moment the
    // last blob is in (fetchedAt) once the pull is done; apps.json names the new version only after both.
    const installed = await inPhase(
      "fetch",
      Math.max(options.stallMs, engineTimeoutMs),
      () =>
        installWhilePulling(device, this.#refusing(fetch), {
          beforeFirstLoad: installing,
          fetched: async () => {
            const wasFetching = this.#record.step === "fetching";
            this.#record = { ...this.#record, fetchedAt: new Date().toISOString() };
            if (wasFetching) {
              await this.step("fetched");
              show("fetched");
              await installing();
            } else await this.step(this.#record.step, {}, undefined, false);
          },
        }),
    );
    log.info(`installed app ${this.name}`, {
      app: this.name,
      digest: this.digest,
      images: installed.imagesLoaded,
      layers: installed.layersSent,
    });
    await this.step("installed");
    show("installed");
    if (!(await this.startAndVerify(device))) return false;
    model.timed("install", (performance.now() - installStarted) / 1000);
    return true;
  }

  /**
   * Starts the installed new version and waits until its services are up; true when it is. When it is not,
   * it is recorded as failed and the previous version is brought back (false).
   */
  async startAndVerify(device: Device): Promise<boolean> {
    const { signal } = this.context;
    try {
      await this.step("starting");
      const { inPhase, engineTimeoutMs, startTimeoutMs, soakMs } = this.context;
      await inPhase("compose", engineTimeoutMs, () => runApp(device, this.name));
      await this.step("verifying");
      const services = await installedServices(device, this.name);
      // The wait ends by itself after the start timeout and the soak; the margin is for its last look.
      await inPhase(
        "verify",
        startTimeoutMs + soakMs + engineTimeoutMs,
        () => waitUntilUp(device.engine, this.name, services, { startMs: startTimeoutMs, soakMs }, signal),
      );
    } catch (error) {
      if (signal.aborted) throw error;
      const reason = reasonOf(error);
      this.context.log.warn(`app ${this.name} version ${this.digest} failed to start: ${reason.message}`, {
        app: this.name,
        digest: this.digest,
        reason: reason.code,
      });
      await this.step("rolling-back", { failedDigest: this.digest, failedReason: reason });
      await this.rollBack(device, reason);
      return false;
    }
    await this.step("complete", {}, "complete");
    return true;
  }

  /**
   * The fetch, with a refusal by the signature policy recorded as this version's failure: it is not asked
   * for again until the tag moves or the policy is reloaded. The policy judges before any blob is fetched,
   * so nothing was loaded and the version before runs on untouched.
   */
  #refusing(fetch: (hooks: PullHooks) => Promise<void>): (hooks: PullHooks) => Promise<void> {
    return async (hooks) => {
      try {
        await fetch(hooks);
      } catch (error) {
        const code = error instanceof BerthError ? error.reason : undefined;
        if (code && POLICY_REASONS.includes(code) && this.#record.step === "fetching") {
          const reason = reasonOf(error);
          this.context.log.warn(`app ${this.name} version ${this.digest} refused: ${reason.message}`, {
            app: this.name,
            digest: this.digest,
            reason: reason.code,
          });
          await this.step("fetching", { failedDigest: this.digest, failedReason: reason }, "refused", false);
        }
        throw error;
      }
    };
  }

  /** Back to the version the update started from (when there was one); the app is left `failed`. */
  async rollBack(device: Device, reason: ReturnType<typeof reasonOf>): Promise<void> {
    const { store, log, model } = this.context;
    const previous = this.#record.previous;
    if (previous) {
      const { inPhase, engineTimeoutMs } = this.context;
      await inPhase(
        "install",
        engineTimeoutMs,
        () => installApp(device, { ref: previous.ref, manifestDigest: previous.digest }),
      );
      // The failed version is not kept as an earlier version: the record reads as before the update.
      await writeApp(store, this.name, {
        name: this.name,
        ref: previous.ref,
        digest: previous.digest,
        installed: true,
        running: true,
        previous: previous.previous,
        updatedAt: new Date().toISOString(),
      });
      await inPhase("compose", engineTimeoutMs, () => runApp(device, this.name));
      log.info(`rolled app ${this.name} back to ${previous.digest}`, {
        app: this.name,
        digest: previous.digest,
      });
      model.setApp(this.name, this.ref, {
        currentDigest: previous.digest,
        previousDigests: previous.previous,
      });
    }
    await this.step("rolled-back", { failedDigest: this.digest, failedReason: reason }, "rolled-back");
    model.transition(this.name, this.ref, "failed", reason);
  }
}

/**
 * At start-up, before any registry request: takes up an update a killed agent left between steps. Returns
 * true when it did something (the app then needs no other start-up work).
 */
export async function resumeUpdate(
  context: UpdateContext,
  device: Device,
  name: string,
  managed: ManagedApp,
  installed: AppRecord | undefined,
): Promise<boolean> {
  const record = managed.update;
  if (!record || record.outcome) return false;
  const update = new AppUpdate(context, name, managed.ref, record);
  if (record.step === "rolling-back") {
    context.log.warn(`finishing the roll-back of app ${name} from ${record.digest}`, { app: name });
    await update.rollBack(device, managed.failedReason ?? reasonOf(new Error("interrupted update")));
    return true;
  }
  if (!TO_VERIFY.includes(record.step) || installed?.digest !== record.digest || !installed.installed) {
    return false;
  }
  context.log.warn(
    `verifying app ${name} version ${record.digest} again: the agent stopped during its update`,
    {
      app: name,
      digest: record.digest,
    },
  );
  // installApp is idempotent: a kill inside `installing` may have left the project half-swapped.
  await context.inPhase(
    "install",
    context.engineTimeoutMs,
    () => installApp(device, { ref: installed.ref, manifestDigest: installed.digest }),
  );
  if (await update.startAndVerify(device)) {
    context.model.setApp(name, managed.ref, { currentDigest: record.digest });
    context.model.transition(name, managed.ref, "running");
  }
  return true;
}
