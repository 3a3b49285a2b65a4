/**
 * A minimal tar writer — just what compose-app bundles need.
 *
 * Writing follows the layout of Go's archive/tar, which the Go tool that publishes compose apps uses: ustar
 * headers (util/tar_header.ts); a name over 100 bytes is split into the ustar prefix and name fields where
 * it can be, otherwise a PAX `x` header carries `path` (and `linkpath`, `size` when those do not fit); the
 * archive ends with two zero blocks and no record padding. The output is deterministic: mtime 0, uid/gid 0,
 * empty uname/gname, entries in the order given — callers sort. Modes are the entry's permission bits with
 * setuid, setgid and sticky, as Go's FileInfoHeader writes them (files 0644 and directories 0755 when not
 * given); symlinks are always 0777, as Linux reports them.
 */
import { BerthError } from "../util/errors.ts";
import {
  MAX_USTAR_SIZE,
  TAR_TYPEFLAGS,
  tarEnd,
  type TarEntryType,
  tarPadding,
  ustarHeader,
} from "../util/tar_header.ts";

/** An entry to write. */
export interface TarEntry {
  /** Relative path with "/" separators; a directory's name gets a trailing "/" if it lacks one. */
  name: string;
  type: TarEntryType;
  /** The content of a file; nothing else has content. */
  data?: Uint8Array;
  /** The target of a symlink or hard link. */
  linkname?: string;
  /** Permission bits, with setuid, setgid and sticky; ignored for a symlink (see above). */
  mode?: number;
  devmajor?: number;
  devminor?: number;
}

const encoder = new TextEncoder();
const isAscii = (value: string) => !/[\u0080-\u{10ffff}]/u.test(value);
const toAscii = (value: string) => value.replace(/[\u0080-\u{10ffff}]/gu, "");
const utf8Length = (value: string) => encoder.encode(value).length;

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

/** The mode written for an entry, as described at the top of this file. */
function entryMode(entry: TarEntry): number {
  switch (entry.type) {
    case "dir":
      return (entry.mode ?? 0o755) & 0o7777;
    case "symlink":
      return 0o777;
    default:
      return (entry.mode ?? 0o644) & 0o7777;
  }
}

/** A PAX `x` header and its records, for an entry whose name, link name or size does not fit ustar. */
function paxBlocks(name: string, records: [string, string][]): Uint8Array[] {
  const pax = encoder.encode(records.map(([key, value]) => paxRecord(key, value)).join(""));
  const parts = name.split("/").filter((part) => part !== "");
  const paxName = toAscii([...parts.slice(0, -1), "PaxHeaders.0", parts.at(-1) ?? ""].join("/"))
    .slice(0, 100).replace(/\/+$/, "");
  return [
    ustarHeader({ name: paxName, mode: 0, size: pax.length, typeflag: "x" }),
    pax,
    new Uint8Array(tarPadding(pax.length)),
  ];
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
  const sizeLong = data.length > MAX_USTAR_SIZE;
  let split = nameLong ? splitUstarPath(name) : undefined;
  const blocks: Uint8Array[] = [];
  if ((nameLong && !split) || linkLong || sizeLong) {
    // Sorted by key, as Go writes them; once PAX is needed, it carries the long name too.
    const records: [string, string][] = [];
    if (linkLong) records.push(["linkpath", linkname]);
    if (nameLong) records.push(["path", name]);
    if (sizeLong) records.push(["size", String(data.length)]);
    blocks.push(...paxBlocks(name, records));
    split = undefined; // a PAX entry carries the whole name; Go leaves the prefix field empty then
  }
  blocks.push(ustarHeader({
    name: split ? split[1] : toAscii(name),
    prefix: split?.[0],
    mode: entryMode(entry),
    size: sizeLong ? 0 : data.length,
    typeflag: TAR_TYPEFLAGS[entry.type],
    linkname: toAscii(linkname),
    devmajor: entry.devmajor ?? 0,
    devminor: entry.devminor ?? 0,
  }));
  if (data.length > 0) blocks.push(data, new Uint8Array(tarPadding(data.length)));
  return blocks;
}

/** A whole tar archive of `entries`, in the order given. */
export function writeTar(entries: TarEntry[]): Uint8Array {
  const blocks = entries.flatMap(entryBlocks);
  blocks.push(tarEnd());
  const out = new Uint8Array(blocks.reduce((total, block) => total + block.length, 0));
  let offset = 0;
  for (const block of blocks) {
    out.set(block, offset);
    offset += block.length;
  }
  return out;
}
