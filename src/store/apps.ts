/**
 * berth's record of compose apps, kept in the store (`apps.json`) because the store is what survives a
 * factory reset: which app version is installed, and whether it should be running. `restore` rebuilds the
 * engine's side from it. Replaced atomically; only a writer (holding the store lock) changes it.
 */
import { BerthError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { parseDigest } from "../oci/digest.ts";
import { parseReference } from "../oci/reference.ts";
import { readNoFollow } from "./nofollow.ts";
import type { Store } from "./store.ts";

const APPS_FILE = "apps.json";

/** One app's entry in apps.json; readApps checks its name, references and flags before a caller sees it. */
export interface AppRecord {
  /** The app's name: the last path component of its repository; also the compose project name. */
  name: string;
  /** The full normalised reference it was pulled as. */
  ref: string;
  /** The app manifest's digest: the version. */
  digest: string;
  /** Installed: project written and images loaded (the engine flushed). */
  installed: boolean;
  /** Should be running (set by run, cleared by stop). */
  running: boolean;
  /**
   * Earlier installed versions (app manifest digests), newest first: what a failed update rolls back to
   * and what `prune --keep N` keeps N of. Absent in records written before it existed.
   */
  previous?: string[];
  /** Set by writeApp to the time of the write (ISO 8601, UTC); informative only, not checked on read. */
  updatedAt: string;
}

interface AppsFile {
  version: 1;
  apps: Record<string, AppRecord>;
}

/** Every app record, by name. */
export async function readApps(store: Store): Promise<Record<string, AppRecord>> {
  const path = `${store.root}/${APPS_FILE}`;
  const bytes = store.exists ? await readNoFollow(path) : undefined;
  if (!bytes) return {};
  try {
    const file = JSON.parse(new TextDecoder().decode(bytes)) as AppsFile;
    if (file?.version !== 1 || typeof file.apps !== "object" || file.apps === null) {
      throw new Error("unknown shape");
    }
    for (const [key, record] of Object.entries(file.apps)) checkRecord(key, record);
    return file.apps;
  } catch (error) {
    throw new BerthError("store_invalid", `${path} is damaged (${(error as Error).message}); run fsck`);
  }
}

/** An app name is one repository path component: it becomes a directory name and a compose project. */
const APP_NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

/**
 * A record names directories (its app name) and blobs (its digests), so each is checked as it is read,
 * like any other input: a damaged or planted file must not turn into a path.
 */
function checkRecord(key: string, record: AppRecord): void {
  const where = `apps[${JSON.stringify(key)}]`;
  if (typeof record !== "object" || record === null) throw new Error(`${where} is not an object`);
  if (!APP_NAME.test(key) || record.name !== key) throw new Error(`${where}.name is not an app name`);
  if (typeof record.ref !== "string") throw new Error(`${where}.ref is not a reference`);
  parseReference(record.ref);
  parseDigest(record.digest, `${where}.digest`);
  if (record.previous !== undefined) {
    if (!Array.isArray(record.previous)) throw new Error(`${where}.previous is not a list`);
    record.previous.forEach((digest, position) => parseDigest(digest, `${where}.previous[${position}]`));
  }
  if (typeof record.installed !== "boolean" || typeof record.running !== "boolean") {
    throw new Error(`${where}.installed or .running is not true or false`);
  }
}

/** Sets (or, with `undefined`, removes) one app's record; the rest are kept. */
export async function writeApp(store: Store, name: string, record: AppRecord | undefined): Promise<void> {
  const apps = await readApps(store);
  if (record) apps[name] = { ...record, updatedAt: new Date().toISOString() };
  else delete apps[name];
  const file: AppsFile = { version: 1, apps };
  await writeFileAtomic(`${store.root}/${APPS_FILE}`, JSON.stringify(file, null, 2) + "\n");
}
