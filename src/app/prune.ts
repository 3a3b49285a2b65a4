/**
 * Pruning a device: which app versions, references and engine images stay, and the removal of the rest.
 *
 * Kept, with `keep` = earlier versions kept besides the installed one:
 * - of each recorded app (apps.json), the installed version and the first `keep` of its `previous` list;
 * - every fetched version of an app with no record, and fetched versions of a recorded app that are not in
 *   its history (never installed: they may be waiting to be installed);
 * - every image a kept version pins, and every reference a user pulled (entries without PULLED_FOR_APP).
 * Dropped: the other app versions' index.json entries, entries of images pulled for apps that no kept
 * version pins, berth's engine tags of those images (`localImageTag`), then every blob nothing kept reaches,
 * stale ingests and leftover temporary files; the records' `previous` lists are cut to `keep`.
 *
 * The engine: a tag is removed without force, so an image a container uses (409) stays — in the engine and
 * in the store, where its entry is kept so that the next prune tries again — and is reported. An image with
 * other tags only loses berth's. Tags of images a user pulled into the store are left alone.
 *
 * Order, and why a kill at any point leaves a consistent store that the next prune finishes:
 * 1. Engine tags. Nothing in the store has changed yet, so the next prune computes the same plan; tags
 *    already gone answer 404.
 * 2. index.json, atomically. The dropped versions are still in the records' `previous` lists, so the next
 *    prune still knows them as not kept (and their pins, whose blobs are all still there); every remaining
 *    entry is complete, so fsck passes.
 * 3. apps.json, each record atomically. Only now are versions forgotten; their index entries are gone
 *    already (step 2), so the next prune cannot mistake them for fetched-but-never-installed versions.
 * 4. Blobs no kept entry or version reaches, one durable delete at a time; then ingests and temporary
 *    files. A kill leaves more unreachable blobs, which the next prune finds the same way.
 * The engine step runs before the store forgets anything, so no loaded image can lose the record of why
 * berth loaded it while its tag is still there (except one a container held: its entry is kept).
 *
 * The caller holds the store's writer lock and must not write index.json or apps.json meanwhile; blobs it is
 * still fetching go into `keepIngests`.
 */
import { BerthError } from "../util/errors.ts";
import { parseReference } from "../oci/reference.ts";
import type { Store } from "../store/store.ts";
import { type AppRecord, readApps, writeApp } from "../store/apps.ts";
import type { Descriptor } from "../oci/descriptor.ts";
import {
  APP_NAME,
  MANIFEST_DIGEST,
  PULLED_FOR_APP,
  REF_NAME,
  SIGNATURE_OF,
  SOURCE_DIGEST,
} from "../store/annotations.ts";
import {
  type BlobRoot,
  blobSizes,
  entryRoots,
  reachableBlobs,
  storeJsonReader,
  sweepStore,
  unreachable,
} from "../store/prune.ts";
import type { Engine } from "../docker/engine.ts";
import { parseAppManifest } from "./app_manifest.ts";
import { appImageRefs, readBundleCompose } from "./stored.ts";
import { localImageTag } from "./lifecycle.ts";

/** How to prune: how many earlier versions to keep, and what to leave alone. */
export interface PruneOptions {
  /** Earlier versions of each app kept besides the installed one. */
  keep: number;
  /** Digests still being fetched: their ingests (and blobs, if committed meanwhile) stay. */
  keepIngests?: Set<string>;
  /** Say what would go; change nothing (the engine is only asked which tags exist). */
  dryRun?: boolean;
  /** Apps taken off the device (their records already removed): their fetched versions go too. */
  removeApps?: string[];
}

/** What a prune removed (or, in a dry run, would remove). */
export interface PruneResult {
  /** References dropped from index.json. */
  refsRemoved: string[];
  blobsRemoved: number;
  /** Bytes of blobs, ingests and temporary files removed. */
  bytesFreed: number;
  ingestsRemoved: number;
  tempFilesRemoved: number;
  /** berth's engine tags removed (the image itself too when it had no other tag). */
  imagesRemoved: string[];
  /** berth's engine tags kept because a container uses the image; the next prune tries again. */
  imagesInUse: string[];
  /** Things prune left alone and why (e.g. an app version whose pins cannot be read). */
  warnings: string[];
  dryRun: boolean;
}

/** What the planner decides from. */
export interface PruneInput {
  entries: Descriptor[];
  apps: Record<string, AppRecord>;
  keep: number;
  /** The images each app version pins (normalised digest references); undefined when unreadable. */
  pins: Map<string, string[] | undefined>;
  removeApps?: string[];
}

/** What the planner decided: the versions, index entries, pins and engine tags kept, and what goes. */
export interface PrunePlan {
  /** App manifest digests kept. */
  keptVersions: Set<string>;
  keptEntries: Descriptor[];
  droppedEntries: Descriptor[];
  /** Images (digest references) some kept version pins. */
  keptPins: Set<string>;
  /** berth's engine tags to remove → the reference each image was loaded from. */
  engineTags: Map<string, string>;
  /** Records whose `previous` list is cut to `keep`, as they will be written. */
  trimmedApps: AppRecord[];
  warnings: string[];
}

const refOf = (entry: Descriptor) => entry.annotations?.[REF_NAME] ?? entry.digest;
const versionOf = (entry: Descriptor) => entry.annotations?.[MANIFEST_DIGEST] ?? entry.digest;
const isDigestRef = (ref: string) => ref.includes("@sha256:");

/** Checks `keep`; a negative or fractional one is a caller's bug or bad config. */
export function checkKeep(keep: number, what = "keep"): void {
  if (!Number.isSafeInteger(keep) || keep < 0) {
    throw new BerthError("invalid_input", `${what}: ${keep} is not a whole number of versions (0 or more)`);
  }
}

/** Every app version the planner needs the pins of: recorded ones (current and earlier) and fetched ones. */
export function appVersions(entries: Descriptor[], apps: Record<string, AppRecord>): Set<string> {
  const versions = new Set<string>();
  for (const record of Object.values(apps)) {
    versions.add(record.digest);
    for (const digest of record.previous ?? []) versions.add(digest);
  }
  for (const entry of entries) if (entry.annotations?.[APP_NAME]) versions.add(versionOf(entry));
  return versions;
}

/** A signature stays as long as what it signs: a kept app version, or the digest of a kept entry. */
function dropSignatures(entries: Descriptor[], keptVersions: Set<string>, dropped: Set<Descriptor>): void {
  const signedKept = new Set(keptVersions);
  for (const entry of entries) {
    if (!dropped.has(entry)) signedKept.add(entry.annotations?.[SOURCE_DIGEST] ?? entry.digest);
  }
  for (const entry of entries) {
    const signs = entry.annotations?.[SIGNATURE_OF];
    if (signs && !signedKept.has(signs)) dropped.add(entry);
  }
}

/** Decides what stays and what goes; pure. See the module comment for the rules. */
export function planPrune(input: PruneInput): PrunePlan {
  const { entries, apps, keep } = input;
  const keptVersions = new Set<string>();
  const history = new Map<string, Set<string>>();
  for (const [name, record] of Object.entries(apps)) {
    const previous = record.previous ?? [];
    history.set(name, new Set([record.digest, ...previous]));
    keptVersions.add(record.digest);
    for (const digest of previous.slice(0, keep)) keptVersions.add(digest);
  }
  const removedApps = new Set(input.removeApps ?? []);
  const appEntryDropped = (name: string, version: string) => {
    const known = history.get(name);
    if (!known) return removedApps.has(name);
    return !keptVersions.has(version) && known.has(version);
  };

  const dropped = new Set<Descriptor>();
  for (const entry of entries) {
    const name = entry.annotations?.[APP_NAME];
    if (!name) continue;
    if (appEntryDropped(name, versionOf(entry))) dropped.add(entry);
    else keptVersions.add(versionOf(entry));
  }

  const warnings: string[] = [];
  const keptPins = new Set<string>();
  for (const version of keptVersions) {
    const pins = input.pins.get(version);
    if (pins) { for (const ref of pins) keptPins.add(ref); }
    else {
      warnings.push(
        `app version ${version}: its manifest or bundle cannot be read from the store, so the images it ` +
          `pins are unknown; images pulled for apps are all kept this time (run 'berth fsck')`,
      );
    }
  }
  const pruneImages = warnings.length === 0;

  const userRefs = new Set<string>();
  const droppedImageRefs: string[] = [];
  for (const entry of entries) {
    if (entry.annotations?.[APP_NAME] || entry.annotations?.[SIGNATURE_OF]) continue;
    const ref = refOf(entry);
    if (!entry.annotations?.[PULLED_FOR_APP]) userRefs.add(ref);
    else if (pruneImages && !keptPins.has(ref)) {
      dropped.add(entry);
      droppedImageRefs.push(ref);
    }
  }

  dropSignatures(entries, keptVersions, dropped);

  const engineTags = new Map<string, string>();
  if (pruneImages) {
    const droppedVersions = [...appVersions(entries, apps)].filter((version) => !keptVersions.has(version));
    const candidates = [
      ...droppedVersions.flatMap((version) => input.pins.get(version) ?? []),
      ...droppedImageRefs,
    ];
    for (const ref of candidates) {
      if (keptPins.has(ref) || userRefs.has(ref) || !isDigestRef(ref)) continue;
      engineTags.set(localImageTag(ref), ref);
    }
  }

  const trimmedApps = Object.values(apps)
    .filter((record) => (record.previous?.length ?? 0) > keep)
    .map((record) => ({ ...record, previous: record.previous!.slice(0, keep) }));

  return {
    keptVersions,
    keptEntries: entries.filter((entry) => !dropped.has(entry)),
    droppedEntries: entries.filter((entry) => dropped.has(entry)),
    keptPins,
    engineTags,
    trimmedApps,
    warnings,
  };
}

/** The plan with the entries of images still in use (by reference) kept after all. */
export function keepInUse(plan: PrunePlan, refs: Set<string>): PrunePlan {
  if (refs.size === 0) return plan;
  const back = plan.droppedEntries.filter((entry) => refs.has(refOf(entry)));
  return {
    ...plan,
    keptEntries: [...plan.keptEntries, ...back],
    droppedEntries: plan.droppedEntries.filter((entry) => !back.includes(entry)),
  };
}

/** The blobs the plan keeps walking from: kept entries, kept app versions, the images they pin. */
export function planRoots(plan: PrunePlan): BlobRoot[] {
  return [
    ...plan.keptEntries.flatMap(entryRoots),
    ...[...plan.keptVersions].map((digest) => ({ digest })),
    ...[...plan.keptPins].flatMap((ref) => {
      const digest = parseReference(ref).digest;
      return digest ? [{ digest }] : [];
    }),
  ];
}

/** The images an app version pins, or undefined when its manifest or bundle cannot be read. */
async function readPins(store: Store, version: string): Promise<string[] | undefined> {
  try {
    const app = parseAppManifest(await store.readBlob(version), `app manifest ${version}`);
    return appImageRefs(await readBundleCompose(store, app.bundle, `app manifest ${version}`));
  } catch {
    return undefined;
  }
}

/** What tells one index.json entry from another: its reference name and the manifest it names. */
const indexKey = (entry: Descriptor) => `${entry.annotations?.[REF_NAME] ?? ""}@${entry.digest}`;

/** Reads what planning needs from the store and plans. */
async function survey(store: Store, keep: number, removeApps?: string[]) {
  checkKeep(keep);
  const index = await store.readIndex();
  const apps = await readApps(store);
  const sizes = await blobSizes(store);
  const pins = new Map<string, string[] | undefined>();
  for (const version of appVersions(index.manifests, apps)) pins.set(version, await readPins(store, version));
  const plan = planPrune({ entries: index.manifests, apps, keep, pins, removeApps });
  return { sizes, plan };
}

/**
 * Prunes the store and berth's images in the engine; see the module comment for what stays and the order
 * of the steps. Needs the store opened for writing. Fails with `engine_unavailable` before changing
 * anything when the engine cannot be reached.
 */
export async function pruneStore(store: Store, engine: Engine, options: PruneOptions): Promise<PruneResult> {
  const dryRun = options.dryRun ?? false;
  // Asked first, so that an unreachable engine fails the prune before anything has changed.
  await engine.info();
  const { sizes, plan: planned } = await survey(store, options.keep, options.removeApps);

  const imagesRemoved: string[] = [];
  const imagesInUse: string[] = [];
  const inUseRefs = new Set<string>();
  for (const [tag, ref] of planned.engineTags) {
    if (dryRun) {
      if (await engine.inspectImage(tag)) imagesRemoved.push(tag);
      continue;
    }
    const outcome = await engine.removeImage(tag);
    if (outcome === "removed") imagesRemoved.push(tag);
    if (outcome === "in_use") {
      imagesInUse.push(tag);
      inUseRefs.add(ref);
    }
  }
  const plan = keepInUse(planned, inUseRefs);
  const keepBlobs = await reachableBlobs(planRoots(plan), storeJsonReader(store, sizes));

  if (!dryRun) {
    if (plan.droppedEntries.length > 0) {
      const dropped = new Set(plan.droppedEntries);
      // Entries are told apart by reference name and digest: the file is read again under the change.
      const droppedKeys = new Set([...dropped].map(indexKey));
      await store.updateIndex((manifests) => manifests.filter((entry) => !droppedKeys.has(indexKey(entry))));
    }
    for (const record of plan.trimmedApps) await writeApp(store, record.name, record);
  }
  const swept = await sweepStore(store, sizes, { keep: keepBlobs, keepIngests: options.keepIngests, dryRun });
  return {
    refsRemoved: plan.droppedEntries.map(refOf),
    blobsRemoved: swept.blobsRemoved,
    bytesFreed: swept.bytesFreed,
    ingestsRemoved: swept.ingestsRemoved,
    tempFilesRemoved: swept.tempFilesRemoved,
    imagesRemoved,
    imagesInUse,
    warnings: plan.warnings,
    dryRun,
  };
}

/**
 * Bytes of committed blobs a prune with `keep` would remove, from the store alone (no engine, no lock:
 * for the status endpoint). Ingests are not counted (they may be in flight), nor images a container holds.
 */
export async function reclaimableBytes(store: Store, keep: number): Promise<number> {
  const { sizes, plan } = await survey(store, keep);
  const keepBlobs = await reachableBlobs(planRoots(plan), storeJsonReader(store, sizes));
  return unreachable(sizes, keepBlobs).reduce((sum, blob) => sum + blob.size, 0);
}
