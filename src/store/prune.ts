/**
 * The store's garbage collector: which blobs a set of roots reaches, and the removal of everything else —
 * unreferenced blobs, stale ingests and leftover temporary files. Which references and app versions are
 * roots is decided above the store (app/prune.ts); this module knows only OCI content.
 *
 * Crash rule: `sweepStore` only deletes what no root reaches, one blob at a time, each removal made durable
 * (fsync of blobs/). A kill mid-sweep leaves more unreferenced blobs, which the next sweep removes; nothing
 * a remaining reference needs is ever touched, so fsck passes at every point.
 */
import { MAX_MANIFEST_BYTES } from "../oci/manifest.ts";
import { digestHex } from "../oci/digest.ts";
import { statIfExists, TEMP_SUFFIX } from "../util/fs.ts";
import type { Descriptor } from "../oci/descriptor.ts";
import { MANIFEST_DIGEST, SOURCE_DIGEST } from "./annotations.ts";
import type { Store } from "./store.ts";

/** A blob to keep, with its media type when the descriptor naming it says. */
export interface BlobRoot {
  digest: string;
  mediaType?: string;
}

/**
 * A temporary file at least this old is a leftover of an interrupted write: atomic writes live for
 * milliseconds. Used when the caller may still be writing (it passed the ingests it keeps).
 */
export const TEMP_FILE_MIN_AGE_MS = 60_000;

const DIGEST_VALUE = /^sha256:[0-9a-f]{64}$/;

/** The blobs an index.json entry needs directly: itself, what the registry served, the chosen manifest. */
export function entryRoots(entry: Descriptor): BlobRoot[] {
  const roots: BlobRoot[] = [{ digest: entry.digest, mediaType: entry.mediaType }];
  const source = entry.annotations?.[SOURCE_DIGEST];
  if (source && source !== entry.digest) roots.push({ digest: source });
  const manifest = entry.annotations?.[MANIFEST_DIGEST];
  if (manifest && manifest !== entry.digest) roots.push({ digest: manifest });
  return roots;
}

/**
 * Every blob reachable from `roots`: an index reaches its manifests, a manifest its config and layers, and
 * any annotation value that is a digest, on the manifest or on its descriptors (a compose app names its
 * bundle index on the bundle's layer descriptor). `readJson`
 * returns a stored manifest or index parsed, or undefined when the blob is absent, too big or not JSON;
 * it is asked only about roots and index children, never about configs or layers. Absent children (the
 * other platforms of a served index) are marked too, which is harmless: marking only protects.
 */
export async function reachableBlobs(
  roots: BlobRoot[],
  readJson: (digest: string) => Promise<unknown>,
): Promise<Set<string>> {
  const reached = new Set<string>();
  const pending = [...roots];
  for (let root = pending.pop(); root; root = pending.pop()) {
    if (reached.has(root.digest)) continue;
    reached.add(root.digest);
    const json = await readJson(root.digest);
    if (typeof json !== "object" || json === null || Array.isArray(json)) continue;
    const node = json as {
      manifests?: unknown;
      config?: { digest?: unknown };
      layers?: unknown;
      annotations?: unknown;
      mediaType?: unknown;
    };
    if (Array.isArray(node.manifests)) {
      for (const child of node.manifests as Partial<Descriptor>[]) {
        if (typeof child?.digest === "string") {
          pending.push({ digest: child.digest, mediaType: child.mediaType });
        }
      }
    }
    const leaves: unknown[] = [];
    const named = (annotations: unknown) => {
      if (typeof annotations !== "object" || annotations === null) return;
      leaves.push(...Object.values(annotations).filter((value) => DIGEST_VALUE.test(String(value))));
    };
    named(node.annotations);
    const descriptors = [
      node.config,
      ...(Array.isArray(node.layers) ? node.layers : []),
    ] as (Partial<Descriptor> | undefined)[];
    for (const descriptor of descriptors) {
      leaves.push(descriptor?.digest);
      named(descriptor?.annotations);
    }
    for (const leaf of leaves) if (typeof leaf === "string") reached.add(leaf);
  }
  return reached;
}

/** A `readJson` for `reachableBlobs` over the committed blobs (`sizes`: digest → size, from listBlobs). */
export function storeJsonReader(
  store: Store,
  sizes: Map<string, number>,
): (digest: string) => Promise<unknown> {
  return async (digest) => {
    const size = sizes.get(digest);
    if (size === undefined || size > MAX_MANIFEST_BYTES) return undefined;
    try {
      return JSON.parse(new TextDecoder().decode(await store.readBlob(digest)));
    } catch {
      return undefined; // a layer or config small enough to look at: a leaf
    }
  };
}

/** What sweepStore must leave alone: the blobs in `keep` and, with `keepIngests`, downloads still running. */
export interface SweepOptions {
  /** Blobs to keep (what the roots reach). */
  keep: Set<string>;
  /**
   * Digests still being fetched: neither their ingests nor, if they were committed meanwhile, their blobs
   * are removed. When given, temporary files younger than TEMP_FILE_MIN_AGE_MS are left too (the caller
   * may be writing). When absent, every ingest and temporary file goes (the caller holds the only writer).
   */
  keepIngests?: Set<string>;
  /** Count what would go, remove nothing. */
  dryRun?: boolean;
}

/** What sweepStore removed, or with `dryRun` would have removed. */
export interface SweepResult {
  blobsRemoved: number;
  /** Bytes of the blobs, ingests and temporary files removed (or that would be). */
  bytesFreed: number;
  ingestsRemoved: number;
  tempFilesRemoved: number;
}

/** Every committed blob's size, by digest. */
export async function blobSizes(store: Store): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for await (const blob of store.listBlobs()) sizes.set(blob.digest, blob.size);
  return sizes;
}

/** The committed blobs not in `keep` (nor being fetched), with their sizes. */
export function unreachable(
  sizes: Map<string, number>,
  keep: Set<string>,
  keepIngests?: Set<string>,
): { digest: string; size: number }[] {
  return [...sizes].filter(([digest]) => !keep.has(digest) && !keepIngests?.has(digest))
    .map(([digest, size]) => ({ digest, size }));
}

/** Removes unreferenced blobs, then stale ingests, then leftover temporary files. Needs the writer lock. */
export async function sweepStore(
  store: Store,
  sizes: Map<string, number>,
  options: SweepOptions,
): Promise<SweepResult> {
  const result: SweepResult = { blobsRemoved: 0, bytesFreed: 0, ingestsRemoved: 0, tempFilesRemoved: 0 };
  for (const blob of unreachable(sizes, options.keep, options.keepIngests)) {
    if (!options.dryRun) await store.deleteBlob(blob.digest);
    result.blobsRemoved++;
    result.bytesFreed += blob.size;
  }
  const keptIngests = new Set([...options.keepIngests ?? []].map((digest) => digestHex(digest)));
  for (const name of await store.listIngests()) {
    if (keptIngests.has(name)) continue;
    result.bytesFreed += (await statIfExists(`${store.ingestDir}/${name}/data`).catch(() =>
      undefined
    ))?.size ??
      0;
    if (!options.dryRun) await store.removeIngest(name);
    result.ingestsRemoved++;
  }
  const now = Date.now();
  for (const path of await store.listTempFiles()) {
    const info = await statIfExists(path).catch(() => undefined);
    if (!info || !path.endsWith(TEMP_SUFFIX)) continue;
    const age = now - (info.mtime?.getTime() ?? 0);
    if (options.keepIngests && age < TEMP_FILE_MIN_AGE_MS) continue;
    if (!options.dryRun) await Deno.remove(path).catch(() => {});
    result.tempFilesRemoved++;
    result.bytesFreed += info.size;
  }
  return result;
}
