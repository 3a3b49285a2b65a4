/**
 * A docker-archive (the `docker save` format, the only one dockerd 20.10's image load takes), built on the
 * fly from the store and streamed: no temporary archive on disk, layers read straight from their blobs.
 *
 *   manifest.json           [{"Config": "<hex>.json", "RepoTags": [...], "Layers": ["<hex>/layer.tar", ...]}]
 *   <config hex>.json       the image config, byte for byte
 *   <layer hex>/layer.tar   the layer blob as stored (gzip is fine: the engine detects compression)
 *
 * A layer whose chain the engine already holds may be left out of the archive while manifest.json still
 * lists it: the engine never opens the files of layers it has.
 */
import { sha256Of } from "../oci/digest.ts";
import { TAR_TYPEFLAGS, tarEnd, tarPadding, ustarHeader } from "../util/tar_header.ts";
import { inflateFile } from "../util/gzip.ts";
import { errorMessage } from "../util/errors.ts";

const READ_CHUNK = 64 * 1024;

/** A ustar header for a regular file or directory; names here are short (digests), so no PAX is needed. */
function tarHeader(name: string, size: number, type: "file" | "dir"): Uint8Array {
  return ustarHeader({ name, mode: type === "dir" ? 0o755 : 0o644, size, typeflag: TAR_TYPEFLAGS[type] });
}

const padding = (size: number) => new Uint8Array(tarPadding(size));

/** A layer of an image in the archive, read from the store when it is sent. */
export interface ArchiveLayer {
  /** Opens the layer blob in the store. */
  open: () => Promise<Deno.FsFile>;
  digest: string;
  size: number;
  /** False when the engine already holds this layer's chain: listed in manifest.json, file left out. */
  send: boolean;
  /**
   * When set, the layer (gzip) is sent decompressed, as a tar of exactly this many bytes (the size its
   * gzip trailer states); a layer that decompresses to any other length errors the stream.
   */
  uncompressedSize?: number;
}

/** One image of the archive: its config, the tags it is loaded under, its layers in order. */
export interface ArchiveImage {
  config: Uint8Array;
  configDigest: string;
  repoTags: string[];
  layers: ArchiveLayer[];
}

const hex = (digest: string) => digest.slice("sha256:".length);

/** What the caller of dockerArchive hears, and what it may hold up. */
export interface ArchiveHooks {
  /** Sees the size of every piece handed to the engine. */
  onBytes?: (bytes: number) => void;
  /** Told why the stream failed on berth's side (a layer that cannot be read or inflated). */
  failure?: (error: unknown) => void;
  /**
   * Awaited after the last file, before the archive's end: the engine applies nothing before the request
   * ends, so a load may hand over its own layers while those it leaves out are still on their way. A
   * rejection errors the stream.
   */
  beforeEnd?: () => Promise<void>;
}

/**
 * Streams one archive holding several images (one load request, one pass of the engine over it); a layer
 * shared by several of them is in it once. A layer file that cannot be read (or inflated) errors the stream,
 * and so the load.
 */
export function dockerArchive(images: ArchiveImage[], hooks: ArchiveHooks = {}): ReadableStream<Uint8Array> {
  const { onBytes, failure, beforeEnd } = hooks;
  async function* file(name: string, bytes: Uint8Array): AsyncGenerator<Uint8Array> {
    yield tarHeader(name, bytes.length, "file");
    yield bytes;
    yield padding(bytes.length);
  }
  async function* pieces(): AsyncGenerator<Uint8Array> {
    const manifest = images.map((image) => ({
      Config: `${hex(image.configDigest)}.json`,
      RepoTags: image.repoTags,
      Layers: image.layers.map((layer) => `${hex(layer.digest)}/layer.tar`),
    }));
    yield* file("manifest.json", new TextEncoder().encode(JSON.stringify(manifest)));
    const written = new Set<string>();
    for (const image of images) {
      if (!written.has(image.configDigest)) yield* file(`${hex(image.configDigest)}.json`, image.config);
      written.add(image.configDigest);
      for (const layer of image.layers) {
        if (!layer.send || written.has(layer.digest)) continue;
        written.add(layer.digest);
        yield tarHeader(`${hex(layer.digest)}/`, 0, "dir");
        if (layer.uncompressedSize !== undefined) {
          yield tarHeader(`${hex(layer.digest)}/layer.tar`, layer.uncompressedSize, "file");
          yield* decompressed(layer, layer.uncompressedSize);
          yield padding(layer.uncompressedSize);
          continue;
        }
        yield tarHeader(`${hex(layer.digest)}/layer.tar`, layer.size, "file");
        using blob = await layer.open();
        let remaining = layer.size;
        while (remaining > 0) {
          // Small fresh buffers: the request body may still hold a chunk when the next is read, and large
          // ones linger until the collector runs (about 30 MiB more peak RSS with 1 MiB chunks).
          const buffer = new Uint8Array(Math.min(READ_CHUNK, remaining));
          const read = await blob.read(buffer);
          if (read === null) {
            throw new Error(`layer ${layer.digest} in the store is shorter than ${layer.size} bytes`);
          }
          remaining -= read;
          yield read === buffer.length ? buffer : buffer.subarray(0, read);
        }
        yield padding(layer.size);
      }
    }
    await beforeEnd?.();
    yield tarEnd();
  }
  const iterator = pieces();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await iterator.next();
      } catch (error) {
        // The engine only sees a cut stream; the caller learns why from here.
        failure?.(error);
        throw error;
      }
      const { done, value } = next;
      if (done) controller.close();
      else {
        onBytes?.(value.length);
        controller.enqueue(value);
      }
    },
    async cancel() {
      await iterator.return(undefined);
    },
  });
}

/**
 * A gzip layer's bytes decompressed on the fly (zlib, beside the engine), exactly `size` of them: the
 * tar header announced that many, so more or fewer (a multi-member gzip, a layer over 4 GiB whose trailer
 * wrapped) errors the stream, and the load with it.
 */
async function* decompressed(layer: ArchiveLayer, size: number): AsyncGenerator<Uint8Array> {
  let count = 0;
  try {
    for await (const chunk of inflateFile(await layer.open())) {
      count += chunk.length;
      if (count > size) break;
      yield chunk;
    }
  } catch (error) {
    // zlib's message ("invalid code lengths set") does not say which layer.
    throw new Error(`layer ${layer.digest} does not inflate: ${errorMessage(error)}`, { cause: error });
  }
  if (count !== size) {
    const got = count > size ? `more than ${size}` : `${count}`;
    throw new Error(
      `layer ${layer.digest} decompresses to ${got} bytes, not the ${size} its gzip trailer states`,
    );
  }
}

/**
 * The uncompressed size a gzip blob's trailer states (ISIZE, modulo 4 GiB), or undefined for a blob that is
 * not gzip. Only read here; decompressed() holds the layer to it.
 */
export async function gzipStatedSize(
  open: () => Promise<Deno.FsFile>,
  size: number,
): Promise<number | undefined> {
  if (size < 18) return undefined;
  using file = await open();
  const head = new Uint8Array(2);
  if ((await file.read(head)) !== 2 || head[0] !== 0x1f || head[1] !== 0x8b) return undefined;
  await file.seek(size - 4, Deno.SeekMode.Start);
  const tail = new Uint8Array(4);
  let got = 0;
  while (got < 4) {
    const read = await file.read(tail.subarray(got));
    if (read === null) return undefined;
    got += read;
  }
  return new DataView(tail.buffer).getUint32(0, true);
}

/** The chain IDs of a list of diff IDs, as the engine's layer store names them. */
export function chainIds(diffIds: string[]): string[] {
  const chains: string[] = [];
  for (const diffId of diffIds) {
    chains.push(
      chains.length === 0 ? diffId : sha256Of(new TextEncoder().encode(`${chains.at(-1)} ${diffId}`)),
    );
  }
  return chains;
}
