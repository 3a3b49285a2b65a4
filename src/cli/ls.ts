/** `berth ls`: the references in the store with digest, platform and size. */
import { Store } from "../store/store.ts";
import { MANIFEST_DIGEST, PLATFORM, PULLED_AT, REF_NAME, SOURCE_DIGEST } from "../store/oci.ts";
import { type Context, formatBytes } from "./context.ts";

export interface ListedImage {
  ref: string;
  digest: string;
  manifestDigest: string;
  platform?: string;
  /** Manifest, config and layers of the chosen platform, in bytes. */
  size: number;
  pulledAt?: string;
}

/** Reads every reference and sums its content from the stored manifest. */
export async function listImages(store: Store): Promise<ListedImage[]> {
  const images: ListedImage[] = [];
  for (const entry of (await store.readIndex()).manifests) {
    const annotations = entry.annotations ?? {};
    const manifestDigest = annotations[MANIFEST_DIGEST] ?? entry.digest;
    let size = 0;
    try {
      const bytes = await store.readBlob(manifestDigest);
      const manifest = JSON.parse(new TextDecoder().decode(bytes));
      size = bytes.length + (manifest.config?.size ?? 0) +
        (manifest.layers ?? []).reduce((sum: number, layer: { size: number }) => sum + layer.size, 0);
    } catch {
      size = -1; // missing manifest: fsck reports it
    }
    images.push({
      ref: annotations[REF_NAME] ?? "(unnamed)",
      digest: annotations[SOURCE_DIGEST] ?? entry.digest,
      manifestDigest,
      platform: annotations[PLATFORM],
      size,
      pulledAt: annotations[PULLED_AT],
    });
  }
  return images;
}

export async function lsCommand(context: Context): Promise<number> {
  const store = await Store.open(context.storePath, { write: false, command: "ls" });
  const images = await listImages(store);
  if (context.json) {
    context.emit({ images });
    return 0;
  }
  const rows = [["REFERENCE", "DIGEST", "PLATFORM", "SIZE"]];
  for (const image of images) {
    rows.push([
      image.ref,
      image.digest,
      image.platform ?? "-",
      image.size < 0 ? "incomplete" : formatBytes(image.size),
    ]);
  }
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  for (const row of rows) {
    context.say(row.map((cell, column) => cell.padEnd(widths[column])).join("  ").trimEnd());
  }
  return 0;
}
