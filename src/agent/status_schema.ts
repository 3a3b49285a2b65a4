/**
 * The status document `GET /status` serves, as a zod schema: the one definition the agent fills, the
 * server validates in tests, and docs/status.md documents. Bump STATUS_SCHEMA_VERSION on any incompatible
 * change; adding optional fields is compatible.
 */
import { z } from "zod";

/** The document's `schemaVersion`: raised only by an incompatible change. */
export const STATUS_SCHEMA_VERSION = 1;

/** An app's state, as fleet tooling sees it. */
export const APP_STATES = [
  "pending", // desired, nothing done yet (or waiting for the next attempt)
  "fetching",
  "fetched",
  "installing",
  "installed",
  "running",
  "updating", // a new version is being fetched or installed while the old one runs
  "blocked", // cannot proceed until something outside changes (storage); retried
  "stalled", // a download made no progress for the stall timeout; retried
  "failed", // the last attempt failed; retried with back-off
  "stopping",
] as const;
/** One of APP_STATES. */
export type AppState = typeof APP_STATES[number];

const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/);
const isoTime = z.string().datetime({ offset: true });

/** Why an app is blocked, stalled or failed: a machine reason, a line for people, and facts. */
export const ReasonSchema = z.object({
  code: z.string(),
  message: z.string(),
  /** e.g. needBytes and freeBytes for insufficient_storage. */
  details: z.record(z.union([z.number(), z.string()])).optional(),
  at: isoTime,
});
/** A machine reason with its message, facts and time. */
export type StatusReason = z.infer<typeof ReasonSchema>;

/** A fetch while it runs: bytes and blobs done of the version's total, and the speed. */
export const ProgressSchema = z.object({
  /** Every blob of the version for this platform: bundle, manifests, configs, layers. Fixed once known. */
  bytesTotal: z.number().int().nonnegative(),
  /** Blobs already stored count as done; partial downloads count what they hold. Never decreases. */
  bytesDone: z.number().int().nonnegative(),
  blobsTotal: z.number().int().nonnegative(),
  blobsDone: z.number().int().nonnegative(),
  /** Over the last few seconds. */
  bytesPerSecond: z.number().nonnegative(),
  startedAt: isoTime,
  lastProgressAt: isoTime.optional(),
});
/** A fetch's progress, as ProgressSchema validates it. */
export type Progress = z.infer<typeof ProgressSchema>;

/** One blob being downloaded now: how far along, and whether it is retrying or stalled. */
export const BlobSchema = z.object({
  digest,
  size: z.number().int().nonnegative(),
  bytesDone: z.number().int().nonnegative(),
  state: z.enum(["downloading", "retrying", "stalled"]),
});
/** One blob in flight, as BlobSchema validates it. */
export type BlobStatus = z.infer<typeof BlobSchema>;

/** One compose service of an app, as its container is in the engine. */
export const ServiceSchema = z.object({
  name: z.string(),
  container: z.string().optional(),
  /** The engine's container state: created, running, restarting, exited, … or "missing". */
  state: z.string(),
  /** Only for a container that exited. */
  exitCode: z.number().int().optional(),
  restartCount: z.number().int().optional(),
  /** healthy, unhealthy, starting, or absent when the service has no health check. */
  health: z.string().optional(),
});
/** One service's container state, as ServiceSchema validates it. */
export type ServiceStatus = z.infer<typeof ServiceSchema>;

/**
 * The steps of an update, in order; each is written (and fsynced) before it runs. An update ends
 * `complete`, or `rolled-back` after `rolling-back` (the version is recorded as failed before that begins).
 */
export const UPDATE_STEPS = [
  "fetching",
  "fetched",
  "installing",
  "installed",
  "starting",
  "verifying",
  "complete",
  "rolling-back",
  "rolled-back",
] as const;
/** One of UPDATE_STEPS. */
export type UpdateStep = typeof UPDATE_STEPS[number];
/**
 * How an update ended: `superseded` when the tag moved on to another new version before it was done,
 * `cancelled` when it moved back to the version installed (nothing left to do), `refused` when the version
 * did not pass the signature policy (nothing of it fetched beyond its manifest and signature).
 */
export const UPDATE_OUTCOMES = ["complete", "rolled-back", "superseded", "cancelled", "refused"] as const;

/** An app's update in progress, or its last one: the version, the step and since when, how it ended. */
export const UpdateSchema = z.object({
  digest,
  step: z.enum(UPDATE_STEPS),
  since: isoTime,
  outcome: z.enum(UPDATE_OUTCOMES).optional(),
  /** The version of an unfinished update this one replaced: the tag moved on while it ran. */
  supersedes: digest.optional(),
  /** When the last blob of the version was stored: its images are loaded as they arrive, before then. */
  fetchedAt: isoTime.optional(),
});

/** One configured app: its versions, state, reason, services, and its fetch while one runs. */
export const AppSchema = z.object({
  name: z.string(),
  /** The reference the config asks for. */
  ref: z.string(),
  /** The version the tag pointed to at the last poll. */
  desiredDigest: digest.optional(),
  /** The version installed on the device. */
  currentDigest: digest.optional(),
  /** Older versions kept for roll-back, newest first. */
  previousDigests: z.array(digest),
  state: z.enum(APP_STATES),
  reason: ReasonSchema.optional(),
  /** Present only while a fetch of the app runs. */
  progress: ProgressSchema.optional(),
  /** Blobs being downloaded right now. */
  blobs: z.array(BlobSchema),
  services: z.array(ServiceSchema),
  /** The update in progress, or the last one since the agent started (absent before any). */
  update: UpdateSchema.optional(),
  updatedAt: isoTime,
});
/** One app's entry of the document, as AppSchema validates it. */
export type AppStatus = z.infer<typeof AppSchema>;

/** The store: where it is, what it holds, what pruning would free and the free space left. */
export const StoreSchema = z.object({
  path: z.string(),
  bytesUsed: z.number().int().nonnegative(),
  blobs: z.number().int().nonnegative(),
  /** What `berth prune` would free now. */
  reclaimableBytes: z.number().int().nonnegative(),
  /**
   * Free bytes on the store's filesystem; absent until first measured, and on a filesystem that reports no
   * capacity (FUSE, ramfs), where 0 would read as a full disk.
   */
  freeBytes: z.number().int().nonnegative().optional(),
});

/** One registry host the agent has asked (a mirror from hosts.toml, or a registry itself), as HostHealth keeps it. */
export const RegistryHostSchema = z.object({
  host: z.string(),
  /** The registry whose content it was asked for. */
  registry: z.string(),
  mirror: z.boolean(),
  bytesServed: z.number().int().nonnegative(),
  errors: z.number().int().nonnegative(),
  /** Until when it is skipped while another host can serve; absent when it is not in back-off. */
  backoffUntil: isoTime.optional(),
  lastError: z.string().optional(),
});

/** The whole document `GET /status` answers (schemaVersion 1). */
export const StatusSchema = z.object({
  schemaVersion: z.literal(STATUS_SCHEMA_VERSION),
  agent: z.object({
    version: z.string(),
    startedAt: isoTime,
    /** starting → auditing → reconciling ⇄ idle → stopping. */
    state: z.enum(["starting", "auditing", "reconciling", "idle", "stopping"]),
    pollIntervalSeconds: z.number().positive(),
    lastReconcileAt: isoTime.optional(),
  }),
  engine: z.object({
    reachable: z.boolean(),
    version: z.string().optional(),
    apiVersion: z.string().optional(),
    error: z.string().optional(),
  }),
  store: StoreSchema,
  /** The registry hosts asked since the agent started, mirrors included, with their figures. */
  registryHosts: z.array(RegistryHostSchema).default([]),
  /** Whether every installed app could be brought back after a factory reset with no network. */
  canRestoreOffline: z.boolean(),
  apps: z.array(AppSchema),
  lastError: ReasonSchema.extend({ app: z.string().optional() }).optional(),
});
/** The status document, as StatusSchema validates it. */
export type Status = z.infer<typeof StatusSchema>;

/** Counters the agent keeps for `/metrics` (monotonic since start). */
export interface Counters {
  bytesFetched: number;
  blobsFetched: number;
  errorsByReason: Record<string, number>;
  reconciles: number;
  /** Seconds spent, summed, and how many: fetch, install, reconcile. */
  durations: Record<string, { sum: number; count: number }>;
}
