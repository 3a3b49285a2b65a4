/**
 * A minimal tar writer and streaming tar reader — just what compose-app bundles need — and gzip helpers.
 *
 * Writing follows the layout of Go's archive/tar, which the Go tool that publishes compose apps uses: ustar
 * headers; a name over 100 bytes is split into the ustar prefix and name fields where it can be, otherwise a
 * PAX `x` header carries `path` (and `linkpath`, `size` when those do not fit); numeric fields are
 * zero-padded octal ending in NUL; the checksum is six octal digits, NUL, space; the archive ends with two
 * zero blocks and no record padding. The output is deterministic: mtime 0, uid/gid 0, empty uname/gname,
 * modes normalised (files 0644, or 0755 when any execute bit is set; directories 0755; symlinks 0777, as
 * Linux reports them), entries in the order given — callers sort.
 *
 * Reading handles ustar, GNU long names (`L`, `K`) and PAX headers (`x` for one entry, `g` for all that
 * follow). Every header's checksum is verified. A stream that ends inside an entry, inside a header or
 * before the end-of-archive marker is an error, never a silent end.
 */
import { BerthError, errorMessage } from "../util/errors.ts";

const BLOCK = 512;
/** The largest value an 11-digit octal size field holds (8 GiB - 1); larger sizes go into PAX `size`. */
const MAX_OCTAL_SIZE = 8 ** 11 - 1;
/** Default cap on a PAX or GNU long-name header's data, as Go's reader has. */
const DEFAULT_MAX_META_BYTES = 1024 * 1024;
/** Default cap on what may follow the end-of-archive marker (GNU tar pads to 10 KiB records). */
const DEFAULT_MAX_TRAILING_BYTES = 1024 * 1024;

export type TarEntryType = "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

/** An entry to write. */
export interface TarEntry {
  /** Relative path with "/" separators; a directory's name gets a trailing "/" if it lacks one. */
  name: string;
  type: TarEntryType;
  /** The content of a file; nothing else has content. */
  data?: Uint8Array;
  /** The target of a symlink or hard link. */
  linkname?: string;
  /** Permission bits; normalised as described above (devices and fifos keep theirs). */
  mode?: number;
  devmajor?: number;
  devminor?: number;
}

/** A header as read, with PAX and GNU long-name records applied. */
export interface TarHeader {
  /** The name as stored (a directory's usually ends in "/"). */
  name: string;
  /** The raw type flag character ("0", "5", …). */
  typeflag: string;
  /** What the type flag means; "other" for anything berth has no use for (sparse files, volume labels…). */
  type: TarEntryType | "other";
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch (PAX may give fractions). */
  mtime: number;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** The PAX records that applied to this entry (global ones included). */
  pax: Record<string, string>;
}

/** An entry as read. */
export interface TarReadEntry {
  header: TarHeader;
  /**
   * The entry's `size` bytes, in chunks; iterate at most once, before asking for the next entry —
   * whatever is left unread is skipped then.
   */
  body: AsyncIterable<Uint8Array>;
  /** The whole body in one array (check `header.size` against a limit first). */
  bytes(): Promise<Uint8Array>;
}

export interface ReadTarOptions {
  /** Names the archive in errors ("app bundle sha256:…"); default "tar archive". */
  what?: string;
  /** Cap on one PAX or GNU long-name header's data; default 1 MiB. */
  maxMetaBytes?: number;
  /** Cap on the bytes after the end-of-archive marker; default 1 MiB. */
  maxTrailingBytes?: number;
}

// ---------------------------------------------------------------------------------------------------------
// Writing

const encoder = new TextEncoder();
const isAscii = (value: string) => !/[\u0080-\u{10ffff}]/u.test(value);
const toAscii = (value: string) => value.replace(/[\u0080-\u{10ffff}]/gu, "");
const utf8Length = (value: string) => encoder.encode(value).length;

interface RawHeader {
  name: string;
  prefix?: string;
  mode: number;
  size: number;
  typeflag: string;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** PAX extended headers leave devmajor/devminor as zero bytes, as Go writes them. */
  extended?: boolean;
}

function putString(block: Uint8Array, offset: number, length: number, value: string): void {
  block.set(encoder.encode(value).subarray(0, length), offset);
}

function putOctal(block: Uint8Array, offset: number, length: number, value: number): void {
  putString(block, offset, length, value.toString(8).padStart(length - 1, "0") + "\0");
}

function headerBlock(header: RawHeader): Uint8Array {
  const block = new Uint8Array(BLOCK);
  putString(block, 0, 100, header.name);
  putOctal(block, 100, 8, header.mode);
  putOctal(block, 108, 8, 0); // uid
  putOctal(block, 116, 8, 0); // gid
  putOctal(block, 124, 12, header.size <= MAX_OCTAL_SIZE ? header.size : 0);
  putOctal(block, 136, 12, 0); // mtime
  putString(block, 156, 1, header.typeflag);
  putString(block, 157, 100, header.linkname ?? "");
  putString(block, 257, 6, "ustar\0");
  putString(block, 263, 2, "00");
  if (!header.extended) {
    putOctal(block, 329, 8, header.devmajor ?? 0);
    putOctal(block, 337, 8, header.devminor ?? 0);
  }
  putString(block, 345, 155, header.prefix ?? "");
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  putString(block, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

/** Go's splitUSTARPath: a long ASCII name split at a "/" into prefix (≤ 155) and name (≤ 100). */
function splitUstarPath(name: string): [string, string] | undefined {
  let length = name.length;
  if (length <= 100 || !isAscii(name)) return undefined;
  if (length > 156) length = 156;
  else if (name[length - 1] === "/") length--;
  const slash = name.lastIndexOf("/", length - 1);
  const suffixLength = name.length - slash - 1;
  if (slash <= 0 || suffixLength > 100 || suffixLength === 0 || slash > 155) return undefined;
  return [name.slice(0, slash), name.slice(slash + 1)];
}

/** One PAX record, "<length> <key>=<value>\n", where the length counts itself. */
function paxRecord(key: string, value: string): string {
  const base = utf8Length(key) + utf8Length(value) + 3;
  let size = base + String(base).length;
  if (String(size).length + base !== size) size = String(size).length + base;
  return `${size} ${key}=${value}\n`;
}

const padding = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;

const TYPEFLAGS: Record<TarEntryType, string> = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  char: "3",
  block: "4",
  dir: "5",
  fifo: "6",
};

function normalisedMode(entry: TarEntry): number {
  switch (entry.type) {
    case "dir":
      return 0o755;
    case "symlink":
      return 0o777;
    case "file":
    case "hardlink":
      return (entry.mode ?? 0o644) & 0o111 ? 0o755 : 0o644;
    default:
      return (entry.mode ?? 0o644) & 0o7777;
  }
}

/** The blocks of one entry: an optional PAX header, the ustar header, the content and its padding. */
function entryBlocks(entry: TarEntry): Uint8Array[] {
  if (entry.name === "" || entry.name.includes("\0")) {
    throw new BerthError("invalid_input", `tar entry ${JSON.stringify(entry.name)}: not a valid name`);
  }
  const name = entry.type === "dir" && !entry.name.endsWith("/") ? `${entry.name}/` : entry.name;
  const data = entry.type === "file" ? entry.data ?? new Uint8Array(0) : new Uint8Array(0);
  const linkname = entry.linkname ?? "";
  const nameLong = name.length > 100 || !isAscii(name);
  const linkLong = utf8Length(linkname) > 100 || !isAscii(linkname);
  let split = nameLong ? splitUstarPath(name) : undefined;
  const blocks: Uint8Array[] = [];
  if ((nameLong && !split) || linkLong || data.length > MAX_OCTAL_SIZE) {
    // Sorted by key, as Go writes them; once PAX is needed, it carries the long name too.
    const records: [string, string][] = [];
    if (linkLong) records.push(["linkpath", linkname]);
    if (nameLong) records.push(["path", name]);
    if (data.length > MAX_OCTAL_SIZE) records.push(["size", String(data.length)]);
    const pax = encoder.encode(records.map(([key, value]) => paxRecord(key, value)).join(""));
    const parts = name.split("/").filter((part) => part !== "");
    const paxName = toAscii([...parts.slice(0, -1), "PaxHeaders.0", parts.at(-1) ?? ""].join("/"))
      .slice(0, 100).replace(/\/+$/, "");
    blocks.push(headerBlock({ name: paxName, mode: 0, size: pax.length, typeflag: "x", extended: true }));
    blocks.push(pax, new Uint8Array(padding(pax.length)));
    split = undefined; // a PAX entry carries the whole name; Go leaves the prefix field empty then
  }
  blocks.push(headerBlock({
    name: split ? split[1] : toAscii(name),
    prefix: split?.[0],
    mode: normalisedMode(entry),
    size: data.length,
    typeflag: TYPEFLAGS[entry.type],
    linkname: toAscii(linkname),
    devmajor: entry.devmajor,
    devminor: entry.devminor,
  }));
  if (data.length > 0) blocks.push(data, new Uint8Array(padding(data.length)));
  return blocks;
}

/** A whole tar archive of `entries`, in the order given. */
export function writeTar(entries: TarEntry[]): Uint8Array {
  const blocks = entries.flatMap(entryBlocks);
  blocks.push(new Uint8Array(BLOCK * 2));
  const out = new Uint8Array(blocks.reduce((total, block) => total + block.length, 0));
  let offset = 0;
  for (const block of blocks) {
    out.set(block, offset);
    offset += block.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Reading

/** Pulls exact byte counts out of a stream of arbitrarily sized chunks. */
class ByteSource {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #chunk: Uint8Array = new Uint8Array(0);
  #offset = 0;
  #ended = false;
  #what: string;

  constructor(stream: ReadableStream<Uint8Array>, what: string) {
    this.#reader = stream.getReader();
    this.#what = what;
  }

  /** Makes at least one byte available; false at the end of the stream. */
  async #fill(): Promise<boolean> {
    while (this.#offset >= this.#chunk.length) {
      if (this.#ended) return false;
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await this.#reader.read();
      } catch (error) {
        if (error instanceof BerthError) throw error; // from a transform upstream, already worded
        throw new BerthError("invalid_input", `${this.#what}: cannot be read: ${errorMessage(error)}`, {
          cause: error,
        });
      }
      if (result.done) {
        this.#ended = true;
        return false;
      }
      this.#chunk = result.value;
      this.#offset = 0;
    }
    return true;
  }

  truncated(where: string): BerthError {
    return new BerthError("invalid_input", `${this.#what}: truncated ${where}`);
  }

  /** Exactly `length` bytes; undefined when the stream ends before the first; an error part-way. */
  async readExact(length: number, where: string): Promise<Uint8Array | undefined> {
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      if (!await this.#fill()) {
        if (filled === 0) return undefined;
        throw this.truncated(where);
      }
      const take = Math.min(length - filled, this.#chunk.length - this.#offset);
      out.set(this.#chunk.subarray(this.#offset, this.#offset + take), filled);
      this.#offset += take;
      filled += take;
    }
    return out;
  }

  /** The next 1..max bytes, without copying; an error if the stream has ended. */
  async next(max: number, where: string): Promise<Uint8Array> {
    if (!await this.#fill()) throw this.truncated(where);
    const take = Math.min(max, this.#chunk.length - this.#offset);
    const out = this.#chunk.subarray(this.#offset, this.#offset + take);
    this.#offset += take;
    return out;
  }

  async skip(length: number, where: string): Promise<void> {
    while (length > 0) length -= (await this.next(length, where)).length;
  }

  /** Reads to the end of the stream; an error past `limit` bytes. */
  async drain(limit: number): Promise<void> {
    let seen = 0;
    while (await this.#fill()) {
      seen += this.#chunk.length - this.#offset;
      this.#offset = this.#chunk.length;
      if (seen > limit) {
        throw new BerthError(
          "invalid_input",
          `${this.#what}: more than ${limit} bytes follow the end-of-archive marker`,
        );
      }
    }
  }

  async close(): Promise<void> {
    try {
      await this.#reader.cancel();
    } catch {
      // the stream already failed; its error was reported
    }
    this.#reader.releaseLock();
  }
}

const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const lenientDecoder = new TextDecoder();

function field(block: Uint8Array, offset: number, length: number): Uint8Array {
  const bytes = block.subarray(offset, offset + length);
  const nul = bytes.indexOf(0);
  return nul < 0 ? bytes : bytes.subarray(0, nul);
}

/** A numeric field: octal text (space/NUL padded) or GNU base-256 when the high bit is set. */
function parseNumber(bytes: Uint8Array): number | undefined {
  if (bytes.length > 0 && bytes[0] & 0x80) {
    if (bytes[0] === 0xff) return undefined; // negative
    let value = bytes[0] & 0x7f;
    for (const byte of bytes.subarray(1)) value = value * 256 + byte;
    return Number.isSafeInteger(value) ? value : undefined;
  }
  const text = lenientDecoder.decode(bytes).replace(/^[ \0]+|[ \0]+$/g, "");
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) return undefined;
  const value = parseInt(text, 8);
  return Number.isSafeInteger(value) ? value : undefined;
}

function checksumMatches(block: Uint8Array): boolean {
  const stored = parseNumber(block.subarray(148, 156));
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += byte;
    signed += byte >= 0x80 ? byte - 0x100 : byte;
  }
  return stored === unsigned || stored === signed;
}

const TYPES: Record<string, TarEntryType> = {
  "0": "file",
  "\0": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "dir",
  "6": "fifo",
};

function parsePax(data: Uint8Array, fail: (problem: string) => never): Record<string, string> {
  const records: Record<string, string> = {};
  let offset = 0;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    const lengthText = space < 0 ? "" : lenientDecoder.decode(data.subarray(offset, space));
    if (!/^[1-9][0-9]{0,8}$/.test(lengthText)) fail("malformed PAX record length");
    const end = offset + Number(lengthText);
    if (end > data.length || end <= space + 1 || data[end - 1] !== 0x0a) fail("malformed PAX record");
    let record: string;
    try {
      record = strictDecoder.decode(data.subarray(space + 1, end - 1));
    } catch {
      fail("a PAX record is not valid UTF-8");
    }
    const equals = record.indexOf("=");
    if (equals <= 0) fail("malformed PAX record");
    records[record.slice(0, equals)] = record.slice(equals + 1);
    offset = end;
  }
  return records;
}

function paxNumber(records: Record<string, string>, key: string, fail: (problem: string) => never) {
  const text = records[key];
  if (text === undefined) return undefined;
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    fail(`PAX ${key} ${JSON.stringify(text)} is not a valid number`);
  }
  return Number(text);
}

/**
 * The entries of a tar stream, one at a time; the stream is read only as far as the consumer goes and is
 * cancelled when the consumer stops early or an error is thrown.
 */
export async function* readTar(
  stream: ReadableStream<Uint8Array>,
  options: ReadTarOptions = {},
): AsyncGenerator<TarReadEntry> {
  const what = options.what ?? "tar archive";
  const maxMeta = options.maxMetaBytes ?? DEFAULT_MAX_META_BYTES;
  const source = new ByteSource(stream, what);
  const globals: Record<string, string> = {};
  let local: Record<string, string> | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  let count = 0;
  try {
    while (true) {
      const block = await source.readExact(BLOCK, `inside the header of entry ${count + 1}`);
      if (block === undefined) throw source.truncated("before the end-of-archive marker");
      if (block.every((byte) => byte === 0)) {
        if (local || longName !== undefined || longLink !== undefined) {
          throw new BerthError("invalid_input", `${what}: an extended header is not followed by an entry`);
        }
        await source.drain(options.maxTrailingBytes ?? DEFAULT_MAX_TRAILING_BYTES);
        return;
      }
      count++;
      const rawName = lenientDecoder.decode(field(block, 0, 100));
      const fail = (problem: string): never => {
        throw new BerthError("invalid_input", `${what}: entry ${JSON.stringify(rawName)}: ${problem}`);
      };
      if (!checksumMatches(block)) fail("header checksum mismatch (corrupt or not a tar archive)");
      const number = (offset: number, length: number, name: string) =>
        parseNumber(block.subarray(offset, offset + length)) ?? fail(`invalid ${name} field`);
      const text = (offset: number, length: number, name: string) => {
        try {
          return strictDecoder.decode(field(block, offset, length));
        } catch {
          return fail(`${name} is not valid UTF-8`);
        }
      };
      const typeflag = String.fromCharCode(block[156]);
      const magic = lenientDecoder.decode(block.subarray(257, 265));
      const ustar = magic.startsWith("ustar\0");
      const gnu = magic === "ustar  \0";
      const named = ustar || gnu; // both have uname, gname and device numbers; only ustar has a prefix
      let size = number(124, 12, "size");

      if (typeflag === "x" || typeflag === "g" || typeflag === "L" || typeflag === "K") {
        if (size > maxMeta) fail(`extended header of ${size} bytes (limit ${maxMeta})`);
        const data = await source.readExact(size, `inside the extended header of entry ${count}`) ??
          fail("truncated extended header");
        await source.skip(padding(size), `inside the extended header of entry ${count}`);
        count--;
        if (typeflag === "x") local = { ...local, ...parsePax(data, fail) };
        else if (typeflag === "g") Object.assign(globals, parsePax(data, fail));
        else {
          let value: string;
          try {
            value = strictDecoder.decode(field(data, 0, data.length));
          } catch {
            value = fail("GNU long name is not valid UTF-8");
          }
          if (typeflag === "L") longName = value;
          else longLink = value;
        }
        continue;
      }

      const pax = { ...globals, ...local };
      const paxFail = (problem: string): never => fail(problem);
      let name = text(0, 100, "name");
      if (ustar && !gnu) {
        const prefix = text(345, 155, "prefix");
        if (prefix !== "") name = `${prefix}/${name}`;
      }
      name = pax.path ?? longName ?? name;
      const linkname = pax.linkpath ?? longLink ?? text(157, 100, "linkname");
      size = paxNumber(pax, "size", paxFail) ?? size;
      let mtime = number(136, 12, "mtime");
      if (pax.mtime !== undefined) {
        mtime = Number(pax.mtime);
        if (!/^-?[0-9]+(\.[0-9]+)?$/.test(pax.mtime) || !Number.isFinite(mtime)) {
          fail(`PAX mtime ${JSON.stringify(pax.mtime)} is not a valid time`);
        }
      }
      let type: TarEntryType | "other" = TYPES[typeflag] ?? "other";
      if (typeflag === "\0" && name.endsWith("/")) type = "dir";
      const header: TarHeader = {
        name,
        typeflag,
        type,
        mode: number(100, 8, "mode") & 0o7777,
        uid: paxNumber(pax, "uid", paxFail) ?? number(108, 8, "uid"),
        gid: paxNumber(pax, "gid", paxFail) ?? number(116, 8, "gid"),
        size,
        mtime,
        linkname,
        uname: pax.uname ?? (named ? text(265, 32, "uname") : ""),
        gname: pax.gname ?? (named ? text(297, 32, "gname") : ""),
        devmajor: named ? number(329, 8, "devmajor") : 0,
        devminor: named ? number(337, 8, "devminor") : 0,
        pax,
      };
      local = longName = longLink = undefined;
      if (size > 0 && TYPES[typeflag] !== undefined && type !== "file") {
        // Readers disagree on whether such an entry has content; refuse rather than guess.
        throw new BerthError(
          "invalid_input",
          `${what}: entry ${JSON.stringify(name)}: a ${type} entry with a size of ${size} bytes`,
        );
      }

      const where = `inside entry ${JSON.stringify(name)}`;
      let remaining = size;
      let state: "unread" | "reading" | "passed" = "unread";
      const chunks = async function* (): AsyncGenerator<Uint8Array> {
        while (remaining > 0) {
          const chunk = await source.next(remaining, where);
          remaining -= chunk.length;
          yield chunk;
        }
      };
      const body: AsyncIterable<Uint8Array> = {
        [Symbol.asyncIterator]() {
          if (state !== "unread") {
            throw new Error(
              `tar entry ${JSON.stringify(name)}: body ${
                state === "reading" ? "read twice" : "read after the next entry was asked for"
              }`,
            );
          }
          state = "reading";
          return chunks();
        },
      };
      yield {
        header,
        body,
        async bytes() {
          const out = new Uint8Array(size);
          let offset = 0;
          for await (const chunk of body) {
            out.set(chunk, offset);
            offset += chunk.length;
          }
          return out;
        },
      };
      const unread = remaining;
      remaining = 0;
      state = "passed";
      await source.skip(unread + padding(size), where);
    }
  } finally {
    await source.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// gzip

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
