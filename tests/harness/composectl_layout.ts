/**
 * Compose apps laid out as Foundries' publishers wrote them, generated here from the rules read in their
 * sources (composeapp's `composectl publish`, and the compose-publish tool before it) rather than with
 * berth's own writers, so that the compatibility suite checks berth against the format and not against
 * itself. Three shapes:
 *
 * - "v1" (composectl since Nov 2024): config the OCI empty descriptor, artifactType
 *   application/vnd.fio+compose-app, the bundle forced to application/octet-stream with the bundle index
 *   annotations (left out with APP_BUNDLE_INDEX_OFF=1), JSON indented with three spaces in Go field order.
 *   The tar is moby's TarWithOptions: depth first, names sorted, directory entries with a trailing "/",
 *   times zeroed, uid/gid from the file system, no user names.
 * - "2024" (before Oct 2024): config an OCI image config of zero bytes with its size omitted, no
 *   artifactType, no bundle index; a manifest with per-arch `manifests` went through a Go map, so every
 *   object's keys are sorted.
 * - "2020" (compose-publish): the "2024" manifest without layers meta, and a tar made by filepath.Walk and
 *   tar.FileInfoHeader: files and symlinks only (no directory entries), real mtimes, owners' uid/gid and
 *   user and group names.
 *
 * Blobs and manifests are pushed over the distribution API's plain HTTP, as the publishers push them.
 */
import { sha256Of } from "../../src/oci/digest.ts";
import { gzip } from "../../src/util/gzip.ts";

/** The publisher generation whose layout to copy. */
export type Shape = "v1" | "2024" | "2020";

/** One tar entry with the header fields that differ between the shapes. */
export interface LayoutEntry {
  /** As it goes into the header: directories end in "/". At most 100 bytes (no PAX here). */
  name: string;
  type: "file" | "dir" | "symlink";
  data?: Uint8Array;
  linkname?: string;
  /** Permission bits with setuid, setgid and sticky. */
  mode: number;
  /** Seconds since the epoch; 0 as composectl zeroes them. */
  mtime?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
}

/** A blob pushed: its digest and size. */
export interface PushedBlob {
  digest: string;
  size: number;
}

/** What to publish: the bundle's entries, and which of the optional parts the app has. */
export interface AppLayout {
  shape: Shape;
  entries: LayoutEntry[];
  /** "v1" only: the bundle index blob and layers[0]'s annotations naming it. */
  bundleIndex?: boolean;
  /** layers[1]: per architecture, the app's image layers; `mediaType` undefined leaves the field out. */
  layersMeta?: { mediaType?: string; arches: Record<string, PushedBlob[]> };
  /** The top-level `manifests` of per-arch "app layers manifests" (publish --layers-manifest). */
  layerManifests?: Record<string, PushedBlob[]>;
}

const encoder = new TextEncoder();
/** The app manifest's media type, for putManifest. */
export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const EMPTY_JSON = encoder.encode("{}");
const BLOCK = 512;

function putText(block: Uint8Array, offset: number, length: number, value: string): void {
  const bytes = encoder.encode(value);
  if (bytes.length > length) throw new Error(`tar field at ${offset}: ${JSON.stringify(value)} is too long`);
  block.set(bytes, offset);
}

/** Go's formatOctal: zero-padded octal, NUL at the end. */
function putOctal(block: Uint8Array, offset: number, length: number, value: number): void {
  putText(block, offset, length, value.toString(8).padStart(length - 1, "0") + "\0");
}

/** One ustar header as Go's archive/tar writes it when every field fits. */
function ustarHeader(entry: LayoutEntry, size: number): Uint8Array {
  const block = new Uint8Array(BLOCK);
  putText(block, 0, 100, entry.name);
  putOctal(block, 100, 8, entry.mode);
  putOctal(block, 108, 8, entry.uid ?? 0);
  putOctal(block, 116, 8, entry.gid ?? 0);
  putOctal(block, 124, 12, size);
  putOctal(block, 136, 12, entry.mtime ?? 0);
  putText(block, 156, 1, { file: "0", symlink: "2", dir: "5" }[entry.type]);
  putText(block, 157, 100, entry.linkname ?? "");
  putText(block, 257, 8, "ustar\x0000");
  putText(block, 265, 32, entry.uname ?? "");
  putText(block, 297, 32, entry.gname ?? "");
  putOctal(block, 329, 8, 0);
  putOctal(block, 337, 8, 0);
  block.fill(0x20, 148, 156);
  const sum = block.reduce((total, byte) => total + byte, 0);
  putText(block, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

/** A tar of `entries` in the order given, ending in two zero blocks. */
export function layoutTar(entries: LayoutEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    const data = entry.type === "file" ? entry.data ?? new Uint8Array() : new Uint8Array();
    parts.push(ustarHeader(entry, data.length), data, new Uint8Array((BLOCK - data.length % BLOCK) % BLOCK));
  }
  parts.push(new Uint8Array(BLOCK * 2));
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Every object's keys sorted, as Go writes a map (and anything unmarshalled into one). */
function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (typeof value !== "object" || value === null) return value;
  const keys = Object.keys(value).sort();
  return Object.fromEntries(keys.map((key) => [key, sortedKeys((value as Record<string, unknown>)[key])]));
}

/** Go's json.Marshal of a map of plain strings and numbers (no <>& in them): compact, keys sorted. */
const goMarshal = (value: unknown) => encoder.encode(JSON.stringify(sortedKeys(value)));

/** The regular files' and symlinks' sha256, keyed by tar name: a symlink's content is empty. */
function bundleIndexOf(entries: LayoutEntry[]): Record<string, string> {
  const index: Record<string, string> = {};
  for (const entry of entries) {
    if (entry.type !== "dir") index[entry.name] = sha256Of(entry.data ?? new Uint8Array());
  }
  return index;
}

async function expectStatus(response: Response, status: number, what: string): Promise<void> {
  const text = await response.text();
  if (response.status !== status) throw new Error(`${what}: HTTP ${response.status} ${text.slice(0, 300)}`);
}

/** Pushes one blob to `registry/repo` (monolithic upload); returns its digest and size. */
export async function pushBlob(registry: string, repo: string, bytes: Uint8Array): Promise<PushedBlob> {
  const digest = sha256Of(bytes);
  const started = await fetch(`http://${registry}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  await expectStatus(started, 202, `start upload to ${repo}`);
  const location = new URL(started.headers.get("location")!, `http://${registry}`);
  location.searchParams.set("digest", digest);
  const finished = await fetch(location, {
    method: "PUT",
    headers: { "Content-Type": "application/octet-stream" },
    body: bytes as Uint8Array<ArrayBuffer>,
  });
  await expectStatus(finished, 201, `upload of ${digest} to ${repo}`);
  return { digest, size: bytes.length };
}

/** PUTs manifest `bytes` under `reference` (a tag); returns the digest the registry answers. */
export async function putManifest(
  registry: string,
  repo: string,
  reference: string,
  mediaType: string,
  bytes: Uint8Array,
): Promise<string> {
  const put = await fetch(`http://${registry}/v2/${repo}/manifests/${reference}`, {
    method: "PUT",
    headers: { "Content-Type": mediaType },
    body: bytes as Uint8Array<ArrayBuffer>,
  });
  const digest = put.headers.get("docker-content-digest")!;
  await expectStatus(put, 201, `PUT manifest ${repo}:${reference}`);
  return digest;
}

/**
 * The descriptors of the per-arch app layers manifests (pkg/compose/layers.go): compact JSON typed as an
 * OCI index but holding `platform` and `layers`. Publish pushed them under tag "layers-<arch><7 hex>";
 * registries on docker/distribution 2.8 or later refuse such a document (an index with `layers` is the
 * ambiguous content GHSA-qq97-vm5h-rrhg closed), so they are only referenced here, as apps published
 * before then reference them. Devices never read them.
 */
function layerManifestDescriptors(arches: Record<string, PushedBlob[]>): unknown[] {
  return Object.keys(arches).sort().map((arch) => {
    const platform = { architecture: arch, os: "" };
    const bytes = encoder.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      platform,
      layers: arches[arch].map(({ digest, size }) => ({ mediaType: DOCKER_LAYER, size, digest })),
      annotations: { "compose-app-layers": "v1" },
    }));
    return { mediaType: OCI_INDEX, size: bytes.length, digest: sha256Of(bytes), platform };
  });
}

/** A descriptor in Go's field order (mediaType, size, digest, annotations); absent fields left out. */
function descriptor(mediaType: string | undefined, blob: PushedBlob, annotations?: Record<string, string>) {
  return {
    ...(mediaType ? { mediaType } : {}),
    ...(blob.size ? { size: blob.size } : {}),
    digest: blob.digest,
    ...(annotations ? { annotations } : {}),
  };
}

/** The layers meta blob: {arch: {fs_block_size, layers: {digest: {size, usage, archive_size}}}}. */
function layersMetaOf(arches: Record<string, PushedBlob[]>): Uint8Array {
  const meta: Record<string, unknown> = {};
  for (const [arch, layers] of Object.entries(arches)) {
    const entries = layers.map((layer) => [layer.digest, {
      size: layer.size * 3,
      usage: layer.size * 3 + 4096,
      archive_size: layer.size,
    }]);
    meta[arch] = { fs_block_size: 4096, layers: Object.fromEntries(entries) };
  }
  return goMarshal(meta);
}

/**
 * Pushes the blobs of the app `layout` to `registry/repo` and returns its manifest's bytes (for
 * putManifest with OCI_MANIFEST, or for a registry that refuses it, to read without one).
 */
export async function pushLayout(registry: string, repo: string, layout: AppLayout): Promise<Uint8Array> {
  const bundle = await pushBlob(registry, repo, await gzip(layoutTar(layout.entries)));
  const bundleAnnotations: Record<string, string> = {};
  if (layout.bundleIndex) {
    const index = await pushBlob(registry, repo, goMarshal(bundleIndexOf(layout.entries)));
    bundleAnnotations["org.foundries.app.bundle.index.digest"] = index.digest;
    bundleAnnotations["org.foundries.app.bundle.index.size"] = String(index.size);
  }
  const layers = [
    descriptor("application/octet-stream", bundle, layout.bundleIndex ? bundleAnnotations : undefined),
  ];
  if (layout.layersMeta) {
    const meta = await pushBlob(registry, repo, layersMetaOf(layout.layersMeta.arches));
    layers.push(descriptor(layout.layersMeta.mediaType, meta, { "layers-meta": "v1" }));
  }
  const manifests = layout.layerManifests ? layerManifestDescriptors(layout.layerManifests) : undefined;
  let manifest: Record<string, unknown>;
  if (layout.shape === "v1") {
    const config = await pushBlob(registry, repo, EMPTY_JSON);
    manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: descriptor("application/vnd.oci.empty.v1+json", config),
      layers,
      annotations: { "compose-app": "v1" },
      artifactType: "application/vnd.fio+compose-app",
      ...(manifests ? { manifests } : {}),
    };
  } else {
    const config = await pushBlob(registry, repo, new Uint8Array());
    manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: descriptor("application/vnd.oci.image.config.v1+json", config),
      layers,
      annotations: { "compose-app": "v1" },
    };
    if (manifests) manifest = sortedKeys({ ...manifest, manifests }) as Record<string, unknown>;
  }
  return encoder.encode(JSON.stringify(manifest, null, 3));
}
