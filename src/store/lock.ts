/**
 * One writer at a time per store: an advisory flock on `<store>/berth.lock`, taken without waiting. The
 * kernel releases it when the holder exits, however it exits (kill -9 or power cut), so a lock is never
 * stale. The file also names the holder, so a refused writer can say who holds the store.
 */
import { BerthError } from "../util/errors.ts";
import { openNoFollow, readNoFollow } from "./nofollow.ts";

/** The lock's file in the store's root; never removed (release empties it): the flock is the lock. */
export const LOCK_FILE = "berth.lock";

/** Who holds the lock, written into the lock file for refusal messages only: never used to decide. */
export interface LockHolder {
  pid: number;
  command: string;
  since: string;
}

/** A held writer lock; `release` (or process exit) frees it. */
export class StoreLock {
  #file: Deno.FsFile;
  private constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /** Takes the lock on the store at `root` or throws `store_locked` naming the holder. */
  static async acquire(root: string, command: string): Promise<StoreLock> {
    const path = `${root}/${LOCK_FILE}`;
    const file = await openNoFollow(path, { write: true, create: true, mode: 0o644 });
    if (!(await file.tryLock(true))) {
      file.close();
      let holder = "another process";
      try {
        const info = JSON.parse(new TextDecoder().decode(await readNoFollow(path))) as LockHolder;
        holder = `pid ${info.pid} (berth ${info.command}, since ${info.since})`;
      } catch {
        // the holder has not written its name yet
      }
      throw new BerthError(
        "store_locked",
        `store ${root} is in use by ${holder}; only one writing command may run at a time (reading ones still work)`,
        { transient: true },
      );
    }
    // Naming the holder is informative only, so it need not be durable.
    const info: LockHolder = { pid: Deno.pid, command, since: new Date().toISOString() };
    await file.truncate(0);
    await file.write(new TextEncoder().encode(JSON.stringify(info) + "\n"));
    return new StoreLock(file);
  }

  /** Frees the lock, blanking the holder's name first; the file is closed even if unlocking throws. */
  release(): void {
    try {
      this.#file.truncateSync(0);
      this.#file.unlockSync();
    } finally {
      this.#file.close();
    }
  }
}
