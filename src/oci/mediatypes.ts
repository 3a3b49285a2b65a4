/** The manifest media types berth accepts, and which of them are indexes. */

/** An OCI image manifest: one config and its layers. Also the type of a compose app's manifest. */
export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
/** An OCI image index: one manifest per platform. */
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
/** Docker's schema 2 manifest, the same shape as OCI_MANIFEST; registries still serve it for old pushes. */
export const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
/** Docker's manifest list, the same shape as OCI_INDEX. */
export const DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";

/** The config media types of a container image (anything else is an artifact the engine cannot run). */
export const IMAGE_CONFIG_TYPES = [
  "application/vnd.oci.image.config.v1+json",
  "application/vnd.docker.container.image.v1+json",
] as const;
/** Sent as Accept on every manifest request, most preferred first. */
export const MANIFEST_TYPES = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST] as const;

/** True for the types that list manifests per platform (an OCI index or a Docker manifest list). */
export function isIndexType(mediaType: string): boolean {
  return mediaType === OCI_INDEX || mediaType === DOCKER_MANIFEST_LIST;
}

/** True for the types that name one config and its layers (OCI or Docker v2 manifest). */
export function isManifestType(mediaType: string): boolean {
  return mediaType === OCI_MANIFEST || mediaType === DOCKER_MANIFEST;
}

/** The part of a Content-Type before any parameters, lower-cased. */
export function bareMediaType(contentType: string | null): string {
  return (contentType ?? "").split(";")[0].trim().toLowerCase();
}
