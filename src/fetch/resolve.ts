/**
 * Resolving: a reference → its manifest chain (an index, then the manifest chosen for the platform),
 * fetched and checked before any blob. Nothing on disk is touched.
 */
import { BerthError } from "../util/errors.ts";
import { sha256Of } from "../oci/digest.ts";
import type { Manifest, RegistryClient } from "../registry/client.ts";
import { IMAGE_CONFIG_TYPES, isIndexType, isManifestType } from "../oci/mediatypes.ts";
import { quoted } from "../util/text.ts";
import { choosePlatform, normalizePlatform, type Platform } from "../oci/platform.ts";
import { formatReference, type Reference } from "../oci/reference.ts";
import type { Descriptor, ImageManifest } from "../oci/descriptor.ts";
import { checkChildType, MAX_MANIFEST_BYTES, parseImageManifest, parseIndex } from "../oci/manifest.ts";
import type { Store } from "../store/store.ts";
import { type BlobLimits, checkBlobSize } from "./limits.ts";

/**
 * A manifest that pins other references (a compose app pins its images), as the layer that knows its
 * format describes it to fetch: fetch downloads its own blobs first, then asks it what it pins.
 */
export interface PinningArtifact {
  /** The name recorded on its index.json entry (APP_NAME) and on those of what it pins (PULLED_FOR_APP). */
  appName: string;
  /** Its manifest as parsed. */
  manifest: ImageManifest;
  /** Its own blobs, each already checked against the limits: fetched before `pins` is asked. */
  blobs: Descriptor[];
  /** Its layers meta (unpacked sizes per layer), when it has one: the pre-flight reads it. */
  layersMetaDigest?: string;
  /** The references it pins, read from its own blobs once they are stored. */
  pins(store: Store): Promise<string[]>;
}

/** What an artifact reader is told about a manifest. */
export interface ArtifactInput {
  /** The manifest's JSON, parsed but not yet checked. */
  json: unknown;
  bytes: Uint8Array;
  /** Names the manifest in errors: "REF manifest DIGEST". */
  what: string;
  ref: Reference;
  limits: BlobLimits;
}

/** Recognises a pinning artifact (throwing when it is one but malformed); undefined for anything else. */
export type ArtifactReader = (input: ArtifactInput) => PinningArtifact | undefined;

/** What one reference resolved to, before any blob is fetched. */
export interface ResolvedImage {
  ref: Reference;
  name: string;
  /** What the registry served for the reference: an index or the manifest itself. */
  source: Manifest;
  /** The image manifest chosen for the platform (equals `source` when no index). */
  manifest: Manifest;
  parsed: ImageManifest;
  /** The platform from the index entry; for a lone manifest, read from its config after download. */
  platform?: Platform;
  /** Config and layers (for an artifact, its own blobs). */
  blobs: Descriptor[];
  /** Set when the manifest is an artifact that pins other references rather than a container image. */
  artifact?: PinningArtifact;
}

/** How to resolve: the platform to choose, the blob caps, and who recognises artifacts. */
export interface ResolveOptions {
  platform: Platform;
  limits: BlobLimits;
  readArtifact?: ArtifactReader;
  signal?: AbortSignal;
  /** Where a manifest asked for by digest is read first: a stored (or imported) version needs no network. */
  store?: Store;
}

/**
 * A manifest by digest from the store when it holds it — hashed again, and with its media type declared in
 * its body, or else not used — otherwise from the registry.
 */
async function manifestOf(
  client: RegistryClient,
  ref: Reference,
  options: ResolveOptions,
): Promise<Manifest> {
  if (ref.digest && options.store && await options.store.has(ref.digest)) {
    const bytes = await options.store.readBlob(ref.digest);
    let mediaType: unknown;
    try {
      mediaType = JSON.parse(new TextDecoder().decode(bytes))?.mediaType;
    } catch {
      mediaType = undefined;
    }
    if (
      typeof mediaType === "string" && (isIndexType(mediaType) || isManifestType(mediaType)) &&
      bytes.length <= MAX_MANIFEST_BYTES && sha256Of(bytes) === ref.digest
    ) {
      return { bytes, digest: ref.digest, mediaType };
    }
  }
  return client.getManifest(ref, options.signal);
}

/** Fetches and checks the manifest chain of one reference; touches nothing on disk. */
export async function resolveImage(
  client: RegistryClient,
  ref: Reference,
  options: ResolveOptions,
): Promise<ResolvedImage> {
  const name = formatReference(ref);
  const source = await manifestOf(client, ref, options);
  const { manifest, platform } = isIndexType(source.mediaType)
    ? await chooseFromIndex(client, ref, source, options)
    : { manifest: source, platform: undefined };
  const what = `${name} manifest ${manifest.digest}`;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(manifest.bytes));
  } catch {
    throw new BerthError("invalid_input", `${what}: not JSON`);
  }
  const artifact = options.readArtifact?.({ json, bytes: manifest.bytes, what, ref, limits: options.limits });
  if (artifact) {
    return { ref, name, source, manifest, parsed: artifact.manifest, blobs: artifact.blobs, artifact };
  }
  const parsed = parseImageManifest(manifest.bytes, what);
  if (!(IMAGE_CONFIG_TYPES as readonly string[]).includes(parsed.config.mediaType)) {
    throw new BerthError(
      "unsupported",
      `${what}: config media type ${quoted(parsed.config.mediaType)} is not a container image's ` +
        `(${IMAGE_CONFIG_TYPES.join(" or ")}); berth fetches container images and compose apps`,
    );
  }
  checkBlobSize(parsed.config, "imageConfig", options.limits, `${what} config`);
  return { ref, name, source, manifest, parsed, platform, blobs: [parsed.config, ...parsed.layers] };
}

/** The index entry for the platform, and the manifest it names (checked against the entry's size). */
async function chooseFromIndex(
  client: RegistryClient,
  ref: Reference,
  source: Manifest,
  options: ResolveOptions,
): Promise<{ manifest: Manifest; platform?: Platform }> {
  const name = formatReference(ref);
  const index = parseIndex(source.bytes, name);
  const entry = choosePlatform(index.manifests, options.platform, name);
  checkChildType(entry, name);
  const platform = entry.platform
    ? normalizePlatform({
      os: entry.platform.os,
      architecture: entry.platform.architecture,
      variant: entry.platform.variant,
    })
    : undefined;
  const manifest = await manifestOf(client, { ...ref, tag: undefined, digest: entry.digest }, options);
  if (manifest.bytes.length !== entry.size) {
    throw new BerthError(
      "verification_failed",
      `${name}: manifest ${entry.digest} is ${manifest.bytes.length} bytes, the index says ${entry.size}`,
    );
  }
  return { manifest, platform };
}
