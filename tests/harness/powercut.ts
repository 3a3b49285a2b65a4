/**
 * Mounts powercut_fs.py (a FUSE filesystem that holds unsynced data and directory changes until fsync) so
 * that a test can cut the power under a running berth and look at what a disk would have kept.
 */

const SCRIPT = new URL("./powercut_fs.py", import.meta.url).pathname;
/** Debian's interpreter, which python3-fusepy installs for (a python3 first on PATH may be another). */
const PYTHON = "/usr/bin/python3";

/** A mounted powercut filesystem. */
export interface PowerCutMount {
  /** Where programs see the filesystem. */
  mountpoint: string;
  /**
   * Loses everything not synced (unless the power was cut already), unmounts, and waits until the backing
   * directory is as after the cut.
   */
  cut(): Promise<void>;
  /** Settles when the power has been cut (at the `cutAt`-th change); the mount stays until `cut()`. */
  whenCut: Promise<void>;
  /** How many changes (as powercut_fs.py counts them) the filesystem had seen when it went down, if it has. */
  changes(): number | undefined;
  /** A clean shutdown (everything written) when still mounted; never throws, for `finally`. */
  unmount(): Promise<void>;
  /** What the filesystem printed on stderr so far. */
  log(): string;
}

/** Whether `path` is a mount point now, from this process's mountinfo. */
export function isMounted(path: string): boolean {
  const lines = Deno.readTextFileSync("/proc/self/mountinfo").split("\n");
  return lines.some((line) => line.split(" ")[4] === path);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Mounts a powercut filesystem of `backing` on `mountpoint` (an empty directory); waits until it is there.
 * With `cutAt`, the filesystem cuts its own power just before its `cutAt`-th change.
 */
export async function mountPowerCut(backing: string, mountpoint: string, cutAt = 0): Promise<PowerCutMount> {
  const child = new Deno.Command(PYTHON, {
    args: [SCRIPT, backing, mountpoint, String(cutAt)],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  let noteCut = () => {};
  const whenCut = new Promise<void>((resolve) => noteCut = resolve);
  const reading = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({
      write: (text) => {
        stderr += text;
        if (/lost \d+ directory change/.test(stderr)) noteCut();
      },
    }),
  );
  let exited = false;
  const status = child.status.then(async (result) => {
    exited = true;
    await reading.catch(() => {});
    return result;
  });
  for (let waited = 0; !isMounted(mountpoint); waited += 20) {
    if (exited || waited > 10_000) {
      if (!exited) child.kill("SIGKILL");
      const { code } = await status;
      throw new Error(`powercut_fs did not mount ${mountpoint} (exit ${code}):\n${stderr}`);
    }
    await sleep(20);
  }
  const stop = async (signal: Deno.Signal) => {
    if (!exited) child.kill(signal);
    const timer = setTimeout(() => exited || child.kill("SIGKILL"), 10_000);
    const { code } = await status;
    clearTimeout(timer);
    return code;
  };
  return {
    mountpoint,
    log: () => stderr,
    whenCut,
    changes: () => {
      const counted = /(?:after|before change) (\d+)/.exec(stderr);
      return counted ? Number(counted[1]) : undefined;
    },
    async cut() {
      const code = await stop("SIGUSR1");
      if (code !== 0 || isMounted(mountpoint)) {
        throw new Error(`power cut of ${mountpoint} failed (exit ${code}):\n${stderr}`);
      }
    },
    async unmount() {
      try {
        await stop("SIGTERM");
      } catch (error) {
        console.error(`powercut unmount ${mountpoint}: ${error}`);
      }
      // A daemon that died leaves the mount behind, answering ENOTCONN: detach it.
      if (isMounted(mountpoint)) {
        await new Deno.Command("umount", { args: ["-l", mountpoint] }).output().catch(() => {});
      }
    },
  };
}
