/**
 * `export`: stored references (apps with every image they pin, or images) written as an OCI image layout
 * in a directory — an update to carry on removable media. Reads only the store: a reference that is not
 * fully stored is refused before anything is written.
 *
 * Crash rules: each blob is written to a temporary file, fsynced and renamed into `blobs/sha256/`, so a
 * blob under its digest's name is whole; `index.json` is written last, atomically. A directory without
 * index.json is no export (import refuses it), and an export that is added to keeps its old index.json
 * until the new one, naming the old and the new references, replaces it.
 */
import { BerthError } from "../util/errors.ts";
import { digestHex, Sha256 } from "../oci/digest.ts";
import { MAX_MANIFEST_BYTES } from "../oci/manifest.ts";
import type { Descriptor } from "../oci/descriptor.ts";
import { ensureDirDurable, fsyncDir, lstatIfExists, TEMP_SUFFIX, writeFileAtomic } from "../util/fs.ts";
import { readNoFollow } from "../store/nofollow.ts";
import { findStoredImage, storedImages } from "../store/images.ts";
import { SIGNATURE_OF } from "../store/annotations.ts";
import type { Store } from "../store/store.ts";
import {
  BLOBS_DIR,
  entryRef,
  exportIndexText,
  INDEX_FILE,
  LAYOUT_FILE,
  LAYOUT_TEXT,
  MAX_INDEX_BYTES,
  type NeededBlob,
  parseExportIndex,
  storedAppPins,
  walkEntry,
} from "./exchange_layout.ts";

/** What an export wrote. */
export interface ExportResult {
  dir: string;
  /** The references the export now names (those of this run, with those it held before). */
  refs: string[];
  /** The references this run wrote: those asked for and the images their apps pin. */
  exported: string[];
  blobs: number;
  bytes: number;
  /** Bytes copied by this run (blobs the directory already held are not copied again). */
  bytesWritten: number;
}

/** What an export reports as it goes. */
export type ExportEvent = { type: "blob"; digest: string; size: number; copied: boolean };

/** The names an existing directory may hold to be taken for an export (perhaps one interrupted). */
const LAYOUT_NAMES = new Set([LAYOUT_FILE, INDEX_FILE, "blobs"]);

/**
 * Writes `inputs` (references in any form docker accepts) from `store` into the layout at `dir`: a new or
 * empty directory, or an earlier export (references of the same name are replaced, the others kept).
 */
export async function exportRefs(
  store: Store,
  dir: string,
  inputs: string[],
  onEvent?: (event: ExportEvent) => void,
): Promise<ExportResult> {
  const entries = await selectEntries(store, inputs);
  const blobs = new Map<string, number>();
  for (const entry of entries) {
    for (const blob of await walkEntry(entry, storeAccess(store))) {
      blobs.set(blob.digest, (await store.blobSize(blob.digest))!);
    }
  }
  const earlier = await prepareDir(dir);
  let bytesWritten = 0;
  for (const [digest, size] of blobs) {
    const copied = await copyBlob(store, dir, digest, size);
    bytesWritten += copied ? size : 0;
    onEvent?.({ type: "blob", digest, size, copied });
  }
  await fsyncDir(`${dir}/${BLOBS_DIR}`);
  const names = new Set(entries.map(entryRef));
  const all = [...earlier.filter((entry) => !names.has(entryRef(entry))), ...entries];
  await writeFileAtomic(`${dir}/${INDEX_FILE}`, exportIndexText(all));
  return {
    dir,
    refs: all.map(entryRef).sort(),
    exported: [...names].sort(),
    blobs: blobs.size,
    bytes: [...blobs.values()].reduce((sum, size) => sum + size, 0),
    bytesWritten,
  };
}

/**
 * The entries to export: each reference asked for with its stored signature (so that the device judges it
 * as a pull would), and for an app every image it pins.
 */
async function selectEntries(store: Store, inputs: string[]): Promise<Descriptor[]> {
  const selected = new Map<string, Descriptor>();
  const all = await storedImages(store);
  for (const input of inputs) {
    const image = await findStoredImage(store, input);
    selected.set(image.ref, image.entry);
    const signature = all.find((entry) => entry.entry.annotations?.[SIGNATURE_OF] === image.digest);
    if (signature) selected.set(signature.ref, signature.entry);
    for (const pinned of await storedAppPins(store, image.entry)) {
      const found = await findStoredImage(store, pinned).catch(() => undefined);
      if (!found) {
        throw new BerthError(
          "not_found",
          `${image.ref} pins ${pinned}, which is not in store ${store.root}; fetch the app whole first ` +
            `with 'berth pull ${image.ref}'`,
        );
      }
      selected.set(found.ref, found.entry);
    }
  }
  return [...selected.values()];
}

/** Reads from the store, refusing a blob that is missing or of another size than its descriptor says. */
function storeAccess(store: Store) {
  const check = async (blob: NeededBlob): Promise<number> => {
    const size = await store.blobSize(blob.digest);
    if (size === undefined || (blob.size !== undefined && size !== blob.size)) {
      const ref = blob.what.slice(0, blob.what.indexOf(":"));
      throw new BerthError(
        "not_found",
        `${blob.what}: blob ${blob.digest} is ${
          size === undefined ? "not in the store" : `${size} bytes, not ${blob.size}`
        }; the reference is not fully stored — run 'berth pull ${ref}' (or 'berth fsck')`,
      );
    }
    return size;
  };
  return {
    async read(blob: NeededBlob) {
      if (await check(blob) > MAX_MANIFEST_BYTES) {
        throw new BerthError(
          "store_invalid",
          `${blob.what}: blob ${blob.digest} is too large for a manifest`,
        );
      }
      return await store.readBlob(blob.digest);
    },
    async need(blob: NeededBlob) {
      const size = await check(blob);
      if (blob.size === undefined && size > MAX_MANIFEST_BYTES) {
        throw new BerthError(
          "store_invalid",
          `${blob.what}: blob ${blob.digest} is too large for a manifest`,
        );
      }
    },
  };
}

/**
 * Makes `dir` ready for blobs and returns the entries its index.json names already: none for a new or
 * empty directory. A directory holding anything but a layout is refused, so nothing is mixed into it.
 */
async function prepareDir(dir: string): Promise<Descriptor[]> {
  const info = await lstatIfExists(dir);
  if (info && !info.isDirectory && !(info.isSymlink && (await Deno.stat(dir)).isDirectory)) {
    throw new BerthError("invalid_input", `${dir} is not a directory; give a new or empty directory`);
  }
  const names = info ? (await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name) : [];
  const foreign = names.filter((name) => !LAYOUT_NAMES.has(name) && !name.endsWith(TEMP_SUFFIX));
  if (foreign.length > 0 || (names.length > 0 && !names.includes(LAYOUT_FILE))) {
    throw new BerthError(
      "invalid_input",
      `${dir} is not empty and not an export (it holds ${JSON.stringify(foreign[0] ?? names[0])}); ` +
        `give a new or empty directory, or one an earlier export wrote`,
    );
  }
  let earlier: Descriptor[] = [];
  if (names.includes(INDEX_FILE)) {
    const path = `${dir}/${INDEX_FILE}`;
    const bytes = (await lstatIfExists(path))!.size <= MAX_INDEX_BYTES ? await readNoFollow(path) : undefined;
    earlier = parseExportIndex(bytes ?? new Uint8Array(MAX_INDEX_BYTES + 1), path);
  }
  await ensureDirDurable(`${dir}/${BLOBS_DIR}`);
  // What an interrupted export left half-copied.
  for await (const entry of Deno.readDir(`${dir}/${BLOBS_DIR}`)) {
    if (entry.isFile && entry.name.endsWith(TEMP_SUFFIX)) {
      await Deno.remove(`${dir}/${BLOBS_DIR}/${entry.name}`);
    }
  }
  await fsyncDir(`${dir}/blobs`);
  await fsyncDir(dir);
  if (!names.includes(LAYOUT_FILE)) await writeFileAtomic(`${dir}/${LAYOUT_FILE}`, LAYOUT_TEXT);
  return earlier;
}

/**
 * Copies one blob unless the export holds it whole already; re-hashes it on the way, so a store blob
 * that rotted since its pull is refused (naming it) rather than carried. Returns whether it copied.
 */
async function copyBlob(store: Store, dir: string, digest: string, size: number): Promise<boolean> {
  const target = `${dir}/${BLOBS_DIR}/${digestHex(digest)}`;
  const present = await lstatIfExists(target);
  if (present?.isFile && present.size === size) return false;
  if (present) await Deno.remove(target);
  const temp = `${target}.${crypto.randomUUID().slice(0, 8)}${TEMP_SUFFIX}`;
  const hash = new Sha256();
  const source = await store.openBlob(digest);
  const file = await Deno.open(temp, { write: true, createNew: true, mode: 0o644 });
  try {
    for await (const chunk of source.readable) {
      hash.update(chunk);
      let written = 0;
      while (written < chunk.length) written += await file.write(chunk.subarray(written));
    }
    const actual = hash.digest();
    if (actual !== digest) {
      throw new BerthError(
        "verification_failed",
        `blob ${digest} in store ${store.root} hashes to ${actual}; run 'berth fsck --repair' and pull again`,
      );
    }
    await file.sync();
  } catch (error) {
    file.close();
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  file.close();
  await Deno.rename(temp, target);
  return true;
}
