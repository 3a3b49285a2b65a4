/**
 * `berth agent`: the loop that makes the device match its config, unattended.
 *
 * Start-up: a self-audit that needs no network (audit.ts) — every installed app's project and images are
 * checked and re-created from the store where missing (the factory-reset path), and what should run is
 * started. Then, for each app in the config, every poll interval (plus jitter): resolve the tag; if it
 * names a version not installed, fetch it (only the blobs not stored, after the storage pre-flight), install
 * it, start it, wait for its services to come up, and roll back to the previous version if they do not. Only
 * after a new version runs is the store pruned. Failures are retried with capped exponential back-off.
 *
 * Crash rules: the agent holds the store's writer lock for its lifetime. Each step is itself atomic or
 * resumable (ingests resume at their byte, installs swap projects by rename, records are replaced
 * atomically), and `agent.json` records each app's update step by step before each step runs (see
 * update.ts): after a crash or reboot the agent picks up the same version where it was, verifies a new
 * version again rather than accept it unverified, and finishes a roll-back it had begun.
 */
import { readAppArtifact } from "../app/artifact.ts";
import { BerthError, errorMessage } from "../util/errors.ts";
import { RegistryClient } from "../registry/client.ts";
import type { RegistryOptions } from "../registry/options.ts";
import { backoffDelay, sleep } from "../util/async.ts";
import { formatReference, parseReference, type Reference } from "../oci/reference.ts";
import type { Platform } from "../oci/platform.ts";
import type { Descriptor } from "../oci/descriptor.ts";
import type { Policy } from "../trust/policy.ts";
import type { Store } from "../store/store.ts";
import { type AppRecord, readApps } from "../store/apps.ts";
import { storedTagDigest } from "../store/images.ts";
import { REF_NAME } from "../store/annotations.ts";
import { pull, type PullEvent, type PullPlan } from "../fetch/pull.ts";
import { ensureSignature } from "../fetch/signatures.ts";
import type { BlobLimits } from "../fetch/limits.ts";
import { Engine } from "../docker/engine.ts";
import { type Compose, findCompose } from "../docker/compose_cli.ts";
import { type Device, installedServices, removeApp, runApp, stopApp } from "../app/lifecycle.ts";
import { appName, canRestoreOffline } from "../app/stored.ts";
import { bundleLimitsFor } from "../app/bundle_format.ts";
import { pruneStore, reclaimableBytes } from "../app/prune.ts";
import type { PullHooks } from "../app/install_pull.ts";
import type { SpacePolicy } from "../fetch/preflight.ts";
import { checkSpace } from "./space.ts";
import { spaceOf } from "../util/disk_space.ts";
import { type ManagedApp, readAgentState, saveManaged, writeAgentState } from "./state.ts";
import type { Logger } from "../util/log.ts";
import { StatusModel } from "./model.ts";
import { anyServiceDown, serviceStatuses } from "./services.ts";
import { AppUpdate, resumeUpdate, type UpdateContext } from "./update.ts";
import { audit, type AuditContext } from "./audit.ts";

/** Everything the agent is told: the resolved command-line options and the config file. */
export interface AgentSettings {
  composeRoot: string;
  dockerHost: string;
  composeCommand?: string;
  /** Variables of the agent's environment compose may interpolate (the config's composeEnvironment). */
  composeEnvironment: string[];
  platform: Platform;
  parallel: number;
  registry: Partial<RegistryOptions>;
  apps: string[];
  /** Seconds. */
  pollInterval: number;
  /** Seconds of random extra wait per poll, at most, so a fleet does not poll in step. */
  pollJitter: number;
  /** Previous app versions prune keeps besides the current one. */
  keep: number;
  /** Seconds: no progress before "stalled"; services up after a start; cap of the retry back-off. */
  timeouts: { stall: number; start: number; retryMax: number; engine: number; soak: number };
  storage: SpacePolicy;
  /** Download bytes per second, shared by every blob in flight; undefined is unlimited. */
  rateLimit?: number;
  limits: BlobLimits;
  /** The signature policy (containers-policy.json); reloaded with the config. */
  policy?: Policy;
}

/** How often the services' states are refreshed for the status document (a few cheap engine calls). */
const REFRESH_MS = 5_000;
/**
 * How often the store's figures are refreshed besides after each reconcile pass: they walk the store and
 * read app bundles, too much to do every few seconds on a small device.
 */
const STORE_REFRESH_MS = 60_000;
/** First retry after a failure; doubles up to `timeouts.retryMax`. */
const RETRY_BASE_MS = 2_000;

interface Schedule {
  nextAt: number;
  failures: number;
}

/**
 * Reconciles the device with its settings until run's signal aborts; the caller opened `store` as writer.
 * Killed at any point, a new Agent on the same store picks up where this one was (crash rules above).
 */
export class Agent {
  readonly #store: Store;
  readonly #model: StatusModel;
  readonly #log: Logger;
  #settings: AgentSettings;
  #client: RegistryClient;
  #engine?: Engine;
  #compose?: Promise<Compose>;
  readonly #schedule = new Map<string, Schedule>();
  /** Blob digests of fetches still to finish: prune keeps their partial ingests. */
  readonly #pendingBlobs = new Map<string, Set<string>>();
  #wake?: () => void;
  /** Set by a reload: versions that failed to come up are tried again at the next pass. */
  #retryFailed = false;
  /** Whether the store's unknown capacity (a filesystem df cannot size) has been logged. */
  #storeSkippedSaid = false;
  #registryRequests = 0;

  constructor(store: Store, settings: AgentSettings, model: StatusModel, log: Logger) {
    this.#store = store;
    this.#settings = settings;
    this.#model = model;
    this.#log = log;
    this.#client = new RegistryClient(settings.registry);
    model.setRegistryHosts(() => this.#client.hosts.figures());
  }

  /** Registry requests made so far (the audit makes none). */
  get registryRequests(): number {
    return this.#registryRequests;
  }

  /** New settings (SIGHUP): applied from the next pass, which starts now. */
  reconfigure(settings: AgentSettings): void {
    const registryChanged = JSON.stringify(settings.registry) !== JSON.stringify(this.#settings.registry);
    this.#settings = settings;
    // Unchanged settings keep the client (and the downloads under way); hosts.toml files are read again.
    if (!registryChanged) this.#client.forgetHosts();
    else {
      this.#client.close().catch(() => {});
      this.#client = new RegistryClient(settings.registry);
    }
    this.#model.setPollInterval(settings.pollInterval);
    this.#retryFailed = true;
    for (const schedule of this.#schedule.values()) schedule.nextAt = 0;
    this.#wake?.();
  }

  /** Runs until `signal` aborts: audit (`onAudited` after its first attempt), then reconcile forever. */
  async run(signal: AbortSignal, onAudited?: () => Promise<void>): Promise<void> {
    let storeRefreshedAt = Date.now();
    const refresher = setInterval(() => {
      this.#model.checkStalls();
      const withStore = Date.now() - storeRefreshedAt >= STORE_REFRESH_MS;
      if (withStore) storeRefreshedAt = Date.now();
      this.#refresh(withStore).catch(() => {});
    }, REFRESH_MS);
    try {
      this.#model.setAgentState("auditing");
      await this.#auditUntilDone(signal, onAudited);
      while (!signal.aborted) {
        this.#model.setAgentState("reconciling");
        // The pass is a phase too: between its inner phases (an agent.json step, say) it is in hand.
        await this.#inPhase("reconcile", this.#engineTimeoutMs(), () => this.#reconcilePass(signal));
        this.#model.setLastReconcile(true);
        await this.#inPhase("engine query", this.#engineTimeoutMs(), () => this.#refresh()).catch(() => {});
        this.#model.setAgentState("idle");
        await this.#sleepUntilDue(signal);
      }
    } finally {
      clearInterval(refresher);
      this.#model.setAgentState("stopping");
      this.#engine?.close();
      await this.#client.close();
    }
  }

  // ---- engine and compose -------------------------------------------------------------------------

  async #device(): Promise<Device> {
    if (!this.#engine) {
      try {
        this.#engine = await Engine.connect(this.#settings.dockerHost);
        const version = await this.#engine.request("/version", { what: "version" }).then((r) => r.json());
        this.#model.setEngine({
          reachable: true,
          version: String(version.Version ?? ""),
          apiVersion: this.#engine.apiVersion,
        });
      } catch (error) {
        this.#engine = undefined;
        this.#model.setEngine({ reachable: false, error: errorMessage(error) });
        throw error;
      }
    }
    const engine = this.#engine;
    return {
      store: this.#store,
      engine,
      composeRoot: this.#settings.composeRoot,
      composeEnvironment: this.#settings.composeEnvironment,
      bundleLimits: bundleLimitsFor(this.#settings.limits.bundle),
      storage: this.#settings.storage,
      policy: this.#settings.policy,
      onProgress: () => this.#model.phaseProgress(),
      compose: () => {
        this.#compose ??= findCompose(this.#settings.dockerHost, this.#settings.composeCommand).catch(
          (error) => {
            this.#compose = undefined;
            throw error;
          },
        );
        return this.#compose;
      },
    };
  }

  /** Forgets the engine connection after it failed, so the next step reconnects. */
  #engineFailed(error: unknown): void {
    if (error instanceof BerthError && error.reason === "engine_unavailable") {
      this.#engine?.close();
      this.#engine = undefined;
      this.#model.setEngine({ reachable: false, error: error.message });
    }
  }

  // ---- start-up audit -----------------------------------------------------------------------------

  /**
   * The audit, retried until it succeeds. `onAttempted` follows the first attempt, whether it succeeded or
   * not: then the agent has done what it can at start-up (with the engine down, it reports that and keeps
   * trying). Waiting for an engine that answers "no" is not a hang: each attempt counts as progress.
   */
  async #auditUntilDone(signal: AbortSignal, onAttempted?: () => Promise<void>): Promise<void> {
    const waitMs = this.#engineTimeoutMs() + this.#settings.timeouts.retryMax * 1000;
    await this.#inPhase("start-up audit", waitMs, async () => {
      for (let failures = 1; !signal.aborted; failures++) {
        try {
          await this.#inPhase("audit", this.#engineTimeoutMs(), async () => {
            await audit(this.#auditContext(signal), signal);
            await this.#inPhase("engine query", this.#engineTimeoutMs(), () => this.#refresh());
          });
          if (failures === 1) await onAttempted?.();
          return;
        } catch (error) {
          this.#engineFailed(error);
          this.#model.recordError(error);
          this.#log.warn(`start-up audit failed, retrying: ${errorMessage(error)}`, {
            reason: error instanceof BerthError ? error.reason : "internal",
          });
          if (failures === 1) await onAttempted?.();
          await sleep(this.#retryDelay(failures), signal).catch(() => {});
        }
      }
    });
  }

  /** Starts an installed app when any of its services is down (compose up is idempotent). */
  async #ensureRunning(device: Device, record: AppRecord, ref: string): Promise<void> {
    await this.#inPhase("compose", this.#engineTimeoutMs(), async () => {
      const names = await installedServices(device, record.name);
      if (await anyServiceDown(device.engine, record.name, names) || !record.running) {
        await runApp(device, record.name);
        this.#log.info(`started app ${record.name}`, { app: record.name, digest: record.digest });
      }
    });
    this.#model.transition(record.name, ref, "running");
  }

  // ---- reconcile ----------------------------------------------------------------------------------

  async #reconcilePass(signal: AbortSignal): Promise<void> {
    const started = performance.now();
    const desired = new Map<string, Reference>();
    for (const input of this.#settings.apps) {
      const ref = parseReference(input);
      desired.set(appName(ref), ref);
    }
    await this.#removeUndesired(desired, signal);
    if (this.#retryFailed) {
      // A reload is how an operator says "try again" after fixing what made a version fail.
      this.#retryFailed = false;
      const state = await readAgentState(this.#store);
      for (const managed of Object.values(state.apps)) {
        delete managed.failedDigest;
        delete managed.failedReason;
      }
      await writeAgentState(this.#store, state);
    }
    for (const [name, ref] of desired) {
      if (signal.aborted) return;
      const schedule = this.#schedule.get(name) ?? { nextAt: 0, failures: 0 };
      this.#schedule.set(name, schedule);
      if (schedule.nextAt > Date.now()) continue;
      try {
        await this.#reconcileApp(name, ref, signal);
        schedule.failures = 0;
        schedule.nextAt = Date.now() + this.#pollDelay();
      } catch (error) {
        if (signal.aborted) return;
        this.#engineFailed(error);
        schedule.failures++;
        schedule.nextAt = Date.now() + this.#retryDelay(schedule.failures);
        // An app that runs keeps running (and says so) when, say, the registry is down; an update that
        // failed leaves the previous version running too.
        const installed = (await readApps(this.#store).catch(() => ({} as Record<string, AppRecord>)))[name];
        const wasRunning = this.#model.state(name) === "running";
        const state = error instanceof BerthError && error.reason === "insufficient_storage"
          ? "blocked"
          : wasRunning && installed?.installed
          ? "running"
          : "failed";
        this.#model.transition(name, formatReference(ref), state, error);
        if (state === "running") this.#model.recordError(error, name);
      }
    }
    this.#model.timed("reconcile", (performance.now() - started) / 1000);
  }

  #pollDelay(): number {
    return (this.#settings.pollInterval + Math.random() * this.#settings.pollJitter) * 1000;
  }

  #retryDelay(failures: number): number {
    return backoffDelay(failures, {
      backoffMs: RETRY_BASE_MS,
      maxBackoffMs: this.#settings.timeouts.retryMax * 1000,
    });
  }

  async #sleepUntilDue(signal: AbortSignal): Promise<void> {
    const next = Math.min(...[...this.#schedule.values()].map((schedule) => schedule.nextAt));
    const wait = Number.isFinite(next) ? Math.max(0, next - Date.now()) : this.#pollDelay();
    // A stop that came during the pass has fired already: a listener added now would never hear it.
    if (signal.aborted) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, wait);
      const onAbort = () => done();
      signal.addEventListener("abort", onAbort, { once: true });
      this.#wake = done;
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        resolve();
      }
    });
    this.#wake = undefined;
  }

  /** Apps the agent installed that are no longer in the config: stopped, removed, pruned. */
  async #removeUndesired(desired: Map<string, Reference>, signal: AbortSignal): Promise<void> {
    const state = await readAgentState(this.#store);
    const gone = Object.keys(state.apps).filter((name) => !desired.has(name));
    if (gone.length === 0) return;
    const device = await this.#device();
    const records = await readApps(this.#store);
    for (const name of gone) {
      if (signal.aborted) return;
      this.#model.transition(name, state.apps[name].ref, "stopping");
      if (records[name]?.installed) {
        await this.#inPhase("compose", this.#engineTimeoutMs(), async () => {
          await stopApp(device, name);
          await removeApp(device, name);
        });
      }
      await saveManaged(this.#store, name, undefined);
      this.#model.removeApp(name);
      this.#schedule.delete(name);
      this.#pendingBlobs.delete(name);
      this.#log.info(`removed app ${name}: no longer in the config`, { app: name });
    }
    await this.#prune(device, gone);
  }

  /** One app: resolve its tag; fetch, install, start (or roll back) a new version; keep the rest running. */
  async #reconcileApp(name: string, ref: Reference, signal: AbortSignal): Promise<void> {
    const refText = formatReference(ref);
    const state = await readAgentState(this.#store);
    const managed: ManagedApp = { ...state.apps[name], ref: refText };
    let record = (await readApps(this.#store))[name];
    if (managed.update && !managed.update.outcome) {
      // An update stopped half-way (a roll-back that failed, say) is taken up before anything new.
      if (await resumeUpdate(this.#updateContext(signal), await this.#device(), name, managed, record)) {
        return;
      }
    }
    const currentDigest = record?.installed ? record.digest : undefined;
    this.#model.setApp(name, refText, { currentDigest, previousDigests: record?.previous ?? [] });

    const digest = ref.digest ?? await this.#resolve(ref, refText, record?.updatedAt, signal);
    this.#model.setApp(name, refText, { desiredDigest: digest });
    const device = await this.#device();

    if (record?.installed && record.digest === digest) {
      if (managed.update && !managed.update.outcome) {
        const cancelled = `update of app ${name} to ${managed.update.digest} cancelled`;
        this.#log.info(`${cancelled}: the tag is back at ${digest}`, { app: name });
        await AppUpdate.end(this.#updateContext(signal), name, managed, "cancelled");
        managed.update = (await readAgentState(this.#store)).apps[name]?.update;
      }
      const update = managed.update ? { update: managed.update } : {};
      const stale = managed.desiredDigest || managed.failedDigest || !state.apps[name];
      if (stale) await saveManaged(this.#store, name, { ref: refText, ...update });
      await this.#ensureRunning(device, record, refText);
      // A version installed before the policy existed gets its signature kept now, for restore.
      await ensureSignature(this.#client, this.#store, this.#settings.policy, ref, digest, signal);
      return;
    }
    if (managed.failedDigest === digest) {
      // This version failed to come up before; it is tried again only when the tag moves. A roll-back
      // finished after a restart (or killed before forgetting) has yet to forget it.
      if (record?.installed) await this.#forgetFailed(device, refText, digest);
      this.#model.transition(name, refText, "failed", managed.failedReason);
      return;
    }

    const updating = record?.installed === true;
    let supersedes: string | undefined;
    if (managed.update && !managed.update.outcome && managed.update.digest !== digest) {
      supersedes = managed.update.digest;
      this.#log.info(`update of app ${name} to ${supersedes} superseded: the tag moved to ${digest}`, {
        app: name,
      });
      await AppUpdate.end(this.#updateContext(signal), name, managed, "superseded");
    }
    const update = AppUpdate.begin(this.#updateContext(signal), name, refText, digest, record, supersedes);
    const pinned = parseReference(`${ref.registry}/${ref.repository}@${digest}`);
    const stallMs = this.#settings.timeouts.stall * 1000;
    const fetched = (hooks: PullHooks) => this.#fetch(name, [pinned, ref], signal, hooks);
    if (!(await update.apply(device, fetched, { updating, stallMs }))) {
      if (record?.installed) await this.#forgetFailed(device, refText, digest);
      return;
    }
    record = (await readApps(this.#store))[name];
    this.#model.setApp(name, refText, { currentDigest: digest, previousDigests: record?.previous ?? [] });
    this.#model.transition(name, refText, "running");
    await this.#prune(device);
  }

  /**
   * The digest the tag names now. With the registry out of reach, the version the store holds for the tag
   * (imported from removable media, or fetched by hand) stands in — if it was recorded after the installed
   * version (`installedAt`): an older entry must not take the app back.
   */
  async #resolve(ref: Reference, refText: string, installedAt: string | undefined, signal: AbortSignal) {
    this.#registryRequests++;
    const resolve = () => this.#client.resolveDigest(ref, signal);
    try {
      return (await this.#inPhase("registry request", this.#client.options.deadlineMs, resolve)).digest;
    } catch (error) {
      const offline = error instanceof BerthError && error.transient && !signal.aborted;
      const stored = offline ? await storedTagDigest(this.#store, refText, installedAt) : undefined;
      if (!stored) throw error;
      this.#log.info(`${refText}: registry out of reach; the store's ${stored} stands in`, {
        digest: stored,
      });
      return stored;
    }
  }

  /** What the start-up audit needs of the agent. */
  #auditContext(signal: AbortSignal): AuditContext {
    return {
      store: this.#store,
      model: this.#model,
      log: this.#log,
      composeRoot: this.#settings.composeRoot,
      device: () => this.#device(),
      update: this.#updateContext(signal),
      engineFailed: (error) => this.#engineFailed(error),
    };
  }

  /** What an update needs of the agent, for one pass. */
  #updateContext(signal: AbortSignal): UpdateContext {
    return {
      store: this.#store,
      model: this.#model,
      log: this.#log,
      startTimeoutMs: this.#settings.timeouts.start * 1000,
      soakMs: this.#settings.timeouts.soak * 1000,
      engineTimeoutMs: this.#engineTimeoutMs(),
      inPhase: (name, timeoutMs, work) => this.#inPhase(name, timeoutMs, work),
      signal,
    };
  }

  /** Runs `work` as a phase that health watches: alive while it makes progress at least every `timeoutMs`. */
  async #inPhase<T>(name: string, timeoutMs: number, work: () => Promise<T>): Promise<T> {
    const previous = this.#model.beginPhase(name, timeoutMs);
    try {
      return await work();
    } finally {
      this.#model.endPhase(previous);
    }
  }

  #engineTimeoutMs(): number {
    return this.#settings.timeouts.engine * 1000;
  }

  /**
   * Downloads one app version (only what is not stored), with the storage pre-flight first; the policy
   * judges it as the tag (`identity`) it was asked for.
   */
  async #fetch(name: string, [pinned, identity]: Reference[], signal: AbortSignal, hooks: PullHooks) {
    const started = performance.now();
    this.#model.fetchStarted(name);
    const pending = new Set<string>();
    this.#pendingBlobs.set(name, pending);
    this.#registryRequests++;
    try {
      await pull(this.#client, this.#store, [pinned], {
        readArtifact: readAppArtifact,
        policy: this.#settings.policy,
        identity,
        platform: this.#settings.platform,
        parallel: this.#settings.parallel,
        rateLimit: this.#settings.rateLimit,
        signal,
        onEvent: (event: PullEvent) => {
          if (event.type === "planned") { for (const blob of event.blobs) pending.add(blob.digest); }
          this.#model.fetchEvent(name, event);
          hooks.onEvent(event);
        },
        preflight: async (plan: PullPlan) => {
          await this.#preflight(plan);
          if (!plan.partial) await hooks.planAccepted(plan);
        },
        limits: this.#settings.limits,
      });
      this.#pendingBlobs.delete(name);
    } finally {
      this.#model.fetchEnded(name);
      this.#model.timed("fetch", (performance.now() - started) / 1000);
    }
  }

  async #preflight(plan: PullPlan): Promise<void> {
    const { storage, platform } = this.#settings;
    const skipped = await checkSpace(this.#store, this.#engine, plan, storage, platform.architecture);
    // Said once per agent run: an app's update asks twice, and the agent polls.
    if (skipped && !this.#storeSkippedSaid) {
      this.#storeSkippedSaid = true;
      this.#log.warn(skipped, { path: this.#store.root });
    }
  }

  /**
   * A version that failed and was rolled back is not kept: its reference goes, and prune removes what only it
   * needed. (A first install that failed stays installed, to be looked at.) Each pass over the failed version
   * asks again; once its reference is gone there is nothing to do.
   */
  async #forgetFailed(device: Device, refText: string, failedDigest: string): Promise<void> {
    const { registry, repository } = parseReference(refText);
    const failedRef = `${registry}/${repository}@${failedDigest}`;
    const named = (entry: Descriptor) => entry.annotations?.[REF_NAME] === failedRef;
    if (!(await this.#store.readIndex()).manifests.some(named)) return;
    await this.#store.updateIndex((manifests) => manifests.filter((entry) => !named(entry)));
    await this.#prune(device);
  }

  /** Prunes beyond `keep`, keeping what unfinished fetches hold; `removedApps` lose every version. */
  async #prune(device: Device, removedApps: string[] = []): Promise<void> {
    const keepIngests = new Set<string>();
    for (const digests of this.#pendingBlobs.values()) for (const digest of digests) keepIngests.add(digest);
    const result = await this.#inPhase(
      "prune",
      this.#engineTimeoutMs(),
      () =>
        pruneStore(this.#store, device.engine, {
          keep: this.#settings.keep,
          keepIngests,
          removeApps: removedApps,
        }),
    );
    for (const record of Object.values(await readApps(this.#store))) {
      this.#model.setPreviousDigests(record.name, record.previous ?? []);
    }
    if (result.blobsRemoved > 0 || result.imagesRemoved.length > 0) {
      this.#log.info("pruned", {
        blobs: result.blobsRemoved,
        bytes: result.bytesFreed,
        images: result.imagesRemoved.length,
      });
    }
  }

  // ---- figures for the status document --------------------------------------------------------------

  /**
   * Services, and with `withStore` the store's usage and canRestoreOffline; never throws (the status shows
   * what it could read).
   */
  async #refresh(withStore = true): Promise<void> {
    const records = await readApps(this.#store).catch(() => ({} as Record<string, AppRecord>));
    if (this.#engine) {
      for (const record of Object.values(records)) {
        if (!record.installed) continue;
        try {
          const device = await this.#device();
          this.#model.setServices(
            record.name,
            await serviceStatuses(device.engine, record.name, await installedServices(device, record.name)),
          );
        } catch (error) {
          this.#engineFailed(error);
        }
      }
    }
    if (!withStore) return;
    try {
      let bytesUsed = 0;
      let blobs = 0;
      for await (const blob of this.#store.listBlobs()) {
        bytesUsed += blob.size;
        blobs++;
      }
      const space = await spaceOf(this.#store.root);
      this.#model.setStore({
        path: this.#store.root,
        bytesUsed,
        blobs,
        reclaimableBytes: await reclaimableBytes(this.#store, this.#settings.keep),
        ...(space.capacityUnknown ? {} : { freeBytes: space.freeBytes }),
      });
    } catch (error) {
      this.#log.debug(`store figures: ${errorMessage(error)}`);
    }
    this.#model.setCanRestoreOffline(await canRestoreOffline(this.#store, records).catch(() => false));
  }
}
