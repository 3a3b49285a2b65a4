/**
 * Extracting a bundle into a fresh directory without ever writing outside it: the bundle comes from a
 * registry, so every entry is checked before anything is created for it.
 */
import { BerthError } from "../util/errors.ts";
import { fsyncDir, join } from "../util/fs.ts";
import { gunzip } from "../util/gzip.ts";
import { TAR_BLOCK } from "../util/tar_header.ts";
import {
  BUNDLE_LIMIT_KEY,
  type BundleLimits,
  COMPOSE_FILE,
  DEFAULT_BUNDLE_LIMITS,
  MiB,
} from "./bundle_format.ts";
import { lstatIfReachable, relativeComponents, resolveInside, staysInside } from "./bundle_paths.ts";
import { readTar, type TarHeader, type TarReadEntry } from "./tar_read.ts";

/** How to extract: the bundle limits, and the bundle's name for errors. */
export interface ExtractOptions extends Partial<BundleLimits> {
  /** Names the bundle in errors; default "app bundle". */
  what?: string;
}

/** The longest path Linux takes (PATH_MAX), and the longest file name (NAME_MAX), in bytes. */
const MAX_PATH_BYTES = 4096;
const MAX_NAME_BYTES = 255;
/** Cap on one PAX or GNU long-name header in a bundle: names are short. */
const MAX_META_BYTES = 64 * 1024;
/**
 * The bits of an entry's mode that are kept: setuid, setgid and sticky are dropped, so a bundle cannot
 * install a program that runs as root for whoever starts it.
 */
const KEPT_MODE_BITS = 0o777;
/** Directories are made owner-writable while extracting; their bundle modes are set at the end. */
const DIR_MODE_WHILE_EXTRACTING = 0o700;
/** What an entry may be besides a file, directory or symlink, for the message that refuses it. */
const ONLY_ALLOWED = "bundles may hold only files, directories and symlinks";

const encoder = new TextEncoder();

/**
 * The tar stream inside a .tar.gz, cut off with an error once it expands beyond what the limits allow
 * (content plus headers and padding): a bomb of zeros fails here rather than filling memory or disk.
 */
function boundedTar(stream: ReadableStream<Uint8Array>, limit: BundleLimits, what: string) {
  const cap = limit.maxTotalBytes + limit.maxEntries * 3 * TAR_BLOCK + 2 * MiB;
  let expanded = 0;
  return gunzip(stream).pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        expanded += chunk.length;
        if (expanded > cap) {
          throw new BerthError("invalid_input", `${what}: expands to more than ${cap} bytes`);
        }
        controller.enqueue(chunk);
      },
    }),
  );
}

/** A bundle's entries and file bytes counted as it streams, refused once past the limits. */
class Tally {
  #entries = 0;
  /** The declared sizes of the files so far. */
  fileBytes = 0;

  constructor(readonly limit: BundleLimits) {}

  /** Counts one entry of any kind. */
  entry(fail: (problem: string) => never): void {
    if (++this.#entries > this.limit.maxEntries) {
      fail(`more than ${this.limit.maxEntries} entries in the bundle`);
    }
  }

  /** Counts one regular file at `rel` of `size` bytes. */
  file(rel: string, size: number, fail: (problem: string) => never): void {
    const compose = rel === COMPOSE_FILE;
    const max = compose ? this.limit.maxComposeBytes : this.limit.maxFileBytes;
    if (size > max) fail(`${size} bytes, over the limit of ${max}${compose ? "" : ` (${BUNDLE_LIMIT_KEY})`}`);
    this.fileBytes += size;
    if (this.fileBytes > this.limit.maxTotalBytes) {
      fail(`the bundle's files add up to more than ${this.limit.maxTotalBytes} bytes (${BUNDLE_LIMIT_KEY})`);
    }
  }
}

/** The error for a bundle entry, naming the bundle and the entry. */
const entryFailure = (what: string, name: string) => (problem: string): never => {
  throw new BerthError("invalid_input", `${what}: entry ${JSON.stringify(name)}: ${problem}`);
};

/** One extraction into `destDir`: what it has created so far, and the checks that depend on it. */
class Extraction {
  /** Every path created, by its relative path. */
  readonly created = new Map<string, "file" | "dir" | "symlink">();
  readonly symlinks: string[][] = [];
  /** The mode each directory gets once everything in it is written, by its relative path. */
  readonly dirModes = new Map<string, number>();
  /** The relative paths extracted, in archive order. */
  readonly extracted: string[] = [];
  readonly #tally: Tally;

  constructor(readonly destDir: string, readonly limit: BundleLimits, readonly what: string) {
    this.#tally = new Tally(limit);
  }

  /** Extracts one entry, or refuses it naming it. */
  async add(entry: TarReadEntry): Promise<void> {
    const { header } = entry;
    const fail = entryFailure(this.what, header.name);
    this.#tally.entry(fail);
    const parts = relativeComponents(header.name, fail);
    if (encoder.encode(header.name).length > MAX_PATH_BYTES) {
      fail(`the path is longer than ${MAX_PATH_BYTES} bytes`);
    }
    if (parts.some((part) => encoder.encode(part).length > MAX_NAME_BYTES)) {
      fail(`a path component is longer than ${MAX_NAME_BYTES} bytes`);
    }
    if (parts.length === 0) {
      if (header.type === "dir") return;
      fail("names the destination directory itself");
    }
    const rel = parts.join("/");
    // Refuse what is not allowed before anything is created for it.
    this.#checkType(header, parts, rel, fail);
    await this.#makeParents(parts, fail);
    const existing = this.created.get(rel);
    if (existing !== undefined && !(existing === "dir" && header.type === "dir")) {
      fail("appears twice in the bundle");
    }
    if (header.type === "file") await this.#writeFile(entry, rel, fail);
    else if (header.type === "dir") await this.#makeDir(header, rel, existing, fail);
    else await this.#makeSymlink(header, parts, fail);
    this.extracted.push(rel);
  }

  /** Refuses entry types bundles may not hold, files over the limits and symlinks that climb out. */
  #checkType(header: TarHeader, parts: string[], rel: string, fail: (problem: string) => never): void {
    switch (header.type) {
      case "file":
        this.#tally.file(rel, header.size, fail);
        break;
      case "dir":
        break;
      case "symlink": {
        const target = header.linkname;
        if (target === "" || target.includes("\0")) fail("symlink with an empty or invalid target");
        if (target.startsWith("/")) {
          fail(`symlink to ${JSON.stringify(target)} points outside the destination (absolute)`);
        }
        if (!staysInside(parts, target)) {
          fail(`symlink to ${JSON.stringify(target)} points outside the destination`);
        }
        break;
      }
      case "hardlink":
        fail(`a hard link (to ${JSON.stringify(header.linkname)}); ${ONLY_ALLOWED}`);
        break;
      case "char":
      case "block":
      case "fifo":
        fail(`a ${header.type === "fifo" ? "fifo" : `${header.type} device`}; ${ONLY_ALLOWED}`);
        break;
      default:
        fail(`unsupported entry type ${JSON.stringify(header.typeflag)}`);
    }
  }

  /** Every directory above the entry must be a real directory made by this extraction (or made now). */
  async #makeParents(parts: string[], fail: (problem: string) => never): Promise<void> {
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      const known = this.created.get(parent);
      if (known === "dir") continue;
      if (known === "symlink") {
        fail(`goes through the symlink "${parent}"; nothing is written through a symlink`);
      }
      if (known === "file") fail(`goes through the file "${parent}"`);
      const path = join(this.destDir, parent);
      const info = await lstatIfReachable(path);
      if (info?.isSymlink) fail(`goes through the symlink "${parent}"; nothing is written through a symlink`);
      if (info && !info.isDirectory) fail(`goes through "${parent}", which is not a directory`);
      if (!info) {
        await Deno.mkdir(path, { mode: DIR_MODE_WHILE_EXTRACTING });
        await Deno.chmod(path, DIR_MODE_WHILE_EXTRACTING);
        this.dirModes.set(parent, 0o755); // no entry of its own (yet): what a directory usually is
      }
      this.created.set(parent, "dir");
    }
  }

  /** Writes a regular file with the archive's permission bits and fsyncs it, its mode included. */
  async #writeFile(entry: TarReadEntry, rel: string, fail: (problem: string) => never): Promise<void> {
    const path = join(this.destDir, rel);
    const mode = entry.header.mode & KEPT_MODE_BITS;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) fail("already exists in the destination");
      throw error;
    }
    try {
      for await (const chunk of entry.body) {
        for (let written = 0; written < chunk.length;) written += await file.write(chunk.subarray(written));
      }
      await Deno.chmod(path, mode); // exactly, whatever the umask; before the fsync, which then covers it
      await file.sync();
    } finally {
      file.close();
    }
    this.created.set(rel, "file");
  }

  /**
   * Makes a directory, or takes one this extraction made already; its mode from the archive is set by
   * `finish`, so that a directory without write permission can still be filled.
   */
  async #makeDir(
    header: TarHeader,
    rel: string,
    existing: string | undefined,
    fail: (problem: string) => never,
  ): Promise<void> {
    const path = join(this.destDir, rel);
    if (existing === undefined) {
      const info = await lstatIfReachable(path);
      if (info && (info.isSymlink || !info.isDirectory)) fail("already exists in the destination");
      if (!info) await Deno.mkdir(path, { mode: DIR_MODE_WHILE_EXTRACTING });
    }
    await Deno.chmod(path, DIR_MODE_WHILE_EXTRACTING);
    this.dirModes.set(rel, header.mode & KEPT_MODE_BITS);
    this.created.set(rel, "dir");
  }

  /** Makes a symlink, and refuses it when, through links made before it, it leads out or loops. */
  async #makeSymlink(header: TarHeader, parts: string[], fail: (problem: string) => never): Promise<void> {
    const rel = parts.join("/");
    try {
      await Deno.symlink(header.linkname, join(this.destDir, rel));
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) fail("already exists in the destination");
      throw error;
    }
    this.created.set(rel, "symlink");
    this.symlinks.push(parts);
    if (await resolveInside(this.destDir, parts) === undefined) {
      fail(
        `symlink to ${
          JSON.stringify(header.linkname)
        } leads outside the destination through other symlinks, or loops`,
      );
    }
  }

  /** The checks that need the whole bundle, then the directories' fsyncs; returns the extracted paths. */
  async finish(): Promise<string[]> {
    // Later entries may have turned an earlier link's path into an escape; check them all again.
    for (const parts of this.symlinks) {
      if (await resolveInside(this.destDir, parts) === undefined) {
        throw new BerthError(
          "invalid_input",
          `${this.what}: entry ${
            JSON.stringify(parts.join("/"))
          }: symlink leads outside the destination through other symlinks, or loops`,
        );
      }
    }
    if (this.created.get(COMPOSE_FILE) !== "file") {
      throw new BerthError("invalid_input", `${this.what}: has no ${COMPOSE_FILE} at its top level`);
    }
    // Directories get their modes last, deepest first (a parent may take away its own write permission),
    // each before its fsync, which then covers it.
    const depth = (rel: string) => rel.split("/").length;
    const deepestFirst = [...this.dirModes].sort(([a], [b]) => depth(b) - depth(a));
    for (const [rel, mode] of deepestFirst) await Deno.chmod(join(this.destDir, rel), mode);
    for (const [rel, kind] of this.created) if (kind === "dir") await fsyncDir(join(this.destDir, rel));
    await fsyncDir(this.destDir);
    return this.extracted;
  }
}

/**
 * Extracts a bundle (.tar.gz) into `destDir`, which should be a fresh empty directory that the caller
 * deletes on failure. Only regular files, directories and symlinks that resolve inside `destDir` are
 * created, owned by whoever runs this (root on a device; the archive's uid/gid are ignored); files and
 * directories get the archive's permission bits without setuid, setgid and sticky (a directory with no entry
 * of its own 0755). Nothing is ever written through a symlink, so a refused bundle leaves nothing outside
 * `destDir`. Hard links, devices, fifos, absolute paths, ".." components, duplicates and sizes over the
 * limits are refused with a BerthError ("invalid_input") naming the entry. Files are fsynced, and so are the
 * directories at the end.
 * Returns the extracted paths in archive order.
 */
export async function extractBundle(
  stream: ReadableStream<Uint8Array>,
  destDir: string,
  options: ExtractOptions = {},
): Promise<string[]> {
  const limit = { ...DEFAULT_BUNDLE_LIMITS, ...options };
  const what = options.what ?? "app bundle";
  if (!(await Deno.stat(destDir)).isDirectory) {
    throw new BerthError("invalid_input", `${destDir}: not a directory to extract ${what} into`);
  }
  const extraction = new Extraction(destDir, limit, what);
  for await (
    const entry of readTar(boundedTar(stream, limit, what), { what, maxMetaBytes: MAX_META_BYTES })
  ) {
    await extraction.add(entry);
  }
  return await extraction.finish();
}

/**
 * The bytes a bundle's files take once extracted, from the sizes its tar headers declare: read through once
 * (nothing is written), so that install can check the disk before extracting. Refuses, naming the entry, a
 * bundle over the limits, as extractBundle would.
 */
export async function bundleFileBytes(
  stream: ReadableStream<Uint8Array>,
  options: ExtractOptions = {},
): Promise<number> {
  const limit = { ...DEFAULT_BUNDLE_LIMITS, ...options };
  const what = options.what ?? "app bundle";
  const tally = new Tally(limit);
  for await (
    const { header } of readTar(boundedTar(stream, limit, what), { what, maxMetaBytes: MAX_META_BYTES })
  ) {
    const fail = entryFailure(what, header.name);
    tally.entry(fail);
    if (header.type === "file") {
      tally.file(relativeComponents(header.name, fail).join("/"), header.size, fail);
    }
  }
  return tally.fileBytes;
}
