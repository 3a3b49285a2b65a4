/**
 * The app manifest: written with the exact bytes composeapp's publish writes, and parsed from any version
 * composeapp published over the years (see bundle_format.ts).
 */
import { BerthError } from "../util/errors.ts";
import { GoJsonMap, marshalGoJson } from "../util/go_json.ts";
import { parseJsonObject } from "../util/json_object.ts";
import { quoted } from "../util/text.ts";
import { parseDigest } from "../oci/digest.ts";
import {
  checkAnnotations,
  checkDescriptor,
  type Descriptor,
  type ImageManifest,
  OCI_EMPTY_DIGEST,
  OCI_EMPTY_MEDIA_TYPE,
  OCI_EMPTY_SIZE,
} from "../oci/descriptor.ts";
import {
  ANNOTATION_BUNDLE_INDEX_DIGEST,
  ANNOTATION_BUNDLE_INDEX_SIZE,
  ANNOTATION_COMPOSE_APP,
  ANNOTATION_LAYERS_META,
  APP_ARTIFACT_TYPE,
  APP_BUNDLE_MEDIA_TYPE,
  APP_JSON_MEDIA_TYPE,
  APP_LAYERS,
  APP_MANIFEST_MAX_SIZE,
  APP_MANIFEST_MEDIA_TYPE,
  type BlobRef,
  COMPOSE_APP_VERSION,
  LAYERS_META_VERSION,
} from "./bundle_format.ts";

/** What an app manifest names: its blobs, and any extra annotations. */
export interface AppManifestOptions {
  bundle: BlobRef;
  bundleIndex: BlobRef;
  layersMeta?: BlobRef;
  /** Extra manifest annotations; "compose-app" is always "v1". */
  annotations?: Record<string, string>;
}

/** Refuses a blob reference with a malformed digest or size, naming `what`. */
function checkRef(ref: BlobRef, what: string): void {
  parseDigest(ref.digest, `${what}.digest`);
  if (!Number.isSafeInteger(ref.size) || ref.size < 0) {
    throw new BerthError("invalid_input", `${what}.size: ${JSON.stringify(ref.size)} is not a valid size`);
  }
}

/**
 * The app manifest's exact bytes, as composeapp's publish writes them (three-space indent, Go field order),
 * so the same blobs give the same manifest digest from either tool. Refused at 50 KiB or more.
 */
export function appManifest(opts: AppManifestOptions): Uint8Array {
  checkRef(opts.bundle, "app manifest bundle");
  checkRef(opts.bundleIndex, "app manifest bundle index");
  if (opts.layersMeta) checkRef(opts.layersMeta, "app manifest layers meta");
  const extra = opts.annotations?.[ANNOTATION_COMPOSE_APP];
  if (extra !== undefined && extra !== COMPOSE_APP_VERSION) {
    throw new BerthError(
      "invalid_input",
      `app manifest: annotation ${ANNOTATION_COMPOSE_APP} must be ${COMPOSE_APP_VERSION}`,
    );
  }
  const descriptor = (mediaType: string, ref: BlobRef, annotations: Record<string, string>) => ({
    mediaType,
    size: ref.size === 0 ? undefined : ref.size,
    digest: ref.digest,
    annotations: new GoJsonMap(annotations),
  });
  const layers = [
    descriptor(APP_BUNDLE_MEDIA_TYPE, opts.bundle, {
      [ANNOTATION_BUNDLE_INDEX_DIGEST]: opts.bundleIndex.digest,
      [ANNOTATION_BUNDLE_INDEX_SIZE]: String(opts.bundleIndex.size),
    }),
  ];
  if (opts.layersMeta) {
    layers.push(
      descriptor(APP_JSON_MEDIA_TYPE, opts.layersMeta, { [ANNOTATION_LAYERS_META]: LAYERS_META_VERSION }),
    );
  }
  const manifest = {
    schemaVersion: 2,
    mediaType: APP_MANIFEST_MEDIA_TYPE,
    config: { mediaType: OCI_EMPTY_MEDIA_TYPE, size: OCI_EMPTY_SIZE, digest: OCI_EMPTY_DIGEST },
    layers,
    annotations: new GoJsonMap({ ...opts.annotations, [ANNOTATION_COMPOSE_APP]: COMPOSE_APP_VERSION }),
    artifactType: APP_ARTIFACT_TYPE,
  };
  const bytes = marshalGoJson(manifest, "   ");
  if (bytes.length >= APP_MANIFEST_MAX_SIZE) {
    throw new BerthError(
      "invalid_input",
      `app manifest: ${bytes.length} bytes; compose-app manifests must stay under ${APP_MANIFEST_MAX_SIZE} bytes (devices read no more)`,
    );
  }
  return bytes;
}

/** A parsed and checked app manifest. */
export interface AppManifest {
  /** The manifest as parsed (unknown fields, such as a legacy `manifests` array, left as they are). */
  manifest: ImageManifest;
  /** layers[0]: the compose project, a .tar.gz. */
  bundle: Descriptor;
  /** The bundle index layers[0]'s annotations name; absent in apps published without one. */
  bundleIndex?: BlobRef;
  /** layers[1] when it is layers meta v1 (its media type application/json when it had none). */
  layersMeta?: Descriptor;
  annotations: Record<string, string>;
}

/** Whether a parsed manifest says it is a compose app (rather than a container image). */
export function isAppManifest(json: unknown): boolean {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return false;
  const manifest = json as { artifactType?: unknown; annotations?: unknown };
  if (manifest.artifactType === APP_ARTIFACT_TYPE) return true;
  const annotations = manifest.annotations;
  return typeof annotations === "object" && annotations !== null &&
    typeof (annotations as Record<string, unknown>)[ANNOTATION_COMPOSE_APP] === "string";
}

/** The fields that make a manifest a compose app v1; returns its annotations. */
function checkAppManifestHeader(manifest: ImageManifest, what: string): Record<string, string> {
  if (manifest.schemaVersion !== 2) {
    throw new BerthError(
      "unsupported",
      `${what}: schemaVersion ${quoted(manifest.schemaVersion)} (need 2)`,
    );
  }
  if (manifest.mediaType !== APP_MANIFEST_MEDIA_TYPE) {
    throw new BerthError(
      "invalid_input",
      `${what}: mediaType ${quoted(manifest.mediaType)}; a compose app is an ${APP_MANIFEST_MEDIA_TYPE}`,
    );
  }
  if (manifest.artifactType !== undefined && manifest.artifactType !== APP_ARTIFACT_TYPE) {
    throw new BerthError(
      "invalid_input",
      `${what}: artifactType ${quoted(manifest.artifactType)} is not ${APP_ARTIFACT_TYPE}: not a compose app`,
    );
  }
  const annotations = checkAnnotations(manifest.annotations, what);
  const version = annotations[ANNOTATION_COMPOSE_APP];
  if (version === undefined) {
    throw new BerthError(
      "invalid_input",
      `${what}: annotation "${ANNOTATION_COMPOSE_APP}" is missing: not a compose app`,
    );
  }
  if (version !== COMPOSE_APP_VERSION) {
    throw new BerthError(
      "unsupported",
      `${what}: annotation "${ANNOTATION_COMPOSE_APP}" is ${
        quoted(version)
      }; berth reads ${COMPOSE_APP_VERSION}`,
    );
  }
  return annotations;
}

/** layers[0], the bundle: it must be there, and be application/octet-stream. */
function bundleLayer(manifest: ImageManifest, what: string): Descriptor {
  if (!Array.isArray(manifest.layers) || manifest.layers.length === 0) {
    throw new BerthError(
      "invalid_input",
      `${what}: layers is missing or empty; layers[0] must be the app bundle`,
    );
  }
  const bundle = checkDescriptor(manifest.layers[0], `${what} layers[0]`);
  if (bundle.mediaType !== APP_BUNDLE_MEDIA_TYPE) {
    throw new BerthError(
      "invalid_input",
      `${what} layers[0].mediaType: ${quoted(bundle.mediaType)}; an app bundle is ${APP_BUNDLE_MEDIA_TYPE}`,
    );
  }
  return bundle;
}

/** The bundle index the bundle's annotations name: both or neither of digest and size. */
function bundleIndexRef(bundle: Descriptor, what: string): BlobRef | undefined {
  const indexDigest = bundle.annotations?.[ANNOTATION_BUNDLE_INDEX_DIGEST];
  const indexSize = bundle.annotations?.[ANNOTATION_BUNDLE_INDEX_SIZE];
  if (indexDigest === undefined && indexSize === undefined) return undefined;
  const where = `${what} layers[0].annotations`;
  if (indexDigest === undefined || indexSize === undefined) {
    throw new BerthError(
      "invalid_input",
      `${where}: ${
        indexDigest === undefined ? ANNOTATION_BUNDLE_INDEX_DIGEST : ANNOTATION_BUNDLE_INDEX_SIZE
      } is missing`,
    );
  }
  parseDigest(indexDigest, `${where}.${ANNOTATION_BUNDLE_INDEX_DIGEST}`);
  if (!/^(0|[1-9][0-9]{0,14})$/.test(indexSize)) {
    throw new BerthError(
      "invalid_input",
      `${where}.${ANNOTATION_BUNDLE_INDEX_SIZE}: ${quoted(indexSize)} is not a size`,
    );
  }
  return { digest: indexDigest, size: Number(indexSize) };
}

/** layers[1] when it is layers meta v1; refuses any layer past the two the format defines. */
function layersMetaLayer(manifest: ImageManifest, what: string): Descriptor | undefined {
  if (manifest.layers.length > APP_LAYERS) {
    const extra = manifest.layers[APP_LAYERS] as { digest?: unknown };
    throw new BerthError(
      "invalid_input",
      `${what}: layers[${APP_LAYERS}] (${quoted(extra?.digest)}) is not part of a compose app: ` +
        `${COMPOSE_APP_VERSION} defines layers[0], the bundle, and layers[1], the layers meta`,
    );
  }
  if (manifest.layers.length < 2) return undefined;
  // Known by its annotation alone, as devices know it: its media type is whatever the publisher's registry
  // answered (or nothing), and is never read. Digest and size are checked as for any descriptor.
  const layer = checkDescriptor(manifest.layers[1], `${what} layers[1]`, {
    mediaTypeFallback: APP_JSON_MEDIA_TYPE,
  });
  // Devices ignore a layers meta of another version; so does berth.
  return layer.annotations?.[ANNOTATION_LAYERS_META] === LAYERS_META_VERSION ? layer : undefined;
}

/**
 * Parses a compose-app v1 manifest: an OCI image manifest with annotation compose-app "v1" (and, since Oct
 * 2024, artifactType application/vnd.fio+compose-app), layers[0] the application/octet-stream bundle,
 * optionally layers[1] the layers meta. A top-level `manifests` array (older publishers) is ignored.
 * Errors name `what` and the field.
 */
export function parseAppManifest(bytes: Uint8Array, what: string): AppManifest {
  if (bytes.length >= APP_MANIFEST_MAX_SIZE) {
    throw new BerthError(
      "invalid_input",
      `${what}: ${bytes.length} bytes; a compose-app manifest is under ${APP_MANIFEST_MAX_SIZE}`,
    );
  }
  const manifest = parseJsonObject(bytes, what) as unknown as ImageManifest;
  const annotations = checkAppManifestHeader(manifest, what);
  checkDescriptor(manifest.config, `${what} config`, { sizeOptional: true });
  const bundle = bundleLayer(manifest, what);
  const bundleIndex = bundleIndexRef(bundle, what);
  const layersMeta = layersMetaLayer(manifest, what);
  return { manifest, bundle, bundleIndex, layersMeta, annotations };
}
