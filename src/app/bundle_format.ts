/**
 * The compose-app v1 format's names and limits. berth writes and reads Foundries' compose-app v1 format, so
 * that apps published for LmP devices move to berth unchanged, and apps berth publishes install on those
 * devices. The format is described here once; bundle_build.ts, bundle_index.ts, bundle_extract.ts,
 * app_manifest.ts and layers_meta.ts implement its parts.
 *
 * What the format is, as read in the foundriesio/composeapp Go sources (internal/app_manifest_builder.go,
 * pkg/compose/v1/publish.go, pkg/compose/v1/app.go, pkg/compose/layers.go, pkg/compose/install.go) and in
 * the libraries they call (docker/distribution v2.8.1 blobs.go, manifest/ocischema, registry/client;
 * moby pkg/archive; moby/patternmatcher):
 *
 * - App manifest: an OCI image manifest, JSON indented with three spaces (Go MarshalIndent), fields in this
 *   order: schemaVersion 2, mediaType, config, layers, annotations {"compose-app": "v1"}, artifactType
 *   "application/vnd.fio+compose-app", then optionally `manifests`. Descriptors are written mediaType, size,
 *   digest, annotations (size omitted when 0). No other annotations (no org.opencontainers.image.created).
 *   The config is the OCI empty descriptor without `data`. Publishing refuses a manifest of 50 KiB or more,
 *   and so do devices (reaching their 50 KiB read limit is an error); they check only its mediaType.
 * - Before Oct 2024 (commit 71fdb75) the config was an OCI image config of zero bytes
 *   (application/vnd.oci.image.config.v1+json, digest of empty, size omitted), there was no artifactType, and
 *   a manifest with `manifests` was re-marshalled through a map, so its keys are sorted.
 * - `manifests` (publish --layers-manifest; "breaks the OCI spec, remove once all devices are >= v93"): one
 *   descriptor per architecture of an OCI-index-typed "app layers manifest" {platform: {architecture, os ""},
 *   layers, annotations {"compose-app-layers": "v1"}} pushed under tag "layers-<arch><7 hex>". Ignored here.
 * - layers[0]: the bundle, media type forced to application/octet-stream (registries may rewrite what the
 *   client asked for; before Jan 2025 it was whatever the registry answered). Devices refuse any other type.
 *   Its annotations org.foundries.app.bundle.index.digest / .size (size as a decimal string) name the bundle
 *   index blob; publishing skips them when APP_BUNDLE_INDEX_OFF=1 and before Nov 2024, so both are optional.
 *   A device ignores the index when either is missing or malformed, and then checks the installed regular
 *   files against the bundle itself.
 * - The bundle: gzip of a tar made by moby's TarWithOptions from the project directory (the working
 *   directory) minus `.composeappignores` patterns (dockerignore syntax; the ignore file itself is left out
 *   when it has a pattern). Walk order: depth first, each directory's entries sorted by name, the root itself
 *   not included; names relative without "./", directories with a trailing "/". Headers as Go's archive/tar
 *   writes them (ustar; PAX only when a field does not fit), mode = the file's permission bits with
 *   setuid/setgid/sticky, uid/gid from the file system, uname/gname empty, mtime/atime/ctime zeroed (written
 *   as 0); a file hard-linked twice
 *   becomes a `1` entry; security.capability xattrs become PAX records. `docker-compose.yml` at the top
 *   level (only that name — publish and the device both look for exactly it) is replaced by the pinned
 *   compose file, at most 1 MiB; every other file at most 1 GiB - 1 MiB, all together at most 1 GiB.
 * - Bundle index: Go json.Marshal of map[path]digest (compact, keys sorted, <>& escaped), pushed as a plain
 *   blob (asked for as application/json; nothing in the manifest carries its media type). Keys are the tar
 *   names of every entry that is not a directory; values are sha256 of the entry's content as read from the
 *   tar — so a symlink or hard link gets the digest of empty content.
 * - On the device (pkg/compose/install.go, v1/app.go CheckComposeInstallation): moby's Untar into
 *   <compose root>/<app name>, then for every index entry the installed file is opened (following
 *   symlinks) and its sha256 compared; missing or different files fail the install. A symlink or hard link
 *   in a bundle with an index therefore fails that check unless its target is empty.
 * - layers[1] (optional): annotation "layers-meta": "v1"; the descriptor's media type is whatever the
 *   registry answers for a blob put as application/json, and devices check only the annotation (another
 *   version is ignored, not an error). Content: Go json.Marshal of {arch: {fs_block_size, layers: {digest:
 *   {size, usage, archive_size}}}} (archive_size omitted when 0). composectl does not measure layers: it
 *   filters a layers-meta file made by the factory's CI to the app's layers per architecture, and sets
 *   archive_size to the layer blob's size; a layer missing from that file fails the publish.
 * - Pinning (publish): every service's `image` becomes <domain>/<path>@<digest of what the tag resolves to>,
 *   `build` is dropped, and the label io.compose-spec.config-hash is the hex sha256 of the service's YAML
 *   (yaml.v3) before the label is added.
 *
 * berth differs on purpose in four places: bundles it builds have uid/gid 0 rather than the publisher's
 *   (modes are kept, as composeapp keeps them); installing drops setuid, setgid and sticky bits and the
 *   bundle's owners; its index lists a symlink with the digest of the file it leads to (what the device check
 *   reads), and leaves out symlinks to directories or to nothing, instead of the digest of empty content; and
 *   it refuses hard links.
 */
import { OCI_MANIFEST } from "../oci/mediatypes.ts";

/** The media type of an app manifest: an OCI image manifest. */
export const APP_MANIFEST_MEDIA_TYPE = OCI_MANIFEST;
/** The artifactType of apps published since Oct 2024. */
export const APP_ARTIFACT_TYPE = "application/vnd.fio+compose-app";
/** layers[0]'s media type, which devices require. */
export const APP_BUNDLE_MEDIA_TYPE = "application/octet-stream";
/** What the bundle index and layers meta blobs are pushed as. */
export const APP_JSON_MEDIA_TYPE = "application/json";

/** The manifest annotation that makes an image manifest a compose app. */
export const ANNOTATION_COMPOSE_APP = "compose-app";
/** The one version of the format there is. */
export const COMPOSE_APP_VERSION = "v1";
/** layers[0]'s annotation naming the bundle index blob's digest. */
export const ANNOTATION_BUNDLE_INDEX_DIGEST = "org.foundries.app.bundle.index.digest";
/** layers[0]'s annotation giving the bundle index blob's size, as a decimal string. */
export const ANNOTATION_BUNDLE_INDEX_SIZE = "org.foundries.app.bundle.index.size";
/** layers[1]'s annotation that marks it as layers meta. */
export const ANNOTATION_LAYERS_META = "layers-meta";
/** The layers meta version devices read; another is ignored. */
export const LAYERS_META_VERSION = "v1";

/** The one compose file name publish and devices know. */
export const COMPOSE_FILE = "docker-compose.yml";
/** The project's file of patterns to leave out of the bundle (dockerignore syntax). */
export const IGNORE_FILE = ".composeappignores";
/** The layers of a compose app: the bundle and, optionally, the layers meta. */
export const APP_LAYERS = 2;
/** Publishing refuses manifests of this size or more, and so do devices. */
export const APP_MANIFEST_MAX_SIZE = 50 * 1024;

/** A mebibyte, for limits. */
export const MiB = 1024 * 1024;

/** Limits on a bundle, checked when building and when extracting. */
export interface BundleLimits {
  /** docker-compose.yml; 1 MiB, as composeapp (publish refuses more, and berth parses it in memory). */
  maxComposeBytes: number;
  /** Any other file (composeapp: 1 GiB - 1 MiB). */
  maxFileBytes: number;
  /** All file contents together (composeapp: 1 GiB). */
  maxTotalBytes: number;
  /** Entries of any kind. */
  maxEntries: number;
}

/**
 * Entries in a bundle. composeapp sets no bound; berth keeps every extracted path in memory to check links
 * and duplicates, so it sets one that no real project reaches: a bundle index of this many files is already
 * several MiB (limits.bundleIndex is 16 MiB).
 */
export const MAX_BUNDLE_ENTRIES = 100_000;

/**
 * The limits for a bundle blob cap (the config's limits.bundle): one file, and all files together, may be
 * as large as the blob may be, so that a project composectl publishes (up to 1 GiB) installs with the
 * default cap. Extraction streams, so a large cap costs disk, not memory, and install checks the disk first.
 */
export function bundleLimitsFor(bundleBytes: number): BundleLimits {
  return {
    maxComposeBytes: MiB,
    maxFileBytes: bundleBytes,
    maxTotalBytes: bundleBytes,
    maxEntries: MAX_BUNDLE_ENTRIES,
  };
}

/** The limits berth builds and extracts with unless told otherwise: those of limits.bundle's default, 1 GiB. */
export const DEFAULT_BUNDLE_LIMITS: Readonly<BundleLimits> = bundleLimitsFor(1024 * MiB);

/** Where an error about a bundle limit says it is set. */
export const BUNDLE_LIMIT_KEY = "limits.bundle in the config file";

/** A blob by its digest and size, as a manifest names it. */
export interface BlobRef {
  digest: string;
  size: number;
}
