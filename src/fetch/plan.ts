/**
 * The plan of a pull: every blob and manifest its references need, and how much of each the store already
 * holds — known before any layer is downloaded, so the storage pre-flight can judge it.
 */
import type { Store } from "../store/store.ts";
import type { Descriptor } from "../oci/descriptor.ts";
import type { ResolvedImage } from "./resolve.ts";

/** A top-level reference once resolved, with (for an app) the images its compose file pins. */
export interface PlannedImage {
  image: ResolvedImage;
  nested: ResolvedImage[];
}

/** One blob of a plan: how much of it the store already holds. */
export interface PlannedBlob {
  digest: string;
  size: number;
  /** The whole size when stored; what a partial download holds; else 0. */
  bytesDone: number;
}

/** One reference of a plan: every blob and manifest of that version for the platform. */
export interface PlannedRef {
  name: string;
  digest: string;
  /** The manifest the reference resolved to (for an index, the platform's). */
  manifestDigest: string;
  /** Blobs (bundle, configs, layers …) and manifests; fixed once known. */
  bytesTotal: number;
  /** Stored blobs and manifests count in full, partial downloads by what they hold. */
  bytesDone: number;
  blobs: PlannedBlob[];
  /** The container images (the reference itself, or those an app pins): what the engine will unpack. */
  images: { name: string; configDigest: string; layers: Descriptor[] }[];
  /** An app's layers meta (`layers-meta` v1), when it has one: unpacked sizes per layer and arch. */
  layersMetaDigest?: string;
}

/** What a pull will fetch, known before any layer is downloaded (the storage pre-flight reads it). */
export interface PullPlan {
  refs: PlannedRef[];
  /** Every distinct blob of every reference. */
  blobs: Map<string, PlannedBlob>;
  /** Manifest bytes still to be written. */
  manifestBytes: number;
  /** Set on an app's first plan: only its own blobs, before the images it pins are known. */
  partial?: true;
}

/** The manifest bytes a resolved reference stores: its manifest, and the index it came through. */
export const manifestBytesOf = (image: ResolvedImage) =>
  image.manifest.bytes.length + (image.source === image.manifest ? 0 : image.source.bytes.length);

/** The plan of resolved references: per blob, stored or how far along. */
export async function buildPlan(store: Store, planned: PlannedImage[]): Promise<PullPlan> {
  const blobs = new Map<string, PlannedBlob>();
  const blobOf = async (descriptor: Descriptor): Promise<PlannedBlob> => {
    let blob = blobs.get(descriptor.digest);
    if (!blob) {
      const bytesDone = await store.has(descriptor.digest)
        ? descriptor.size
        : await store.ingestedBytes(descriptor.digest, descriptor.size);
      blob = { digest: descriptor.digest, size: descriptor.size, bytesDone };
      blobs.set(descriptor.digest, blob);
    }
    return blob;
  };
  const refs: PlannedRef[] = [];
  let manifestBytes = 0;
  for (const { image, nested } of planned) {
    const all = [image, ...nested];
    const own = new Map<string, PlannedBlob>();
    for (const member of all) {
      for (const descriptor of member.blobs) own.set(descriptor.digest, await blobOf(descriptor));
    }
    const manifests = all.reduce((sum, member) => sum + manifestBytesOf(member), 0);
    manifestBytes += manifests;
    const ownBlobs = [...own.values()];
    refs.push({
      name: image.name,
      digest: image.source.digest,
      manifestDigest: image.manifest.digest,
      bytesTotal: manifests + ownBlobs.reduce((sum, blob) => sum + blob.size, 0),
      bytesDone: manifests + ownBlobs.reduce((sum, blob) => sum + blob.bytesDone, 0),
      blobs: ownBlobs,
      images: all.filter((member) => !member.artifact).map((member) => ({
        name: member.name,
        configDigest: member.parsed.config.digest,
        layers: member.parsed.layers,
      })),
      ...(image.artifact?.layersMetaDigest ? { layersMetaDigest: image.artifact.layersMetaDigest } : {}),
    });
  }
  return { refs, blobs, manifestBytes };
}
