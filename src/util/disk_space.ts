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
  /** 0 when the capacity is unknown. */
  sizeBytes: number;
  /** df's "Used". Used + available is less than the size by the blocks reserved for root (and on some
   * filesystems by much more); percentages are of used + available, as df's "Capacity" is. */
  usedBytes?: number;
  /** Available to berth (df's "Available": without the blocks reserved for root); 0 when the capacity is
   * unknown. */
  freeBytes: number;
  /** Set when df gives no capacity, to why ("df reports 0 blocks"): FUSE filesystems that do not answer
   * statfs, and ramfs, report 0 blocks. The byte figures then mean nothing. */
  capacityUnknown?: string;
  /** st_dev: two paths on one filesystem share it. */
  device: number;
}

/** A block count as `df -P` prints it: digits, negative when more is reserved than free, "-" when unknown. */
const DF_FIGURE = /^(-?\d+|-)$/;
/** df's "Capacity": a percentage, or "-" when used + available is 0 or unknown. */
const DF_CAPACITY = /^(\d+%|-)$/;

/**
 * Parses `df -P -k PATH` output: a header line, then one line per filesystem (the last one counts). A
 * filesystem that reports 0 blocks or "-" for its size or available space comes back with
 * `capacityUnknown`; output that is not df's throws.
 */
export function parseDf(output: string, path: string): Omit<FsSpace, "device"> {
  const unexpected = () => new Error(`unexpected df output: ${JSON.stringify(output)}`);
  const lines = output.trim().split("\n").filter(Boolean);
  const fields = lines[lines.length - 1]?.trim().split(/\s+/) ?? [];
  // Filesystem 1024-blocks Used Available Capacity Mounted-on (a filesystem name or mount point may hold
  // spaces: the capacity is the first field, from the fifth on, that follows three figures and comes
  // before a mount point).
  if (lines.length < 2 || fields.length < 6) throw unexpected();
  const capacityIndex = fields.findIndex((field, i) =>
    i >= 4 && i < fields.length - 1 && DF_CAPACITY.test(field) &&
    fields.slice(i - 3, i).every((figure) => DF_FIGURE.test(figure))
  );
  if (capacityIndex < 0) throw unexpected();
  const [size, used, available] = fields.slice(capacityIndex - 3, capacityIndex)
    .map((figure) => figure === "-" ? undefined : Number(figure) * 1024);
  const capacityUnknown = size === undefined
    ? "df reports no size"
    : size === 0
    ? "df reports 0 blocks"
    : available === undefined
    ? "df reports no available space figure"
    : undefined;
  return {
    path,
    mountedOn: fields.slice(capacityIndex + 1).join(" "),
    sizeBytes: capacityUnknown ? 0 : size!,
    ...(used === undefined ? {} : { usedBytes: used }),
    freeBytes: capacityUnknown ? 0 : available!,
    ...(capacityUnknown ? { capacityUnknown } : {}),
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

/**
 * Size, free bytes and device of the filesystem holding `path`; `capacityUnknown` when it reports none.
 * Throws `store_io` when df fails or prints something else.
 */
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
