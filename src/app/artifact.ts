/**
 * What fetch is told about compose apps: an app manifest pins the images its compose file names, and its
 * own blobs (the bundle, its index, the layers meta) are fetched first to read them.
 */
import { EMPTY_SHA256 } from "../oci/digest.ts";
import { formatReference } from "../oci/reference.ts";
import type { Descriptor } from "../oci/descriptor.ts";
import type { ArtifactInput, PinningArtifact } from "../fetch/resolve.ts";
import { checkBlobSize } from "../fetch/limits.ts";
import { isAppManifest, parseAppManifest } from "./app_manifest.ts";
import { APP_JSON_MEDIA_TYPE } from "./bundle_format.ts";
import { appName } from "./name.ts";

/**
 * Recognises a compose app's manifest (an ArtifactReader for `pull`): checks it and the declared sizes of
 * its own blobs against the limits, and reads the images it pins from its stored bundle.
 */
export function readAppArtifact(
  { json, bytes, what, ref, limits }: ArtifactInput,
): PinningArtifact | undefined {
  if (!isAppManifest(json)) return undefined;
  const app = parseAppManifest(bytes, what);
  // Only what the format defines is fetched: the bundle, its index and the layers meta (v1).
  checkBlobSize(app.bundle, "bundle", limits, `${what} bundle`);
  const blobs: Descriptor[] = [app.bundle];
  if (app.bundleIndex) {
    checkBlobSize(app.bundleIndex, "bundleIndex", limits, `${what} bundle index`);
    blobs.push({ mediaType: APP_JSON_MEDIA_TYPE, ...app.bundleIndex });
  }
  if (app.layersMeta) {
    checkBlobSize(app.layersMeta, "layersMeta", limits, `${what} layers meta`);
    blobs.push(app.layersMeta);
  }
  // The config is the 2-byte empty descriptor; apps published before late 2024 name a zero-byte image
  // config without a size, which is not needed.
  if (app.manifest.config.digest !== EMPTY_SHA256) {
    checkBlobSize(app.manifest.config, "imageConfig", limits, `${what} config`);
    blobs.unshift(app.manifest.config);
  }
  return {
    appName: appName(ref),
    manifest: app.manifest,
    blobs,
    ...(app.layersMeta ? { layersMetaDigest: app.layersMeta.digest } : {}),
    async pins(store) {
      // Compose parsing (yaml, zod) is loaded only when an app is pulled: it costs start-up time.
      const { appImageRefs, readBundleCompose } = await import("./stored.ts");
      return appImageRefs(await readBundleCompose(store, app.bundle, formatReference(ref)));
    },
  };
}
