/**
 * The agent's view of the device, kept in memory and read by the status server. The agent's loop is the
 * only writer; the server only reads (`snapshot`, `health`, `counters`), so a request never waits for work.
 * Every app state change is logged here, once, with the app, the digest and the reason.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import type { LogFields, Logger } from "../util/log.ts";
import { messageLine } from "../util/text.ts";
import type { PullEvent } from "../fetch/pull.ts";
import {
  type AppState,
  type AppStatus,
  type BlobStatus,
  type Counters,
  type ServiceStatus,
  type Status,
  STATUS_SCHEMA_VERSION,
  type StatusReason,
} from "./status_schema.ts";
import type { HostFigures } from "../registry/host_health.ts";

/** Speed is the bytes of this window over its length. */
const SPEED_WINDOW_MS = 5_000;

interface Fetch {
  bytesTotal: number;
  /** Manifests and other bytes that are done from the start and are not blobs. */
  bytesBase: number;
  /** Per blob of the version: its size and the most of it ever held (so bytesDone never goes back). */
  blobs: Map<string, { size: number; done: number }>;
  startedAt: number;
  lastProgressAt?: number;
  samples: { at: number; bytesDone: number }[];
  inFlight: Map<string, BlobStatus & { lastProgressAt: number }>;
}

interface AppEntry {
  status: Omit<AppStatus, "progress" | "blobs">;
  fetch?: Fetch;
}

/** What the status model starts from: the agent's version and store, its intervals, its log and clock. */
export interface ModelOptions {
  version: string;
  storePath: string;
  pollIntervalSeconds: number;
  stallSeconds: number;
  log: Logger;
  /** The clock stalls and health are measured by (ms since the epoch); Date.now unless a test steps it. */
  now?: () => number;
}

const now = () => new Date().toISOString();

/** A BerthError (or anything thrown) as the status document's reason. */
export function reasonOf(error: unknown): StatusReason {
  if (error instanceof BerthError) {
    return {
      code: error.reason,
      // Served to fleet tooling and shown on the page: one clean, bounded line whatever a registry sent.
      message: messageLine(error.message),
      ...(error.details ? { details: error.details } : {}),
      at: now(),
    };
  }
  return { code: "internal", message: messageLine(errorMessage(error)), at: now() };
}

/** The agent's state as the status endpoint serves it (apps, progress, counters, health), kept from its events. */
export class StatusModel {
  readonly #options: ModelOptions;
  readonly #now: () => number;
  readonly #startedAt: string;
  #agentState: Status["agent"]["state"] = "starting";
  #lastReconcileAt?: string;
  /** The work in hand, watched by health: its name, how long it may go without progress, its last progress. */
  #phase?: { name: string; timeoutMs: number; lastProgressAt: number };
  #engine: Status["engine"] = { reachable: false };
  #store: Status["store"];
  #canRestoreOffline = false;
  #lastError?: Status["lastError"];
  readonly #apps = new Map<string, AppEntry>();
  readonly #counters: Counters = {
    bytesFetched: 0,
    blobsFetched: 0,
    errorsByReason: {},
    reconciles: 0,
    durations: {},
  };

  #registryHosts: () => HostFigures[] = () => [];

  constructor(options: ModelOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#startedAt = new Date(this.#now()).toISOString();
    this.#store = { path: options.storePath, bytesUsed: 0, blobs: 0, reclaimableBytes: 0 };
  }

  /** Where the registry hosts' figures are read at each snapshot (the agent's current registry client). */
  setRegistryHosts(source: () => HostFigures[]): void {
    this.#registryHosts = source;
  }

  setPollInterval(seconds: number): void {
    this.#options.pollIntervalSeconds = seconds;
  }

  setAgentState(state: Status["agent"]["state"]): void {
    // The loop's own states change at every poll: worth a line only when debugging.
    if (state !== this.#agentState) this.#options.log.debug(`agent ${state}`, { state });
    this.#agentState = state;
  }

  setEngine(engine: Status["engine"]): void {
    if (engine.reachable !== this.#engine.reachable) {
      const log = engine.reachable ? this.#options.log.info : this.#options.log.warn;
      log(engine.reachable ? "engine reachable" : "engine unreachable", {
        version: engine.version,
        reason: engine.error,
      });
    }
    this.#engine = engine;
  }

  setStore(store: Status["store"]): void {
    this.#store = store;
  }

  setCanRestoreOffline(value: boolean): void {
    this.#canRestoreOffline = value;
  }

  /** The app's entry, created (pending) when first seen. */
  #entry(name: string, ref: string): AppEntry {
    let entry = this.#apps.get(name);
    if (!entry) {
      entry = {
        status: { name, ref, previousDigests: [], state: "pending", services: [], updatedAt: now() },
      };
      this.#apps.set(name, entry);
    }
    return entry;
  }

  /** Updates facts about an app that are not its state (digests, services). */
  setApp(
    name: string,
    ref: string,
    facts: Partial<
      Pick<AppStatus, "currentDigest" | "desiredDigest" | "previousDigests" | "services" | "update">
    >,
  ): void {
    const entry = this.#entry(name, ref);
    entry.status = {
      ...entry.status,
      ref,
      ...facts,
      ...(facts.services ? { services: facts.services.map(serviceForStatus) } : {}),
    };
  }

  setPreviousDigests(name: string, digests: string[]): void {
    const entry = this.#apps.get(name);
    if (entry) entry.status.previousDigests = digests;
  }

  /** The app's services as the engine reports them; an exit code is kept only for an exited one. */
  setServices(name: string, services: ServiceStatus[]): void {
    const entry = this.#apps.get(name);
    if (entry) entry.status.services = services.map(serviceForStatus);
  }

  removeApp(name: string): void {
    this.#apps.delete(name);
  }

  appNames(): string[] {
    return [...this.#apps.keys()];
  }

  state(name: string): AppState | undefined {
    return this.#apps.get(name)?.status.state;
  }

  /**
   * Moves an app to `state` with an optional reason (an error or a reason object). Logs one line when the
   * state or the reason changes; errors are counted by reason and kept as the last error.
   */
  transition(name: string, ref: string, state: AppState, why?: unknown): void {
    const entry = this.#entry(name, ref);
    const reason = why === undefined ? undefined : isReason(why) ? why : reasonOf(why);
    const before = entry.status;
    const changed = before.state !== state || before.reason?.code !== reason?.code ||
      before.reason?.message !== reason?.message;
    entry.status = { ...before, state, reason, updatedAt: changed ? now() : before.updatedAt };
    if (!changed) return;
    const fields: LogFields = {
      app: name,
      digest: before.desiredDigest ?? before.currentDigest,
      state,
      reason: reason?.code,
    };
    if (reason && (state === "failed" || state === "blocked" || state === "stalled")) {
      this.#options.log.warn(reason.message, fields);
      this.#counters.errorsByReason[reason.code] = (this.#counters.errorsByReason[reason.code] ?? 0) + 1;
      this.#lastError = { ...reason, app: name };
    } else {
      this.#options.log.info(reason ? reason.message : `app ${name} ${state}`, fields);
    }
  }

  /** A fetch of `name` starts: progress is reset until its plan is known. */
  fetchStarted(name: string): void {
    const entry = this.#apps.get(name);
    if (entry) entry.fetch = undefined;
  }

  /** Feeds one pull event of the app's fetch into its progress. */
  fetchEvent(name: string, event: PullEvent): void {
    const entry = this.#apps.get(name);
    if (!entry) return;
    const at = this.#now();
    if (event.type === "planned") {
      const blobs = new Map(
        event.blobs.map((blob) => [blob.digest, { size: blob.size, done: blob.bytesDone }]),
      );
      const blobBytes = event.blobs.reduce((sum, blob) => sum + blob.bytesDone, 0);
      entry.fetch = {
        bytesTotal: event.bytesTotal,
        bytesBase: Math.max(0, event.bytesDone - blobBytes),
        blobs,
        startedAt: at,
        samples: [{ at, bytesDone: event.bytesDone }],
        inFlight: new Map(),
      };
      return;
    }
    const fetch = entry.fetch;
    if (!fetch) return;
    const blob = "digest" in event ? fetch.blobs.get(event.digest) : undefined;
    switch (event.type) {
      case "blob-start":
        fetch.inFlight.set(event.digest, {
          digest: event.digest,
          size: event.size,
          bytesDone: event.offset,
          state: "downloading",
          lastProgressAt: at,
        });
        if (blob) blob.done = Math.max(blob.done, event.offset);
        break;
      case "blob-progress": {
        const inFlight = fetch.inFlight.get(event.digest);
        if (inFlight) {
          inFlight.bytesDone = event.bytesDone;
          inFlight.state = "downloading";
          inFlight.lastProgressAt = at;
        }
        if (blob) blob.done = Math.max(blob.done, event.bytesDone);
        fetch.lastProgressAt = at;
        if (entry.status.state === "stalled") {
          this.transition(name, entry.status.ref, entry.status.currentDigest ? "updating" : "fetching");
        }
        break;
      }
      case "blob-retry": {
        const inFlight = fetch.inFlight.get(event.digest);
        if (inFlight) inFlight.state = "retrying";
        break;
      }
      case "blob-done":
        fetch.inFlight.delete(event.digest);
        if (blob) blob.done = blob.size;
        if (!event.alreadyStored) {
          this.#counters.blobsFetched++;
          this.#counters.bytesFetched += event.bytesFetched;
        }
        break;
    }
    const bytesDone = this.#bytesDone(fetch);
    fetch.samples.push({ at, bytesDone });
    while (fetch.samples.length > 2 && at - fetch.samples[1].at > SPEED_WINDOW_MS) fetch.samples.shift();
  }

  /** The fetch of `name` ended (done or not): its progress leaves the document, which shows running fetches. */
  fetchEnded(name: string): void {
    const entry = this.#apps.get(name);
    if (entry) entry.fetch = undefined;
  }

  /** Marks fetches with no progress for the stall timeout as stalled (called by the agent's ticker). */
  checkStalls(): void {
    const at = this.#now();
    const limit = this.#options.stallSeconds * 1000;
    for (const entry of this.#apps.values()) {
      const fetch = entry.fetch;
      if (!fetch || fetch.inFlight.size === 0) continue;
      for (const blob of fetch.inFlight.values()) {
        if (at - blob.lastProgressAt > limit) blob.state = "stalled";
      }
      const state = entry.status.state;
      if (
        (state === "fetching" || state === "updating") &&
        at - (fetch.lastProgressAt ?? fetch.startedAt) > limit
      ) {
        this.transition(entry.status.name, entry.status.ref, "stalled", {
          code: "stalled",
          message: `no download progress for ${this.#options.stallSeconds} s; still trying`,
          at: now(),
        });
      }
    }
  }

  setLastReconcile(ok: boolean): void {
    this.#counters.reconciles++;
    if (ok) this.#lastReconcileAt = new Date(this.#now()).toISOString();
  }

  /** Adds `seconds` spent in `phase` (fetch, install, reconcile) for /metrics. */
  timed(phase: string, seconds: number): void {
    const entry = this.#counters.durations[phase] ??= { sum: 0, count: 0 };
    entry.sum += seconds;
    entry.count++;
  }

  recordError(error: unknown, app?: string): void {
    const reason = reasonOf(error);
    this.#counters.errorsByReason[reason.code] = (this.#counters.errorsByReason[reason.code] ?? 0) + 1;
    this.#lastError = { ...reason, ...(app ? { app } : {}) };
  }

  #bytesDone(fetch: Fetch): number {
    let done = fetch.bytesBase;
    for (const blob of fetch.blobs.values()) done += Math.min(blob.done, blob.size);
    return Math.min(done, fetch.bytesTotal);
  }

  snapshot(): Status {
    const apps: AppStatus[] = [...this.#apps.values()].map(({ status, fetch }) => {
      if (!fetch) return { ...status, blobs: [] };
      const bytesDone = this.#bytesDone(fetch);
      const first = fetch.samples[0];
      const last = fetch.samples[fetch.samples.length - 1];
      const seconds = (last.at - first.at) / 1000;
      const blobsDone = [...fetch.blobs.values()].filter((blob) => blob.done >= blob.size).length;
      return {
        ...status,
        progress: {
          bytesTotal: fetch.bytesTotal,
          bytesDone,
          blobsTotal: fetch.blobs.size,
          blobsDone,
          bytesPerSecond: seconds > 0.5 ? Math.round((last.bytesDone - first.bytesDone) / seconds) : 0,
          startedAt: new Date(fetch.startedAt).toISOString(),
          ...(fetch.lastProgressAt ? { lastProgressAt: new Date(fetch.lastProgressAt).toISOString() } : {}),
        },
        blobs: [...fetch.inFlight.values()].map(({ lastProgressAt: _, ...blob }) => blob),
      };
    });
    return {
      schemaVersion: STATUS_SCHEMA_VERSION,
      agent: {
        version: this.#options.version,
        startedAt: this.#startedAt,
        state: this.#agentState,
        pollIntervalSeconds: this.#options.pollIntervalSeconds,
        ...(this.#lastReconcileAt ? { lastReconcileAt: this.#lastReconcileAt } : {}),
      },
      engine: this.#engine,
      store: this.#store,
      registryHosts: this.#registryHosts().map(({ backoffUntil, lastError, ...figures }) => ({
        ...figures,
        ...(backoffUntil ? { backoffUntil: new Date(backoffUntil).toISOString() } : {}),
        ...(lastError ? { lastError: messageLine(lastError) } : {}),
      })),
      canRestoreOffline: this.#canRestoreOffline,
      apps,
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
    };
  }

  /**
   * Alive: not stopping, and the last reconcile (or the start) within 2 × the poll interval — or, during a
   * long download that outlasts that, bytes arriving within the stall timeout.
   */
  /**
   * The agent enters a phase of work (fetch, install, compose, verify, …) that may take long: health is ok
   * while it makes progress at least every `timeoutMs`. Returns the previous phase, to go back to.
   */
  beginPhase(name: string, timeoutMs: number): { name: string; timeoutMs: number } | undefined {
    const previous = this.#phase;
    this.#phase = { name, timeoutMs, lastProgressAt: this.#now() };
    return previous ? { name: previous.name, timeoutMs: previous.timeoutMs } : undefined;
  }

  /** The phase in hand made progress (bytes arrived or were sent, a call was answered). */
  phaseProgress(): void {
    if (this.#phase) this.#phase.lastProgressAt = this.#now();
  }

  /** The phase ended; `previous` (what beginPhase returned) is in hand again, as of now. */
  endPhase(previous?: { name: string; timeoutMs: number }): void {
    this.#phase = previous ? { ...previous, lastProgressAt: this.#now() } : undefined;
  }

  /**
   * Alive while the loop makes progress: within a phase, 503 only when it made none for longer than its
   * timeout (naming it); between phases, when no reconcile finished within two poll intervals.
   */
  health(): { ok: boolean; reason?: string } {
    if (this.#agentState === "stopping") return { ok: false, reason: "the agent is stopping" };
    if (this.#phase) {
      const { name, timeoutMs } = this.#phase;
      const quiet = this.#now() - Math.max(this.#phase.lastProgressAt, this.#lastFetchProgress());
      if (quiet <= timeoutMs) return { ok: true };
      return {
        ok: false,
        reason: `the agent made no progress in its ${name} for ${Math.round(quiet / 1000)} s (limit ${
          Math.round(timeoutMs / 1000)
        } s)`,
      };
    }
    const limitMs = 2 * this.#options.pollIntervalSeconds * 1000;
    const since = Date.parse(this.#lastReconcileAt ?? this.#startedAt);
    const age = this.#now() - since;
    if (age <= limitMs) return { ok: true };
    if (this.#now() - this.#lastFetchProgress() <= this.#options.stallSeconds * 1000) return { ok: true };
    return {
      ok: false,
      reason: this.#lastReconcileAt
        ? `the last reconcile finished ${Math.round(age / 1000)} s ago (limit ${limitMs / 1000} s)`
        : `no reconcile has finished in the ${Math.round(age / 1000)} s since the start`,
    };
  }

  /** When any download last received bytes (or began); 0 when none is in flight. */
  #lastFetchProgress(): number {
    return Math.max(
      0,
      ...[...this.#apps.values()].map((entry) =>
        entry.fetch?.inFlight.size ? entry.fetch.lastProgressAt ?? entry.fetch.startedAt : 0
      ),
    );
  }

  counters(): Counters {
    return this.#counters;
  }
}

/**
 * A service as the document shows it: the engine keeps the last exit code of a running or restarting
 * container too (0 before it ever exited), where it would read as an exit that did not happen.
 */
function serviceForStatus(service: ServiceStatus): ServiceStatus {
  if (service.exitCode === undefined || service.state === "exited") return service;
  const { exitCode: _, ...rest } = service;
  return rest;
}

function isReason(value: unknown): value is StatusReason {
  return typeof value === "object" && value !== null && "code" in value && "message" in value &&
    "at" in value && !(value instanceof Error);
}
