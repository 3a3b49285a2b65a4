/**
 * What `export` writes and `import` reads: an OCI image layout (`oci-layout`, `index.json`,
 * `blobs/sha256/<hex>`) with one index.json entry per reference, named by its full reference in
 * `org.opencontainers.image.ref.name` and carrying berth's annotations, as in the store. Here: the one
 * check of such an index.json, and the walk from an entry to every blob it needs — the same walk for both
 * sides, so export copies exactly what import will ask for.
 */
import { BerthError } from "../util/errors.ts";
import { quoted } from "../util/text.ts";
import { EMPTY_SHA256, parseDigest } from "../oci/digest.ts";
import { checkDescriptor, type Descriptor } from "../oci/descriptor.ts";
import {
  MAX_MANIFEST_BYTES,
  parseImageManifest,
  parseIndex,
  STORED_MANIFEST_RULES,
} from "../oci/manifest.ts";
import { isIndexType, isManifestType, MANIFEST_TYPES, OCI_INDEX } from "../oci/mediatypes.ts";
import { parsePlatform } from "../oci/platform.ts";
import { formatReference, parseReference } from "../oci/reference.ts";
import type { Store } from "../store/store.ts";
import {
  APP_NAME,
  MANIFEST_DIGEST,
  PLATFORM,
  PULLED_AT,
  PULLED_FOR_APP,
  REF_NAME,
  SIGNATURE_OF,
  SOURCE_DIGEST,
  SOURCE_MEDIA_TYPE,
} from "../store/annotations.ts";
import { isAppManifest, parseAppManifest } from "./app_manifest.ts";
import { appName } from "./name.ts";

/** The layout's marker file, as the OCI image layout spec names it. */
export const LAYOUT_FILE = "oci-layout";
/** The layout's index, written last by export: a directory without it is no complete export. */
export const INDEX_FILE = "index.json";
/** Where the blobs live, below the layout's root. */
export const BLOBS_DIR = "blobs/sha256";
/** The content of `oci-layout`. */
export const LAYOUT_TEXT = JSON.stringify({ imageLayoutVersion: "1.0.0" }) + "\n";
/** The largest index.json (and oci-layout) read from an export: as large as any manifest may be. */
export const MAX_INDEX_BYTES = MAX_MANIFEST_BYTES;

/** The annotations an entry of an export may carry into the store; any other is dropped on import. */
const KNOWN_ANNOTATIONS = [
  REF_NAME,
  SOURCE_DIGEST,
  SOURCE_MEDIA_TYPE,
  MANIFEST_DIGEST,
  PLATFORM,
  PULLED_AT,
  APP_NAME,
  PULLED_FOR_APP,
  SIGNATURE_OF,
];
const APP_NAME_SHAPE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

/** The full reference an entry is named by (its REF_NAME annotation). */
export function entryRef(entry: Descriptor): string {
  return entry.annotations?.[REF_NAME] ?? entry.digest;
}

/**
 * Checks one entry of an export's index.json and returns it with berth's annotations only: a full
 * normalised reference as its name, digests where digests belong, a manifest or index media type.
 */
function checkEntry(value: unknown, where: string): Descriptor {
  const entry = checkDescriptor(value, where);
  const annotations = entry.annotations ?? {};
  const ref = annotations[REF_NAME];
  if (ref === undefined) {
    throw new BerthError(
      "invalid_input",
      `${where}: no ${REF_NAME} annotation; berth imports only named references (a signature or other ` +
        `unnamed entry is not one)`,
    );
  }
  if (formatReference(parseReference(ref)) !== ref) {
    throw new BerthError("invalid_input", `${where}: ${quoted(ref)} is not a full reference`);
  }
  if (!(MANIFEST_TYPES as readonly string[]).includes(entry.mediaType)) {
    throw new BerthError("invalid_input", `${where} (${ref}): ${quoted(entry.mediaType)} is no manifest`);
  }
  if (entry.size > MAX_MANIFEST_BYTES) {
    throw new BerthError(
      "invalid_input",
      `${where} (${ref}): ${entry.size} bytes is too large for a manifest`,
    );
  }
  for (const key of [SOURCE_DIGEST, MANIFEST_DIGEST]) {
    if (annotations[key] !== undefined) parseDigest(annotations[key], `${where} ${key}`);
  }
  // The chosen manifest is the entry itself, or (for the wrapper index around it) named: readers of the
  // store load what this annotation names.
  const chosen = annotations[MANIFEST_DIGEST];
  if (isIndexType(entry.mediaType) ? chosen === undefined : chosen !== undefined && chosen !== entry.digest) {
    throw new BerthError("invalid_input", `${where} (${ref}): ${MANIFEST_DIGEST} does not name its manifest`);
  }
  if (annotations[PLATFORM] !== undefined) parsePlatform(annotations[PLATFORM]);
  const app = annotations[APP_NAME];
  if (app !== undefined && app !== appName(parseReference(ref))) {
    throw new BerthError(
      "invalid_input",
      `${where} (${ref}): app name ${quoted(app)} is not its reference's`,
    );
  }
  const signs = annotations[SIGNATURE_OF];
  if (signs !== undefined) {
    // A signature is named by the cosign tag of what it signs, in that repository.
    parseDigest(signs, `${where} ${SIGNATURE_OF}`);
    if (parseReference(ref).tag !== `sha256-${signs.slice("sha256:".length)}.sig`) {
      throw new BerthError("invalid_input", `${where} (${ref}): not the cosign tag of ${signs}`);
    }
  }
  const forApp = annotations[PULLED_FOR_APP];
  if (forApp !== undefined && !APP_NAME_SHAPE.test(forApp)) {
    throw new BerthError("invalid_input", `${where} (${ref}): ${quoted(forApp)} is not an app name`);
  }
  const kept = Object.fromEntries(
    KNOWN_ANNOTATIONS.filter((key) => key in annotations).map((key) => [
      key,
      annotations[key],
    ]),
  );
  return {
    mediaType: entry.mediaType,
    digest: entry.digest,
    size: entry.size,
    ...(entry.platform ? { platform: entry.platform } : {}),
    annotations: kept,
  };
}

/**
 * The one check of an export's index.json (from a stick: hostile until checked): an OCI index whose
 * entries are each one named reference, none named twice. Returns the entries as the store will hold them.
 */
export function parseExportIndex(bytes: Uint8Array, path: string): Descriptor[] {
  if (bytes.length > MAX_INDEX_BYTES) {
    throw new BerthError(
      "invalid_input",
      `${path}: ${bytes.length} bytes, over the ${MAX_INDEX_BYTES} limit`,
    );
  }
  const index = parseIndex(bytes, path);
  if (index.mediaType !== undefined && index.mediaType !== OCI_INDEX) {
    throw new BerthError(
      "invalid_input",
      `${path}: media type ${quoted(index.mediaType)} is not an OCI index`,
    );
  }
  const entries = index.manifests.map((entry, position) =>
    checkEntry(entry, `${path} manifests[${position}]`)
  );
  const names = new Set<string>();
  for (const entry of entries) {
    const ref = entryRef(entry);
    if (names.has(ref)) throw new BerthError("invalid_input", `${path}: ${ref} is named twice`);
    names.add(ref);
  }
  return entries;
}

/** The bytes of an index.json holding `entries`, sorted by name as the store's. */
export function exportIndexText(entries: Descriptor[]): string {
  const sorted = [...entries].sort((a, b) => entryRef(a).localeCompare(entryRef(b)));
  return JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: sorted }, null, 2) + "\n";
}

/** A blob a reference needs: its digest, its size when a descriptor states it, what it is (for errors). */
export interface NeededBlob {
  digest: string;
  /** Absent for the index the registry served, which only an annotation names: it is a manifest's size. */
  size?: number;
  what: string;
}

/** How the walk gets at blobs: `read` a manifest or index it must look into, `need` any other. */
export interface BlobAccess {
  read(blob: NeededBlob): Promise<Uint8Array>;
  need(blob: NeededBlob): Promise<void>;
}

/**
 * Walks one entry as fsck does (entry → wrapper index → the chosen manifest → config and layers; for a
 * compose app its bundle, bundle index and layers meta; plus the index the registry served) and returns
 * every blob it needs, each passed once to `access` on the way.
 */
export async function walkEntry(entry: Descriptor, access: BlobAccess): Promise<NeededBlob[]> {
  const ref = entryRef(entry);
  const found = new Map<string, NeededBlob>();
  const read = (blob: NeededBlob) => {
    found.set(blob.digest, blob);
    return access.read(blob);
  };
  const need = async (blob: NeededBlob) => {
    if (found.has(blob.digest)) return;
    found.set(blob.digest, blob);
    await access.need(blob);
  };
  let bytes = await read({ digest: entry.digest, size: entry.size, what: `${ref}: its index.json entry` });
  let manifestDigest = entry.digest;
  if (isIndexType(entry.mediaType)) {
    const index = parseIndex(bytes, `${ref}: index ${entry.digest}`);
    const wanted = entry.annotations?.[MANIFEST_DIGEST];
    const child = index.manifests.find((item) => !wanted || item.digest === wanted);
    if (!child || !isManifestType(child.mediaType)) {
      throw new BerthError("invalid_input", `${ref}: index ${entry.digest} names no image manifest to use`);
    }
    if (child.size > MAX_MANIFEST_BYTES) {
      throw new BerthError("invalid_input", `${ref}: manifest ${child.digest} is too large for a manifest`);
    }
    bytes = await read({ digest: child.digest, size: child.size, what: `${ref}: its image manifest` });
    manifestDigest = child.digest;
  }
  const source = entry.annotations?.[SOURCE_DIGEST];
  if (source && !found.has(source)) {
    await need({ digest: source, what: `${ref}: the index its registry served` });
  }
  for (const blob of manifestBlobs(bytes, `${ref}: manifest ${manifestDigest}`)) await need(blob);
  return [...found.values()];
}

/** The blobs a manifest names: a compose app's own, or an image's config and layers. */
function manifestBlobs(bytes: Uint8Array, what: string): NeededBlob[] {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    // parseImageManifest says what is wrong
  }
  const blobs: NeededBlob[] = [];
  const add = (descriptor: { digest: string; size: number }, part: string) =>
    blobs.push({ digest: descriptor.digest, size: descriptor.size, what: `${what} ${part}` });
  if (isAppManifest(json)) {
    const app = parseAppManifest(bytes, what);
    // The legacy compose-app config (no bytes, no size) was never fetched: nothing needs it.
    if (app.manifest.config.digest !== EMPTY_SHA256) add(app.manifest.config, "config");
    add(app.bundle, "bundle");
    if (app.bundleIndex) add(app.bundleIndex, "bundle index");
    if (app.layersMeta) add(app.layersMeta, "layers meta");
    return blobs;
  }
  const manifest = parseImageManifest(bytes, what, STORED_MANIFEST_RULES);
  if (manifest.config.digest !== EMPTY_SHA256) add(manifest.config, "config");
  manifest.layers.forEach((layer, position) => add(layer, `layer ${position}`));
  return blobs;
}

/**
 * The images a stored compose app pins (normalised references), read from its bundle in `store`; none for
 * a container image. The entry's blobs must be in the store.
 */
export async function storedAppPins(store: Store, entry: Descriptor): Promise<string[]> {
  const ref = entryRef(entry);
  const manifestDigest = entry.annotations?.[MANIFEST_DIGEST] ?? entry.digest;
  const bytes = await store.readBlob(manifestDigest);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return [];
  }
  if (!isAppManifest(json)) return [];
  const app = parseAppManifest(bytes, ref);
  // Compose parsing (yaml, zod) is loaded only for apps.
  const { appImageRefs, readBundleCompose } = await import("./stored.ts");
  return appImageRefs(await readBundleCompose(store, app.bundle, ref));
}
