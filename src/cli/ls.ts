/** `berth ls`: the images in the store (digest, platform, size) and its apps (fetched, installed, running). */
import { Store } from "../store/store.ts";
import { readManifest, storedImages } from "../store/images.ts";
import { readApps } from "../store/apps.ts";
import { APP_NAME, SIGNATURE_OF } from "../store/annotations.ts";
import { Engine } from "../docker/engine.ts";
import { type Context, formatBytes, noteMissingStore } from "./context.ts";

/** One image of the store, as `ls` shows it. */
export interface ListedImage {
  ref: string;
  digest: string;
  manifestDigest: string;
  platform?: string;
  /** Manifest, config and layers of the chosen platform, in bytes; -1 when the manifest is missing. */
  size: number;
  pulledAt?: string;
}

/** Every reference with the size of its content, from the stored manifests. */
export async function listImages(store: Store): Promise<ListedImage[]> {
  const images: ListedImage[] = [];
  for (const image of await storedImages(store)) {
    let size = -1; // missing manifest: fsck reports it
    try {
      const { manifest, size: manifestSize } = await readManifest(store, image);
      size = manifestSize + manifest.config.size +
        manifest.layers.reduce((sum, layer) => sum + layer.size, 0);
    } catch {
      // reported as incomplete
    }
    const { ref, digest, manifestDigest, platform, pulledAt } = image;
    images.push({ ref, digest, manifestDigest, platform, size, pulledAt });
  }
  return images;
}

/** One app of the store, as `ls` shows it: fetched versions, the installed one, whether it runs. */
export interface ListedApp {
  name: string;
  /** The app references in the store (every fetched version). */
  fetched: string[];
  /** The installed version's reference, if any. */
  installed?: string;
  /** Containers of the app running now; undefined when the engine cannot be asked. */
  running?: boolean;
  /** What berth was last told: should it run (restore starts it). */
  shouldRun: boolean;
}

/** Every app name in the store with the references of its fetched versions, in index order. */
export async function fetchedApps(store: Store): Promise<Map<string, string[]>> {
  const apps = new Map<string, string[]>();
  for (const image of await storedImages(store)) {
    const name = image.entry.annotations?.[APP_NAME];
    if (name) apps.set(name, [...apps.get(name) ?? [], image.ref]);
  }
  return apps;
}

/** Apps from the store's records and its app references, with their state in the engine when reachable. */
async function listApps(context: Context, store: Store): Promise<ListedApp[]> {
  const records = await readApps(store);
  const apps = new Map<string, ListedApp>();
  const app = (name: string) => {
    let entry = apps.get(name);
    if (!entry) apps.set(name, entry = { name, fetched: [], shouldRun: false });
    return entry;
  };
  for (const [name, refs] of await fetchedApps(store)) app(name).fetched.push(...refs);
  for (const record of Object.values(records)) {
    const entry = app(record.name);
    if (record.installed) entry.installed = record.ref;
    entry.shouldRun = record.running;
  }
  let engine: Engine | undefined;
  try {
    engine = await Engine.connect(context.dockerHost);
    for (const entry of apps.values()) {
      const containers = await engine.projectContainers(entry.name);
      entry.running = containers.some((container) => container.State === "running");
    }
  } catch {
    // ls reads the store; an absent engine only leaves "running" unknown
  } finally {
    engine?.close();
  }
  return [...apps.values()].sort((a, b) => a.name.localeCompare(b.name));
}

function printTable(context: Context, rows: string[][]): void {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  for (const row of rows) {
    context.say(row.map((cell, column) => cell.padEnd(widths[column])).join("  ").trimEnd());
  }
}

/** `berth ls`: prints (or emits, with --json) the images and apps in the store; exit 0. */
export async function lsCommand(context: Context): Promise<number> {
  const store = await Store.open(context.storePath, { write: false, command: "ls" });
  if (!store.exists) noteMissingStore(context);
  const appRefs = new Set(
    (await storedImages(store)).filter((image) => image.entry.annotations?.[APP_NAME]).map((image) =>
      image.ref
    ),
  );
  // Signatures (kept under a policy) are listed apart: what they sign, not images of their own.
  const signed = new Map(
    (await storedImages(store)).flatMap((image) => {
      const signs = image.entry.annotations?.[SIGNATURE_OF];
      return signs ? [[image.ref, signs] as const] : [];
    }),
  );
  const images = (await listImages(store)).filter((image) =>
    !appRefs.has(image.ref) && !signed.has(image.ref)
  );
  const apps = await listApps(context, store);
  if (context.json) {
    context.emit({
      images,
      signatures: [...signed].map(([ref, signs]) => ({ ref, signs })),
      apps: apps.map((app) => ({
        ...app,
        installed: app.installed !== undefined,
        installedRef: app.installed,
      })),
    });
    return 0;
  }
  context.say("IMAGES");
  const imageRows = [["REFERENCE", "DIGEST", "PLATFORM", "SIZE"]];
  for (const image of images) {
    imageRows.push([
      image.ref,
      image.digest,
      image.platform ?? "-",
      image.size < 0 ? "incomplete" : formatBytes(image.size),
    ]);
  }
  printTable(context, imageRows);
  context.say("\nAPPS");
  const appRows = [["NAME", "FETCHED", "INSTALLED", "RUNNING"]];
  for (const app of apps) {
    appRows.push([
      app.name,
      app.fetched.join(", ") || "-",
      app.installed ?? "-",
      app.running === undefined ? "unknown (engine unreachable)" : app.running ? "yes" : "no",
    ]);
  }
  printTable(context, appRows);
  if (signed.size > 0) {
    context.say("\nSIGNATURES");
    printTable(context, [["REFERENCE", "SIGNS"], ...[...signed].map(([ref, signs]) => [ref, signs])]);
  }
  return 0;
}
