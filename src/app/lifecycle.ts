/**
 * An app on the device: install (project written under the compose root, images loaded from the store),
 * run, stop, remove, and restore after a factory reset. Everything comes from the store; nothing here
 * talks to a registry.
 *
 * Crash rules: the project is built in `.<name>.new-*` and swapped in by renames; the app's record in the
 * store says "installed" only after the project is in place and the engine has flushed the images. A
 * crash anywhere leaves either the old state or leftovers that the next install removes and redoes.
 */
import { BerthError } from "../util/errors.ts";
import { ensureDirDurable, fsyncDir, readFileIfExists, statIfExists, writeFileAtomic } from "../util/fs.ts";

import { formatReference, parseReference } from "../oci/reference.ts";
import type { Store } from "../store/store.ts";
import { findStoredImage, readManifest } from "../store/images.ts";
import { type AppRecord, readApps, writeApp } from "../store/apps.ts";
import type { Engine } from "../docker/engine.ts";
import { type LoadRequest, loadStoredImages } from "../docker/load.ts";
import { type Compose, runCompose } from "../docker/compose_cli.ts";
import { type AppManifest, isAppManifest, parseAppManifest } from "./app_manifest.ts";
import { spaceOf } from "../util/disk_space.ts";
import { insufficientStorage, judge, type SpacePolicy } from "../fetch/preflight.ts";
import { bundleFileBytes, extractBundle } from "./bundle_extract.ts";
import { type BundleLimits, COMPOSE_FILE } from "./bundle_format.ts";
import { verifyBundleIndex } from "./bundle_index.ts";
import { type ComposeFile, formatComposeFile, parseComposeFile } from "./compose_file.ts";
import { pinnedReferences, rewriteForEngine } from "./compose_pin.ts";
import { appName } from "./stored.ts";
import { verifyStored } from "../fetch/signatures.ts";
import type { Policy } from "../trust/policy.ts";
import { checkProjectDotEnv, DOTENV_FILE, protectDotEnv } from "./dotenv.ts";

/** In each installed project: the app manifest digest it was installed from. */
const VERSION_FILE = ".berth-app-digest";
/**
 * The compose root and each project are root's alone: a project holds the app's configuration and maybe
 * secrets (`.env`, 0600). The files inside keep 0644/0755: containers running as other users read what is
 * bind-mounted from a project, and a bind mount does not go through the directories above it.
 */
const PRIVATE_DIR_MODE = 0o700;

/** What app commands act on: the store, the engine, the compose root and how to run compose. */
export interface Device {
  store: Store;
  engine: Engine;
  composeRoot: string;
  /** Found lazily: only run, stop and rm need it. */
  compose: () => Promise<Compose>;
  /** Variables of berth's environment compose may interpolate (the config's composeEnvironment). */
  composeEnvironment: readonly string[];
  /** What a bundle may hold (bundleLimitsFor the config's limits.bundle); the defaults when unset. */
  bundleLimits?: BundleLimits;
  /** How full an install may leave the compose root's filesystem (the config's storage keys). */
  storage: SpacePolicy;
  /** The signature policy: every install (restore too) judges the version's stored signature first. */
  policy?: Policy;
  /** Called as an install makes progress (image bytes streamed to the engine): the agent's liveness. */
  onProgress?: () => void;
}

/** What an install did: the app, the version, and what it loaded into the engine. */
export interface InstallResult {
  name: string;
  ref: string;
  digest: string;
  alreadyInstalled: boolean;
  imagesLoaded: number;
  layersSent: number;
  bytesSent: number;
}

/** The local tag an app's pinned image is loaded under: compose finds it offline, by tag. */
export function localImageTag(pinned: string): string {
  const ref = parseReference(pinned);
  return `${ref.registry}/${ref.repository}:sha256-${ref.digest!.slice("sha256:".length)}`;
}

const projectDir = (device: Pick<Device, "composeRoot">, name: string) => `${device.composeRoot}/${name}`;

/** Makes the compose root and an app's project root's alone (also for projects installed before it was so). */
async function protectProject(device: Device, dir: string): Promise<void> {
  await Deno.chmod(device.composeRoot, PRIVATE_DIR_MODE);
  await Deno.chmod(dir, PRIVATE_DIR_MODE);
  await protectDotEnv(dir);
}

/** compose, run on an installed app's project: its pinned file only, berth's chosen variables only. */
async function composeApp(device: Device, name: string, args: string[]): Promise<void> {
  await runCompose(await device.compose(), {
    dockerHost: device.engine.host,
    dir: projectDir(device, name),
    file: COMPOSE_FILE,
    name,
    passEnv: device.composeEnvironment,
  }, args);
}

/** The versions before `digest`, newest first: the one being replaced goes to the front (at most 16 kept). */
function previousVersions(record: AppRecord | undefined, digest: string): string[] {
  if (!record) return [];
  const earlier = record.digest === digest
    ? record.previous ?? []
    : [record.digest, ...(record.previous ?? [])];
  return [...new Set(earlier)].filter((earlierDigest) => earlierDigest !== digest).slice(0, 16);
}

/** Removes what an interrupted install left in the compose root for `name`. */
async function removeLeftovers(device: Device, name: string): Promise<void> {
  try {
    for await (const entry of Deno.readDir(device.composeRoot)) {
      if (entry.name.startsWith(`.${name}.new-`) || entry.name.startsWith(`.${name}.old-`)) {
        await Deno.remove(`${device.composeRoot}/${entry.name}`, { recursive: true });
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** The pinned reference a local tag was made from (see localImageTag). */
function pinnedFromLocalTag(tag: string): string | undefined {
  const match = /^(.+):sha256-([0-9a-f]{64})$/.exec(tag);
  return match ? `${match[1]}@sha256:${match[2]}` : undefined;
}

/**
 * Whether the engine holds every image the installed project names, checked by config digest (the image
 * ID): a tag alone could point at something else.
 */
async function imagesPresent(device: Device, dir: string): Promise<boolean> {
  try {
    const compose = parseComposeFile(await Deno.readFile(`${dir}/${COMPOSE_FILE}`), `${dir}/${COMPOSE_FILE}`);
    for (const service of compose.services) {
      const pinned = pinnedFromLocalTag(service.image);
      if (!pinned) return false;
      const { manifest } = await readManifest(device.store, await findStoredImage(device.store, pinned));
      const image = await device.engine.inspectImage(manifest.config.digest);
      if (!image?.RepoTags?.includes(service.image)) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/** The services an installed app's project defines, in file order. */
export async function installedServices(device: Device, name: string): Promise<string[]> {
  const path = `${projectDir(device, name)}/${COMPOSE_FILE}`;
  return parseComposeFile(await Deno.readFile(path), path).services.map((service) => service.name);
}

/** An app version in the store: the reference it was pulled as and its app manifest's digest. */
export interface AppVersion {
  ref: string;
  manifestDigest: string;
}

/** The app manifest of a stored app; a container image is refused with the command that loads it. */
async function readStoredAppManifest(store: Store, stored: AppVersion): Promise<AppManifest> {
  const manifestBytes = await store.readBlob(stored.manifestDigest);
  let manifestJson: unknown;
  try {
    manifestJson = JSON.parse(new TextDecoder().decode(manifestBytes));
  } catch {
    // parseAppManifest says what is wrong
  }
  if (manifestJson !== undefined && !isAppManifest(manifestJson)) {
    throw new BerthError(
      "invalid_input",
      `${stored.ref} is a container image, not a compose app: install takes an app published with ` +
        `'berth publish' (to put an image into the engine, use 'berth load ${stored.ref}')`,
    );
  }
  return parseAppManifest(manifestBytes, stored.ref);
}

/** Whether this version is installed and whole: recorded, its project in place, its images in the engine. */
async function installedInPlace(
  device: Device,
  record: AppRecord | undefined,
  stored: AppVersion,
  dir: string,
): Promise<boolean> {
  return !!record?.installed && record.digest === stored.manifestDigest && !!(await statIfExists(dir)) &&
    (await readFileIfExists(`${dir}/${VERSION_FILE}`).then((b) => b && new TextDecoder().decode(b))) ===
      stored.manifestDigest &&
    await imagesPresent(device, dir) &&
    await checkProjectDotEnv(dir, `${stored.ref}: ${dir}/${DOTENV_FILE}`).then(() => true, () => false);
}

/** The distinct images a compose file's pins name, normalised, each with the local tag it is loaded under. */
function pinnedImages(compose: ComposeFile): { localRefs: Map<string, string>; images: PinnedImage[] } {
  const localRefs = new Map<string, string>();
  const images: PinnedImage[] = [];
  for (const { image, reference } of pinnedReferences(compose)) {
    const normalised = formatReference(reference);
    const tag = localImageTag(normalised);
    localRefs.set(image, tag);
    if (!images.some((known) => known.tag === tag)) images.push({ ref: normalised, tag });
  }
  return { localRefs, images };
}

/**
 * Fills `staging` with the app's project, checked against its bundle index and its `.env` — all before any
 * image is loaded, so a refused bundle leaves the engine as it was — and returns its compose file.
 */
async function stageProject(
  device: Device,
  stored: AppVersion,
  app: AppManifest,
  staging: string,
): Promise<ComposeFile> {
  const { store } = device;
  const bundle = await store.openBlob(app.bundle.digest);
  await extractBundle(bundle.readable, staging, { ...device.bundleLimits, what: `${stored.ref} bundle` });
  if (app.bundleIndex) {
    await verifyBundleIndex(staging, await store.readBlob(app.bundleIndex.digest), `${stored.ref} bundle`);
  }
  await checkProjectDotEnv(staging, `${stored.ref} bundle: ${DOTENV_FILE}`);
  await Deno.chmod(staging, PRIVATE_DIR_MODE);
  await protectDotEnv(staging);
  const composePath = `${staging}/${COMPOSE_FILE}`;
  return parseComposeFile(await Deno.readFile(composePath), `${stored.ref}: ${COMPOSE_FILE}`);
}

/** Loads the staged project's images, points its compose file at their local tags and marks its version. */
async function completeProject(device: Device, staged: StagedInstall) {
  const { store, engine } = device;
  const requests: LoadRequest[] = [];
  for (const { ref, tag } of staged.images) requests.push({ image: await findStoredImage(store, ref), tag });
  const loaded = await loadStoredImages(store, engine, requests, { onProgress: device.onProgress });
  // The rewritten compose file keeps the bundle's mode (umask aside, which the chmod undoes).
  const composePath = `${staged.staging}/${COMPOSE_FILE}`;
  const composeMode = (await Deno.lstat(composePath)).mode! & 0o777;
  await writeFileAtomic(
    composePath,
    formatComposeFile(rewriteForEngine(staged.compose, staged.localRefs)),
    composeMode,
  );
  await Deno.chmod(composePath, composeMode);
  await writeFileAtomic(`${staged.staging}/${VERSION_FILE}`, staged.stored.manifestDigest);
  await fsyncDir(staged.staging);
  return loaded;
}

/**
 * Refuses an install, before anything is written, when the compose root's filesystem has no room for the
 * bundle's files by the storage policy: their declared sizes are summed in a first pass over the bundle
 * (which also refuses a bundle over the limits). A filesystem of unknown capacity is not judged.
 */
async function checkProjectSpace(device: Device, stored: AppVersion, app: AppManifest): Promise<void> {
  const what = `${stored.ref} bundle`;
  const bundle = await device.store.openBlob(app.bundle.digest);
  const need = await bundleFileBytes(bundle.readable, { ...device.bundleLimits, what });
  const check = judge(await spaceOf(device.composeRoot), "compose root", need, device.storage);
  if (!check.fits) throw insufficientStorage(what, { checks: [check], fits: false }, device.storage);
}

/** Swaps the staged project in: the old one (if any) is moved aside first and removed after. */
async function swapInProject(device: Device, name: string, staging: string, dir: string): Promise<void> {
  const aside = `${device.composeRoot}/.${name}.old-${crypto.randomUUID().slice(0, 8)}`;
  if (await statIfExists(dir)) await Deno.rename(dir, aside);
  await Deno.rename(staging, dir);
  await fsyncDir(device.composeRoot);
  await Deno.remove(aside, { recursive: true }).catch(() => {});
}

/** One image an app pins: its normalised reference and the local tag it is loaded under. */
export interface PinnedImage {
  ref: string;
  tag: string;
}

/** An install between its two halves: the project staged and checked, no image loaded by it yet. */
export interface StagedInstall {
  name: string;
  stored: AppVersion;
  record?: AppRecord;
  /** The project's place, and the directory it is staged in beside it. */
  dir: string;
  staging: string;
  compose: ComposeFile;
  localRefs: Map<string, string>;
  /** The distinct images the project runs, in service order. */
  images: PinnedImage[];
}

/**
 * The first half of an install: refuses it when the compose root has no room, stages the project and checks
 * it, all before any image is loaded. Nothing to do (`done`) for a version installed and whole already.
 * Its images may be loaded before finishInstall (as they are fetched: installWhilePulling).
 */
export async function stageInstall(
  device: Device,
  input: string | AppVersion,
): Promise<{ staged: StagedInstall } | { done: InstallResult }> {
  const { store } = device;
  const stored = typeof input === "string" ? await findStoredImage(store, input) : input;
  const name = appName(parseReference(stored.ref));
  await verifyStored(store, device.policy, parseReference(stored.ref), stored.manifestDigest);
  const app = await readStoredAppManifest(store, stored);
  const dir = projectDir(device, name);
  const record = (await readApps(store))[name];
  await removeLeftovers(device, name);
  if (await installedInPlace(device, record, stored, dir)) {
    await protectProject(device, dir);
    const done = { name, ref: stored.ref, digest: stored.manifestDigest, alreadyInstalled: true };
    return { done: { ...done, imagesLoaded: 0, layersSent: 0, bytesSent: 0 } };
  }
  await ensureDirDurable(device.composeRoot);
  await Deno.chmod(device.composeRoot, PRIVATE_DIR_MODE);
  await checkProjectSpace(device, stored, app);
  const staging = `${device.composeRoot}/.${name}.new-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(staging, { mode: PRIVATE_DIR_MODE });
  try {
    const compose = await stageProject(device, stored, app, staging);
    return { staged: { name, stored, record, dir, staging, compose, ...pinnedImages(compose) } };
  } catch (error) {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    throw error;
  }
}

/**
 * The second half: loads what the engine still lacks (the engine is flushed before anything is recorded),
 * swaps the project in and records the version as installed. On failure the staged project is removed.
 */
export async function finishInstall(device: Device, staged: StagedInstall): Promise<InstallResult> {
  const { name, stored, record } = staged;
  try {
    const loaded = await completeProject(device, staged);
    await swapInProject(device, name, staged.staging, staged.dir);
    await writeApp(device.store, name, {
      name,
      ref: stored.ref,
      digest: stored.manifestDigest,
      installed: true,
      running: record?.running ?? false,
      previous: previousVersions(record, stored.manifestDigest),
      updatedAt: "",
    });
    return {
      name,
      ref: stored.ref,
      digest: stored.manifestDigest,
      alreadyInstalled: false,
      imagesLoaded: loaded.images.filter((image) => !image.alreadyPresent).length,
      layersSent: loaded.layersSent,
      bytesSent: loaded.bytesSent,
    };
  } catch (error) {
    await abandonInstall(staged);
    throw error;
  }
}

/** Removes a staged install's project (what it loaded into the engine stays, for a next attempt). */
export async function abandonInstall(staged: StagedInstall): Promise<void> {
  await Deno.remove(staged.staging, { recursive: true }).catch(() => {});
}

/**
 * Installs the stored app `input` (a reference, or a version whose reference may no longer be in the
 * index, as an earlier version rolled back to): idempotent — an installed app whose project and images are
 * all in place is left as it is.
 */
export async function installApp(device: Device, input: string | AppVersion): Promise<InstallResult> {
  const half = await stageInstall(device, input);
  return "done" in half ? half.done : await finishInstall(device, half.staged);
}

/** The record of an installed app, or an error saying how to install it. Needs no engine. */
export async function installedApp(
  device: Pick<Device, "store" | "composeRoot">,
  name: string,
): Promise<AppRecord> {
  const record = (await readApps(device.store))[name];
  if (!record?.installed || !(await statIfExists(projectDir(device, name)))) {
    throw new BerthError(
      "not_found",
      `app ${name} is not installed${record ? "" : " (no such app)"}; install it with 'berth install <ref>'`,
    );
  }
  return record;
}

/**
 * `docker compose up -d --remove-orphans` for an installed app; records that it should run. A project
 * installed before berth refused compose's settings in `.env` is refused here, before it starts.
 */
export async function runApp(device: Device, name: string): Promise<void> {
  const record = await installedApp(device, name);
  const dir = projectDir(device, name);
  await checkProjectDotEnv(dir, `app ${name}: ${dir}/${DOTENV_FILE}`);
  await composeApp(device, name, ["up", "-d", "--remove-orphans"]);
  await writeApp(device.store, name, { ...record, running: true });
}

/** Stops an app's containers; records that it should not run. */
export async function stopApp(device: Device, name: string): Promise<void> {
  const record = await installedApp(device, name);
  await composeApp(device, name, ["stop"]);
  await writeApp(device.store, name, { ...record, running: false });
}

/** Removes a stopped app: its containers, its project and its record (its content stays in the store). */
export async function removeApp(device: Device, name: string): Promise<void> {
  await installedApp(device, name);
  const running = (await device.engine.projectContainers(name)).filter((container) =>
    container.State === "running"
  );
  if (running.length > 0) {
    throw new BerthError(
      "invalid_input",
      `app ${name} is running (${
        running.map((c) => c.Names[0]?.replace(/^\//, "")).join(", ")
      }); stop it first`,
    );
  }
  await composeApp(device, name, ["down"]);
  const aside = `${device.composeRoot}/.${name}.old-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.rename(projectDir(device, name), aside);
  await fsyncDir(device.composeRoot);
  await writeApp(device.store, name, undefined);
  await Deno.remove(aside, { recursive: true });
}

/** What a restore did for one app: it came back (installed; started if recorded as running), or why not. */
export type RestoreOutcome =
  & {
    name: string;
    ref: string;
    /** The app manifest digest recorded as installed: the version restored, whatever its tag names now. */
    digest: string;
  }
  & (
    | { ok: true; installed: InstallResult; started: boolean }
    /** `installed` is there when the install succeeded and the start failed. */
    | { ok: false; error: unknown; installed?: InstallResult }
  );

/** What a caller of restoreApps may add: a word on each app as it is done, and a way to stop early. */
export interface RestoreOptions {
  /**
   * Called once per app as soon as it is done; what it throws ends the restore there (as a caller may when
   * the engine is gone, rather than fail every app after it the same way).
   */
  onApp?: (outcome: RestoreOutcome) => void | Promise<void>;
  /** Checked before each app: once aborted, the apps not yet begun are left as they are. */
  signal?: AbortSignal;
  /**
   * Asked first for each app: true when the caller dealt with it itself (the agent finishing an update a
   * crash interrupted), and the restore leaves it out. What it throws is that app's failure.
   */
  takeOver?: (record: AppRecord) => Promise<boolean>;
  /**
   * Whether an app recorded as running needs `compose up` (default: always). The agent asks its services
   * first: up again would re-run a one-shot service that already did its work.
   */
  needsStart?: (record: AppRecord) => Promise<boolean>;
}

/**
 * After a factory reset (engine data root and compose root wiped, store kept): re-installs every app the
 * store records as installed, at the digest recorded (the tag it was pulled as may name a newer version
 * now), and runs those recorded as running — from the store alone. Every app is tried: one that fails is
 * in its outcome, not thrown, so it keeps no other app down. Only reading the records can throw.
 */
export async function restoreApps(device: Device, options: RestoreOptions = {}): Promise<RestoreOutcome[]> {
  const outcomes: RestoreOutcome[] = [];
  for (const record of Object.values(await readApps(device.store))) {
    if (options.signal?.aborted) break;
    if (!record.installed) continue;
    const app = { name: record.name, ref: record.ref, digest: record.digest };
    let outcome: RestoreOutcome;
    let installed: InstallResult | undefined;
    try {
      if (await options.takeOver?.(record)) continue;
      installed = await installApp(device, { ref: record.ref, manifestDigest: record.digest });
      const start = record.running && (await options.needsStart?.(record) ?? true);
      if (start) await runApp(device, record.name);
      outcome = { ...app, ok: true, installed, started: start };
    } catch (error) {
      outcome = { ...app, ok: false, error, ...(installed ? { installed } : {}) };
    }
    outcomes.push(outcome);
    await options.onApp?.(outcome);
  }
  return outcomes;
}
