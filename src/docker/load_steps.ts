/**
 * An image's load in steps, one load request each. dockerd applies nothing of a load request before it has
 * stored all of it, so an image sent in one request has its first layer applied only after its last one was
 * inflated and sent. Cut after each large layer, the engine applies one step while berth sends the next (as
 * `docker pull` applies a layer while the next downloads). A step below the image's top is loaded as an
 * image of its own, with a stand-in config: the step's diff IDs, the image's platform and a label. The
 * stand-ins are removed once the loads end (and a load that a kill cut short leaves them for the next load
 * to remove: they are untagged, and hold only layers of the image they were cut from).
 */
import { sha256Of } from "../oci/digest.ts";

/** The label of stand-in images: the next load removes any it finds. */
export const STAND_IN_LABEL = "io.berth.loading";

/** A step ends after a layer once at least this many bytes are to be sent since the previous step. */
export const STEP_MIN_BYTES = 16 * 1024 * 1024;

/**
 * Where an image's steps end: layer counts, ascending, the last one all of them. A step ends after a layer
 * (not the top) once the bytes to send since the previous end reach `minBytes`; a layer the engine holds
 * counts 0, so small and known layers ride with the next large one.
 */
export function stepEnds(sizes: number[], minBytes = STEP_MIN_BYTES): number[] {
  const ends: number[] = [];
  let pending = 0;
  sizes.forEach((size, index) => {
    pending += size;
    if (index < sizes.length - 1 && pending >= minBytes) {
      ends.push(index + 1);
      pending = 0;
    }
  });
  ends.push(sizes.length);
  return ends;
}

/** The platform fields of an image config a stand-in keeps, so the engine takes it as it takes the image. */
export interface PlatformFields {
  architecture?: unknown;
  os?: unknown;
  variant?: unknown;
}

/**
 * A stand-in config for the first `diffIds` of an image whose config is `image`: same platform, these
 * layers, the stand-in label. Its digest is the engine's ID for the stand-in.
 */
export function standInConfig(
  image: PlatformFields,
  diffIds: string[],
): { config: Uint8Array; digest: string } {
  const config = new TextEncoder().encode(JSON.stringify({
    architecture: image.architecture,
    os: image.os,
    ...(typeof image.variant === "string" ? { variant: image.variant } : {}),
    config: { Labels: { [STAND_IN_LABEL]: "1" } },
    rootfs: { type: "layers", diff_ids: diffIds },
  }));
  return { config, digest: sha256Of(config) };
}
