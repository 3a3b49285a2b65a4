/** How a layer's unpacked size and disk usage are counted from its tar stream (pure logic, no services). */
import assert from "node:assert/strict";
import { measureTar } from "../../src/app/layers_measure.ts";
import { TAR_TYPEFLAGS, tarEnd, tarPadding, ustarHeader } from "../../src/util/tar_header.ts";

/** A tar stream of `entries`; a file's content is `size` zero bytes. */
function tarOf(entries: { name: string; typeflag: string; size?: number; linkname?: string }[]) {
  const parts: Uint8Array[] = [];
  for (const { name, typeflag, size = 0, linkname } of entries) {
    parts.push(ustarHeader({ name, mode: 0o644, size, typeflag, linkname }));
    parts.push(new Uint8Array(size + tarPadding(size)));
  }
  parts.push(tarEnd());
  return ReadableStream.from(parts);
}

Deno.test("measureTar: files' bytes and symlink targets make the size; usage is ext4 blocks", async () => {
  const longTarget = "t".repeat(60);
  const measured = await measureTar(
    tarOf([
      { name: "etc/", typeflag: TAR_TYPEFLAGS.dir },
      { name: "etc/a", typeflag: TAR_TYPEFLAGS.file, size: 1 },
      { name: "etc/b", typeflag: TAR_TYPEFLAGS.file, size: 4097 },
      { name: "etc/empty", typeflag: TAR_TYPEFLAGS.file, size: 0 },
      { name: "etc/.wh.gone", typeflag: TAR_TYPEFLAGS.file, size: 0 },
      { name: "etc/hard", typeflag: TAR_TYPEFLAGS.hardlink, linkname: "etc/b" },
      { name: "etc/short", typeflag: TAR_TYPEFLAGS.symlink, linkname: "a" },
      { name: "etc/long", typeflag: TAR_TYPEFLAGS.symlink, linkname: longTarget },
    ]),
    "test layer",
  );
  assert.deepEqual(measured, {
    size: 1 + 4097 + 1 + 60,
    // the directory, a's block, b's two, the long symlink's
    usage: 4096 * (1 + 1 + 2 + 1),
  });
  assert.deepEqual(await measureTar(tarOf([]), "empty layer"), { size: 0, usage: 0 });
});
