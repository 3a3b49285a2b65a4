/**
 * Parsing and validating image manifests and indexes, as a registry serves them and as the store keeps
 * them. Every descriptor in them passes `checkDescriptor`. Every error names the reference and the field,
 * because a bad manifest is bad input, not a bug.
 */
import { BerthError } from "../util/errors.ts";
import { quoted } from "../util/text.ts";
import { isManifestType } from "./mediatypes.ts";
import {
  checkAnnotations,
  checkDescriptor,
  type Descriptor,
  type ImageManifest,
  type OciIndex,
} from "./descriptor.ts";

function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> {
  try {
    const value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value;
  } catch {
    // reported below
  }
  throw new BerthError("invalid_input", `${what}: not a JSON object`);
}

/**
 * The largest manifest or index berth reads: the distribution spec lets registries refuse manifests over
 * 4 MiB, so none larger is published; in the store, a larger blob is never a manifest.
 */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** Exceptions for reading manifests the store already holds, compose apps' among them. */
export interface ManifestRules {
  /** The legacy compose-app config was written without a size. */
  configSizeOptional?: boolean;
  /**
   * What a layer without a (printable) media type reads as: a compose app's layers meta is typed by whatever
   * the publisher's registry answered, or not at all (see app_manifest.ts, which checks it at pull).
   */
  layerMediaTypeFallback?: string;
}

/**
 * How the store reads a manifest it holds (which passed the pull's own check): compose apps' legacy config
 * and untyped layers meta included. Only digests and sizes of such layers are read.
 */
export const STORED_MANIFEST_RULES: Readonly<ManifestRules> = {
  configSizeOptional: true,
  layerMediaTypeFallback: "application/json",
};

/**
 * Parses an image manifest (OCI or Docker v2) and checks its config and layer descriptors. A compose app's
 * manifest is one too; `rules` let through its legacy config and its untyped layers meta.
 */
export function parseImageManifest(
  bytes: Uint8Array,
  what: string,
  rules: ManifestRules = {},
): ImageManifest {
  const manifest = parseJson(bytes, what) as unknown as ImageManifest;
  if (manifest.schemaVersion !== 2) {
    throw new BerthError(
      "unsupported",
      `${what}: schemaVersion ${quoted(manifest.schemaVersion)} (need 2)`,
    );
  }
  checkDescriptor(manifest.config, `${what} config`, { sizeOptional: rules.configSizeOptional });
  if (!Array.isArray(manifest.layers)) {
    throw new BerthError("invalid_input", `${what}: layers is not an array`);
  }
  manifest.layers.forEach((layer, position) =>
    checkDescriptor(layer, `${what} layers[${position}]`, { mediaTypeFallback: rules.layerMediaTypeFallback })
  );
  checkAnnotations(manifest.annotations, what);
  return manifest;
}

/** Parses an index (OCI index or Docker manifest list) and checks its entries. */
export function parseIndex(bytes: Uint8Array, what: string): OciIndex {
  const index = parseJson(bytes, what) as unknown as OciIndex;
  if (index.schemaVersion !== 2) {
    throw new BerthError(
      "unsupported",
      `${what}: schemaVersion ${quoted(index.schemaVersion)} (need 2)`,
    );
  }
  if (!Array.isArray(index.manifests)) {
    throw new BerthError("invalid_input", `${what}: manifests is not an array`);
  }
  index.manifests.forEach((entry, position) => checkDescriptor(entry, `${what} manifests[${position}]`));
  checkAnnotations(index.annotations, what);
  return index;
}

/** Checks that an index entry chosen for the platform points at an image manifest, not another index. */
export function checkChildType(entry: Descriptor, what: string): void {
  if (!isManifestType(entry.mediaType)) {
    throw new BerthError(
      "unsupported",
      `${what}: the entry for this platform is a ${quoted(entry.mediaType)}, not an image manifest`,
    );
  }
}
