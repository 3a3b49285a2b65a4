/**
 * Crafted compose apps: a bundle with exactly the entries a test names, pushed in-process with
 * RegistryPusher, so `berth pull` takes it like any app and only `berth install` sees what is in it.
 */
import assert from "node:assert/strict";
import type { RegistryPusher } from "../../src/registry/push.ts";
import { parseReference } from "../../src/oci/reference.ts";
import { OCI_MANIFEST } from "../../src/oci/mediatypes.ts";
import { appManifest } from "../../src/app/app_manifest.ts";
import { OCI_EMPTY_DATA, OCI_EMPTY_DIGEST } from "../../src/oci/descriptor.ts";
import { type TarEntry, writeTar } from "../../src/app/tar_write.ts";
import { gzip } from "../../src/util/gzip.ts";
import { sha256Of } from "../../src/oci/digest.ts";

const encoder = new TextEncoder();

/**
 * Pushes a compose app whose bundle holds `entries` (in that order) and whose index lists the regular
 * files among them; returns the manifest digest.
 */
export async function pushApp(pusher: RegistryPusher, refText: string, entries: TarEntry[]): Promise<string> {
  const ref = parseReference(refText);
  const bundle = await gzip(writeTar(entries));
  const index: Record<string, string> = {};
  for (const entry of entries) if (entry.type === "file") index[entry.name] = sha256Of(entry.data!);
  const sorted = Object.fromEntries(Object.entries(index).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0));
  const indexBytes = encoder.encode(JSON.stringify(sorted));
  const bundleRef = { digest: sha256Of(bundle), size: bundle.length };
  const indexRef = { digest: sha256Of(indexBytes), size: indexBytes.length };
  await pusher.pushBlob(ref, OCI_EMPTY_DIGEST, OCI_EMPTY_DATA);
  await pusher.pushBlob(ref, indexRef.digest, indexBytes);
  await pusher.pushBlob(ref, bundleRef.digest, bundle);
  return await pusher.pushManifest(
    ref,
    appManifest({ bundle: bundleRef, bundleIndex: indexRef }),
    OCI_MANIFEST,
  );
}

/** A regular file entry; its text defaults to its name. */
export const file = (name: string, text = `${name}\n`): TarEntry => ({
  name,
  type: "file",
  data: encoder.encode(text),
});

/**
 * What a refused install must leave on a device of its own: no app record, no container, no image in its
 * engine (`docker` runs the docker CLI against it).
 */
export async function assertNothingInstalled(
  store: string,
  docker: (...args: string[]) => Promise<string>,
): Promise<void> {
  assert.equal(await Deno.stat(`${store}/apps.json`).then(() => true, () => false), false, "no record");
  assert.equal((await docker("ps", "-a", "-q")).trim(), "", "no container");
  assert.equal((await docker("image", "ls", "-a", "-q")).trim(), "", "nothing loaded");
}
