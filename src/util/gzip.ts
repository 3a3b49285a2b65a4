/** gzip as Go's compress/gzip writes it (a fixed header), and gunzip of a stream or a file. */
import { createGunzip } from "node:zlib";

/**
 * gzip with a fixed header. CompressionStream writes MTIME 0, XFL 0 and OS 255 ("unknown") today, the same
 * bytes Go's compress/gzip writes; bytes 4–9 are set here anyway, so that a runtime that starts stamping the
 * time or its OS cannot change a bundle's digest. The deflate data itself comes from the runtime's
 * compressor at its default level: the same input gives the same bytes with the same berth build, which is
 * what reproducible publishing needs; content is verified through the bundle index, never by recompressing.
 */
export async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const compressed = ReadableStream.from([bytes as Uint8Array<ArrayBuffer>]).pipeThrough(
    new CompressionStream("gzip"),
  );
  const out = new Uint8Array(await new Response(compressed).arrayBuffer());
  if (out.length < 18 || out[0] !== 0x1f || out[1] !== 0x8b || out[2] !== 8) {
    throw new Error("CompressionStream did not produce a gzip member");
  }
  out.set([0, 0, 0, 0, 0, 0xff], 4);
  return out;
}

/**
 * The decompressed bytes of a gzip stream. A corrupt or truncated stream errors when it is read (readTar
 * reports that as invalid input); data after the gzip member is an error too.
 */
export function gunzip(stream: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  // The DOM typings want ArrayBuffer-backed chunks; any Uint8Array works at run time.
  return (stream as ReadableStream<Uint8Array<ArrayBuffer>>).pipeThrough(new DecompressionStream("gzip"));
}

/** Bytes read from a file at a time by inflateFile. */
const INFLATE_READ = 64 * 1024;

/**
 * The decompressed bytes of a gzip file, inflated by zlib (node:zlib): about 1.7 times the rate of
 * DecompressionStream here (370 against 215 MB/s on a Debian root layer). Concatenated gzip members are
 * inflated one after another, as gzip does. The file is closed when the generator ends, fails or is left.
 */
export async function* inflateFile(file: Deno.FsFile): AsyncGenerator<Uint8Array> {
  // 64 KiB in and out: as fast here as 1 MiB reads and 256 KiB chunks, and 45 MiB less peak RSS.
  const gunzip = createGunzip({ chunkSize: 64 * 1024 });
  let stopped = false;
  const room = () =>
    new Promise<void>((resolve) => {
      const done = () => {
        gunzip.off("drain", done);
        gunzip.off("close", done);
        resolve();
      };
      gunzip.on("drain", done);
      gunzip.on("close", done);
    });
  const feeding = (async () => {
    try {
      while (!stopped) {
        const buffer = new Uint8Array(INFLATE_READ);
        const read = await file.read(buffer);
        if (read === null) {
          gunzip.end();
          return;
        }
        if (!gunzip.write(buffer.subarray(0, read))) await room();
      }
    } catch (error) {
      gunzip.destroy(error as Error);
    }
  })();
  try {
    for await (const chunk of gunzip) yield chunk as Uint8Array;
  } finally {
    stopped = true;
    gunzip.destroy();
    await feeding;
    file.close();
  }
}
