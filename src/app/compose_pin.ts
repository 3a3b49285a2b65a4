/**
 * Pinning a compose file's images to digests (publish), reading the pins back (install), and rewriting the
 * pins to the local tags the engine loaded them under (run).
 *
 * `pull_policy`: compose v1 1.29 validates every file (any `version`) against compose/config/
 * compose_spec.json, which allows `pull_policy`, but does not use it (it is not in config.py's
 * ALLOWED_KEYS, and service.py's `ensure_image_exists` pulls whenever the image is missing). Compose v2
 * honours `never`. So `rewriteForEngine` sets `pull_policy: never`: v2 then fails at once instead of
 * reaching for a registry when a loaded image is missing, and v1 accepts the key.
 */
import { parseReference, type Reference } from "../oci/reference.ts";
import { type ComposeFile, composeFromDocument } from "./compose_file.ts";
import { deleteOwnKey, ownServiceMap, setOwnScalar } from "./compose_edit.ts";
import { invalidCompose } from "./compose_schema.ts";

/** How a pinned image ends: a sha256 digest. */
const DIGEST_SUFFIX = /@sha256:[a-f0-9]{64}$/;

/** Whether `image` names its registry host explicitly (`host/path…`), as a pinned image must. */
function hasRegistryHost(image: string): boolean {
  const slash = image.indexOf("/");
  if (slash < 0) return false;
  const first = image.slice(0, slash);
  return /[.:]/.test(first) || first === "localhost";
}

/** Parses a pinned reference (`host/path[:tag]@sha256:<64 hex>`), or returns why it is not one. */
function parsePinned(image: string): Reference | string {
  if (!DIGEST_SUFFIX.test(image) || !hasRegistryHost(image)) return "expected host/path@sha256:<64 hex>";
  try {
    return parseReference(image);
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/**
 * Replaces each service's image by its pin (keyed by the image as written), keeping everything else. Every
 * service needs a pin, and every pin must be `host/path@sha256:<64 hex>`.
 */
export function pinImages(compose: ComposeFile, pins: Map<string, string>): ComposeFile {
  for (const service of compose.services) {
    const pin = pins.get(service.image);
    const where = `services.${service.name}.image`;
    if (pin === undefined) {
      throw invalidCompose(compose.file, where, `no pinned digest for "${service.image}"`);
    }
    const parsed = parsePinned(pin);
    if (typeof parsed === "string") {
      throw invalidCompose(
        compose.file,
        where,
        `the pin "${pin}" for "${service.image}" is not pinned: ${parsed}`,
      );
    }
  }
  const doc = compose.doc.clone();
  for (const service of compose.services) {
    setOwnScalar(doc, ownServiceMap(doc, service.name), "image", pins.get(service.image)!);
  }
  return composeFromDocument(doc, compose.file);
}

/**
 * Removes each service's `build`, as composeapp's publish does before it pins and hashes: a device never
 * builds, and the config hash must be the one composeapp computes for the published service.
 */
export function dropBuild(compose: ComposeFile): ComposeFile {
  const building = compose.services.filter((service) => service.config.build !== undefined);
  if (building.length === 0) return compose;
  const doc = compose.doc.clone();
  for (const service of building) deleteOwnKey(doc, ownServiceMap(doc, service.name), "build");
  return composeFromDocument(doc, compose.file);
}

/** A service's pinned image. */
export interface PinnedImage {
  service: string;
  /** The image as written. */
  image: string;
  reference: Reference;
}

/**
 * The images of an installed app, each `host/path[:tag]@sha256:<64 hex>`, parsed; throws naming the first
 * service whose image is not pinned.
 */
export function pinnedReferences(compose: ComposeFile): PinnedImage[] {
  return compose.services.map((service) => {
    const parsed = parsePinned(service.image);
    if (typeof parsed === "string") {
      throw invalidCompose(
        compose.file,
        `services.${service.name}.image`,
        `"${service.image}" is not pinned: ${parsed}`,
      );
    }
    return { service: service.name, image: service.image, reference: parsed };
  });
}

/**
 * For the engine: each service's pinned image is replaced by the local tag it was loaded under (dockerd
 * 20.10's image load sets tags but no RepoDigests, so `repo@sha256:…` would not resolve offline), and
 * `pull_policy: never` is set (compose v2 honours it, v1 1.29 accepts and ignores it).
 */
export function rewriteForEngine(compose: ComposeFile, localRefs: Map<string, string>): ComposeFile {
  const pinned = pinnedReferences(compose);
  for (const { service, image } of pinned) {
    const local = localRefs.get(image);
    const where = `services.${service}.image`;
    if (local === undefined) throw invalidCompose(compose.file, where, `no local reference for "${image}"`);
    let ref: Reference;
    try {
      ref = parseReference(local);
    } catch (error) {
      throw invalidCompose(compose.file, where, error instanceof Error ? error.message : String(error));
    }
    if (ref.digest !== undefined) {
      throw invalidCompose(
        compose.file,
        where,
        `the local reference "${local}" for "${image}" must be a tag, not a digest`,
      );
    }
  }
  const doc = compose.doc.clone();
  for (const { service, image } of pinned) {
    const map = ownServiceMap(doc, service);
    setOwnScalar(doc, map, "image", localRefs.get(image)!);
    setOwnScalar(doc, map, "pull_policy", "never");
  }
  return composeFromDocument(doc, compose.file);
}
