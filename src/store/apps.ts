/**
 * berth's record of compose apps, kept in the store (`apps.json`) because the store is what survives a
 * factory reset: which app version is installed, and whether it should be running. `restore` rebuilds the
 * engine's side from it. Replaced atomically; only a writer (holding the store lock) changes it.
 */
import { BerthError } from "../util/errors.ts";
import { readFileIfExists, writeFileAtomic } from "../util/fs.ts";
import type { Store } from "./store.ts";

const APPS_FILE = "apps.json";

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
  updatedAt: string;
}

interface AppsFile {
  version: 1;
  apps: Record<string, AppRecord>;
}

/** Every app record, by name. */
export async function readApps(store: Store): Promise<Record<string, AppRecord>> {
  const path = `${store.root}/${APPS_FILE}`;
  const bytes = store.exists ? await readFileIfExists(path) : undefined;
  if (!bytes) return {};
  try {
    const file = JSON.parse(new TextDecoder().decode(bytes)) as AppsFile;
    if (file.version !== 1 || typeof file.apps !== "object") throw new Error("unknown shape");
    return file.apps;
  } catch (error) {
    throw new BerthError("store_invalid", `${path} is damaged (${(error as Error).message}); run fsck`);
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
