/**
 * `publish`: a compose project directory → a compose-app v1 in a registry. Every service image is pinned
 * to the digest its tag has now (an index stays an index, so each device still picks its platform), its
 * `build` is dropped (devices never build), each service is labelled with its config hash, and the
 * reproducible bundle, its index, the empty config and the app manifest are pushed. The same directory
 * and the same image digests give the same app digest.
 */
import { BerthError } from "../util/errors.ts";
import { sha256Of } from "../oci/digest.ts";
import { OCI_MANIFEST } from "../oci/mediatypes.ts";
import { formatReference, parseReference } from "../oci/reference.ts";
import type { RegistryPusher } from "../registry/push.ts";
import { OCI_EMPTY_DATA, OCI_EMPTY_DIGEST } from "../oci/descriptor.ts";
import { appManifest } from "./app_manifest.ts";
import { buildBundle } from "./bundle_build.ts";
import { COMPOSE_FILE } from "./bundle_format.ts";
import { formatComposeFile, parseComposeFile, serviceImages } from "./compose_file.ts";
import { dropBuild, pinImages } from "./compose_pin.ts";
import { labelServices } from "./config_hash.ts";
import { checkProjectDotEnv, DOTENV_FILE } from "./dotenv.ts";

/** What a publish pushed: the app's reference and manifest digest, and each service's pinned image. */
export interface PublishResult {
  ref: string;
  digest: string;
  images: { service: string; image: string; pinned: string }[];
}

/**
 * Publishes the compose project in `dir` as the app `refInput` (which needs a tag): pins its images to the
 * digests their tags resolve to, labels each service with its config hash, and pushes bundle, index and
 * app manifest.
 */
export async function publishApp(
  pusher: RegistryPusher,
  dir: string,
  refInput: string,
): Promise<PublishResult> {
  const ref = parseReference(refInput);
  if (!ref.tag || ref.digest) {
    throw new BerthError(
      "invalid_input",
      `publish to "${refInput}": give a tag to publish under, not a digest`,
    );
  }
  const path = `${dir}/${COMPOSE_FILE}`;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new BerthError(
      "invalid_input",
      `${path}: cannot read the compose file (${(error as Error).message})`,
    );
  }
  const compose = parseComposeFile(bytes, path);
  const pins = new Map<string, string>();
  const images: PublishResult["images"] = [];
  for (const { service, image } of serviceImages(compose)) {
    if (!pins.has(image)) {
      const imageRef = parseReference(image);
      const digest = imageRef.digest ?? (await pusher.resolveDigest(imageRef)).digest;
      pins.set(
        image,
        formatReference({ registry: imageRef.registry, repository: imageRef.repository, digest }),
      );
    }
    images.push({ service, image, pinned: pins.get(image)! });
  }
  // composeapp drops `build` before it hashes: the same service gives the same config hash from either tool.
  const pinned = formatComposeFile(labelServices(pinImages(dropBuild(compose), pins)));
  const built = await buildBundle(dir, pinned);
  // Refused here as at install (see dotenv.ts), before anything is pushed; a .env left out by
  // .composeappignores is not in the bundle and not checked.
  if (built.files.includes(DOTENV_FILE)) await checkProjectDotEnv(dir, `${dir}/${DOTENV_FILE}`);
  const bundle = { digest: sha256Of(built.bundle), size: built.bundle.length };
  const bundleIndex = { digest: sha256Of(built.bundleIndex), size: built.bundleIndex.length };
  await pusher.pushBlob(ref, OCI_EMPTY_DIGEST, OCI_EMPTY_DATA);
  await pusher.pushBlob(ref, bundleIndex.digest, built.bundleIndex);
  await pusher.pushBlob(ref, bundle.digest, built.bundle);
  const manifest = appManifest({ bundle, bundleIndex });
  const digest = await pusher.pushManifest(ref, manifest, OCI_MANIFEST);
  return { ref: formatReference(ref), digest, images };
}
