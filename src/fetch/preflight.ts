/**
 * The storage pre-flight: before a pull downloads any layer, the bytes it still needs are checked against
 * the store's filesystem and the unpacked size the engine will need against the engine data root's — so a
 * device never fills its disk halfway through an update.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { type FsSpace, spaceOf } from "../util/disk_space.ts";
import type { Store } from "../store/store.ts";
import type { Descriptor } from "../oci/descriptor.ts";
import type { PullPlan } from "./pull.ts";

/** How full a pull may leave a filesystem: both the watermark and the reserve must hold for it to fit. */
export interface SpacePolicy {
  /** The most of a filesystem (percent) a pull may leave used. */
  watermark: number;
  /** Bytes always left free. */
  reserve: number;
}

/**
 * Unpacked size of a layer known only by its compressed size: gzip of typical root filesystems packs 2–3×.
 * Apps with layers meta give the real figure instead.
 */
export const UNPACK_ESTIMATE_FACTOR = 2.5;

/** What the pre-flight asks of the engine: whether it already holds an image (by config digest). */
export interface EngineImages {
  inspectImage(id: string): Promise<unknown>;
}

/**
 * One filesystem judged against the policy; `fits` is also true when the pull needs nothing of it. A
 * filesystem of unknown capacity gets none: the report's `storeSkipped`/`engineSkipped` says so instead.
 */
export interface SpaceCheck {
  /** What the bytes are for: "store", "engine", or "store and engine" when they share a filesystem. */
  what: string;
  path: string;
  mountedOn: string;
  needBytes: number;
  freeBytes: number;
  sizeBytes: number;
  /** Free bytes after the pull, and the percent used then. */
  freeAfter: number;
  usedPercentAfter: number;
  fits: boolean;
}

/** The pre-flight's verdict: `fits` only when every filesystem checked fits. */
export interface SpaceReport {
  checks: SpaceCheck[];
  fits: boolean;
  /** Why the store's side was not checked, when it was not (its capacity is unknown): a warning to show. */
  storeSkipped?: string;
  /** Why the engine's side was not checked, when it was not. */
  engineSkipped?: string;
}

/**
 * Judges one filesystem against the policy. One of unknown capacity always fits: df gives nothing to judge
 * by, and a disk that does fill fails the write itself (`insufficient_storage`).
 */
export function judge(
  space: Omit<FsSpace, "device">,
  what: string,
  needBytes: number,
  policy: SpacePolicy,
): SpaceCheck {
  const freeAfter = space.freeBytes - needBytes;
  const usedBytes = space.usedBytes ?? space.sizeBytes - space.freeBytes;
  const usable = usedBytes + space.freeBytes;
  const usedPercentAfter = usable > 0 ? ((usedBytes + needBytes) / usable) * 100 : 100;
  return {
    what,
    path: space.path,
    mountedOn: space.mountedOn,
    needBytes,
    freeBytes: space.freeBytes,
    sizeBytes: space.sizeBytes,
    freeAfter,
    usedPercentAfter,
    fits: needBytes === 0 || space.capacityUnknown !== undefined ||
      (freeAfter >= policy.reserve && usedPercentAfter <= policy.watermark),
  };
}

/** One side's filesystem and what the pull needs of it. */
export interface SpaceNeed {
  space: FsSpace;
  need: number;
}

/** The note for a side whose filesystem reports no capacity. */
function unknownCapacity(what: string, space: FsSpace): string {
  return `${what} not checked: ${space.path} is on ${space.mountedOn}, whose capacity is unknown ` +
    `(${space.capacityUnknown})`;
}

/**
 * The report for the store's need and the engine's (or why the engine was not asked): one check per
 * filesystem of known capacity, the two summed when they share one; a side on a filesystem of unknown
 * capacity is not judged, and `storeSkipped`/`engineSkipped` says why.
 */
export function spaceReport(store: SpaceNeed, engine: SpaceNeed | string, policy: SpacePolicy): SpaceReport {
  const needs: { what: string; space: FsSpace; need: number }[] = [];
  let storeSkipped: string | undefined;
  let engineSkipped = typeof engine === "string" ? engine : undefined;
  if (store.space.capacityUnknown) {
    storeSkipped = unknownCapacity("store", store.space) +
      "; the pull goes on, and fails only if the disk fills";
  } else needs.push({ what: "store", ...store });
  if (typeof engine !== "string") {
    if (engine.space.capacityUnknown) engineSkipped = unknownCapacity("engine", engine.space);
    else if (engine.space.device === store.space.device) {
      needs[0] = { what: "store and engine", space: store.space, need: store.need + engine.need };
    } else needs.push({ what: "engine", ...engine });
  }
  const checks = needs.map(({ what, space, need }) => judge(space, what, need, policy));
  return {
    checks,
    fits: checks.every((check) => check.fits),
    ...(storeSkipped ? { storeSkipped } : {}),
    ...(engineSkipped ? { engineSkipped } : {}),
  };
}

/** Bytes the store still needs for the plan: missing blobs (partials count their remainder) and manifests. */
export function storeNeed(plan: PullPlan): number {
  let need = plan.manifestBytes;
  for (const blob of plan.blobs.values()) need += blob.size - blob.bytesDone;
  return need;
}

/** `{digest: usage}` from layers meta (`layers-meta` v1) for `arch`; empty when it is unreadable. */
export function parseLayerUsage(bytes: Uint8Array, arch: string): Map<string, number> {
  const usage = new Map<string, number>();
  try {
    const meta = JSON.parse(new TextDecoder().decode(bytes));
    for (const [digest, layer] of Object.entries(meta?.[arch]?.layers ?? {})) {
      const value = (layer as { usage?: unknown }).usage;
      if (typeof value === "number" && Number.isFinite(value) && value >= 0) usage.set(digest, value);
    }
  } catch {
    // unreadable layers meta: the estimate from compressed sizes is used instead
  }
  return usage;
}

/** `{digest: usage}` from the plan's apps' layers meta for `arch`, when the store has it. */
async function layerUsage(store: Store, plan: PullPlan, arch: string): Promise<Map<string, number>> {
  const usage = new Map<string, number>();
  for (const ref of plan.refs) {
    if (!ref.layersMetaDigest || !(await store.has(ref.layersMetaDigest))) continue;
    const bytes = await store.readBlob(ref.layersMetaDigest).catch(() => new Uint8Array());
    for (const [digest, bytesUsed] of parseLayerUsage(bytes, arch)) usage.set(digest, bytesUsed);
  }
  return usage;
}

/**
 * Unpacked bytes of `images` in the engine: layers meta `usage` where known, else the compressed size ×
 * UNPACK_ESTIMATE_FACTOR. The engine keeps a layer once per stack below it (its chain), so a base two
 * images share counts once, while the same layer on two different bases counts twice.
 */
export function unpackedBytes(images: { layers: Descriptor[] }[], usage: Map<string, number>): number {
  const chains = new Set<string>();
  let need = 0;
  for (const image of images) {
    let chain = "";
    for (const layer of image.layers) {
      chain += `${layer.digest}/`;
      if (chains.has(chain)) continue;
      chains.add(chain);
      need += usage.get(layer.digest) ?? Math.round(layer.size * UNPACK_ESTIMATE_FACTOR);
    }
  }
  return need;
}

/** Unpacked bytes the engine needs for the plan's images it does not hold yet (asked by config digest). */
export async function engineNeed(
  store: Store,
  plan: PullPlan,
  engine: EngineImages,
  arch: string,
): Promise<number> {
  const missing = new Map<string, { layers: Descriptor[] }>();
  for (const ref of plan.refs) {
    for (const image of ref.images) {
      if (missing.has(image.configDigest)) continue;
      if (!(await engine.inspectImage(image.configDigest))) missing.set(image.configDigest, image);
    }
  }
  return unpackedBytes([...missing.values()], await layerUsage(store, plan, arch));
}

/** What checkSpace needs besides the store and plan; without an engine only the store's side is checked. */
export interface CheckOptions {
  policy: SpacePolicy;
  /** With an engine and its data root, the engine's side is checked too. */
  engine?: EngineImages;
  /** The engine's data root (its images' filesystem), e.g. docker's "DockerRootDir". */
  engineDataRoot?: string;
  /** The layers meta architecture key ("amd64", "arm64", …). */
  arch?: string;
}

/**
 * Checks the plan against the store's (and the engine's) filesystem; never throws for lack of space, nor
 * for a filesystem that reports no capacity (the report says so). Throws `store_io` when df cannot be read.
 */
export async function checkSpace(store: Store, plan: PullPlan, options: CheckOptions): Promise<SpaceReport> {
  const storeSide = { space: await spaceOf(store.root), need: storeNeed(plan) };
  let engineSide: SpaceNeed | string = "engine not checked: no engine";
  if (options.engine && options.engineDataRoot) {
    try {
      const need = await engineNeed(store, plan, options.engine, options.arch ?? "amd64");
      engineSide = { space: await spaceOf(options.engineDataRoot), need };
    } catch (error) {
      engineSide = `engine not checked: ${errorMessage(error)}`;
    }
  }
  return spaceReport(storeSide, engineSide, options.policy);
}

const MiB = 1024 * 1024;
const human = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

/** The error a failed check raises: it names the filesystem, the need and the free space. */
export function insufficientStorage(what: string, report: SpaceReport, policy: SpacePolicy): BerthError {
  const failed = report.checks.find((check) => !check.fits)!;
  return new BerthError(
    "insufficient_storage",
    `not enough space for ${what} in the ${failed.what} (${failed.path}, on ${failed.mountedOn}): ` +
      `needs ${human(failed.needBytes)}, ${human(failed.freeBytes)} free, and berth keeps ` +
      `${human(policy.reserve)} free and at most ${policy.watermark}% used; free some space (berth prune) ` +
      `or lower storage.reserve/storage.watermark`,
    {
      transient: true,
      details: { needBytes: failed.needBytes, freeBytes: failed.freeBytes, path: failed.path },
    },
  );
}

/** A pull's pre-flight: checks the plan and throws `insufficient_storage` when it does not fit. */
export async function checkPlanSpace(
  store: Store,
  plan: PullPlan,
  options: CheckOptions,
): Promise<SpaceReport> {
  const report = await checkSpace(store, plan, options);
  if (!report.fits) {
    throw insufficientStorage(plan.refs.map((ref) => ref.name).join(", "), report, options.policy);
  }
  return report;
}
