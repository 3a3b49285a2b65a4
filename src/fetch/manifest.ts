/**
 * Parsing and validating manifests and indexes as served. Every error names the reference and the field,
 * because a bad manifest is bad input, not a bug.
 */
import { BerthError } from "../util/errors.ts";
import { parseDigest } from "../util/digest.ts";
import { isManifestType } from "../registry/mediatypes.ts";
import type { Descriptor, ImageManifest, OciIndex } from "../store/oci.ts";

/** Largest blob size berth accepts in a descriptor (JavaScript's exact integer range). */
const MAX_BLOB_SIZE = Number.MAX_SAFE_INTEGER;

function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> {
  try {
    const value = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value;
  } catch {
    // reported below
  }
  throw new BerthError("invalid_input", `${what}: not a JSON object`);
}

/** Validates one descriptor; `where` names it ("app:1 manifest layers[2]"). */
export function checkDescriptor(value: unknown, where: string): Descriptor {
  if (typeof value !== "object" || value === null) {
    throw new BerthError("invalid_input", `${where}: not an object`);
  }
  const descriptor = value as Descriptor;
  parseDigest(descriptor.digest, `${where}.digest`);
  if (!Number.isSafeInteger(descriptor.size) || descriptor.size < 0 || descriptor.size > MAX_BLOB_SIZE) {
    throw new BerthError(
      "invalid_input",
      `${where}.size: ${JSON.stringify(descriptor.size)} is not a valid size`,
    );
  }
  if (typeof descriptor.mediaType !== "string" || descriptor.mediaType === "") {
    throw new BerthError("invalid_input", `${where}.mediaType: missing`);
  }
  return descriptor;
}

/** Parses an image manifest (OCI or Docker v2) and checks its config and layer descriptors. */
export function parseImageManifest(bytes: Uint8Array, what: string): ImageManifest {
  const manifest = parseJson(bytes, what) as unknown as ImageManifest;
  if (manifest.schemaVersion !== 2) {
    throw new BerthError(
      "unsupported",
      `${what}: schemaVersion ${JSON.stringify(manifest.schemaVersion)} (need 2)`,
    );
  }
  checkDescriptor(manifest.config, `${what} config`);
  if (!Array.isArray(manifest.layers)) {
    throw new BerthError("invalid_input", `${what}: layers is not an array`);
  }
  manifest.layers.forEach((layer, position) => checkDescriptor(layer, `${what} layers[${position}]`));
  return manifest;
}

/** Parses an index (OCI index or Docker manifest list) and checks its entries. */
export function parseIndex(bytes: Uint8Array, what: string): OciIndex {
  const index = parseJson(bytes, what) as unknown as OciIndex;
  if (index.schemaVersion !== 2) {
    throw new BerthError(
      "unsupported",
      `${what}: schemaVersion ${JSON.stringify(index.schemaVersion)} (need 2)`,
    );
  }
  if (!Array.isArray(index.manifests)) {
    throw new BerthError("invalid_input", `${what}: manifests is not an array`);
  }
  index.manifests.forEach((entry, position) => checkDescriptor(entry, `${what} manifests[${position}]`));
  return index;
}

/** Checks that an index entry chosen for the platform points at an image manifest, not another index. */
export function checkChildType(entry: Descriptor, what: string): void {
  if (!isManifestType(entry.mediaType)) {
    throw new BerthError(
      "unsupported",
      `${what}: the entry for this platform is a "${entry.mediaType}", not an image manifest`,
    );
  }
}
