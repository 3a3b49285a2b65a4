/**
 * Reading images back out of the store by reference: index.json entry → chosen manifest → config and
 * layers. Used by `ls` and by everything that hands stored images to the engine.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { parseImageManifest, STORED_MANIFEST_RULES } from "../oci/manifest.ts";
import { formatReference, parseReference } from "../oci/reference.ts";
import type { Descriptor, ImageManifest } from "../oci/descriptor.ts";
import { MANIFEST_DIGEST, PLATFORM, PULLED_AT, REF_NAME, SOURCE_DIGEST } from "./annotations.ts";
import type { Store } from "./store.ts";

/** One reference in the store's index.json, read from the annotations berth wrote on its entry. */
export interface StoredImage {
  /** The full normalised reference it was pulled as. */
  ref: string;
  /** What the registry served for the reference (index or manifest). */
  digest: string;
  manifestDigest: string;
  platform?: string;
  pulledAt?: string;
  /** The index.json entry. */
  entry: Descriptor;
}

/** Every reference in the store, as recorded in index.json. */
export async function storedImages(store: Store): Promise<StoredImage[]> {
  return (await store.readIndex()).manifests.map((entry) => {
    const annotations = entry.annotations ?? {};
    return {
      ref: annotations[REF_NAME] ?? "(unnamed)",
      digest: annotations[SOURCE_DIGEST] ?? entry.digest,
      manifestDigest: annotations[MANIFEST_DIGEST] ?? entry.digest,
      platform: annotations[PLATFORM],
      pulledAt: annotations[PULLED_AT],
      entry,
    };
  });
}

/**
 * What the store's entry for `ref` (a full reference, as recorded) names: the digest the tag resolved to when
 * it was last fetched or imported — only when that entry was written after `newerThan` (an ISO time; the
 * installed version's record), so an old entry never stands in for a newer version. Else undefined.
 */
export async function storedTagDigest(
  store: Store,
  ref: string,
  newerThan?: string,
): Promise<string | undefined> {
  const image = (await storedImages(store)).find((candidate) => candidate.ref === ref);
  if (!image || (newerThan && !(Date.parse(image.pulledAt ?? "") > Date.parse(newerThan)))) return undefined;
  return image.digest;
}

/**
 * Records index.json entries, each replacing the entry of the same name (REF_NAME), kept in name order: the
 * one way pull, import and signatures write references.
 */
export function recordEntries(store: Store, entries: Descriptor[]): Promise<void> {
  const byName = (descriptor: Descriptor) => descriptor.annotations?.[REF_NAME] ?? "";
  const names = new Set(entries.map(byName));
  return store.updateIndex((manifests) =>
    [...manifests.filter((existing) => !names.has(byName(existing))), ...entries]
      .sort((a, b) => byName(a).localeCompare(byName(b)))
  );
}

/** Finds a stored reference (given in any form docker accepts) or throws `not_found` saying how to get it. */
export async function findStoredImage(store: Store, input: string): Promise<StoredImage> {
  const name = formatReference(parseReference(input));
  const found = (await storedImages(store)).find((image) => image.ref === name);
  if (!found) {
    throw new BerthError(
      "not_found",
      `${name} is not in store ${store.root}; fetch it first with 'berth pull ${name}'`,
    );
  }
  return found;
}

/** The image manifest of a stored image, parsed, with its size in bytes. */
export async function readManifest(
  store: Store,
  image: StoredImage,
): Promise<{ manifest: ImageManifest; size: number }> {
  const bytes = await store.readBlob(image.manifestDigest);
  try {
    const what = `manifest ${image.manifestDigest} of ${image.ref}`;
    return { manifest: parseImageManifest(bytes, what, STORED_MANIFEST_RULES), size: bytes.length };
  } catch (error) {
    throw new BerthError("store_invalid", `${errorMessage(error)}; run fsck`);
  }
}
