/**
 * berth's store: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) that skopeo, umoci
 * and crane can read, plus berth's own parts: `berth.json` (layout version), `berth.lock` (the writer lock)
 * and `ingest/` (partial downloads).
 *
 * The operations, each keeping the crash rules of ingest.ts and util/fs.ts:
 * - `open` validates the path, creates a new store, checks the layout version, and (for writers) takes the lock.
 * - `has` / `openBlob` / `readBlob` read committed content only; nothing half-written is visible.
 * - Every digest becomes a path only through `digestHex`, which refuses anything but a sha256 digest; no
 *   file of the store is opened through a symbolic link (nofollow.ts), and its directories are checked
 *   with lstat when it is opened.
 * - `ingest` begins or resumes a download; `putBlob` commits a small in-memory blob (a manifest) the same way.
 * - `listBlobs` / `deleteBlob` / `listIngests` / `removeIngest` manage content (fsck, prune).
 * - `readIndex` / `writeIndex` read and atomically replace `index.json`.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { digestHex, isDigest } from "../oci/digest.ts";
import { checkDescriptor, type Descriptor, type OciIndex } from "../oci/descriptor.ts";
import {
  ensureDirDurable,
  fsyncDir,
  lstatIfExists,
  statIfExists,
  TEMP_SUFFIX,
  writeFileAtomic,
} from "../util/fs.ts";
import { OCI_INDEX } from "../oci/mediatypes.ts";
import { IngestWriter, resumableBytes } from "./ingest.ts";
import { LOCK_FILE, StoreLock } from "./lock.ts";
import { checkLayoutEntries, openNoFollow, readNoFollow } from "./nofollow.ts";

/** The version of berth's own on-disk state; a berth meeting a newer one refuses to touch it. */
export const LAYOUT_VERSION = 1;
/** Holds LAYOUT_VERSION; written last when a store is created, so a store without it is half-made. */
export const BERTH_FILE = "berth.json";
const OCI_LAYOUT_FILE = "oci-layout";
const INDEX_FILE = "index.json";

/** Files a freshly created (or half-created) store may hold before `berth.json` marks it complete. */
const INIT_ENTRIES = new Set([OCI_LAYOUT_FILE, INDEX_FILE, "blobs", "ingest", LOCK_FILE]);
/** What the layout holds, checked with lstat at every open: a link in their place is refused. */
const LAYOUT_ENTRIES: Record<string, "file" | "dir"> = {
  [BERTH_FILE]: "file",
  [OCI_LAYOUT_FILE]: "file",
  [INDEX_FILE]: "file",
  [LOCK_FILE]: "file",
  "apps.json": "file",
  "agent.json": "file",
  blobs: "dir",
  "blobs/sha256": "dir",
  ingest: "dir",
};

/** How Store.open opens a store: as a reader (never creating or locking anything) or as the one writer. */
export interface OpenOptions {
  /** Take the writer lock (and create the store if missing). */
  write: boolean;
  /** Names the holder in the lock, e.g. "pull". */
  command: string;
}

function ioError(root: string, error: unknown): BerthError {
  if (error instanceof BerthError) return error;
  const message = errorMessage(error);
  if (/read-only file system/i.test(message) || (error as { code?: string })?.code === "EROFS") {
    return new BerthError(
      "store_io",
      `store ${root} is on a read-only file system; give a writable --store`,
      {
        cause: error,
      },
    );
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new BerthError("store_io", `store ${root} is not writable (permission denied)`, { cause: error });
  }
  return new BerthError("store_io", `store ${root}: ${message}`, { cause: error });
}

/** An open store. Readers see committed blobs only; a writer holds the lock until `close`. */
export class Store {
  readonly root: string;
  readonly blobsDir: string;
  readonly ingestDir: string;
  /** False when a reader opened a store that does not exist yet: it reads as empty. */
  readonly exists: boolean;
  #lock?: StoreLock;
  #puts = new Map<string, Promise<void>>();
  /** index.json changes run one at a time, each on the result of the one before. */
  #indexChange: Promise<void> = Promise.resolve();

  private constructor(root: string, exists: boolean, lock?: StoreLock) {
    this.root = root;
    this.blobsDir = `${root}/blobs/sha256`;
    this.ingestDir = `${root}/ingest`;
    this.exists = exists;
    this.#lock = lock;
  }

  /** Opens the store at `root`; see OpenOptions. Every failure names the path and the way out. */
  static async open(root: string, options: OpenOptions): Promise<Store> {
    const info = await statIfExists(root).catch((error) => {
      throw ioError(root, error);
    });
    if (info && !info.isDirectory) {
      throw new BerthError(
        "store_invalid",
        `store path ${root} is not a directory; give a directory with --store`,
      );
    }
    if (!options.write) {
      if (!info) return new Store(root, false);
      await checkLayout(root).catch((error) => {
        throw ioError(root, error);
      });
      return new Store(root, true);
    }
    let lock: StoreLock | undefined;
    try {
      // A directory that is not a store is refused before anything (even the lock file) is written in it.
      if (!info) await ensureDirDurable(root);
      else await checkLayout(root);
      lock = await StoreLock.acquire(root, options.command);
      const complete = await checkLayout(root);
      if (!complete) await initialise(root);
      await Deno.mkdir(`${root}/blobs/sha256`, { recursive: true });
      await Deno.mkdir(`${root}/ingest`, { recursive: true });
      return new Store(root, true, lock);
    } catch (error) {
      lock?.release();
      throw ioError(root, error);
    }
  }

  /** Releases the writer lock. */
  close(): void {
    this.#lock?.release();
    this.#lock = undefined;
  }

  /** Where a committed blob lives; refuses anything but a sha256 digest (see digestHex). */
  blobPath(digest: string): string {
    return `${this.blobsDir}/${digestHex(digest)}`;
  }

  /** Whether a committed blob exists (committed blobs were verified when written); a link is not one. */
  async has(digest: string): Promise<boolean> {
    return (await this.blobSize(digest)) !== undefined;
  }

  /** A committed blob's size in bytes, or undefined when there is none (a link is not one). */
  async blobSize(digest: string): Promise<number | undefined> {
    try {
      const info = await Deno.lstat(this.blobPath(digest));
      return info.isFile ? info.size : undefined;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    }
  }

  /** Opens a committed blob for reading (never through a link); `not_found` names the digest. */
  async openBlob(digest: string): Promise<Deno.FsFile> {
    try {
      return await openNoFollow(this.blobPath(digest));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) throw this.#missing(digest);
      throw error;
    }
  }

  /** Reads a whole committed blob; for small ones (manifests, configs). */
  async readBlob(digest: string): Promise<Uint8Array> {
    const bytes = await readNoFollow(this.blobPath(digest));
    if (!bytes) throw this.#missing(digest);
    return bytes;
  }

  #missing(digest: string): BerthError {
    return new BerthError("not_found", `blob ${digest} is not in store ${this.root}; run berth fsck`);
  }

  /** Begins or resumes the download of a blob. */
  async ingest(digest: string, size: number): Promise<IngestWriter> {
    return await IngestWriter.open(this.ingestDir, this.blobPath(digest), digest, size);
  }

  /**
   * Commits bytes already in memory (a manifest) through the same verified path as a download. Two
   * references may name the same manifest at once: the second waits for the first instead of sharing
   * its ingest.
   */
  putBlob(digest: string, bytes: Uint8Array): Promise<void> {
    let pending = this.#puts.get(digest);
    if (!pending) {
      pending = this.#put(digest, bytes).finally(() => this.#puts.delete(digest));
      this.#puts.set(digest, pending);
    }
    return pending;
  }

  async #put(digest: string, bytes: Uint8Array): Promise<void> {
    if (await this.has(digest)) return;
    const writer = await this.ingest(digest, bytes.length);
    if (writer.offset > 0) {
      await writer.discard();
      return this.#put(digest, bytes);
    }
    try {
      await writer.write(bytes);
    } catch (error) {
      await writer.discard();
      throw error;
    }
    await writer.commit();
  }

  /** Every committed blob, with its size (only regular files named by a digest: see strayBlobEntries). */
  async *listBlobs(): AsyncGenerator<{ digest: string; size: number }> {
    for (const entry of await this.#blobEntries()) {
      if (!entry.isFile || !isDigest(`sha256:${entry.name}`)) continue;
      const info = await lstatIfExists(`${this.blobsDir}/${entry.name}`);
      if (info) yield { digest: `sha256:${entry.name}`, size: info.size };
    }
  }

  /** Paths under `blobs/sha256/` that are not blobs: links, directories, names that are not a digest. */
  async strayBlobEntries(): Promise<string[]> {
    return (await this.#blobEntries())
      .filter((entry) => !entry.isFile || !isDigest(`sha256:${entry.name}`))
      .map((entry) => `${this.blobsDir}/${entry.name}`);
  }

  async #blobEntries(): Promise<Deno.DirEntry[]> {
    try {
      return (await Array.fromAsync(Deno.readDir(this.blobsDir))).sort((a, b) =>
        a.name.localeCompare(b.name)
      );
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return [];
      throw error;
    }
  }

  /** Removes a committed blob (prune, fsck --repair). */
  async deleteBlob(digest: string): Promise<void> {
    await Deno.remove(this.blobPath(digest)).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
    await fsyncDir(this.blobsDir);
  }

  /** Names of the directories under `ingest/` (one per blob in flight). */
  async listIngests(): Promise<string[]> {
    try {
      return (await Array.fromAsync(Deno.readDir(this.ingestDir))).map((entry) => entry.name).sort();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return [];
      throw error;
    }
  }

  async removeIngest(name: string): Promise<void> {
    await Deno.remove(`${this.ingestDir}/${name}`, { recursive: true }).catch(() => {});
  }

  /** The layout's index.json (empty when the store does not exist yet). */
  async readIndex(): Promise<OciIndex> {
    const path = `${this.root}/${INDEX_FILE}`;
    const bytes = this.exists ? await readNoFollow(path) : undefined;
    if (!bytes) return { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] };
    try {
      const index = JSON.parse(new TextDecoder().decode(bytes)) as OciIndex;
      if (!Array.isArray(index?.manifests)) throw new Error("no manifests array");
      index.manifests.forEach((entry, position) => checkDescriptor(entry, `manifests[${position}]`));
      return index;
    } catch (error) {
      throw new BerthError("store_invalid", `${path} is not a valid OCI index: ${errorMessage(error)}`);
    }
  }

  /**
   * Changes index.json: `change` gets its entries and returns the new ones, which replace the file
   * atomically. Changes from one process run one after another; other processes are kept out by the
   * writer lock, which this needs.
   */
  updateIndex(change: (manifests: Descriptor[]) => Descriptor[]): Promise<void> {
    if (!this.#lock) throw new Error("updateIndex needs the writer lock");
    const run = this.#indexChange.then(async () => {
      const index = await this.readIndex();
      const manifests = change(index.manifests);
      await writeFileAtomic(
        `${this.root}/${INDEX_FILE}`,
        JSON.stringify({ ...index, manifests }, null, 2) + "\n",
      );
    });
    this.#indexChange = run.catch(() => {});
    return run;
  }

  /** Bytes of `digest` a resumable ingest already holds (0 when none, or when it cannot be resumed). */
  ingestedBytes(digest: string, size: number): Promise<number> {
    return resumableBytes(this.ingestDir, digest, size).catch(() => 0);
  }

  /** Leftover temporary files from interrupted atomic writes (removed by fsck --repair). */
  async listTempFiles(): Promise<string[]> {
    const found: string[] = [];
    for (const dir of [this.root, this.ingestDir]) {
      try {
        for await (const entry of Deno.readDir(dir)) {
          if (entry.isFile && entry.name.endsWith(TEMP_SUFFIX)) found.push(`${dir}/${entry.name}`);
        }
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    return found;
  }
}

/**
 * Checks `berth.json`. Returns true for a complete berth store, false for an empty directory or an
 * interrupted creation (which `initialise` then finishes); throws for anything else.
 */
async function checkLayout(root: string): Promise<boolean> {
  await checkLayoutEntries(root, LAYOUT_ENTRIES);
  const berthFile = await readNoFollow(`${root}/${BERTH_FILE}`);
  if (berthFile) {
    let version: unknown;
    try {
      version =
        (JSON.parse(new TextDecoder().decode(berthFile)) as { layoutVersion?: unknown }).layoutVersion;
    } catch {
      throw new BerthError("store_invalid", `${root}/${BERTH_FILE} is not valid JSON; the store is damaged`);
    }
    if (version !== LAYOUT_VERSION) {
      throw new BerthError(
        "store_invalid",
        `store ${root} has layout version ${
          JSON.stringify(version)
        }; this berth only knows version ${LAYOUT_VERSION}` +
          ` — use the berth that wrote it, or a newer one`,
      );
    }
    return true;
  }
  const entries = await Array.fromAsync(Deno.readDir(root));
  const foreign = entries.filter((entry) =>
    !INIT_ENTRIES.has(entry.name) && !entry.name.endsWith(TEMP_SUFFIX)
  );
  const blobs = await Array.fromAsync(Deno.readDir(`${root}/blobs/sha256`)).catch(() => []);
  if (foreign.length > 0 || blobs.length > 0) {
    throw new BerthError(
      "store_invalid",
      `${root} is not a berth store (no ${BERTH_FILE}, and it is not empty); give an empty or new directory with --store`,
    );
  }
  return false;
}

/** Creates the layout; `berth.json` is written last, so its presence means the store is complete. */
async function initialise(root: string): Promise<void> {
  await Deno.mkdir(`${root}/blobs/sha256`, { recursive: true });
  await fsyncDir(`${root}/blobs`);
  await Deno.mkdir(`${root}/ingest`, { recursive: true });
  await writeFileAtomic(`${root}/${OCI_LAYOUT_FILE}`, JSON.stringify({ imageLayoutVersion: "1.0.0" }) + "\n");
  await writeFileAtomic(
    `${root}/${INDEX_FILE}`,
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }, null, 2) + "\n",
  );
  await writeFileAtomic(`${root}/${BERTH_FILE}`, JSON.stringify({ layoutVersion: LAYOUT_VERSION }) + "\n");
}
