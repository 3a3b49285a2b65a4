/**
 * Durable file operations. The rule everywhere: nothing half-written ever looks complete. New content goes
 * to a temporary file, is fsynced, renamed over the target (atomic on POSIX), and the directory is fsynced
 * so the rename itself survives a power cut.
 */

/** Suffix of temporary files made by `writeFileAtomic`; fsck --repair removes leftovers. */
export const TEMP_SUFFIX = ".berth-tmp";

/** fsync a directory so that entries created, renamed or removed in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await Deno.open(dir, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}

/**
 * Replaces `path` with `data` atomically and durably: readers see the old or the new content, never a mix,
 * also after a crash at any point. Needs read and write permission on the directory.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const temp = `${path}.${crypto.randomUUID().slice(0, 8)}${TEMP_SUFFIX}`;
  const file = await Deno.open(temp, { write: true, createNew: true, mode });
  try {
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
  } catch (error) {
    file.close();
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  file.close();
  try {
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  await fsyncDir(dirname(path));
}

/** Reads a file, or returns undefined when it does not exist. */
export async function readFileIfExists(path: string): Promise<Uint8Array | undefined> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** stat that answers undefined for a missing path instead of throwing. */
export async function statIfExists(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** lstat that answers undefined for a missing path: a link is reported as a link, not followed. */
export async function lstatIfExists(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** Creates a directory (and parents) and fsyncs its parent so the new entry is durable. */
export async function ensureDirDurable(dir: string): Promise<void> {
  if (await statIfExists(dir)) return;
  await Deno.mkdir(dir, { recursive: true });
  await fsyncDir(dirname(dir));
}

/** The directory part of a path ("/a/b" → "/a"; "b" → "."). */
export function dirname(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  const slash = trimmed.lastIndexOf("/");
  if (slash < 0) return ".";
  return slash === 0 ? "/" : trimmed.slice(0, slash);
}

/** Joins path segments with single slashes. */
export function join(...parts: string[]): string {
  return parts.join("/").replace(/\/{2,}/g, "/");
}
