/** `berth ls`: the references in the store with digest, platform and size. */
import { Store } from "../store/store.ts";
import { readManifest, storedImages } from "../store/images.ts";
import { type Context, formatBytes } from "./context.ts";

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
