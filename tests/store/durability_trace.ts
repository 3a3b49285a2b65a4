/**
 * Reads an `strace -f -y -qq` log of berth and checks its crash-safety ordering: every file renamed into
 * place was fsynced after its last write and before the rename, every renamed directory had its files and
 * directories fsynced before the rename, and the directory a rename (or mkdir) changed was fsynced after it.
 *
 * Deno runs file operations on a thread pool, each on a fresh dup of the file's descriptor, so calls are
 * matched by the path strace prints for a descriptor (-y), never by its number. With -f, strace prints a
 * call when it returns (a call interrupted by another thread's is split into "<unfinished ...>" and
 * "<... resumed>"); a thread cannot return from a call before strace has printed it, so "A returned before
 * B started" in the log holds in time too.
 */

import assert from "node:assert/strict";

/** The calls the checks read: what creates, writes, syncs, renames and removes files. */
export const TRACED_CALLS = [
  "openat",
  "write",
  "pwrite64",
  "writev",
  "ftruncate",
  "fsync",
  "fdatasync",
  "rename",
  "renameat",
  "renameat2",
  "close",
  "unlink",
  "unlinkat",
  "rmdir",
  "mkdir",
  "mkdirat",
  "symlink",
  "symlinkat",
];

/** Fails, saying why, when strace is missing or may not trace here (ptrace refused in a container, say). */
export async function assertStraceWorks(): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("strace", {
      args: ["-f", "-qq", "-o", "/dev/null", "true"],
      stderr: "piped",
    })
      .output();
  } catch (error) {
    throw new Error(`strace is needed to check fsync ordering and could not be run: ${error}`);
  }
  const stderr = new TextDecoder().decode(output.stderr).trim();
  assert.equal(output.code, 0, `strace cannot trace here (is ptrace refused?): ${stderr}`);
}

/** One system call from the log: where it started and where it returned (line numbers, 1-based). */
export interface Syscall {
  pid: number;
  name: string;
  /** The arguments, split at top-level commas; descriptors as "21</path>". */
  args: string[];
  /** What it returned, e.g. "0", "21</path>", "-1 ENOENT (No such file or directory)". */
  result: string;
  ok: boolean;
  start: number;
  end: number;
  /** The log line(s) of the call, for messages. */
  text: string;
}

/** Splits an argument list at commas outside quotes and brackets. */
function splitArgs(text: string): string[] {
  const args: string[] = [];
  let depth = 0;
  let quoted = false;
  let current = "";
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quoted) {
      if (char === "\\") current += char + text[++i];
      else {
        if (char === '"') quoted = false;
        current += char;
      }
      continue;
    }
    if (char === '"') quoted = true;
    else if ("<[{(".includes(char)) depth++;
    else if (">]})".includes(char)) depth--;
    else if (char === "," && depth === 0) {
      args.push(current.trim());
      current = "";
      continue;
    }
    current += char;
  }
  if (current.trim()) args.push(current.trim());
  return args;
}

const CALL = /^(\d+)\s+(\w+)\((.*)$/;
const RESUMED = /^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$/;
const UNFINISHED = " <unfinished ...>";

/** The argument text and result of a call's text from after "name(": `args) = result`. */
function splitResult(rest: string): { args: string; result: string } | undefined {
  // A resumed call pads before "=": "<... fsync resumed>)             = 0".
  const match = /^(.*)\)\s+= (.*)$/.exec(rest);
  return match ? { args: match[1], result: match[2].trim() } : undefined;
}

/** The calls of an strace log, in the order they started; signals, exits and unparsable lines are skipped. */
export function parseStrace(log: string): Syscall[] {
  const calls: Syscall[] = [];
  const pending = new Map<number, { name: string; args: string; start: number; text: string }>();
  const push = (
    pid: number,
    name: string,
    args: string,
    rest: string,
    start: number,
    end: number,
    text: string,
  ) => {
    const split = splitResult(args + rest);
    if (!split) return;
    const ok = !split.result.startsWith("-1 ") && !split.result.startsWith("?");
    calls.push({ pid, name, args: splitArgs(split.args), result: split.result, ok, start, end, text });
  };
  log.split("\n").forEach((line, index) => {
    const number = index + 1;
    const resumed = RESUMED.exec(line);
    if (resumed) {
      const pid = Number(resumed[1]);
      const began = pending.get(pid);
      pending.delete(pid);
      if (began?.name === resumed[2]) {
        push(pid, began.name, began.args, resumed[3], began.start, number, `${began.text}\n${line}`);
      }
      return;
    }
    const call = CALL.exec(line);
    if (!call) return;
    const pid = Number(call[1]);
    if (call[3].endsWith(UNFINISHED)) {
      pending.set(pid, {
        name: call[2],
        args: call[3].slice(0, -UNFINISHED.length),
        start: number,
        text: line,
      });
    } else push(pid, call[2], call[3], "", number, number, line);
  });
  return calls.sort((a, b) => a.start - b.start);
}

/** The path of a descriptor argument ("21</a/b>" → "/a/b", "AT_FDCWD</a>" → "/a"). */
function fdPath(arg: string | undefined): string | undefined {
  const match = /^(?:\d+|AT_FDCWD)<(.*)>$/.exec(arg ?? "");
  return match?.[1];
}

/** A quoted path argument, resolved against the directory descriptor `dirArg` when relative. */
function pathArg(arg: string | undefined, dirArg?: string): string | undefined {
  const match = /^"(.*)"$/.exec(arg ?? "");
  if (!match) return undefined;
  const path = match[1];
  if (path.startsWith("/")) return path;
  const base = fdPath(dirArg);
  return base === undefined ? undefined : `${base}/${path}`;
}

/** The directory part of an absolute path. */
export function parentDir(path: string): string {
  const at = path.lastIndexOf("/");
  return at <= 0 ? "/" : path.slice(0, at);
}

/** What a call did to the file system, in the terms the checks need. */
type FsEvent = PathEvent | RenameEvent;
type PathEvent = { kind: "write" | "sync" | "mkdir" | "create" | "remove"; path: string; call: Syscall };
type RenameEvent = { kind: "rename"; from: string; to: string; call: Syscall };

const WRITES = new Set(["write", "pwrite64", "writev", "pwritev", "pwritev2", "ftruncate", "fallocate"]);

/** The file-system event of a successful call, or undefined for calls that change nothing the checks see. */
function eventOf(call: Syscall): FsEvent | undefined {
  if (!call.ok) return undefined;
  const [a0, a1, a2, a3] = call.args;
  const event = (kind: "write" | "sync" | "mkdir" | "create" | "remove", path: string | undefined) =>
    path === undefined ? undefined : { kind, path, call };
  if (WRITES.has(call.name)) return event("write", fdPath(a0));
  if (call.name === "fsync" || call.name === "fdatasync") return event("sync", fdPath(a0));
  if (call.name === "mkdir") return event("mkdir", pathArg(a0));
  if (call.name === "mkdirat") return event("mkdir", pathArg(a1, a0));
  if (call.name === "openat" && /\bO_CREAT\b/.test(a2 ?? "")) return event("create", pathArg(a1, a0));
  if (call.name === "symlink") return event("create", pathArg(a1));
  if (call.name === "symlinkat") return event("create", pathArg(a2, a1));
  if (call.name === "unlink" || call.name === "rmdir") return event("remove", pathArg(a0));
  if (call.name === "unlinkat") return event("remove", pathArg(a1, a0));
  const from = call.name === "rename" ? pathArg(a0) : pathArg(a1, a0);
  const to = call.name === "rename" ? pathArg(a1) : pathArg(a3, a2);
  if (call.name.startsWith("rename") && from !== undefined && to !== undefined) {
    return { kind: "rename", from, to, call };
  }
  return undefined;
}

/** A rename the check looked at. */
export interface RenameSeen {
  from: string;
  to: string;
  /** Whether a directory was renamed (one made by mkdir in the trace). */
  directory: boolean;
  line: number;
}

/** The ordering a trace breaks: what is missing, and the log lines that show it. */
export interface Violation {
  problem: string;
  lines: string[];
}

/** What `checkDurability` found. */
export interface DurabilityReport {
  renames: RenameSeen[];
  violations: Violation[];
}

const inTree = (path: string, root: string) => path === root || path.startsWith(`${root}/`);

/** berth's records: files that name other files (blobs, projects), renamed into place after them. */
const RECORDS = new Set(["index.json", "apps.json", "agent.json", "berth.json"]);

/** Whether `path` is one of berth's records. */
export function isBerthRecord(path: string): boolean {
  return RECORDS.has(path.slice(path.lastIndexOf("/") + 1));
}

/**
 * Checks the renames and mkdirs under `root` in an strace log (see the module comment for the rules).
 * The fsync of the directory a rename or mkdir changed must come before the trace ends, and before the
 * next rename of a record (`isRecord`) in another directory: a record may name what the rename made
 * visible, and must not outlive it in a crash. Other renames in between (downloads running beside) are
 * no such dependency.
 */
export function checkDurability(
  log: string,
  root: string,
  isRecord: (path: string) => boolean = isBerthRecord,
): DurabilityReport {
  const events = parseStrace(log).map(eventOf).filter((event) => event !== undefined);
  const syncs = events.filter((event): event is PathEvent => event.kind === "sync");
  const renames = events.filter((event): event is RenameEvent => event.kind === "rename")
    .filter((event) => inTree(event.to, root));
  const madeDirs = new Set(
    events.filter((event): event is PathEvent => event.kind === "mkdir").map((event) => event.path),
  );
  const report: DurabilityReport = { renames: [], violations: [] };
  const syncedBetween = (path: string, after: number, before: number) =>
    syncs.some((sync) => sync.path === path && sync.call.start > after && sync.call.end < before);

  // (a) the content: what is renamed into place was fsynced after its last change.
  for (const rename of renames) {
    const directory = madeDirs.has(rename.from);
    report.renames.push({ from: rename.from, to: rename.to, directory, line: rename.call.start });
    for (const [path, last] of lastChanges(events, rename.from, rename.call.start)) {
      if (!syncedBetween(path, last.call.end, rename.call.start)) {
        report.violations.push({
          problem: `${path} was not fsynced between its last change and the rename of ${rename.from} to ` +
            rename.to,
          lines: [last.call.text, rename.call.text],
        });
      }
    }
  }
  // (b) the entry: the directory a rename or mkdir changed is fsynced after it, before what depends on it.
  const entries = events.filter((event) =>
    (event.kind === "rename" && inTree(event.to, root)) ||
    (event.kind === "mkdir" && inTree(event.path, root))
  );
  for (const entry of entries) {
    const path = entry.kind === "rename" ? entry.to : entry.path;
    if (removedLater(events, path, entry.call.end)) continue;
    const dir = parentDir(path);
    const nextElsewhere = renames.find((next) =>
      next.call.start > entry.call.end && isRecord(next.to) && parentDir(next.to) !== dir
    );
    const deadline = nextElsewhere?.call.start ?? Infinity;
    if (!syncedBetween(dir, entry.call.end, deadline)) {
      report.violations.push({
        problem: `${dir} was not fsynced after ${entry.kind} of ${path}` +
          (nextElsewhere ? ` and before the record ${nextElsewhere.to} was renamed into place` : ""),
        lines: [entry.call.text, ...(nextElsewhere ? [nextElsewhere.call.text] : [])],
      });
    }
  }
  return report;
}

/**
 * The paths in `tree` (a file, or a directory and all under it) changed before line `before`, each with
 * its last change: a write to a file; a create, mkdir, remove or rename of an entry, which changes its
 * directory (and, for create and mkdir, the new file or directory itself).
 */
function lastChanges(events: FsEvent[], tree: string, before: number): Map<string, FsEvent> {
  const last = new Map<string, FsEvent>();
  for (const event of events) {
    if (event.call.end >= before) continue;
    // What is removed, renamed away or replaced by a rename need not be durable under that name.
    const gone = event.kind === "rename"
      ? [event.from, event.to]
      : event.kind === "remove"
      ? [event.path]
      : [];
    for (const path of [...last.keys()]) if (gone.some((top) => inTree(path, top))) last.delete(path);
    const touched = event.kind === "rename"
      ? [parentDir(event.from), parentDir(event.to)]
      : event.kind === "sync"
      ? []
      : event.kind === "write"
      ? [event.path]
      : event.kind === "remove"
      ? [parentDir(event.path)]
      : [event.path, parentDir(event.path)];
    for (const path of touched) if (inTree(path, tree)) last.set(path, event);
  }
  return last;
}

/** Whether `path` is removed, or renamed away, after line `after` (its entry then need not last). */
function removedLater(events: FsEvent[], path: string, after: number): boolean {
  return events.some((event) =>
    event.call.start > after &&
    ((event.kind === "remove" && event.path === path) || (event.kind === "rename" && event.from === path))
  );
}

/** What strace prints for a string argument ("a\"b\n", octal escapes), as text; undefined when cut short. */
export function unquote(arg: string | undefined): string | undefined {
  const match = /^"((?:[^"\\]|\\.)*)"$/s.exec(arg ?? "");
  if (!match) return undefined;
  const named: Record<string, number> = { n: 10, t: 9, r: 13, v: 11, f: 12, '"': 34, "\\": 92 };
  const bytes: number[] = [];
  for (let i = 0; i < match[1].length; i++) {
    const char = match[1][i];
    if (char !== "\\") {
      bytes.push(char.charCodeAt(0));
      continue;
    }
    const octal = /^[0-7]{1,3}/.exec(match[1].slice(i + 1))?.[0];
    if (octal) {
      bytes.push(parseInt(octal, 8));
      i += octal.length;
    } else bytes.push(named[match[1][++i]] ?? match[1].charCodeAt(i));
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** The argv of an execve call, or undefined when it is cut short. */
export function execArgv(call: Syscall): string[] | undefined {
  const list = /^\[(.*)\]$/s.exec(call.args[1] ?? "")?.[1];
  if (list === undefined) return undefined;
  const argv = splitArgs(list).map(unquote);
  return argv.every((arg) => arg !== undefined) ? argv as string[] : undefined;
}

/** One replacement of the agent's state file (agent.json) as the trace shows it. */
export interface StateWrite {
  /** The update step it records, by app; undefined when its content was not seen whole. */
  steps: Record<string, string> | undefined;
  /** The creation of its temporary file, where the write began. */
  open: Syscall | undefined;
  rename: Syscall;
  /** The first fsync of the file's directory that began after the rename. */
  dirSync: Syscall | undefined;
}

/**
 * Work that may begin only once a step is recorded: for a call of the trace, the app and the steps one of
 * which must be the app's last recorded step (e.g. a compose `up` runs in `starting`).
 */
export type StepWork = (call: Syscall) => { app: string; steps: string[] } | undefined;

/** A compose `up` (v1 `docker-compose`, or v2 `docker compose` and its plugin): it runs in `starting`. */
export function composeUp(call: Syscall): { app: string } | undefined {
  if (call.name !== "execve") return undefined;
  const argv = execArgv(call) ?? [];
  const compose = argv[0]?.endsWith("docker-compose") || argv[1] === "compose";
  const project = argv[argv.indexOf("-p") + 1];
  return compose && argv.includes("up") && project ? { app: project } : undefined;
}

/** The work of the update's steps in the trace, for the apps under `composeRoot`. */
export function agentStepWork(composeRoot: string): StepWork {
  return (call) => {
    const up = composeUp(call);
    // The roll-back starts the version before again: its `up` runs in `rolling-back`.
    if (up) return { ...up, steps: ["starting", "rolling-back"] };
    // A project swapped into place: the install of `installing` (or the roll-back's).
    const to = call.name.startsWith("rename") ? /^"(.*)"$/.exec(call.args.at(-1) ?? "")?.[1] : undefined;
    const app = to && parentDir(to) === composeRoot ? to.slice(composeRoot.length + 1) : undefined;
    // (Not the old project moved aside, a dot name.)
    if (app && !app.startsWith(".")) return { app, steps: ["installing", "rolling-back"] };
    return undefined;
  };
}

/** What `checkAgentSteps` found. */
export interface StepReport {
  writes: StateWrite[];
  /** The calls `work` named as a step's work, each checked. */
  work: Syscall[];
  violations: Violation[];
}

/** The writes of `statePath` in a trace (see StateWrite); its content needs strace -s long enough. */
export function stateWrites(calls: Syscall[], statePath: string): StateWrite[] {
  const writes: StateWrite[] = [];
  for (const rename of calls) {
    const event = eventOf(rename);
    if (event?.kind !== "rename" || event.to !== statePath) continue;
    const open = calls.find((call) => {
      const created = eventOf(call);
      return created?.kind === "create" && created.path === event.from && call.end < rename.start;
    });
    const chunks = calls.filter((call) =>
      call.ok && call.name === "write" && fdPath(call.args[0]) === event.from && call.end < rename.start
    ).map((call) => unquote(call.args[1]));
    let steps: Record<string, string> | undefined;
    try {
      if (chunks.length && chunks.every((chunk) => chunk !== undefined)) {
        const state = JSON.parse(chunks.join("")) as { apps: Record<string, { update?: { step: string } }> };
        steps = {};
        for (const [app, managed] of Object.entries(state.apps)) {
          if (managed.update) steps[app] = managed.update.step;
        }
      }
    } catch {
      steps = undefined;
    }
    const dirSync = calls.find((call) => {
      const sync = eventOf(call);
      return sync?.kind === "sync" && sync.path === parentDir(statePath) && call.start > rename.end;
    });
    writes.push({ steps, open, rename, dirSync });
  }
  return writes;
}

/**
 * Checks the agent's update transaction in a trace: each write of its state file is durable (renamed and
 * its directory fsynced) before the next begins, and before the work of the step it records (`work`):
 * the last state written before that work began records one of the work's steps, and its directory's
 * fsync returned before the work started.
 */
export function checkAgentSteps(log: string, statePath: string, work: StepWork): StepReport {
  const calls = parseStrace(log);
  const writes = stateWrites(calls, statePath);
  const violations: Violation[] = [];
  writes.forEach((write, i) => {
    const next = writes[i + 1];
    if (!write.dirSync || (next?.open && write.dirSync.end >= next.open.start)) {
      violations.push({
        problem: `${parentDir(statePath)} was not fsynced after the rename of ${statePath}` +
          (next ? " and before its next write began" : ""),
        lines: [write.rename.text, ...(next?.open ? [next.open.text] : [])],
      });
    }
  });
  const checked: Syscall[] = [];
  for (const call of calls) {
    const needs = call.ok ? work(call) : undefined;
    if (!needs) continue;
    checked.push(call);
    const last = writes.findLast((write) => write.rename.start < call.start);
    const step = last?.steps?.[needs.app];
    if (!last || step === undefined || !needs.steps.includes(step)) {
      violations.push({
        problem: `${call.name} began with ${needs.app}'s step ${step ?? "unknown"} as last recorded, ` +
          `not ${needs.steps.join(" or ")}`,
        lines: [...(last ? [last.rename.text] : []), call.text],
      });
    } else if (!last.dirSync || last.dirSync.end >= call.start) {
      violations.push({
        problem: `${call.name} began before the record of ${needs.app}'s step ${step} was durable ` +
          `(${parentDir(statePath)} fsynced after its rename)`,
        lines: [last.rename.text, ...(last.dirSync ? [last.dirSync.text] : []), call.text],
      });
    }
  }
  return { writes, work: checked, violations };
}
