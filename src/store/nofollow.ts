/**
 * Opening store files without following symbolic links. The store is written as root; a link planted in
 * it (`berth.lock` → `/etc/…`, a blob → a device file) must not make berth create, write or read a file
 * elsewhere. Deno's open has no O_NOFOLLOW, node:fs's does: the file is opened (and created) with it
 * first, then opened again through Deno for its FsFile (locks, streams), and the two must be the same
 * inode — a link swapped in between is refused too. O_NOFOLLOW covers only the last component, so the
 * store's directories are checked with lstat when the store is opened (`checkLayoutEntries`).
 *
 * Deno honours O_NOFOLLOW only with every permission granted: under the binary's own permissions
 * (--allow-read, --allow-write) it opens the path its permission check resolved, through links. So the
 * path is also lstat'ed before and after the open, and the file opened must be the inode lstat saw.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, type Stats } from "node:fs";
import { BerthError } from "../util/errors.ts";

/** How openNoFollow opens a file; the default is read-only, never creating it. */
export interface NoFollowOptions {
  write?: boolean;
  create?: boolean;
  /** Permission bits of a created file. */
  mode?: number;
}

function refused(path: string): BerthError {
  return new BerthError(
    "store_invalid",
    `${path} is a symbolic link or not a regular file; berth never follows links in its store — remove it`,
  );
}

/** Opens the regular file at `path` for reading (and writing), refusing a symbolic link. */
export async function openNoFollow(path: string, options: NoFollowOptions = {}): Promise<Deno.FsFile> {
  const flags = (options.write ? constants.O_RDWR : constants.O_RDONLY) | constants.O_NOFOLLOW |
    (options.create ? constants.O_CREAT : 0);
  const before = lstatOrUndefined(path);
  if (before && !before.isFile()) throw refused(path);
  let fd: number;
  try {
    fd = openSync(path, flags, options.mode ?? 0o644);
  } catch (error) {
    if ((error as { code?: string }).code === "ELOOP") throw refused(path);
    if ((error as { code?: string }).code === "ENOENT") {
      throw new Deno.errors.NotFound(`${path}: no such file`, { cause: error });
    }
    throw error;
  }
  try {
    const first = fstatSync(fd);
    if (!first.isFile()) throw refused(path);
    // The name must still be that very file, not a link to it: created or not, nothing was followed.
    const after = lstatOrUndefined(path);
    const same = (info: { ino: number; dev: number } | undefined) =>
      info !== undefined && info.ino === first.ino && info.dev === first.dev;
    if (!after?.isFile() || !same(after) || (before && !same(before))) throw refused(path);
    const file = await Deno.open(path, { read: true, write: options.write ?? false });
    const second = await file.stat();
    if (second.ino !== first.ino || second.dev !== first.dev) {
      file.close();
      throw refused(path);
    }
    return file;
  } finally {
    closeSync(fd);
  }
}

/** lstat through node:fs (sync, beside the open it guards); undefined when nothing is there. */
function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (error) {
    if ((error as { code?: string }).code === "ENOENT") return undefined;
    throw error;
  }
}

/** Reads a whole regular file without following a link; undefined when it does not exist. */
export async function readNoFollow(path: string): Promise<Uint8Array | undefined> {
  let file: Deno.FsFile;
  try {
    file = await openNoFollow(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  // The readable stream closes the file at its end, or when reading fails.
  return new Uint8Array(await new Response(file.readable).arrayBuffer());
}

/**
 * Checks with lstat that each of `entries` under `root` is absent or of the kind expected, never a link;
 * throws `store_invalid` naming the first that is not.
 */
export async function checkLayoutEntries(
  root: string,
  entries: Record<string, "file" | "dir">,
): Promise<void> {
  for (const [name, kind] of Object.entries(entries)) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(`${root}/${name}`);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    if (kind === "file" ? !info.isFile : !info.isDirectory) {
      throw new BerthError(
        "store_invalid",
        `${root}/${name} is ${
          info.isSymlink ? "a symbolic link" : `not a ${kind === "file" ? "regular file" : "directory"}`
        }; berth never follows links in its store — remove it, or give another --store`,
      );
    }
  }
}
