/**
 * The process table as /proc shows it, for the demo's promise that nothing it started outlives it: the
 * demo finds what is left by what it knows of each process (its session, a path under its directory on the
 * command line, an ancestor it started), not by program names other users' processes share.
 */

/** One process: ids, its start time (so a reused pid is not taken for the one we saw) and its command line. */
export interface ProcessInfo {
  pid: number;
  ppid: number;
  /** The session id: the demo's services run in a session of their own. */
  sid: number;
  /** Clock ticks after boot (field 22 of /proc/PID/stat). */
  startTime: number;
  /** The arguments, joined with spaces. */
  cmdline: string;
}

/**
 * Every process readable in /proc now, zombies left out (they have exited; only their parent's wait is
 * missing); one that exits while it is read is left out too.
 */
export function processTable(): ProcessInfo[] {
  const table: ProcessInfo[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] === "Z") continue;
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0").join(" ").trim();
      table.push({
        pid: Number(entry.name),
        ppid: Number(fields[1]),
        sid: Number(fields[3]),
        startTime: Number(fields[19]),
        cmdline,
      });
    } catch {
      // Gone between the listing and the read.
    }
  }
  return table;
}

/**
 * The processes of `table` that `isOurs` picks, with all their descendants (a container's processes name
 * nothing of ours, but their shim does), leaving out `except` (the caller itself).
 */
export function withDescendants(
  table: ProcessInfo[],
  isOurs: (process: ProcessInfo) => boolean,
  except: number[] = [],
): ProcessInfo[] {
  const picked = new Set(table.filter(isOurs).map((process) => process.pid));
  // Parents come before children in no particular order: repeat until nothing is added.
  for (let grew = true; grew;) {
    grew = false;
    for (const process of table) {
      if (!picked.has(process.pid) && picked.has(process.ppid)) {
        picked.add(process.pid);
        grew = true;
      }
    }
  }
  return table.filter((process) => picked.has(process.pid) && !except.includes(process.pid));
}

/** Whether the process seen as `process` still runs (the same pid started at the same time). */
export function stillRuns(process: ProcessInfo): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${process.pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[19]) === process.startTime && fields[0] !== "Z";
  } catch {
    return false;
  }
}

/** One line per process, for messages: "PID CMDLINE". */
export function describe(processes: ProcessInfo[]): string {
  return processes.map((process) => `${process.pid} ${process.cmdline.slice(0, 200)}`).join("; ");
}
