/**
 * A streaming tar reader — just what compose-app bundles need.
 *
 * Reading handles ustar, GNU long names (`L`, `K`) and PAX headers (`x` for one entry, `g` for all that
 * follow). Every header's checksum is verified. A stream that ends inside an entry, inside a header or
 * before the end-of-archive marker is an error, never a silent end.
 */
import { BerthError } from "../util/errors.ts";
import { ByteSource } from "../util/byte_source.ts";
import { TAR_BLOCK, type TarEntryType, tarPadding } from "../util/tar_header.ts";

/** Default cap on a PAX or GNU long-name header's data, as Go's reader has. */
const DEFAULT_MAX_META_BYTES = 1024 * 1024;
/** Default cap on what may follow the end-of-archive marker (GNU tar pads to 10 KiB records). */
const DEFAULT_MAX_TRAILING_BYTES = 1024 * 1024;

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

/** How to read an archive: its name for errors, and caps on extended headers and trailing bytes. */
export interface ReadTarOptions {
  /** Names the archive in errors ("app bundle sha256:…"); default "tar archive". */
  what?: string;
  /** Cap on one PAX or GNU long-name header's data; default 1 MiB. */
  maxMetaBytes?: number;
  /** Cap on the bytes after the end-of-archive marker; default 1 MiB. */
  maxTrailingBytes?: number;
}

const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const lenientDecoder = new TextDecoder();

/** A NUL-terminated field of a header block. */
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

/** Whether the stored checksum matches the block's (as unsigned or, as old tars wrote it, signed bytes). */
function checksumMatches(block: Uint8Array): boolean {
  const stored = parseNumber(block.subarray(148, 156));
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < TAR_BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += byte;
    signed += byte >= 0x80 ? byte - 0x100 : byte;
  }
  return stored === unsigned || stored === signed;
}

/** What each type flag means; flags not here are "other". */
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

/** The records of a PAX header's data, "<length> <key>=<value>\n" each. */
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

/** A numeric PAX record, or undefined when there is none. */
function paxNumber(records: Record<string, string>, key: string, fail: (problem: string) => never) {
  const text = records[key];
  if (text === undefined) return undefined;
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    fail(`PAX ${key} ${JSON.stringify(text)} is not a valid number`);
  }
  return Number(text);
}

/** What extended headers have said so far: PAX `g` for all entries, PAX `x` and GNU `L`/`K` for the next. */
interface ExtendedState {
  globals: Record<string, string>;
  local?: Record<string, string>;
  longName?: string;
  longLink?: string;
}

/** One header block, whose fields are read or refused in one line naming the entry. */
class HeaderBlock {
  readonly rawName: string;
  readonly typeflag: string;

  constructor(readonly block: Uint8Array, readonly what: string) {
    this.rawName = lenientDecoder.decode(field(block, 0, 100));
    this.typeflag = String.fromCharCode(block[156]);
  }

  /** Throws the one-line error about this entry. */
  fail = (problem: string): never => {
    throw new BerthError("invalid_input", `${this.what}: entry ${JSON.stringify(this.rawName)}: ${problem}`);
  };

  /** A numeric field; refused when malformed. */
  number(offset: number, length: number, name: string): number {
    return parseNumber(this.block.subarray(offset, offset + length)) ?? this.fail(`invalid ${name} field`);
  }

  /** A text field; refused when not UTF-8. */
  text(offset: number, length: number, name: string): string {
    try {
      return strictDecoder.decode(field(this.block, offset, length));
    } catch {
      return this.fail(`${name} is not valid UTF-8`);
    }
  }
}

/** Reads the data of a PAX or GNU long-name header (`size` bytes) into `state`. */
async function readExtendedHeader(
  source: ByteSource,
  header: HeaderBlock,
  size: number,
  state: ExtendedState,
  limits: { maxMeta: number; entry: number },
): Promise<void> {
  const { typeflag, fail } = header;
  if (size > limits.maxMeta) fail(`extended header of ${size} bytes (limit ${limits.maxMeta})`);
  const where = `inside the extended header of entry ${limits.entry}`;
  const data = await source.readExact(size, where) ?? fail("truncated extended header");
  await source.skip(tarPadding(size), where);
  if (typeflag === "x") state.local = { ...state.local, ...parsePax(data, fail) };
  else if (typeflag === "g") Object.assign(state.globals, parsePax(data, fail));
  else {
    let value: string;
    try {
      value = strictDecoder.decode(field(data, 0, data.length));
    } catch {
      value = fail("GNU long name is not valid UTF-8");
    }
    if (typeflag === "L") state.longName = value;
    else state.longLink = value;
  }
}

/** The header of an ordinary entry, with the extended headers before it applied. */
function entryHeader(header: HeaderBlock, size: number, state: ExtendedState): TarHeader {
  const { block, typeflag, fail } = header;
  const magic = lenientDecoder.decode(block.subarray(257, 265));
  const ustar = magic.startsWith("ustar\0");
  const gnu = magic === "ustar  \0";
  const named = ustar || gnu; // both have uname, gname and device numbers; only ustar has a prefix
  const pax = { ...state.globals, ...state.local };
  let name = header.text(0, 100, "name");
  if (ustar && !gnu) {
    const prefix = header.text(345, 155, "prefix");
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  name = pax.path ?? state.longName ?? name;
  const linkname = pax.linkpath ?? state.longLink ?? header.text(157, 100, "linkname");
  size = paxNumber(pax, "size", fail) ?? size;
  let mtime = header.number(136, 12, "mtime");
  if (pax.mtime !== undefined) {
    mtime = Number(pax.mtime);
    if (!/^-?[0-9]+(\.[0-9]+)?$/.test(pax.mtime) || !Number.isFinite(mtime)) {
      fail(`PAX mtime ${JSON.stringify(pax.mtime)} is not a valid time`);
    }
  }
  let type: TarEntryType | "other" = TYPES[typeflag] ?? "other";
  if (typeflag === "\0" && name.endsWith("/")) type = "dir";
  return {
    name,
    typeflag,
    type,
    mode: header.number(100, 8, "mode") & 0o7777,
    uid: paxNumber(pax, "uid", fail) ?? header.number(108, 8, "uid"),
    gid: paxNumber(pax, "gid", fail) ?? header.number(116, 8, "gid"),
    size,
    mtime,
    linkname,
    uname: pax.uname ?? (named ? header.text(265, 32, "uname") : ""),
    gname: pax.gname ?? (named ? header.text(297, 32, "gname") : ""),
    devmajor: named ? header.number(329, 8, "devmajor") : 0,
    devminor: named ? header.number(337, 8, "devminor") : 0,
    pax,
  };
}

/** The entry handed to the consumer, and how to skip whatever of its body (and padding) it left unread. */
function entryWithBody(
  source: ByteSource,
  header: TarHeader,
): { entry: TarReadEntry; skipRest: () => Promise<void> } {
  const { name, size } = header;
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
  const entry: TarReadEntry = {
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
  const skipRest = async () => {
    const unread = remaining;
    remaining = 0;
    state = "passed";
    await source.skip(unread + tarPadding(size), where);
  };
  return { entry, skipRest };
}

/** Whether a type flag is a PAX or GNU extended header, which applies to the entry after it. */
const isExtended = (typeflag: string) => "xgLK".includes(typeflag);

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
  const state: ExtendedState = { globals: {} };
  let count = 0;
  try {
    while (true) {
      const block = await source.readExact(TAR_BLOCK, `inside the header of entry ${count + 1}`);
      if (block === undefined) throw source.truncated("before the end-of-archive marker");
      if (block.every((byte) => byte === 0)) {
        if (state.local || state.longName !== undefined || state.longLink !== undefined) {
          throw new BerthError("invalid_input", `${what}: an extended header is not followed by an entry`);
        }
        const maxTrailing = options.maxTrailingBytes ?? DEFAULT_MAX_TRAILING_BYTES;
        await source.drain(maxTrailing, "the end-of-archive marker");
        return;
      }
      const header = new HeaderBlock(block, what);
      if (!checksumMatches(block)) header.fail("header checksum mismatch (corrupt or not a tar archive)");
      const size = header.number(124, 12, "size");
      if (isExtended(header.typeflag)) {
        await readExtendedHeader(source, header, size, state, { maxMeta, entry: count + 1 });
        continue;
      }
      count++;
      const parsed = entryHeader(header, size, state);
      state.local = state.longName = state.longLink = undefined;
      if (parsed.size > 0 && TYPES[parsed.typeflag] !== undefined && parsed.type !== "file") {
        // Readers disagree on whether such an entry has content; refuse rather than guess.
        throw new BerthError(
          "invalid_input",
          `${what}: entry ${
            JSON.stringify(parsed.name)
          }: a ${parsed.type} entry with a size of ${parsed.size} bytes`,
        );
      }
      const { entry, skipRest } = entryWithBody(source, parsed);
      yield entry;
      await skipRest();
    }
  } finally {
    await source.close();
  }
}
