/**
 * `import`: the references of an export directory (see export.ts) committed into the store exactly as a
 * pull commits them, with no network at all. Everything in the directory is hostile until checked:
 * index.json is read capped and checked in one place (exchange_layout.ts), every digest is checked before
 * it becomes a path, no link is followed, and every blob goes through the store's ingest, which verifies
 * its size and digest before it is committed.
 *
 * Crash rules, as for a pull: blobs first (each committed on its own; a partial copy resumes from its
 * ingest), then the index.json entries of every reference, in one atomic write, only once every blob of
 * every reference is committed and every image an app pins is there. A refused or interrupted import
 * records nothing.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { digestHex } from "../oci/digest.ts";
import { MAX_MANIFEST_BYTES } from "../oci/manifest.ts";
import type { Descriptor } from "../oci/descriptor.ts";
import { lstatIfExists } from "../util/fs.ts";
import { openNoFollow, readNoFollow } from "../store/nofollow.ts";
import { recordEntries } from "../store/images.ts";
import type { Store } from "../store/store.ts";
import { PULLED_AT, PULLED_FOR_APP, SIGNATURE_OF, SOURCE_DIGEST } from "../store/annotations.ts";
import { parseReference } from "../oci/reference.ts";
import { verifyStored } from "../fetch/signatures.ts";
import type { Policy } from "../trust/policy.ts";
import {
  BLOBS_DIR,
  entryRef,
  INDEX_FILE,
  LAYOUT_FILE,
  LAYOUT_TEXT,
  MAX_INDEX_BYTES,
  type NeededBlob,
  parseExportIndex,
  storedAppPins,
  walkEntry,
} from "./exchange_layout.ts";

/** What an import recorded. */
export interface ImportResult {
  dir: string;
  refs: string[];
  blobs: number;
  bytes: number;
  /** Bytes copied into the store (blobs it held already, and resumed prefixes, are not copied again). */
  bytesCopied: number;
}

/** What an import reports as it goes. */
export type ImportEvent = { type: "blob"; digest: string; size: number; copied: number };

/** Reading buffer for blobs from the directory. */
const CHUNK = 1024 * 1024;

/**
 * Imports every reference `dir` names into `store` (which the caller opened for writing); a reference of
 * the same name in the store is replaced, as a pull replaces it. Refuses the whole import, naming the
 * blob, when any blob is missing, truncated or corrupt, and then records nothing.
 */
export async function importLayout(
  store: Store,
  dir: string,
  onEvent?: (event: ImportEvent) => void,
  policy?: Policy,
): Promise<ImportResult> {
  const entries = await readLayout(dir);
  const copier = new BlobCopier(store, dir, onEvent);
  for (const entry of entries) await walkEntry(entry, copier);
  const names = new Set(entries.map(entryRef));
  const stored = new Set((await store.readIndex()).manifests.map(entryRef));
  for (const entry of entries) {
    for (const pinned of await storedAppPins(store, entry)) {
      if (names.has(pinned) || stored.has(pinned)) continue;
      throw new BerthError(
        "invalid_input",
        `${dir}: ${entryRef(entry)} pins ${pinned}, which the export does not carry (nor does the store); ` +
          `nothing was imported — export the app again`,
      );
    }
  }
  // Under a policy, what the export names is judged as a pull would judge it, with the signatures it carries
  // (or the store holds), before anything is recorded. The images an app pins are covered by the app's.
  for (const entry of entries) {
    const annotations = entry.annotations ?? {};
    if (annotations[SIGNATURE_OF] || annotations[PULLED_FOR_APP]) continue;
    const digest = annotations[SOURCE_DIGEST] ?? entry.digest;
    await verifyStored(store, policy, parseReference(entryRef(entry)), digest, entries);
  }
  // Written now, on this device: the agent lets a tag's entry stand in for its registry only when it is
  // newer than the version installed.
  const pulledAt = new Date().toISOString();
  const recorded = entries.map((entry): Descriptor => ({
    ...entry,
    annotations: { ...entry.annotations, [PULLED_AT]: pulledAt },
  }));
  await recordEntries(store, recorded);
  return {
    dir,
    refs: [...names].sort(),
    blobs: copier.blobs,
    bytes: copier.bytes,
    bytesCopied: copier.bytesCopied,
  };
}

/** Checks the layout's files and returns its index.json's entries, checked. */
async function readLayout(dir: string): Promise<Descriptor[]> {
  const info = await lstatIfExists(dir).catch(() => undefined);
  if (!info) throw new BerthError("not_found", `${dir} does not exist`);
  for (
    const [name, kind] of [["blobs", "dir"], [BLOBS_DIR, "dir"], [LAYOUT_FILE, "file"], [INDEX_FILE, "file"]]
  ) {
    const entry = await lstatIfExists(`${dir}/${name}`);
    if (!entry) {
      throw new BerthError(
        "invalid_input",
        `${dir} is no complete export: it has no ${name}${
          name === INDEX_FILE ? " (an export writes it last)" : ""
        }`,
      );
    }
    if (kind === "dir" ? !entry.isDirectory : !entry.isFile) {
      throw new BerthError(
        "invalid_input",
        `${dir}/${name} is not a ${kind === "dir" ? "directory" : "file"}`,
      );
    }
  }
  const layout = await readCapped(`${dir}/${LAYOUT_FILE}`);
  let version: unknown;
  try {
    version = JSON.parse(new TextDecoder().decode(layout))?.imageLayoutVersion;
  } catch {
    // refused below
  }
  if (version !== JSON.parse(LAYOUT_TEXT).imageLayoutVersion) {
    throw new BerthError("invalid_input", `${dir}/${LAYOUT_FILE} is not an OCI layout version 1.0.0 marker`);
  }
  const path = `${dir}/${INDEX_FILE}`;
  const entries = parseExportIndex(await readCapped(path), path);
  if (entries.length === 0) throw new BerthError("invalid_input", `${path} names no reference`);
  return entries;
}

/** Reads a small file of the directory, never through a link, refusing it over MAX_INDEX_BYTES. */
async function readCapped(path: string): Promise<Uint8Array> {
  const info = await Deno.lstat(path);
  if (!info.isFile || info.size > MAX_INDEX_BYTES) {
    throw new BerthError("invalid_input", `${path} is not a file of at most ${MAX_INDEX_BYTES} bytes`);
  }
  const bytes = await readNoFollow(path).catch((error) => {
    throw new BerthError("invalid_input", `${path}: ${errorMessage(error)}`);
  });
  if (!bytes || bytes.length > MAX_INDEX_BYTES) throw new BerthError("invalid_input", `${path} changed`);
  return bytes;
}

/** Brings each blob the walk asks for into the store, from the directory unless the store has it. */
class BlobCopier {
  blobs = 0;
  bytes = 0;
  bytesCopied = 0;
  #done = new Set<string>();

  constructor(
    readonly store: Store,
    readonly dir: string,
    readonly onEvent?: (event: ImportEvent) => void,
  ) {}

  async read(blob: NeededBlob): Promise<Uint8Array> {
    await this.need(blob);
    return await this.store.readBlob(blob.digest);
  }

  async need(blob: NeededBlob): Promise<void> {
    if (this.#done.has(blob.digest)) return;
    // A descriptor states sizes; only a manifest is named without one, and none is larger than this.
    const limit = blob.size ?? MAX_MANIFEST_BYTES;
    const stored = await this.store.blobSize(blob.digest);
    let copied = 0;
    let size = stored;
    if (stored === undefined || (blob.size !== undefined && stored !== blob.size)) {
      ({ size, copied } = await this.#copy(blob, limit));
    } else if (stored > limit) {
      throw new BerthError("store_invalid", `${blob.what}: blob ${blob.digest} is too large; run berth fsck`);
    }
    this.#done.add(blob.digest);
    this.blobs++;
    this.bytes += size!;
    this.bytesCopied += copied;
    this.onEvent?.({ type: "blob", digest: blob.digest, size: size!, copied });
  }

  /** Streams one blob from the directory through the store's ingest, resuming a partial copy. */
  async #copy(blob: NeededBlob, limit: number): Promise<{ size: number; copied: number }> {
    const path = `${this.dir}/${BLOBS_DIR}/${digestHex(blob.digest)}`;
    const damaged = (why: string, reason: "invalid_input" | "verification_failed" = "verification_failed") =>
      new BerthError(
        reason,
        `${blob.what}: blob ${blob.digest} in ${this.dir} ${why}; nothing was imported — copy the export again`,
      );
    let source: Deno.FsFile;
    try {
      source = await openNoFollow(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) throw damaged("is missing", "invalid_input");
      throw damaged("is a link or not a regular file", "invalid_input");
    }
    try {
      const actual = (await source.stat()).size;
      const size = blob.size ?? actual;
      if (actual !== size) {
        throw damaged(`is ${actual} bytes, its descriptor declares ${size}: truncated or damaged`);
      }
      if (size > limit) throw damaged(`is ${size} bytes, too large for a manifest`, "invalid_input");
      const writer = await this.store.ingest(blob.digest, size);
      const resumed = writer.offset;
      try {
        await source.seek(resumed, Deno.SeekMode.Start);
        const buffer = new Uint8Array(CHUNK);
        while (writer.offset < size) {
          const read = await source.read(buffer.subarray(0, Math.min(CHUNK, size - writer.offset)));
          if (read === null) throw damaged("ended early: truncated");
          await writer.write(buffer.slice(0, read));
        }
      } catch (error) {
        await writer.close().catch(() => {});
        throw error;
      }
      await writer.commit().catch((error) => {
        throw error instanceof BerthError && error.reason === "verification_failed"
          ? damaged("does not match its digest: damaged")
          : error;
      });
      return { size, copied: size - resumed };
    } finally {
      source.close();
    }
  }
}
