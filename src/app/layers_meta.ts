/**
 * The layers meta blob (layers[1] of an app manifest): per architecture, the unpacked size and disk usage of
 * each of the app's image layers, so that a device can tell before a pull whether it has room.
 */
import { BerthError } from "../util/errors.ts";
import { GoJsonMap, marshalGoJson } from "../util/go_json.ts";
import { parseJsonObject } from "../util/json_object.ts";
import { parseDigest } from "../oci/digest.ts";
import type { BlobRef } from "./bundle_format.ts";

/** What the layers meta says of one layer. */
export interface LayerMeta {
  /** Unpacked size of the layer's files. */
  size: number;
  /** Disk usage of the unpacked layer, data and metadata. */
  usage: number;
  /** The layer blob's (compressed) size; absent or 0 in some files. */
  archive_size?: number;
}

/** What the layers meta says of one architecture: its file system's block size, and its layers. */
export interface ArchLayersMeta {
  fs_block_size: number;
  layers: Record<string, LayerMeta>;
}

/** `{arch: {fs_block_size, layers: {digest: {size, usage, archive_size}}}}` */
export type LayersMeta = Record<string, ArchLayersMeta>;

/** Parses a layers meta blob (or the factory's full layers-meta file, which has the same shape). */
export function parseLayersMeta(bytes: Uint8Array, what = "layers meta"): LayersMeta {
  const json = parseJsonObject(bytes, what);
  const isObject = (value: unknown): value is Record<string, unknown> =>
    typeof value === "object" && value !== null && !Array.isArray(value);
  const count = (value: unknown, where: string, optional = false) => {
    if (value === undefined && optional) return;
    if (!Number.isSafeInteger(value) || (value as number) < 0) {
      throw new BerthError("invalid_input", `${where}: ${JSON.stringify(value)} is not a valid number`);
    }
  };
  for (const [arch, meta] of Object.entries(json)) {
    if (!isObject(meta)) throw new BerthError("invalid_input", `${what}.${arch}: not an object`);
    count(meta.fs_block_size, `${what}.${arch}.fs_block_size`);
    if (!isObject(meta.layers)) {
      throw new BerthError("invalid_input", `${what}.${arch}.layers: not an object`);
    }
    for (const [digest, layer] of Object.entries(meta.layers)) {
      const where = `${what}.${arch}.layers.${digest}`;
      parseDigest(digest, where);
      if (!isObject(layer)) throw new BerthError("invalid_input", `${where}: not an object`);
      count(layer.size, `${where}.size`);
      count(layer.usage, `${where}.usage`);
      count(layer.archive_size, `${where}.archive_size`, true);
    }
  }
  return json as LayersMeta;
}

/**
 * The layers meta blob of an app, as composeapp's publish makes it: from the factory's layers meta
 * (`source`), the entries of the app's layers per architecture, with archive_size set to each layer blob's
 * size. An architecture or layer missing from `source` is an error.
 */
export function buildLayersMeta(source: LayersMeta, appLayers: Record<string, BlobRef[]>): Uint8Array {
  const out: Record<string, unknown> = {};
  for (const [arch, layers] of Object.entries(appLayers)) {
    const meta = source[arch];
    if (!meta) {
      throw new BerthError("invalid_input", `layers meta: nothing about the app's layers for ${arch}`);
    }
    const entries: Record<string, unknown> = {};
    for (const layer of layers) {
      const known = meta.layers[layer.digest];
      if (!known) {
        throw new BerthError(
          "invalid_input",
          `layers meta: layer ${layer.digest} (${arch}) is not in the layers meta; was the image rebuilt after it was measured?`,
        );
      }
      entries[layer.digest] = {
        size: known.size,
        usage: known.usage,
        archive_size: layer.size === 0 ? undefined : layer.size,
      };
    }
    out[arch] = { fs_block_size: meta.fs_block_size, layers: new GoJsonMap(entries) };
  }
  return marshalGoJson(new GoJsonMap(out));
}
