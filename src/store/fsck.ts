/**
 * fsck: re-hashes every committed blob, walks every reference in index.json (entry → wrapper or served
 * index → chosen manifest → config → layers) and lists what is missing or corrupt. With `repair` it removes
 * corrupt blobs, stale ingests and leftover temporary files, so that the next pull fetches them again.
 */
import { errorMessage } from "../util/errors.ts";
import { digestHex, EMPTY_SHA256, isDigest, Sha256 } from "../oci/digest.ts";
import { parseImageManifest, parseIndex, STORED_MANIFEST_RULES } from "../oci/manifest.ts";
import { isIndexType } from "../oci/mediatypes.ts";
import { readIngestState } from "./ingest.ts";
import type { Descriptor } from "../oci/descriptor.ts";
import { MANIFEST_DIGEST, REF_NAME, SOURCE_DIGEST } from "./annotations.ts";
import type { Store } from "./store.ts";

/** A blob a stored reference needs that is missing, corrupt, of the wrong size or unreadable. */
export interface FsckProblem {
  /** The reference affected ("" for a blob no reference needs). */
  ref: string;
  digest: string;
  problem: "missing" | "corrupt" | "size-mismatch" | "unreadable";
  detail: string;
}

/** What fsck found; `repaired` says the corrupt blobs, stale ingests and temporary files were removed. */
export interface FsckReport {
  refs: number;
  blobs: number;
  bytes: number;
  corruptBlobs: string[];
  problems: FsckProblem[];
  staleIngests: string[];
  tempFiles: string[];
  /** Entries under blobs/sha256/ that are not blobs (links, directories, other names). */
  strayEntries: string[];
  repaired: boolean;
}

async function hashBlob(store: Store, digest: string): Promise<string> {
  const hash = new Sha256();
  const file = await store.openBlob(digest);
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest();
}

/** Runs the check; `repair` needs a store opened for writing. */
export async function fsck(store: Store, repair: boolean): Promise<FsckReport> {
  const report: FsckReport = {
    refs: 0,
    blobs: 0,
    bytes: 0,
    corruptBlobs: [],
    problems: [],
    staleIngests: [],
    tempFiles: [],
    strayEntries: [],
    repaired: false,
  };
  const sizes = await checkBlobs(store, report);
  for (const entry of (await store.readIndex()).manifests) {
    report.refs++;
    await checkEntry(store, entry, sizes, report);
  }
  for (const name of await store.listIngests()) {
    const state = await readIngestState(`${store.ingestDir}/${name}/state.json`);
    const stale = !state || !isDigest(state.digest) || digestHex(state.digest) !== name ||
      sizes.has(state.digest);
    if (stale) report.staleIngests.push(name);
  }
  report.tempFiles = await store.listTempFiles();
  report.strayEntries = await store.strayBlobEntries();
  if (repair) {
    // Removing a link removes the link, never what it points to.
    for (const path of report.strayEntries) await Deno.remove(path, { recursive: true }).catch(() => {});
    for (const digest of report.corruptBlobs) await store.deleteBlob(digest);
    for (const name of report.staleIngests) await store.removeIngest(name);
    for (const path of report.tempFiles) await Deno.remove(path).catch(() => {});
    report.repaired = true;
  }
  return report;
}

/** Hashes every blob: the sizes of those that match their digest; the others go on the report. */
async function checkBlobs(store: Store, report: FsckReport): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for await (const blob of store.listBlobs()) {
    report.blobs++;
    report.bytes += blob.size;
    let actual: string;
    try {
      actual = await hashBlob(store, blob.digest);
    } catch (error) {
      report.problems.push({
        ref: "",
        digest: blob.digest,
        problem: "unreadable",
        detail: errorMessage(error),
      });
      continue;
    }
    if (actual === blob.digest) sizes.set(blob.digest, blob.size);
    else report.corruptBlobs.push(blob.digest);
  }
  return sizes;
}

/** Checks that one index.json entry has everything it needs: its manifests, config and layers. */
async function checkEntry(
  store: Store,
  entry: Descriptor,
  sizes: Map<string, number>,
  report: FsckReport,
): Promise<void> {
  const ref = entry.annotations?.[REF_NAME] ?? entry.digest;
  const need = (descriptor: Pick<Descriptor, "digest" | "size">, what: string): boolean => {
    const problem = blobProblem(descriptor, what, sizes, report.corruptBlobs);
    if (problem) report.problems.push({ ref, digest: descriptor.digest, ...problem });
    return !problem;
  };
  const source = entry.annotations?.[SOURCE_DIGEST];
  if (source && source !== entry.digest) need({ digest: source, size: -1 }, "the index the registry served");
  if (!need(entry, "the index.json entry")) return;
  let manifestDescriptor: Descriptor = entry;
  try {
    if (isIndexType(entry.mediaType)) {
      const wrapper = parseIndex(await store.readBlob(entry.digest), `index ${entry.digest}`);
      const wanted = entry.annotations?.[MANIFEST_DIGEST];
      const child = wrapper.manifests.find((item) => !wanted || item.digest === wanted);
      if (!child) {
        report.problems.push({
          ref,
          digest: entry.digest,
          problem: "missing",
          detail: "index names no manifest",
        });
        return;
      }
      manifestDescriptor = child;
      if (!need(child, "the image manifest")) return;
    }
    const manifestBytes = await store.readBlob(manifestDescriptor.digest);
    // A compose app's manifest is an image manifest too: its config and layers are checked alike.
    const manifest = parseImageManifest(
      manifestBytes,
      `manifest ${manifestDescriptor.digest}`,
      STORED_MANIFEST_RULES,
    );
    // The legacy compose-app config (no bytes, no size) was never fetched: nothing needs it.
    if (manifest.config.digest !== EMPTY_SHA256) need(manifest.config, "the image config");
    for (const [position, layer] of manifest.layers.entries()) need(layer, `layer ${position}`);
  } catch (error) {
    report.problems.push({
      ref,
      digest: manifestDescriptor.digest,
      problem: "unreadable",
      detail: errorMessage(error),
    });
  }
}

/** What is wrong with a blob an entry needs: missing, corrupt, or of another size; undefined when fine. */
function blobProblem(
  descriptor: Pick<Descriptor, "digest" | "size">,
  what: string,
  sizes: Map<string, number>,
  corruptBlobs: string[],
): Pick<FsckProblem, "problem" | "detail"> | undefined {
  const size = sizes.get(descriptor.digest);
  if (size === undefined) {
    const corrupt = corruptBlobs.includes(descriptor.digest);
    return {
      problem: corrupt ? "corrupt" : "missing",
      detail: `${what} ${corrupt ? "does not match its digest" : "is not in the store"}`,
    };
  }
  if (descriptor.size >= 0 && size !== descriptor.size) {
    return {
      problem: "size-mismatch",
      detail: `${what} is ${size} bytes, its descriptor says ${descriptor.size}`,
    };
  }
  return undefined;
}
