/**
 * Caps on the blobs berth reads into memory or needs before it can plan: an app's bundle, bundle index and
 * layers meta, and every image's config. A registry declares their sizes in the manifest; a size over its
 * cap is refused before any byte is fetched, and a size under it is still counted by the storage
 * pre-flight before the blob is fetched. Layers have no cap of their own: they are streamed to disk, and
 * the pre-flight judges their total. Every cap is a config key under `limits`.
 */
import { BerthError } from "../util/errors.ts";
import type { Descriptor } from "../oci/descriptor.ts";

/** The caps, in bytes (defaults in config/defaults.ts). */
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
