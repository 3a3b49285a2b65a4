/**
 * Compose apps as they sit in the store: the app manifest behind a reference, the compose file inside its
 * bundle (read straight from the stored .tar.gz, nothing extracted), and the images it pins.
 */
import { BerthError } from "../util/errors.ts";
import { formatReference } from "../oci/reference.ts";
import type { Store } from "../store/store.ts";
import type { Descriptor } from "../oci/descriptor.ts";
import { COMPOSE_FILE } from "./bundle_format.ts";
import { type ComposeFile, MAX_COMPOSE_FILE_BYTES, parseComposeFile } from "./compose_file.ts";
import { pinnedReferences } from "./compose_pin.ts";
import { gunzip } from "../util/gzip.ts";
import { readTar } from "./tar_read.ts";
import type { AppRecord } from "../store/apps.ts";
import { findStoredImage, readManifest } from "../store/images.ts";
import { parseAppManifest } from "./app_manifest.ts";

/** The compose file inside a stored bundle blob. */
export async function readBundleCompose(
  store: Store,
  bundle: Descriptor,
  what: string,
): Promise<ComposeFile> {
  const file = await store.openBlob(bundle.digest);
  for await (const entry of readTar(gunzip(file.readable), { what: `${what} bundle ${bundle.digest}` })) {
    if (entry.header.name.replace(/^\.\//, "") !== COMPOSE_FILE) continue;
    if (entry.header.size > MAX_COMPOSE_FILE_BYTES) {
      throw new BerthError(
        "invalid_input",
        `${what}: ${COMPOSE_FILE} is ${entry.header.size} bytes, over the 1 MiB limit`,
      );
    }
    return parseComposeFile(await entry.bytes(), `${what}: ${COMPOSE_FILE}`);
  }
  throw new BerthError("invalid_input", `${what}: bundle ${bundle.digest} has no ${COMPOSE_FILE}`);
}

/** The images an app pins, as normalised references, in service order without repeats. */
export function appImageRefs(compose: ComposeFile): string[] {
  return [...new Set(pinnedReferences(compose).map((pinned) => formatReference(pinned.reference)))];
}

export { appName } from "./name.ts";

/**
 * Whether every installed app could be re-created from the store alone: its app manifest and bundle, and
 * every image it pins with its manifest, config and layers.
 */
export async function canRestoreOffline(store: Store, records: Record<string, AppRecord>): Promise<boolean> {
  for (const record of Object.values(records)) {
    if (!record.installed) continue;
    if (!(await store.has(record.digest))) return false;
    const app = parseAppManifest(await store.readBlob(record.digest), record.ref);
    for (const blob of [app.bundle, ...(app.bundleIndex ? [app.bundleIndex] : [])]) {
      if (!(await store.has(blob.digest))) return false;
    }
    for (const image of appImageRefs(await readBundleCompose(store, app.bundle, record.ref))) {
      const stored = await findStoredImage(store, image).catch(() => undefined);
      if (!stored || !(await store.has(stored.manifestDigest))) return false;
      const { manifest } = await readManifest(store, stored);
      for (const blob of [manifest.config, ...manifest.layers]) {
        if (!(await store.has(blob.digest))) return false;
      }
    }
  }
  return true;
}
