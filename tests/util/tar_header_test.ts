import assert from "node:assert/strict";
import { MAX_USTAR_SIZE, TAR_BLOCK, ustarHeader } from "../../src/util/tar_header.ts";

const text = (block: Uint8Array, offset: number, length: number) =>
  new TextDecoder().decode(block.subarray(offset, offset + length));

Deno.test("a ustar header carries its fields as zero-padded octal, and a checksum that matches its bytes", () => {
  const block = ustarHeader({ name: "dir/file", mode: 0o644, size: 1234, typeflag: "0" });
  assert.equal(block.length, TAR_BLOCK);
  assert.equal(text(block, 0, 9), "dir/file\0");
  assert.equal(text(block, 100, 8), "0000644\0");
  assert.equal(text(block, 124, 12), "00000002322\0");
  assert.equal(text(block, 136, 12), "00000000000\0", "mtime 0");
  assert.equal(text(block, 257, 8), "ustar\x0000");
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  assert.equal(text(block, 148, 8), sum.toString(8).padStart(6, "0") + "\0 ");
});

Deno.test("device numbers are written only when given, as Go leaves them empty in PAX headers", () => {
  const without = ustarHeader({ name: "x", mode: 0, size: 0, typeflag: "x" });
  assert.ok(without.subarray(329, 345).every((byte) => byte === 0));
  const given = ustarHeader({ name: "c", mode: 0o600, size: 0, typeflag: "3", devmajor: 1, devminor: 3 });
  assert.equal(text(given, 329, 16), "0000001\x000000003\0");
});

Deno.test("a size the octal field cannot hold is refused, not written wrapped", () => {
  assert.ok(ustarHeader({ name: "big", mode: 0o644, size: MAX_USTAR_SIZE, typeflag: "0" }));
  assert.throws(
    () => ustarHeader({ name: "big", mode: 0o644, size: MAX_USTAR_SIZE + 1, typeflag: "0" }),
    /tar header for "big": size 8589934592 does not fit/,
  );
});
