/** The annotations berth adds to the entries of its store's `index.json`. */

/** The OCI annotation skopeo and others match `oci:<dir>:<name>` against. */
export const REF_NAME = "org.opencontainers.image.ref.name";
/** What the reference resolved to at the registry (an index, or the manifest itself). */
export const SOURCE_DIGEST = "io.berth.source.digest";
/** The media type of what SOURCE_DIGEST names, as the registry served it. */
export const SOURCE_MEDIA_TYPE = "io.berth.source.mediaType";
/** The platform chosen, "linux/arm64". */
export const PLATFORM = "io.berth.platform";
/** The chosen image manifest (the entry itself may be a wrapper index around it). */
export const MANIFEST_DIGEST = "io.berth.manifest.digest";
/** When the entry was written, as an ISO 8601 UTC time. */
export const PULLED_AT = "io.berth.pulledAt";
/** Set on the entry of a compose app: the app's name (the compose project name). */
export const APP_NAME = "io.berth.app";
/**
 * Set on the entry of an image pulled because a compose app pins it (the app's name): prune may drop such
 * an entry once no kept app version pins it. Entries a user pulled with `berth pull` never carry it.
 */
export const PULLED_FOR_APP = "io.berth.pulledForApp";
/**
 * Set on the entry of a cosign signature (named by its `sha256-<hex>.sig` tag): the digest it signs. Prune
 * keeps the entry as long as that digest is kept.
 */
export const SIGNATURE_OF = "io.berth.signatureOf";
