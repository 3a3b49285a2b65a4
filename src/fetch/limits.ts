/**
 * Caps on the blobs berth reads into memory or needs before it can plan: an app's bundle, bundle index and
 * layers meta, and every image's config. A registry declares their sizes in the manifest; a size over its
 * cap is refused before any byte is fetched, and a size under it is still counted by the storage
 * pre-flight before the blob is fetched. Layers have no cap of their own: they are streamed to disk, and
 * the pre-flight judges their total. Every cap is a config key under `limits`.
 */
import { BerthError } from "../util/errors.ts";
import type { Descriptor } from "../oci/descriptor.ts";

const MiB = 1024 * 1024;

export interface BlobLimits {
  /** An app's bundle (.tar.gz): composectl accepts projects up to 1 GiB, so berth does too. */
  bundle: number;
  /** An app's bundle index (JSON, a path and a digest per file). */
  bundleIndex: number;
  /** An app's layers meta (JSON, a few figures per layer and architecture). */
  layersMeta: number;
  /** An image config (JSON, read whole to learn the platform and the layers' diff IDs). */
  imageConfig: number;
}

export const DEFAULT_BLOB_LIMITS: Readonly<BlobLimits> = {
  bundle: 1024 * MiB,
  // Tens of thousands of files fit in a few MiB of index; these are read and parsed in memory.
  bundleIndex: 16 * MiB,
  layersMeta: 16 * MiB,
  // Configs of real images are kilobytes (a long history makes tens); a config is parsed in memory.
  imageConfig: 8 * MiB,
};

/** Refuses a blob whose declared size is over its cap, naming the blob, the cap and the key that sets it. */
export function checkBlobSize(
  descriptor: Pick<Descriptor, "digest" | "size">,
  kind: keyof BlobLimits,
  limits: BlobLimits,
  what: string,
): void {
  if (descriptor.size <= limits[kind]) return;
  throw new BerthError(
    "invalid_input",
    `${what}: ${descriptor.digest} declares ${descriptor.size} bytes, over the ${limits[kind]}-byte limit ` +
      `(limits.${kind} in the config file)`,
    { details: { needBytes: descriptor.size, limitBytes: limits[kind] } },
  );
}
