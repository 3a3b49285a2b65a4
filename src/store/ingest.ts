/**
 * Partial downloads. Each blob in flight lives in `ingest/<hex>/`: `data` (the bytes so far) and
 * `state.json` (digest, size, the checkpoint = the offset last fsynced, and the boot id of that checkpoint).
 *
 * Crash rules:
 * - Resume after a process crash (same boot id): every byte in `data` reached the page cache, keep them all.
 * - Resume after a reboot (other boot id): only bytes up to the checkpoint are known durable; the rest is
 *   truncated away.
 * - Commit verifies size and digest before the blob becomes visible; a mismatch deletes the ingest, so a
 *   bad blob is never seen in `blobs/`.
 */
import { BerthError } from "../util/errors.ts";
import { digestHex, Sha256 } from "../oci/digest.ts";
import { fsyncDir, lstatIfExists, writeFileAtomic } from "../util/fs.ts";
import { openNoFollow, readNoFollow } from "./nofollow.ts";
import { currentBootId } from "./boot_id.ts";

/** fsync and record a checkpoint after this many new bytes… */
const CHECKPOINT_BYTES = 8 * 1024 * 1024;
/** …or after this long, whichever comes first, bounding what a power cut can cost. */
const CHECKPOINT_MS = 2_000;
const READ_CHUNK = 1024 * 1024;

/** An ingest's state.json: the blob it must become (digest, size in bytes), and what fsync made safe. */
export interface IngestState {
  digest: string;
  size: number;
  /** Bytes known to be on disk (fsynced). */
  checkpoint: number;
  /** The boot the checkpoint was taken in: on resume in another boot, bytes past `checkpoint` are dropped. */
  bootId: string;
  updatedAt: string;
}

/** Where one blob's ingest lives: its directory, the partial `data` and its `state.json`. */
export interface IngestPaths {
  dir: string;
  data: string;
  state: string;
}

/** The paths of `digest`'s ingest under `ingestRoot`; refuses anything but a sha256 digest (digestHex). */
export function ingestPaths(ingestRoot: string, digest: string): IngestPaths {
  const dir = `${ingestRoot}/${digestHex(digest)}`;
  return { dir, data: `${dir}/data`, state: `${dir}/state.json` };
}

/** Reads an ingest's state file; undefined when missing or unreadable (the ingest is then started over). */
export async function readIngestState(path: string): Promise<IngestState | undefined> {
  const bytes = await readNoFollow(path).catch(() => undefined);
  if (!bytes) return undefined;
  try {
    const state = JSON.parse(new TextDecoder().decode(bytes)) as IngestState;
    if (
      typeof state.digest !== "string" || typeof state.size !== "number" ||
      typeof state.checkpoint !== "number"
    ) {
      return undefined;
    }
    return state;
  } catch {
    return undefined;
  }
}

/**
 * How many bytes of an ingest of `digest` (`size` bytes) a resume keeps: all of `data` after a crash in
 * this boot, only up to the checkpoint after a reboot, nothing without a matching state. `IngestWriter.open`
 * resumes from exactly this, and a pull's plan counts it as done, so the two never disagree.
 */
export async function resumableBytes(ingestRoot: string, digest: string, size: number): Promise<number> {
  const paths = ingestPaths(ingestRoot, digest);
  const state = await readIngestState(paths.state);
  const dataInfo = await lstatIfExists(paths.data);
  if (!state || state.digest !== digest || state.size !== size || !dataInfo?.isFile) return 0;
  const bootId = currentBootId();
  const sameBoot = bootId !== "unknown" && state.bootId === bootId;
  const keep = sameBoot ? dataInfo.size : Math.min(dataInfo.size, state.checkpoint);
  return keep > size ? 0 : keep;
}

function storageError(error: unknown, digest: string): unknown {
  if (
    error instanceof Deno.errors.NotSupported || (error as { code?: string })?.code === "ENOSPC" ||
    /No space left/i.test(String((error as Error)?.message))
  ) {
    return new BerthError("insufficient_storage", `no space left in the store while writing blob ${digest}`, {
      cause: error,
    });
  }
  return error;
}

/** A writer for one blob, resumable across crashes. Not safe for concurrent use. */
export class IngestWriter {
  readonly digest: string;
  readonly size: number;
  /** Bytes written and hashed so far. */
  offset: number;
  /** Bytes found on disk when the ingest was opened (0 for a fresh one). */
  readonly resumedFrom: number;
  #paths: IngestPaths;
  #blobPath: string;
  #file: Deno.FsFile;
  #hash: Sha256;
  #checkpoint: number;
  #checkpointAt = Date.now();
  #closed = false;
  /** The checkpoint running beside the download, if any, and its failure once it failed. */
  #background?: { done?: Promise<void>; failed?: unknown };
  #ingestRoot: string;
  /** Whether the ingest's directory entry was fsynced into the ingest root (at the first checkpoint). */
  #dirDurable = false;

  private constructor(
    digest: string,
    size: number,
    paths: IngestPaths,
    blobPath: string,
    file: Deno.FsFile,
    hash: Sha256,
    offset: number,
    ingestRoot: string,
  ) {
    this.digest = digest;
    this.#ingestRoot = ingestRoot;
    this.size = size;
    this.#paths = paths;
    this.#blobPath = blobPath;
    this.#file = file;
    this.#hash = hash;
    this.offset = offset;
    this.resumedFrom = offset;
    this.#checkpoint = offset;
  }

  /**
   * Opens the ingest of `digest` (`size` bytes), resuming what an earlier run left: the kept prefix is
   * re-hashed from disk, since a hash state cannot be saved.
   */
  static async open(
    ingestRoot: string,
    blobPath: string,
    digest: string,
    size: number,
  ): Promise<IngestWriter> {
    const paths = ingestPaths(ingestRoot, digest);
    let keep = await resumableBytes(ingestRoot, digest, size);
    const state = await readIngestState(paths.state);
    // A link in place of the directory is removed (the link, not what it points to) and started over.
    const isDir = (await lstatIfExists(paths.dir))?.isDirectory ?? false;
    let fresh = false;
    if (!isDir || !state || state.digest !== digest || state.size !== size) {
      keep = 0;
      fresh = true;
      // Not fsynced: until the first checkpoint, losing the ingest to a power cut loses nothing known good.
      await Deno.remove(paths.dir, { recursive: true }).catch(() => {});
      await Deno.mkdir(paths.dir, { recursive: true });
    }
    const hash = new Sha256();
    const file = await openNoFollow(paths.data, { write: true, create: true, mode: 0o600 });
    try {
      await file.truncate(keep);
      if (keep > 0) {
        const buffer = new Uint8Array(READ_CHUNK);
        let hashed = 0;
        await file.seek(0, Deno.SeekMode.Start);
        while (hashed < keep) {
          const read = await file.read(buffer.subarray(0, Math.min(READ_CHUNK, keep - hashed)));
          if (read === null) break;
          hash.update(buffer.subarray(0, read));
          hashed += read;
        }
        keep = hashed;
      }
      await file.seek(keep, Deno.SeekMode.Start);
      const writer = new IngestWriter(digest, size, paths, blobPath, file, hash, keep, ingestRoot);
      if (fresh) {
        // In a directory just made: checkpoint 0 needs no fsync, as a state lost or torn by a power cut
        // means "start at 0" too.
        // Written at all so that a kill in this boot resumes from the bytes in the page cache.
        await writer.#writeFreshState();
      } else {
        // Record the checkpoint now: after a reboot, only `keep` bytes are known good.
        await file.sync();
        await writer.#writeState();
      }
      return writer;
    } catch (error) {
      file.close();
      throw storageError(error, digest);
    }
  }

  #stateText(): string {
    const state: IngestState = {
      digest: this.digest,
      size: this.size,
      checkpoint: this.#checkpoint,
      bootId: currentBootId(),
      updatedAt: new Date().toISOString(),
    };
    return JSON.stringify(state) + "\n";
  }

  async #writeState(): Promise<void> {
    await writeFileAtomic(this.#paths.state, this.#stateText());
    if (!this.#dirDurable) {
      // The first real checkpoint: the ingest's directory entry must outlive a power cut too.
      await fsyncDir(this.#ingestRoot);
      this.#dirDurable = true;
    }
  }

  /** The state of a fresh ingest (checkpoint 0), written in place without fsync: see open. */
  async #writeFreshState(): Promise<void> {
    await Deno.writeTextFile(this.#paths.state, this.#stateText(), { mode: 0o644 });
  }

  /** Appends bytes (hashing them); refuses to grow past the declared size. */
  async write(chunk: Uint8Array): Promise<void> {
    if (this.offset + chunk.length > this.size) {
      throw new BerthError(
        "verification_failed",
        `blob ${this.digest}: registry sent more than the ${this.size} bytes its descriptor declares`,
      );
    }
    // Written as it arrives, not gathered: bytes held in memory would be lost to a kill, and refetched.
    // The write runs on another thread while this one hashes the same bytes.
    const writing = this.#file.write(chunk);
    this.#hash.update(chunk);
    try {
      let written = await writing;
      while (written < chunk.length) written += await this.#file.write(chunk.subarray(written));
    } catch (error) {
      throw storageError(error, this.digest);
    }
    this.offset += chunk.length;
    if (this.#background?.failed) throw this.#background.failed;
    if (
      !this.#background &&
      (this.offset - this.#checkpoint >= CHECKPOINT_BYTES || Date.now() - this.#checkpointAt >= CHECKPOINT_MS)
    ) {
      this.#startCheckpoint();
    }
  }

  /**
   * A checkpoint taken beside the download: the fsync (a flush of up to 8 MiB, tens of milliseconds on
   * a slow disk) no longer holds up the writes after it. It records only the offset reached when it began,
   * which is all the fsync covers; the next one starts after it ends.
   */
  #startCheckpoint(): void {
    const background: { done?: Promise<void>; failed?: unknown } = {};
    background.done = this.#takeCheckpoint(this.offset).then(
      () => {
        if (this.#background === background) this.#background = undefined;
      },
      (error) => {
        background.failed = error;
      },
    );
    this.#background = background;
  }

  /** Waits for a checkpoint running beside the download; throws what it failed with. */
  async #settleBackground(): Promise<void> {
    const background = this.#background;
    if (!background) return;
    await background.done;
    this.#background = undefined;
    if (background.failed) throw background.failed;
  }

  /** fsyncs the file and records `offset` (reached before the fsync began) as the resume point. */
  async #takeCheckpoint(offset: number): Promise<void> {
    try {
      // Through a second descriptor: Deno runs the ops of one file one after another, so a sync through
      // the writing one would hold up the writes queued behind it.
      using syncing = await openNoFollow(this.#paths.data);
      await syncing.sync();
      this.#checkpoint = offset;
      this.#checkpointAt = Date.now();
      await this.#writeState();
    } catch (error) {
      throw storageError(error, this.digest);
    }
  }

  /** Makes everything written so far durable and records it as the resume point. */
  async checkpoint(): Promise<void> {
    await this.#settleBackground();
    await this.#takeCheckpoint(this.offset);
  }

  /**
   * Verifies size and digest, then makes the blob visible: fsync, read-only, rename into `blobs/`, fsync
   * the directory. Commit always closes the writer; on a mismatch the ingest is deleted and the error
   * names the digest.
   */
  async commit(): Promise<void> {
    this.#closed = true;
    try {
      await this.#settleBackground();
      if (this.offset !== this.size) {
        throw new BerthError(
          "verification_failed",
          `blob ${this.digest}: got ${this.offset} bytes, its descriptor declares ${this.size}`,
        );
      }
      const actual = this.#hash.digest();
      if (actual !== this.digest) {
        throw new BerthError(
          "verification_failed",
          `blob ${this.digest}: content hashes to ${actual}; the download was corrupt and is discarded`,
        );
      }
      await this.#file.sync();
      this.#file.close();
      await Deno.chmod(this.#paths.data, 0o444);
      await Deno.rename(this.#paths.data, this.#blobPath);
      await fsyncDir(this.#blobPath.slice(0, this.#blobPath.lastIndexOf("/")));
    } catch (error) {
      try {
        this.#file.close();
      } catch {
        // already closed
      }
      await Deno.remove(this.#paths.dir, { recursive: true }).catch(() => {});
      throw storageError(error, this.digest);
    }
    // The blob is committed; a leftover ingest dir would only be cleaned up later.
    await Deno.remove(this.#paths.dir, { recursive: true }).catch(() => {});
  }

  /** Stops writing but keeps the partial download (checkpointed) for a later resume. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.checkpoint();
    } finally {
      this.#file.close();
    }
  }

  /** Throws the partial download away (after a verification failure of resumed bytes, say). */
  async discard(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      await this.#settleBackground().catch(() => {});
      this.#file.close();
    }
    await Deno.remove(this.#paths.dir, { recursive: true }).catch(() => {});
  }
}
