/**
 * Free space of a filesystem. Deno has no statfs, so it comes from `df -P` (POSIX output, which coreutils
 * and busybox both give).
 */
import { BerthError, errorMessage } from "./errors.ts";
import { dirname, statIfExists } from "./fs.ts";
import { childCommand } from "./child_env.ts";

/** One filesystem's space as df reports it, in bytes (df's 1024-byte blocks already multiplied). */
export interface FsSpace {
  /** The path asked about, and the mount point df named. */
  path: string;
  mountedOn: string;
  sizeBytes: number;
  /** df's "Used". Used + available is less than the size by the blocks reserved for root (and on some
   * filesystems by much more); percentages are of used + available, as df's "Capacity" is. */
  usedBytes?: number;
  /** Available to berth (df's "Available": without the blocks reserved for root). */
  freeBytes: number;
  /** st_dev: two paths on one filesystem share it. */
  device: number;
}

/** Parses `df -P -k PATH` output: a header line, then one line per filesystem (the last one counts). */
export function parseDf(output: string, path: string): Omit<FsSpace, "device"> {
  const lines = output.trim().split("\n").filter(Boolean);
  const fields = lines[lines.length - 1]?.trim().split(/\s+/) ?? [];
  // Filesystem 1024-blocks Used Available Capacity Mounted-on (a filesystem name may hold spaces: count
  // from the end).
  if (lines.length < 2 || fields.length < 6) {
    throw new Error(`unexpected df output: ${JSON.stringify(output)}`);
  }
  const mountIndex = fields.findIndex((field, i) => i >= 4 && /^\d+%$/.test(field)) + 1;
  const [size, used, available] = fields.slice(mountIndex - 4, mountIndex - 1).map(Number);
  if (mountIndex === 0 || ![size, used, available].every(Number.isFinite)) {
    throw new Error(`unexpected df output: ${JSON.stringify(output)}`);
  }
  return {
    path,
    mountedOn: fields.slice(mountIndex).join(" "),
    sizeBytes: size * 1024,
    usedBytes: used * 1024,
    freeBytes: available * 1024,
  };
}

/** The nearest existing directory at or above `path` (a store may not exist yet). */
async function existingAncestor(path: string): Promise<string> {
  let current = path;
  while (!(await statIfExists(current))) {
    const parent = dirname(current);
    if (parent === current) break;
    current = parent;
  }
  return current;
}

/** Size, free bytes and device of the filesystem holding `path`. */
export async function spaceOf(path: string): Promise<FsSpace> {
  const existing = await existingAncestor(path);
  try {
    const output = await childCommand("df", {
      args: ["-P", "-k", existing],
      // The C locale: the output parsed below in the POSIX format, whatever the device's locale.
      env: { LC_ALL: "C" },
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    if (!output.success) throw new Error(new TextDecoder().decode(output.stderr).trim());
    const info = await Deno.stat(existing);
    return { ...parseDf(new TextDecoder().decode(output.stdout), path), device: info.dev };
  } catch (error) {
    throw new BerthError("store_io", `cannot read the free space of ${path}: ${errorMessage(error)}`, {
      cause: error,
    });
  }
}
