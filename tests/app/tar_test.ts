/** The tar writer and reader and the gzip helpers, on archives built here byte by byte. */
import assert from "node:assert/strict";
import { readTar, type TarHeader } from "../../src/app/tar_read.ts";
import { writeTar } from "../../src/app/tar_write.ts";
import { gunzip, gzip } from "../../src/util/gzip.ts";
import { BerthError } from "../../src/util/errors.ts";
import { sha256Of } from "../../src/oci/digest.ts";

const text = (value: string) => new TextEncoder().encode(value);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const streamOf = (bytes: Uint8Array, chunk = 7_001) =>
  ReadableStream.from(
    (function* () {
      for (let i = 0; i < bytes.length; i += chunk) yield bytes.slice(i, i + chunk);
    })(),
  );

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** A header block written field by field, with a correct checksum unless told otherwise. */
function rawHeader(fields: {
  name: string;
  typeflag: string;
  size?: number;
  linkname?: string;
  magic?: "ustar" | "gnu";
  prefix?: string;
}): Uint8Array {
  const block = new Uint8Array(512);
  const put = (offset: number, value: string) => block.set(text(value), offset);
  put(0, fields.name);
  put(100, "0000644\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  put(124, (fields.size ?? 0).toString(8).padStart(11, "0") + "\0");
  put(136, "00000000000\0");
  put(156, fields.typeflag);
  put(157, fields.linkname ?? "");
  if (fields.magic === "gnu") put(257, "ustar  \0");
  else put(257, "ustar\x0000");
  put(345, fields.prefix ?? "");
  block.fill(0x20, 148, 156);
  const sum = block.reduce((total, byte) => total + byte, 0);
  put(148, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

/** PAX records with their self-counting lengths. */
function paxData(records: Record<string, string>): Uint8Array {
  let out = "";
  for (const [key, value] of Object.entries(records)) {
    const body = ` ${key}=${value}\n`;
    let length = text(body).length + 1;
    while (String(length).length + text(body).length !== length) {
      length = String(length).length + text(body).length;
    }
    out += `${length}${body}`;
  }
  return text(out);
}

const pad = (bytes: Uint8Array) => concat(bytes, new Uint8Array((512 - (bytes.length % 512)) % 512));
const END = new Uint8Array(1024);

interface Read {
  header: TarHeader;
  data: string;
}

async function readAll(bytes: Uint8Array | ReadableStream<Uint8Array>): Promise<Read[]> {
  const out: Read[] = [];
  const stream = bytes instanceof Uint8Array ? streamOf(bytes) : bytes;
  for await (const entry of readTar(stream)) {
    out.push({ header: entry.header, data: decode(await entry.bytes()) });
  }
  return out;
}

async function refused(promise: Promise<unknown>, pattern: RegExp): Promise<BerthError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof BerthError, `expected a BerthError, got ${error}`);
    assert.equal(error.reason, "invalid_input");
    assert.match(error.message, pattern);
    return error;
  }
  throw new Error(`expected a refusal matching ${pattern}`);
}

Deno.test("tar round trip: files, directories, symlinks; modes kept; deterministic headers; order kept", async () => {
  const archive = writeTar([
    { name: "docker-compose.yml", type: "file", data: text("services: {}\n"), mode: 0o644 },
    { name: "bin", type: "dir", mode: 0o750 },
    { name: "bin/run.sh", type: "file", data: text("#!/bin/sh\n"), mode: 0o744 },
    { name: "bin/su", type: "file", data: text("#!/bin/sh\n"), mode: 0o104755 }, // S_IFREG | setuid
    { name: "shared", type: "dir", mode: 0o3777 }, // setgid and sticky
    { name: "secret", type: "file", data: text("key\n"), mode: 0o600 },
    { name: "empty", type: "file" },
    { name: "dir", type: "dir" },
    { name: "link", type: "symlink", linkname: "bin/run.sh", mode: 0o755 },
  ]);
  assert.equal(archive.length % 512, 0);
  assert.deepEqual(archive.subarray(-1024), END, "two zero blocks end the archive");
  const entries = await readAll(archive);
  assert.deepEqual(
    entries.map((
      { header, data },
    ) => [header.name, header.type, header.mode.toString(8), data, header.linkname]),
    [
      ["docker-compose.yml", "file", "644", "services: {}\n", ""],
      ["bin/", "dir", "750", "", ""],
      ["bin/run.sh", "file", "744", "#!/bin/sh\n", ""],
      ["bin/su", "file", "4755", "#!/bin/sh\n", ""],
      ["shared/", "dir", "3777", "", ""],
      ["secret", "file", "600", "key\n", ""],
      ["empty", "file", "644", "", ""],
      ["dir/", "dir", "755", "", ""],
      ["link", "symlink", "777", "", "bin/run.sh"],
    ],
  );
  for (const { header } of entries) {
    assert.equal(header.mtime, 0);
    assert.equal(header.uid, 0);
    assert.equal(header.gid, 0);
    assert.equal(header.uname, "");
    assert.equal(header.gname, "");
  }
  // Go's archive/tar layout: NUL-terminated zero-padded octal, checksum "dddddd\0 ", ustar magic.
  assert.equal(decode(archive.subarray(100, 108)), "0000644\0");
  assert.equal(decode(archive.subarray(124, 136)), "00000000015\0");
  assert.equal(decode(archive.subarray(154, 156)), "\0 ");
  assert.equal(decode(archive.subarray(257, 265)), "ustar\x0000");
  assert.deepEqual(
    writeTar([{ name: "a", type: "file", data: text("x") }]),
    writeTar([{ name: "a", type: "file", data: text("x") }]),
  );
});

Deno.test("long names: ustar prefix when the path splits, PAX otherwise; long link targets and UTF-8 via PAX", async () => {
  const splittable = `${"d".repeat(60)}/${"e".repeat(60)}/file.txt`;
  const unsplittable = `dir/${"n".repeat(120)}`;
  const unicode = "конфиг/файл.yml";
  const longTarget = `${"t".repeat(80)}/${"u".repeat(80)}`;
  const archive = writeTar([
    { name: splittable, type: "file", data: text("one") },
    { name: unsplittable, type: "file", data: text("two") },
    { name: unicode, type: "file", data: text("three") },
    { name: "ln", type: "symlink", linkname: longTarget },
  ]);
  // The first entry is a plain ustar header with the prefix field used.
  assert.equal(String.fromCharCode(archive[156]), "0");
  assert.equal(decode(archive.subarray(345, 345 + 121)), `${"d".repeat(60)}/${"e".repeat(60)}`);
  // The second starts with a PAX header.
  assert.equal(String.fromCharCode(archive[1024 + 156]), "x");
  const entries = await readAll(archive);
  assert.deepEqual(entries.map((entry) => entry.header.name), [splittable, unsplittable, unicode, "ln"]);
  assert.deepEqual(entries.map((entry) => entry.data), ["one", "two", "three", ""]);
  assert.equal(entries[3].header.linkname, longTarget);
  assert.equal(entries[1].header.pax.path, unsplittable);
});

Deno.test("reader: GNU long names and link names, PAX local and global records, base-256 numbers", async () => {
  const longName = `gnu/${"x".repeat(150)}`;
  const longLink = `../${"y".repeat(120)}`;
  const paxLocal = paxData({ mtime: "1700000000.123456789", uname: "operator" });
  const paxGlobal = paxData({ gname: "staff" });
  assert.equal(decode(paxGlobal), "15 gname=staff\n");
  const baseUid = rawHeader({ name: "big-uid", typeflag: "0", size: 1 });
  baseUid.set([0x80, 0, 0, 0, 0, 0, 0x01, 0x00], 108); // uid 256 in base-256
  baseUid.fill(0x20, 148, 156);
  baseUid.set(text(baseUid.reduce((t, b) => t + b, 0).toString(8).padStart(6, "0") + "\0 "), 148);
  const archive = concat(
    rawHeader({ name: "././@LongLink", typeflag: "L", size: longName.length + 1, magic: "gnu" }),
    pad(text(longName + "\0")),
    rawHeader({ name: "truncated-name", typeflag: "0", size: 2, magic: "gnu" }),
    pad(text("hi")),
    rawHeader({ name: "././@LongLink", typeflag: "K", size: longLink.length, magic: "gnu" }),
    pad(text(longLink)),
    rawHeader({ name: "sym", typeflag: "2", linkname: "short", magic: "gnu" }),
    rawHeader({ name: "pax_global_header", typeflag: "g", size: paxGlobal.length }),
    pad(paxGlobal),
    rawHeader({ name: "PaxHeaders.0/f", typeflag: "x", size: paxLocal.length }),
    pad(paxLocal),
    rawHeader({ name: "f", typeflag: "0", size: 0 }),
    rawHeader({ name: "g", typeflag: "0", size: 0 }),
    baseUid,
    pad(text("z")),
    END,
  );
  const entries = await readAll(archive);
  assert.deepEqual(entries.map((entry) => entry.header.name), [longName, "sym", "f", "g", "big-uid"]);
  assert.equal(entries[0].data, "hi");
  assert.equal(entries[1].header.linkname, longLink);
  assert.equal(entries[2].header.mtime, 1700000000.123456789);
  assert.equal(entries[2].header.uname, "operator");
  assert.equal(entries[2].header.gname, "staff", "global record applies");
  assert.equal(entries[3].header.uname, "", "local records apply to one entry only");
  assert.equal(entries[3].header.gname, "staff", "global records apply to every later entry");
  assert.equal(entries[4].header.uid, 256);
});

Deno.test("reader: unread bodies are skipped; stopping early cancels the stream", async () => {
  const big = new Uint8Array(300_000).fill(7);
  const archive = writeTar([
    { name: "big", type: "file", data: big },
    { name: "after", type: "file", data: text("after") },
  ]);
  const names: string[] = [];
  for await (const entry of readTar(streamOf(archive, 1000))) {
    names.push(entry.header.name);
    if (entry.header.name === "after") assert.equal(decode(await entry.bytes()), "after");
  }
  assert.deepEqual(names, ["big", "after"]);
  // Reading half a body, then moving on.
  for await (const entry of readTar(streamOf(archive, 1000))) {
    if (entry.header.name === "big") {
      for await (const chunk of entry.body) {
        assert.ok(chunk.length > 0);
        break;
      }
    } else assert.equal(decode(await entry.bytes()), "after");
  }
  // A body asked for after moving on is an error, not the next entry's bytes.
  const kept: { bytes(): Promise<Uint8Array> }[] = [];
  for await (const entry of readTar(streamOf(archive, 1000))) kept.push(entry);
  await assert.rejects(kept[0].bytes(), /body read after the next entry was asked for/);
  let cancelled = false;
  const source = streamOf(archive, 1000);
  const reader = source.getReader();
  const watched = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel() {
      cancelled = true;
    },
  });
  for await (const _ of readTar(watched)) break;
  assert.ok(cancelled, "the source was cancelled when the consumer stopped");
});

Deno.test("reader: a checksum mismatch names the entry", async () => {
  const archive = writeTar([
    { name: "good", type: "file", data: text("1") },
    { name: "victim.txt", type: "file", data: text("2") },
  ]);
  archive[1024 + 120] ^= 0x01; // inside the second header's gid field
  const error = await refused(readAll(archive), /entry "victim\.txt": header checksum mismatch/);
  assert.match(error.message, /^tar archive: /);
});

Deno.test("reader: a truncated archive is an error, wherever it stops", async () => {
  const archive = writeTar([
    { name: "a", type: "file", data: new Uint8Array(2000).fill(1) },
    { name: "b", type: "file", data: text("b") },
  ]);
  // Inside a body.
  await refused(readAll(archive.subarray(0, 1500)), /truncated inside entry "a"/);
  // Inside a header.
  await refused(readAll(archive.subarray(0, 2560 + 100)), /truncated inside the header/);
  // At a header boundary, before the end-of-archive marker.
  await refused(
    readAll(archive.subarray(0, archive.length - 1024)),
    /truncated before the end-of-archive marker/,
  );
  // Empty input.
  await refused(readAll(new Uint8Array(0)), /truncated before the end-of-archive marker/);
  // An extended header with no entry after it.
  const pax = paxData({ path: "abcdef" });
  await refused(
    readAll(concat(rawHeader({ name: "x", typeflag: "x", size: pax.length }), pad(pax), END)),
    /extended header is not followed by an entry/,
  );
  // A single zero block (what some writers emit) still ends the archive cleanly.
  assert.equal((await readAll(archive.subarray(0, archive.length - 512))).length, 2);
});

Deno.test("reader: ambiguous or oversized headers are refused", async () => {
  await refused(
    readAll(concat(rawHeader({ name: "dir/", typeflag: "5", size: 512 }), new Uint8Array(512), END)),
    /entry "dir\/": a dir entry with a size of 512 bytes/,
  );
  await refused(
    readAll(concat(rawHeader({ name: "x", typeflag: "x", size: 2 * 1024 * 1024 }), END)),
    /extended header of 2097152 bytes/,
  );
  const badPax = text("99 path=short\n");
  await refused(
    readAll(concat(rawHeader({ name: "x", typeflag: "x", size: badPax.length }), pad(badPax), END)),
    /malformed PAX record/,
  );
  await refused(
    readAll(concat(writeTar([]).subarray(0, 1024), new Uint8Array(2 * 1024 * 1024))),
    /more than 1048576 bytes follow/,
  );
});

Deno.test("gzip is deterministic with a fixed header, and gunzip reads it back", async () => {
  const archive = writeTar([{ name: "a.txt", type: "file", data: text("hello ".repeat(1000)) }]);
  const one = await gzip(archive);
  const two = await gzip(archive);
  assert.equal(sha256Of(one), sha256Of(two));
  assert.deepEqual([...one.subarray(0, 10)], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
  const entries = await readAll(gunzip(streamOf(one, 100)));
  assert.equal(entries[0].data, "hello ".repeat(1000));
});

Deno.test("gunzip: corrupt or truncated gzip fails the read", async () => {
  const compressed = await gzip(writeTar([{ name: "a", type: "file", data: new Uint8Array(50_000) }]));
  await refused(readAll(gunzip(streamOf(compressed.subarray(0, compressed.length - 6)))), /cannot be read/);
  await refused(readAll(gunzip(streamOf(compressed.subarray(0, 40)))), /cannot be read|truncated/);
  await refused(readAll(gunzip(streamOf(text("this is not gzip at all, just text")))), /cannot be read/);
});
