/**
 * `publish`: a compose project directory → a compose-app v1 in a registry. Every service image is pinned
 * to the digest its tag has now (an index stays an index, so each device still picks its platform), its
 * `build` is dropped (devices never build), each service is labelled with its config hash, and the
 * reproducible bundle, its index, the layers meta, the empty config and the app manifest are pushed.
 * `${VAR}` in images and labels takes the publisher's values, as composectl's publish does (see
 * interpolation.ts). The same directory, variables and image digests give the same app digest.
 */
import { BerthError } from "../util/errors.ts";
import { sha256Of } from "../oci/digest.ts";
import { DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST } from "../oci/mediatypes.ts";
import { formatReference, parseReference } from "../oci/reference.ts";
import type { RegistryPusher } from "../registry/push.ts";
import { OCI_EMPTY_DATA, OCI_EMPTY_DIGEST } from "../oci/descriptor.ts";
import { appManifest } from "./app_manifest.ts";
import { buildBundle } from "./bundle_build.ts";
import { type BlobRef, type BundleLimits, COMPOSE_FILE } from "./bundle_format.ts";
import { type ComposeFile, formatComposeFile, parseComposeFile, serviceImages } from "./compose_file.ts";
import { dropBuild, pinImages } from "./compose_pin.ts";
import { labelServices } from "./config_hash.ts";
import { checkProjectDotEnv, DOTENV_FILE } from "./dotenv.ts";
import {
  interpolate,
  interpolateLabels,
  InterpolationError,
  noVariablesUsed,
  type VariableLookup,
  type VariableUse,
} from "./interpolation.ts";
import { appName } from "./name.ts";
import { invalidCompose } from "./compose_schema.ts";
import { appLayersMeta, type LayersMetaSource } from "./layers_measure.ts";

/** What a publish pushed: the app's reference and manifest digest, and each service's pinned image. */
export interface PublishResult {
  ref: string;
  digest: string;
  /** `image` is the reference as interpolated, the one pinned. */
  images: { service: string; image: string; pinned: string }[];
  /** The variables images and labels named, sorted; names only, as values may be secrets. */
  variables: string[];
  /** Those of `variables` read unset without a default, which became empty strings (compose-go warns). */
  unsetVariables: string[];
  /** Why Foundries' own tools would not run this app (see `foundriesProblem`); empty when they would. */
  compatibility: string[];
  /** The layers meta pushed as layers[1], when there is one. */
  layersMeta?: BlobRef;
}

/** How strictly a publish holds to what Foundries' devices run. */
export interface PublishOptions {
  /**
   * "foundries": refuse, before anything is pushed, an app that composectl or aktualizr-lite would not run;
   * otherwise those problems come back as `compatibility` warnings.
   */
  compat?: "foundries";
  /** Bounds of the bundle; default DEFAULT_BUNDLE_LIMITS. */
  limits?: Partial<BundleLimits>;
  /** The publisher's variables, for `${VAR}` in images and labels; default none set. */
  variables?: VariableLookup;
  /** Where layers[1], the layers meta, comes from; default "measure" (see layers_measure.ts). */
  layersMeta?: LayersMetaSource;
}

/**
 * Why an image of this manifest type would not run on Foundries' devices, or undefined when it would:
 * composectl's publish refuses single-platform OCI image manifests, and aktualizr-lite runs only Docker v2
 * manifests (a schema 2 manifest or a manifest list).
 */
export function foundriesProblem(mediaType: string): string | undefined {
  if (mediaType === DOCKER_MANIFEST || mediaType === DOCKER_MANIFEST_LIST) return undefined;
  if (mediaType === OCI_MANIFEST) {
    return "a single-platform OCI image manifest, which composectl's publish refuses and aktualizr-lite does not run";
  }
  if (mediaType === OCI_INDEX) return "an OCI image index, which aktualizr-lite does not run";
  return `of type ${mediaType}, which Foundries' tools do not run`;
}

/**
 * Publishes the compose project in `dir` as the app `refInput` (which needs a tag): pins its images to the
 * digests their tags resolve to, labels each service with its config hash, and pushes bundle, index and
 * app manifest. `options.limits` bound the bundle (the config's limits.bundle gives them; see
 * bundleLimitsFor); `options.variables` are what `${VAR}` in images and labels read.
 */
export async function publishApp(
  pusher: RegistryPusher,
  dir: string,
  refInput: string,
  options: PublishOptions = {},
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
  // compose-go's loader sets COMPOSE_PROJECT_NAME to the app's name when the environment has none.
  const lookup: VariableLookup = (name) =>
    options.variables?.(name) ?? (name === "COMPOSE_PROJECT_NAME" ? appName(ref) : undefined);
  const use = noVariablesUsed();
  const { pinMap, images, compatibility } = await resolvePins(
    pusher,
    compose,
    (written, service) => interpolateImage(written, lookup, use, path, service),
  );
  if (options.compat === "foundries" && compatibility.length > 0) {
    throw new BerthError(
      "invalid_input",
      `${path}: would not run on Foundries' devices (--compat foundries), nothing pushed: ${
        compatibility.join("; ")
      }`,
    );
  }
  // composeapp drops `build` before it hashes: the same service gives the same config hash from either tool.
  // composectl hashes the labels as written, then writes them interpolated.
  const labelled = labelServices(pinImages(dropBuild(compose), pinMap));
  const pinned = formatComposeFile(interpolateLabels(labelled, lookup, use));
  const built = await buildBundle(dir, pinned, options.limits ?? {});
  // Refused here as at install (see dotenv.ts), before anything is pushed; a .env left out by
  // .composeappignores is not in the bundle and not checked.
  if (built.files.includes(DOTENV_FILE)) await checkProjectDotEnv(dir, `${dir}/${DOTENV_FILE}`);
  const bundle = { digest: sha256Of(built.bundle), size: built.bundle.length };
  const bundleIndex = { digest: sha256Of(built.bundleIndex), size: built.bundleIndex.length };
  const metaBytes = await appLayersMeta(pusher, [...pinMap.values()], options.layersMeta ?? "measure");
  const layersMeta = metaBytes && { digest: sha256Of(metaBytes), size: metaBytes.length };
  await pusher.pushBlob(ref, OCI_EMPTY_DIGEST, OCI_EMPTY_DATA);
  await pusher.pushBlob(ref, bundleIndex.digest, built.bundleIndex);
  await pusher.pushBlob(ref, bundle.digest, built.bundle);
  if (metaBytes && layersMeta) await pusher.pushBlob(ref, layersMeta.digest, metaBytes);
  const manifest = appManifest({ bundle, bundleIndex, layersMeta });
  const digest = await pusher.pushManifest(ref, manifest, OCI_MANIFEST);
  return {
    ref: formatReference(ref),
    digest,
    images,
    variables: [...use.used].sort(),
    unsetVariables: [...use.unset].sort(),
    compatibility,
    ...(layersMeta ? { layersMeta } : {}),
  };
}

/**
 * Each service's image (as `expand` interpolates it) resolved to the digest its tag has now: the pins keyed
 * by the image as written, the images as PublishResult gives them, and why Foundries' tools would not run
 * them.
 */
async function resolvePins(
  pusher: RegistryPusher,
  compose: ComposeFile,
  expand: (written: string, service: string) => string,
): Promise<{ pinMap: Map<string, string>; images: PublishResult["images"]; compatibility: string[] }> {
  const pins = new Map<string, { pinned: string; mediaType: string }>();
  const images: PublishResult["images"] = [];
  const compatibility: string[] = [];
  for (const { service, image: written } of serviceImages(compose)) {
    const image = expand(written, service);
    if (!pins.has(written)) {
      const imageRef = parseReference(image);
      // Asked also when the reference has a digest: the manifest's type decides where the app runs.
      const { digest, mediaType } = await pusher.resolveDigest(imageRef);
      const pinned = formatReference({
        registry: imageRef.registry,
        repository: imageRef.repository,
        digest,
      });
      pins.set(written, { pinned, mediaType });
    }
    const { pinned, mediaType } = pins.get(written)!;
    const problem = foundriesProblem(mediaType);
    if (problem) compatibility.push(`service ${service}: image ${image} is ${problem}`);
    images.push({ service, image, pinned });
  }
  const pinMap = new Map([...pins].map(([image, { pinned }]) => [image, pinned]));
  return { pinMap, images, compatibility };
}

/** A service's image as interpolated; throws naming the file and service when it cannot be. */
function interpolateImage(
  written: string,
  lookup: VariableLookup,
  use: VariableUse,
  file: string,
  service: string,
): string {
  try {
    return interpolate(written, lookup, use);
  } catch (error) {
    if (!(error instanceof InterpolationError)) throw error;
    throw invalidCompose(file, `services.${service}.image`, error.message);
  }
}
