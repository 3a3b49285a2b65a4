/**
 * Compose processes a killed berth left behind. `kill -9` (or a crash) of the agent does not end its
 * children: a `compose up` it had started goes on, reparented, and would race the restarted agent's own
 * install and start of the same project. Under systemd the unit's cgroup is cleaned up on a restart, but a
 * device may run berth under another supervisor, so the agent looks for itself at start-up.
 *
 * A leftover is found by what berth always passes (see compose_cli.ts): `--project-directory
 * <composeRoot>/<project>`. Only the holder of the store's writer lock runs compose on the compose root, so
 * once the agent holds that lock, any such process belongs to a berth that is gone.
 */
import { sleep } from "../util/async.ts";
import { childCommand } from "../util/child_env.ts";

/** A compose process found on one of berth's projects. */
export interface LeftoverCompose {
  pid: number;
  /** The project directory's last part: the app it worked on. */
  project: string;
  argv: string[];
}

/** How long a leftover has to end on SIGTERM before it gets SIGKILL. */
const GRACE_MS = 10_000;
const POLL_MS = 100;

/**
 * The project `argv` works on when it is a compose call of berth's on `composeRoot` (its
 * `--project-directory` a direct child of the root), else undefined.
 */
export function leftoverProject(argv: string[], composeRoot: string): string | undefined {
  const root = composeRoot.replace(/\/+$/, "");
  const at = argv.indexOf("--project-directory");
  const dir = at >= 0 ? argv[at + 1] : undefined;
  if (dir === undefined || !dir.startsWith(`${root}/`)) return undefined;
  const project = dir.slice(root.length + 1);
  return project !== "" && !project.includes("/") ? project : undefined;
}

/**
 * Deno lets only a process with every permission read /proc, so a child reads it for berth: first the
 * processes whose command line has `--project-directory` at all, then each one's exact argv.
 */
const CANDIDATES_SCRIPT = "exec grep -l -F -e --project-directory /proc/[0-9]*/cmdline";

async function childOutput(program: string, args: string[]): Promise<Uint8Array | undefined> {
  try {
    const output = await childCommand(program, { args, stdin: "null", stdout: "piped", stderr: "null" })
      .output();
    return output.stdout;
  } catch {
    return undefined;
  }
}

/** A process's argv from /proc, or undefined when it is gone or unreadable. */
async function argvOf(pid: number): Promise<string[] | undefined> {
  const bytes = await childOutput("cat", [`/proc/${pid}/cmdline`]);
  if (!bytes || bytes.length === 0) return undefined;
  const parts = new TextDecoder().decode(bytes).split("\0");
  if (parts.at(-1) === "") parts.pop();
  return parts;
}

/** Every compose process working on a project under `composeRoot`, except this process. */
export async function findLeftoverCompose(composeRoot: string): Promise<LeftoverCompose[]> {
  const found: LeftoverCompose[] = [];
  // grep exits 1 when nothing matches, and 2 with some files unreadable (gone meanwhile): both are fine.
  const listing = await childOutput("sh", ["-c", CANDIDATES_SCRIPT]);
  // No /proc (not Linux) or no grep: nothing can be found, which is not an error.
  if (!listing) return found;
  for (const line of new TextDecoder().decode(listing).split("\n")) {
    const pid = Number(/^\/proc\/([0-9]+)\/cmdline$/.exec(line)?.[1]);
    if (!Number.isSafeInteger(pid) || pid === Deno.pid) continue;
    const argv = await argvOf(pid);
    const project = argv && leftoverProject(argv, composeRoot);
    if (argv && project) found.push({ pid, project, argv });
  }
  return found;
}

/** Whether `leftover` still runs (the same pid with the same command line: pids are reused). */
async function stillRuns(leftover: LeftoverCompose): Promise<boolean> {
  const argv = await argvOf(leftover.pid);
  return argv !== undefined && argv.join("\0") === leftover.argv.join("\0");
}

function signal(pid: number, name: Deno.Signal): void {
  try {
    Deno.kill(pid, name);
  } catch {
    // Gone already.
  }
}

/**
 * Ends every leftover compose process on `composeRoot`: SIGTERM, and SIGKILL for those still there after a
 * grace period. Returns what it found; the caller then starts and verifies those projects afresh.
 */
export async function stopLeftoverCompose(
  composeRoot: string,
  graceMs = GRACE_MS,
): Promise<LeftoverCompose[]> {
  const leftovers = await findLeftoverCompose(composeRoot);
  for (const leftover of leftovers) signal(leftover.pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  let running = leftovers;
  while (running.length > 0) {
    const still: LeftoverCompose[] = [];
    for (const leftover of running) if (await stillRuns(leftover)) still.push(leftover);
    running = still;
    if (running.length === 0) break;
    if (Date.now() >= deadline) {
      for (const leftover of running) signal(leftover.pid, "SIGKILL");
      break;
    }
    await sleep(POLL_MS);
  }
  return leftovers;
}
