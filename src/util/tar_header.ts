/**
 * The ustar header block as Go's archive/tar writes it: numeric fields zero-padded octal ending in NUL, the
 * checksum six octal digits, NUL, space; uid, gid and mtime 0, uname and gname empty, so that the same
 * entries always give the same bytes. Names and link names longer than their fields are the caller's
 * business (a PAX header, or a prefix split): here they are cut to the field.
 */

/** The tar block size: headers are one block, contents are padded to a whole number of blocks. */
export const TAR_BLOCK = 512;
/** The largest value an 11-digit octal size field holds (8 GiB - 1); larger sizes need a PAX `size`. */
export const MAX_USTAR_SIZE = 8 ** 11 - 1;

/** The kinds of entry berth writes and reads. */
export type TarEntryType = "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

/** The type flag character of each kind of entry. */
export const TAR_TYPEFLAGS: Readonly<Record<TarEntryType, string>> = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  char: "3",
  block: "4",
  dir: "5",
  fifo: "6",
};

/** The fields of a header that vary; everything else is written as described above. */
export interface UstarFields {
  /** At most 100 bytes are written. */
  name: string;
  /** The ustar prefix of a split long name (at most 155 bytes). */
  prefix?: string;
  mode: number;
  /** At most MAX_USTAR_SIZE: a larger size is carried by PAX, and this field written as 0. */
  size: number;
  /** One character: a TAR_TYPEFLAGS value, or "x" for a PAX extended header. */
  typeflag: string;
  linkname?: string;
  /**
   * Device numbers, written as octal fields when given (Go writes "0000000" for ordinary entries); left as
   * zero bytes when not, as Go leaves them in PAX headers.
   */
  devmajor?: number;
  devminor?: number;
}

const encoder = new TextEncoder();

function putString(block: Uint8Array, offset: number, length: number, value: string): void {
  block.set(encoder.encode(value).subarray(0, length), offset);
}

function putOctal(block: Uint8Array, offset: number, length: number, value: number): void {
  putString(block, offset, length, value.toString(8).padStart(length - 1, "0") + "\0");
}

/** One ustar header block with its checksum; throws a RangeError for a size its field cannot hold. */
export function ustarHeader(fields: UstarFields): Uint8Array {
  if (!Number.isSafeInteger(fields.size) || fields.size < 0 || fields.size > MAX_USTAR_SIZE) {
    throw new RangeError(`tar header for ${JSON.stringify(fields.name)}: size ${fields.size} does not fit`);
  }
  const block = new Uint8Array(TAR_BLOCK);
  putString(block, 0, 100, fields.name);
  putOctal(block, 100, 8, fields.mode);
  putOctal(block, 108, 8, 0); // uid
  putOctal(block, 116, 8, 0); // gid
  putOctal(block, 124, 12, fields.size);
  putOctal(block, 136, 12, 0); // mtime
  putString(block, 156, 1, fields.typeflag);
  putString(block, 157, 100, fields.linkname ?? "");
  putString(block, 257, 6, "ustar\0");
  putString(block, 263, 2, "00");
  if (fields.devmajor !== undefined) putOctal(block, 329, 8, fields.devmajor);
  if (fields.devminor !== undefined) putOctal(block, 337, 8, fields.devminor);
  putString(block, 345, 155, fields.prefix ?? "");
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  putString(block, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

/** How many zero bytes follow `size` bytes of content to fill its last block. */
export function tarPadding(size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
}

/** The end-of-archive marker: two zero blocks (Go writes no record padding after them). */
export function tarEnd(): Uint8Array {
  return new Uint8Array(TAR_BLOCK * 2);
}
