/**
 * The layers of an app's pinned images per architecture, as composeapp's publish collects them, and their
 * unpacked size and disk usage, measured by streaming each layer once through gunzip and a tar reader
 * (composectl reads these from a file the factory's CI made; berth, which has no such file, measures).
 */
import { BerthError } from "../util/errors.ts";
import { Pool } from "../util/async.ts";
import { gunzip } from "../util/gzip.ts";
import { compareUtf8 } from "../util/go_json.ts";
import { parseJsonObject } from "../util/json_object.ts";
import type { RegistryClient } from "../registry/client.ts";
import { Sha256, sha256Of } from "../oci/digest.ts";
import { isIndexType } from "../oci/mediatypes.ts";
import { parseImageManifest, parseIndex } from "../oci/manifest.ts";
import { parseReference, type Reference } from "../oci/reference.ts";
import { readTar } from "./tar_read.ts";
import type { BlobRef } from "./bundle_format.ts";
import { buildLayersMeta, type LayersMeta, parseLayersMeta } from "./layers_meta.ts";

/** The block size usage is counted in: ext4's default, the file system of Foundries' devices. */
export const MEASURE_BLOCK_SIZE = 4096;

/** Layers read at once while measuring. */
const MEASURE_PARALLEL = 4;

/** ext4 keeps a symlink target shorter than this in its inode; a longer one takes a block. */
const INLINE_SYMLINK_BYTES = 60;

/** Image configs are small; one bigger than this is not read for its architecture. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/** An app's image layers per architecture, each with the repository to read it from. */
export type ArchLayers = Record<string, (BlobRef & { mediaType: string; from: Reference })[]>;

/** `{arch: manifest digest}` of one pinned image: each linux entry of an index, else its config's arch. */
async function manifestsByArch(client: RegistryClient, ref: Reference): Promise<Map<string, string>> {
  const what = `image ${ref.repository}@${ref.digest}`;
  const top = await client.getManifest(ref);
  const byArch = new Map<string, string>();
  if (isIndexType(top.mediaType)) {
    // As composeapp: linux entries only (attestations say "unknown"); the last entry of an arch wins.
    for (const entry of parseIndex(top.bytes, what).manifests) {
      if (entry.platform?.os === "linux") byArch.set(entry.platform.architecture, entry.digest);
    }
    return byArch;
  }
  const manifest = parseImageManifest(top.bytes, what);
  if (manifest.config.size > MAX_CONFIG_BYTES) {
    throw new BerthError(
      "invalid_input",
      `${what} config: ${manifest.config.size} bytes, over ${MAX_CONFIG_BYTES}`,
    );
  }
  const chunks: Uint8Array[] = [];
  for await (const chunk of await client.openBlob(ref, manifest.config.digest, manifest.config.size, 0)) {
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(await new Blob(chunks as Uint8Array<ArrayBuffer>[]).arrayBuffer());
  // Checked like every blob from a registry before its content is used.
  if (bytes.length !== manifest.config.size || sha256Of(bytes) !== manifest.config.digest) {
    throw new BerthError(
      "invalid_input",
      `${what} config: the registry served ${bytes.length} bytes that are not ${manifest.config.digest}`,
    );
  }
  const arch = parseJsonObject(bytes, `${what} config`).architecture;
  if (typeof arch !== "string" || arch === "") {
    throw new BerthError("invalid_input", `${what} config: no architecture`);
  }
  byArch.set(arch, top.digest);
  return byArch;
}

/**
 * The layers of `pinned` (image references by digest) per architecture, as composeapp's publish lists
 * them: only architectures every image has, each layer once, sorted by digest.
 */
export async function appLayersByArch(client: RegistryClient, pinned: string[]): Promise<ArchLayers> {
  const images = await Promise.all(
    [...new Set(pinned)].map(async (image) => {
      const ref = parseReference(image);
      return { ref, byArch: await manifestsByArch(client, ref) };
    }),
  );
  const archs = [...(images[0]?.byArch.keys() ?? [])].filter((arch) =>
    images.every(({ byArch }) => byArch.has(arch))
  );
  const out: ArchLayers = {};
  for (const arch of archs.sort(compareUtf8)) {
    const layers = new Map<string, ArchLayers[string][number]>();
    for (const { ref, byArch } of images) {
      const child = { ...ref, tag: undefined, digest: byArch.get(arch)! };
      const { bytes } = await client.getManifest(child);
      for (const layer of parseImageManifest(bytes, `image ${ref.repository}@${child.digest}`).layers) {
        layers.set(layer.digest, {
          digest: layer.digest,
          size: layer.size,
          mediaType: layer.mediaType,
          from: ref,
        });
      }
    }
    out[arch] = [...layers.values()].sort((a, b) => compareUtf8(a.digest, b.digest));
  }
  return out;
}

/** A layer's unpacked size (its files' bytes) and disk usage in `blockSize` blocks. */
export interface LayerMeasure {
  size: number;
  usage: number;
}

/**
 * Measures a layer from its tar stream as the engine sizes an unpacked layer (regular files' bytes and
 * symlink targets' lengths) and as ext4 stores it (usage: files rounded up to blocks, a block for each
 * directory and each symlink target too long for the inode); hard links and whiteouts count nothing.
 */
export async function measureTar(
  tar: ReadableStream<Uint8Array>,
  what: string,
  blockSize = MEASURE_BLOCK_SIZE,
): Promise<LayerMeasure> {
  let size = 0;
  let usage = 0;
  for await (const { header } of readTar(tar, { what })) {
    if (header.type === "file") {
      size += header.size;
      usage += Math.ceil(header.size / blockSize) * blockSize;
    } else if (header.type === "dir") usage += blockSize;
    else if (header.type === "symlink") {
      // Its target's length is its size, as the engine counts it (lstat); a short target takes no block.
      const length = new TextEncoder().encode(header.linkname).length;
      size += length;
      if (length >= INLINE_SYMLINK_BYTES) usage += blockSize;
    }
  }
  return { size, usage };
}

/** Measures one layer blob read from the registry, streamed: gzip and plain tar layers only. */
async function measureLayer(
  client: RegistryClient,
  layer: ArchLayers[string][number],
): Promise<LayerMeasure> {
  const what = `layer ${layer.digest} of ${layer.from.repository}`;
  const compressed = /gzip/.test(layer.mediaType);
  if (!compressed && !/tar$/.test(layer.mediaType)) {
    throw new BerthError(
      "unsupported",
      `${what}: media type ${layer.mediaType} cannot be measured for the layers meta (gzip or plain tar only); ` +
        "publish with --no-layers-meta",
    );
  }
  const stream = verified(await client.openBlob(layer.from, layer.digest, layer.size, 0), layer, what);
  return await measureTar(compressed ? gunzip(stream) : stream, what);
}

/** The blob's bytes as they pass, failing at their end unless they are the size and digest `layer` names. */
function verified(body: AsyncIterable<Uint8Array>, layer: BlobRef, what: string): ReadableStream<Uint8Array> {
  const hash = new Sha256();
  let bytes = 0;
  return ReadableStream.from(body).pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        hash.update(chunk);
        bytes += chunk.length;
        controller.enqueue(chunk);
      },
      flush() {
        const digest = hash.digest();
        if (bytes !== layer.size || digest !== layer.digest) {
          throw new BerthError(
            "invalid_input",
            `${what}: the registry served ${bytes} bytes of ${digest}, not the layer the manifest names`,
          );
        }
      },
    }),
  );
}

/**
 * The layers meta of `layers` in composectl's shape, each layer measured once even when several
 * architectures share it (MEASURE_PARALLEL at a time, each checked against its digest as it streams);
 * `fs_block_size` is MEASURE_BLOCK_SIZE.
 */
export async function measureLayersMeta(client: RegistryClient, layers: ArchLayers): Promise<LayersMeta> {
  const pool = new Pool(MEASURE_PARALLEL);
  const measured = new Map<string, Promise<LayerMeasure>>();
  for (const layer of Object.values(layers).flat()) {
    if (!measured.has(layer.digest)) measured.set(layer.digest, pool.run(() => measureLayer(client, layer)));
  }
  // Every measurement settles before the first failure is thrown: nothing runs on after publish fails.
  const results = await Promise.allSettled(measured.values());
  const failed = results.find((result) => result.status === "rejected");
  if (failed) throw failed.reason;
  const meta: LayersMeta = {};
  for (const [arch, archLayers] of Object.entries(layers)) {
    meta[arch] = { fs_block_size: MEASURE_BLOCK_SIZE, layers: {} };
    for (const layer of archLayers) meta[arch].layers[layer.digest] = await measured.get(layer.digest)!;
  }
  return meta;
}

/**
 * Where an app's layers meta comes from: measured from its images, a factory's layers-meta file filtered
 * to the app's layers (composectl's `--layers-meta`), or none (as composectl publishes without that file).
 */
export type LayersMetaSource = "measure" | "none" | { file: string };

/** The layers meta blob of the app whose images are `pinned`, or undefined for `"none"`. */
export async function appLayersMeta(
  client: RegistryClient,
  pinned: string[],
  source: LayersMetaSource,
): Promise<Uint8Array | undefined> {
  if (source === "none") return undefined;
  const layers = await appLayersByArch(client, pinned);
  if (Object.keys(layers).length === 0) {
    throw new BerthError("invalid_input", "layers meta: the app's images have no linux platform in common");
  }
  let meta: LayersMeta;
  if (source === "measure") meta = await measureLayersMeta(client, layers);
  else {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(source.file);
    } catch (error) {
      throw new BerthError(
        "invalid_input",
        `${source.file}: cannot read the layers meta (${(error as Error).message})`,
      );
    }
    meta = parseLayersMeta(bytes, source.file);
  }
  return buildLayersMeta(meta, layers);
}
