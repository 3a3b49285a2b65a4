/**
 * Compose-app bundles in Foundries' compose-app v1 format, so that apps published for LmP devices move to
 * berth unchanged, and apps berth publishes install on those devices.
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
 *   writes them (ustar; PAX only when a field does not fit), mode = the file's permission (and setuid/setgid/sticky) bits, uid/gid from
 *   the file system, uname/gname empty, mtime/atime/ctime zeroed (written as 0); a file hard-linked twice
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
 * berth differs on purpose in three places: bundles it builds are normalised (uid/gid 0, modes 0644/0755,
 *   symlinks 0777) rather than copying the publisher's file system; its index lists a symlink with the digest
 *   of the file it leads to (what the device check reads), and leaves out symlinks to directories or to
 *   nothing, instead of the digest of empty content; and it refuses hard links.
 */
import { BerthError } from "../util/errors.ts";
import { EMPTY_SHA256, parseDigest, Sha256, sha256Of } from "../oci/digest.ts";
import { fsyncDir, join, readFileIfExists } from "../util/fs.ts";
import { OCI_MANIFEST } from "../oci/mediatypes.ts";
import { quoted } from "../util/text.ts";
import {
  checkAnnotations,
  checkDescriptor,
  type Descriptor,
  type ImageManifest,
  OCI_EMPTY_DIGEST,
  OCI_EMPTY_MEDIA_TYPE,
  OCI_EMPTY_SIZE,
} from "../oci/descriptor.ts";
import { gunzip, gzip } from "../util/gzip.ts";
import { readTar } from "./tar_read.ts";
import { type TarEntry, writeTar } from "./tar_write.ts";

export const APP_MANIFEST_MEDIA_TYPE = OCI_MANIFEST;
export const APP_ARTIFACT_TYPE = "application/vnd.fio+compose-app";
/** The config of apps published before Oct 2024: an image config of zero bytes. */
export const LEGACY_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json";
export const APP_BUNDLE_MEDIA_TYPE = "application/octet-stream";
/** What the bundle index and layers meta blobs are pushed as. */
export const APP_JSON_MEDIA_TYPE = "application/json";

export const ANNOTATION_COMPOSE_APP = "compose-app";
export const COMPOSE_APP_VERSION = "v1";
export const ANNOTATION_BUNDLE_INDEX_DIGEST = "org.foundries.app.bundle.index.digest";
export const ANNOTATION_BUNDLE_INDEX_SIZE = "org.foundries.app.bundle.index.size";
export const ANNOTATION_LAYERS_META = "layers-meta";
export const LAYERS_META_VERSION = "v1";
/** The label publish gives each service: hex sha256 of the service's YAML. */
export const SERVICE_HASH_LABEL = "io.compose-spec.config-hash";

/** The one compose file name publish and devices know. */
export const COMPOSE_FILE = "docker-compose.yml";
export const IGNORE_FILE = ".composeappignores";
/** The layers of a compose app: the bundle and, optionally, the layers meta. */
const APP_LAYERS = 2;
/** Publishing refuses manifests of this size or more, and so do devices. */
export const APP_MANIFEST_MAX_SIZE = 50 * 1024;

const MiB = 1024 * 1024;

/** Limits on a bundle, checked when building and when extracting. */
export interface BundleLimits {
  /** docker-compose.yml; 1 MiB, as composeapp. */
  maxComposeBytes: number;
  /** Any other file. composeapp allows 1 GiB - 1 MiB; berth keeps projects to configuration-sized files. */
  maxFileBytes: number;
  /** All file contents together (composeapp: 1 GiB). */
  maxTotalBytes: number;
  /** Entries of any kind. */
  maxEntries: number;
}

export const DEFAULT_BUNDLE_LIMITS: Readonly<BundleLimits> = {
  maxComposeBytes: MiB,
  maxFileBytes: 16 * MiB,
  maxTotalBytes: 64 * MiB,
  maxEntries: 10_000,
};

// ---------------------------------------------------------------------------------------------------------
// JSON as Go's encoding/json writes it

const encoder = new TextEncoder();

/** Orders strings by their UTF-8 bytes, as Go sorts map keys and directory entries. */
function compareUtf8(a: string, b: string): number {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** A Go map: its keys are written sorted. Plain objects are Go structs: fields in insertion order. */
class GoMap {
  constructor(readonly values: Record<string, unknown>) {}
}

function goString(value: string): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** Go's json.Marshal (indent "") or json.MarshalIndent(value, "", indent). */
function goJson(value: unknown, indent = "", depth = 0): string {
  const open = indent ? "\n" + indent.repeat(depth + 1) : "";
  const close = indent ? "\n" + indent.repeat(depth) : "";
  if (typeof value === "string") return goString(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new Error(`goJson: ${value} is not an integer`);
    return String(value);
  }
  if (typeof value === "boolean" || value === null) return String(value);
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return `[${value.map((item) => open + goJson(item, indent, depth + 1)).join(",")}${close}]`;
  }
  let entries: [string, unknown][];
  if (value instanceof GoMap) {
    entries = Object.entries(value.values).sort(([a], [b]) => compareUtf8(a, b));
  } else if (typeof value === "object" && value !== null) {
    entries = Object.entries(value).filter(([, item]) => item !== undefined);
  } else {
    throw new Error(`goJson: cannot encode ${typeof value}`);
  }
  if (entries.length === 0) return "{}";
  const colon = indent ? ": " : ":";
  const fields = entries.map(([key, item]) => open + goString(key) + colon + goJson(item, indent, depth + 1));
  return `{${fields.join(",")}${close}}`;
}

// ---------------------------------------------------------------------------------------------------------
// Paths

/** The components of a relative archive path; refuses absolute paths, ".." components and NUL bytes. */
function relativeComponents(name: string, fail: (problem: string) => never): string[] {
  if (name.includes("\0")) fail("the path contains a NUL byte");
  if (name.startsWith("/")) fail("absolute path");
  const parts = name.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) fail(`the path has a ".." component`);
  return parts;
}

async function lstatIfExists(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) return undefined;
    throw error;
  }
}

/**
 * Where `parts` leads inside `root`, following symlinks found there (relative ones only) without ever
 * leaving `root`; undefined when it would leave, goes through an absolute symlink, or loops. Components that
 * do not exist are taken as they are.
 */
async function resolveInside(root: string, parts: string[]): Promise<string[] | undefined> {
  const pending = [...parts];
  const resolved: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (resolved.length === 0) return undefined;
      resolved.pop();
      continue;
    }
    resolved.push(part);
    const path = join(root, resolved.join("/"));
    const info = await lstatIfExists(path);
    if (!info?.isSymlink) continue;
    if (++hops > 40) return undefined;
    const target = await Deno.readLink(path);
    if (target.startsWith("/")) return undefined;
    resolved.pop();
    pending.unshift(...target.split("/"));
  }
  return resolved;
}

/** A symlink target read lexically from the link's directory; false when it climbs above the root. */
function staysInside(linkParts: string[], target: string): boolean {
  const stack = linkParts.slice(0, -1);
  for (const part of target.split("/")) {
    if (part === "" || part === ".") continue;
    if (part !== "..") stack.push(part);
    else if (stack.pop() === undefined) return false;
  }
  return true;
}

async function hashFile(path: string): Promise<string> {
  const file = await Deno.open(path, { read: true });
  const hash = new Sha256();
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest();
}

// ---------------------------------------------------------------------------------------------------------
// .composeappignores (moby/patternmatcher semantics, as composeapp's publish applies them)

interface IgnorePattern {
  text: string;
  regex: RegExp;
  exclusion: boolean;
}

/** Go's path.Clean. */
function cleanPath(path: string): string {
  const rooted = path.startsWith("/");
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part !== "..") out.push(part);
    else if (out.length > 0 && out.at(-1) !== "..") out.pop();
    else if (!rooted) out.push("..");
  }
  const joined = out.join("/");
  return rooted ? `/${joined}` : joined || ".";
}

/** patternmatcher's translation of a pattern into a regular expression. */
function patternRegex(pattern: string): RegExp {
  let source = "^";
  const chars = [...pattern];
  for (let i = 0; i < chars.length; i++) {
    const char = chars[i];
    if (char === "*") {
      if (chars[i + 1] === "*") {
        i++;
        if (chars[i + 1] === "/") i++;
        source += i + 1 >= chars.length ? ".*" : "(.*/)?";
      } else {
        source += "[^/]*";
      }
    } else if (char === "?") source += "[^/]";
    else if (".+()|{}$".includes(char)) source += `\\${char}`;
    else if (char === "\\") source += i + 1 < chars.length ? `\\${chars[++i]}` : "\\\\";
    else source += char;
  }
  return new RegExp(source + "$");
}

/** The patterns of the project's ignore file (ignorefile.ReadAll + patternmatcher.New). */
async function loadIgnorePatterns(dir: string): Promise<IgnorePattern[]> {
  const bytes = await readFileIfExists(join(dir, IGNORE_FILE));
  if (bytes === undefined) return [];
  const lines = new TextDecoder().decode(bytes).replace(/^\uFEFF/, "").split("\n");
  const texts: string[] = [];
  for (const line of lines) {
    if (line.startsWith("#")) continue;
    let pattern = line.trim();
    if (pattern === "") continue;
    const invert = pattern.startsWith("!");
    if (invert) pattern = pattern.slice(1).trim();
    if (pattern !== "") {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern.startsWith("/")) pattern = pattern.slice(1);
    }
    texts.push(invert ? `!${pattern}` : pattern);
  }
  // The ignore file leaves itself out only when it has a pattern, as composeapp does.
  if (texts.length > 0) texts.push(IGNORE_FILE);
  return texts.map((text) => {
    let cleaned = cleanPath(text.trim());
    const exclusion = cleaned.startsWith("!");
    if (exclusion) cleaned = cleaned.slice(1);
    if (cleaned === "") {
      throw new BerthError("invalid_input", `${join(dir, IGNORE_FILE)}: illegal exclusion pattern "!"`);
    }
    try {
      return { text: cleaned, regex: patternRegex(cleaned), exclusion };
    } catch {
      throw new BerthError("invalid_input", `${join(dir, IGNORE_FILE)}: bad pattern ${JSON.stringify(text)}`);
    }
  });
}

/** Whether `path` (or a directory above it) is ignored, the last matching pattern winning. */
function isIgnored(patterns: IgnorePattern[], path: string): boolean {
  let matched = false;
  const parents = path.split("/").slice(0, -1);
  for (const pattern of patterns) {
    if (pattern.exclusion !== matched) continue;
    let match = pattern.regex.test(path);
    for (let i = 1; !match && i <= parents.length; i++) {
      match = pattern.regex.test(parents.slice(0, i).join("/"));
    }
    if (match) matched = !pattern.exclusion;
  }
  return matched;
}

// ---------------------------------------------------------------------------------------------------------
// Building

export interface BuiltBundle {
  /** The .tar.gz, layers[0] of the app manifest. */
  bundle: Uint8Array;
  /** The bundle index JSON, pushed as a blob and named by layers[0]'s annotations. */
  bundleIndex: Uint8Array;
  /** The tar entry names in archive order (directories end in "/"). */
  files: string[];
}

const OTHER_COMPOSE_NAMES = ["docker-compose.yaml", "compose.yml", "compose.yaml"];

/**
 * Builds the bundle of the compose project in `dir`: every file, directory and symlink (symlinks must stay
 * inside the project), minus what `.composeappignores` leaves out, with `docker-compose.yml` replaced by
 * `composeFileBytes` (the pinned compose file). The same project gives the same bytes whatever the files'
 * times, owners or non-execute permission bits.
 */
export async function buildBundle(
  dir: string,
  composeFileBytes: Uint8Array,
  limits: Partial<BundleLimits> = {},
): Promise<BuiltBundle> {
  const limit = { ...DEFAULT_BUNDLE_LIMITS, ...limits };
  const fail = (path: string, problem: string): never => {
    throw new BerthError("invalid_input", `${join(dir, path)}: ${problem}`);
  };
  if (composeFileBytes.length > limit.maxComposeBytes) {
    fail(
      COMPOSE_FILE,
      `the pinned compose file has ${composeFileBytes.length} bytes, over the limit of ${limit.maxComposeBytes}`,
    );
  }
  const ignore = await loadIgnorePatterns(dir);
  const hasExclusions = ignore.some((pattern) => pattern.exclusion);
  const entries: TarEntry[] = [];
  const fileDigests = new Map<string, string>();
  const symlinks: string[] = [];
  let total = 0;

  const walk = async (relDir: string): Promise<void> => {
    const names: string[] = [];
    for await (const entry of Deno.readDir(join(dir, relDir || "."))) names.push(entry.name);
    names.sort(compareUtf8);
    for (const name of names) {
      const rel = relDir ? `${relDir}/${name}` : name;
      const info = await Deno.lstat(join(dir, rel));
      const ignored = isIgnored(ignore, rel);
      if (info.isDirectory) {
        if (!ignored) entries.push({ name: `${rel}/`, type: "dir" });
        // As moby's walk: an ignored directory is entered only when a "!" pattern names something in it.
        if (
          !ignored || (hasExclusions && ignore.some((p) => p.exclusion && `${p.text}/`.startsWith(`${rel}/`)))
        ) {
          await walk(rel);
        }
        continue;
      }
      if (ignored) {
        if (rel === COMPOSE_FILE) fail(rel, `${IGNORE_FILE} leaves out ${COMPOSE_FILE}`);
        continue;
      }
      if (info.isFile) {
        const tooBig = (size: number) => rel !== COMPOSE_FILE && size > limit.maxFileBytes;
        if (tooBig(info.size)) {
          fail(rel, `${info.size} bytes, over the limit of ${limit.maxFileBytes} for a file in a bundle`);
        }
        const data = rel === COMPOSE_FILE ? composeFileBytes : await Deno.readFile(join(dir, rel));
        if (tooBig(data.length)) {
          fail(rel, `${data.length} bytes, over the limit of ${limit.maxFileBytes} for a file in a bundle`);
        }
        total += data.length;
        if (total > limit.maxTotalBytes) {
          fail(rel, `the project's files add up to more than ${limit.maxTotalBytes} bytes`);
        }
        entries.push({ name: rel, type: "file", data, mode: info.mode ?? 0o644 });
        fileDigests.set(rel, sha256Of(data));
      } else if (info.isSymlink) {
        const target = await Deno.readLink(join(dir, rel));
        if (target.startsWith("/")) {
          fail(
            rel,
            `symlink to the absolute path ${
              JSON.stringify(target)
            }; a bundle's symlinks must be relative and stay inside the project`,
          );
        }
        if (!staysInside(rel.split("/"), target) || await resolveInside(dir, rel.split("/")) === undefined) {
          fail(rel, `symlink to ${JSON.stringify(target)} leads outside the project directory`);
        }
        entries.push({ name: rel, type: "symlink", linkname: target });
        symlinks.push(rel);
      } else {
        fail(
          rel,
          "not a regular file, directory or symlink (sockets, fifos and devices cannot go into a bundle)",
        );
      }
    }
  };
  await walk("");
  if (entries.length > limit.maxEntries) {
    fail(".", `the project has ${entries.length} entries, over the limit of ${limit.maxEntries}`);
  }

  if (!fileDigests.has(COMPOSE_FILE)) {
    const others = [];
    for (const name of OTHER_COMPOSE_NAMES) if (await lstatIfExists(join(dir, name))) others.push(name);
    fail(
      COMPOSE_FILE,
      others.length > 0
        ? `missing (found ${
          others.join(", ")
        }; compose apps, and the devices that run them, read only ${COMPOSE_FILE})`
        : "missing, or not a regular file",
    );
  }

  // A symlink is indexed with the digest of the file it leads to: what a device's check reads through it.
  const index: Record<string, string> = Object.fromEntries(fileDigests);
  for (const link of symlinks) {
    const resolved = await resolveInside(dir, link.split("/"));
    const digest = resolved && fileDigests.get(resolved.join("/"));
    if (digest) index[link] = digest;
  }
  return {
    bundle: await gzip(writeTar(entries)),
    bundleIndex: encoder.encode(goJson(new GoMap(index))),
    files: entries.map((entry) => entry.name),
  };
}

// ---------------------------------------------------------------------------------------------------------
// The app manifest

export interface BlobRef {
  digest: string;
  size: number;
}

export interface AppManifestOptions {
  bundle: BlobRef;
  bundleIndex: BlobRef;
  layersMeta?: BlobRef;
  /** Extra manifest annotations; "compose-app" is always "v1". */
  annotations?: Record<string, string>;
}

function checkRef(ref: BlobRef, what: string): void {
  parseDigest(ref.digest, `${what}.digest`);
  if (!Number.isSafeInteger(ref.size) || ref.size < 0) {
    throw new BerthError("invalid_input", `${what}.size: ${JSON.stringify(ref.size)} is not a valid size`);
  }
}

/**
 * The app manifest's exact bytes, as composeapp's publish writes them (three-space indent, Go field order),
 * so the same blobs give the same manifest digest from either tool. Refused at 50 KiB or more.
 */
export function appManifest(opts: AppManifestOptions): Uint8Array {
  checkRef(opts.bundle, "app manifest bundle");
  checkRef(opts.bundleIndex, "app manifest bundle index");
  if (opts.layersMeta) checkRef(opts.layersMeta, "app manifest layers meta");
  const extra = opts.annotations?.[ANNOTATION_COMPOSE_APP];
  if (extra !== undefined && extra !== COMPOSE_APP_VERSION) {
    throw new BerthError(
      "invalid_input",
      `app manifest: annotation ${ANNOTATION_COMPOSE_APP} must be ${COMPOSE_APP_VERSION}`,
    );
  }
  const descriptor = (mediaType: string, ref: BlobRef, annotations: Record<string, string>) => ({
    mediaType,
    size: ref.size === 0 ? undefined : ref.size,
    digest: ref.digest,
    annotations: new GoMap(annotations),
  });
  const layers = [
    descriptor(APP_BUNDLE_MEDIA_TYPE, opts.bundle, {
      [ANNOTATION_BUNDLE_INDEX_DIGEST]: opts.bundleIndex.digest,
      [ANNOTATION_BUNDLE_INDEX_SIZE]: String(opts.bundleIndex.size),
    }),
  ];
  if (opts.layersMeta) {
    layers.push(
      descriptor(APP_JSON_MEDIA_TYPE, opts.layersMeta, { [ANNOTATION_LAYERS_META]: LAYERS_META_VERSION }),
    );
  }
  const manifest = {
    schemaVersion: 2,
    mediaType: APP_MANIFEST_MEDIA_TYPE,
    config: { mediaType: OCI_EMPTY_MEDIA_TYPE, size: OCI_EMPTY_SIZE, digest: OCI_EMPTY_DIGEST },
    layers,
    annotations: new GoMap({ ...opts.annotations, [ANNOTATION_COMPOSE_APP]: COMPOSE_APP_VERSION }),
    artifactType: APP_ARTIFACT_TYPE,
  };
  const bytes = encoder.encode(goJson(manifest, "   "));
  if (bytes.length >= APP_MANIFEST_MAX_SIZE) {
    throw new BerthError(
      "invalid_input",
      `app manifest: ${bytes.length} bytes; compose-app manifests must stay under ${APP_MANIFEST_MAX_SIZE} bytes (devices read no more)`,
    );
  }
  return bytes;
}

/** A parsed and checked app manifest. */
export interface AppManifest {
  /** The manifest as parsed (unknown fields, such as a legacy `manifests` array, left as they are). */
  manifest: ImageManifest;
  /** layers[0]: the compose project, a .tar.gz. */
  bundle: Descriptor;
  /** The bundle index layers[0]'s annotations name; absent in apps published without one. */
  bundleIndex?: BlobRef;
  /** layers[1] when it is layers meta v1. */
  layersMeta?: Descriptor;
  annotations: Record<string, string>;
}

/** Whether a parsed manifest says it is a compose app (rather than a container image). */
export function isAppManifest(json: unknown): boolean {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return false;
  const manifest = json as { artifactType?: unknown; annotations?: unknown };
  if (manifest.artifactType === APP_ARTIFACT_TYPE) return true;
  const annotations = manifest.annotations;
  return typeof annotations === "object" && annotations !== null &&
    typeof (annotations as Record<string, unknown>)[ANNOTATION_COMPOSE_APP] === "string";
}

/** Strict UTF-8 JSON that must be an object: what every compose-app document is. */
function parseJsonObject(bytes: Uint8Array, what: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    // reported below, as for any other non-object
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new BerthError("invalid_input", `${what}: not a JSON object`);
  }
  return json as Record<string, unknown>;
}

/**
 * Parses a compose-app v1 manifest: an OCI image manifest with annotation compose-app "v1" (and, since Oct
 * 2024, artifactType application/vnd.fio+compose-app), layers[0] the application/octet-stream bundle,
 * optionally layers[1] the layers meta. A top-level `manifests` array (older publishers) is ignored.
 * Errors name `what` and the field.
 */
export function parseAppManifest(bytes: Uint8Array, what: string): AppManifest {
  if (bytes.length >= APP_MANIFEST_MAX_SIZE) {
    throw new BerthError(
      "invalid_input",
      `${what}: ${bytes.length} bytes; a compose-app manifest is under ${APP_MANIFEST_MAX_SIZE}`,
    );
  }
  const json = parseJsonObject(bytes, what);
  const manifest = json as unknown as ImageManifest;
  if (manifest.schemaVersion !== 2) {
    throw new BerthError(
      "unsupported",
      `${what}: schemaVersion ${quoted(manifest.schemaVersion)} (need 2)`,
    );
  }
  if (manifest.mediaType !== APP_MANIFEST_MEDIA_TYPE) {
    throw new BerthError(
      "invalid_input",
      `${what}: mediaType ${quoted(manifest.mediaType)}; a compose app is an ${APP_MANIFEST_MEDIA_TYPE}`,
    );
  }
  if (manifest.artifactType !== undefined && manifest.artifactType !== APP_ARTIFACT_TYPE) {
    throw new BerthError(
      "invalid_input",
      `${what}: artifactType ${quoted(manifest.artifactType)} is not ${APP_ARTIFACT_TYPE}: not a compose app`,
    );
  }
  const annotations = checkAnnotations(manifest.annotations, what);
  const version = annotations[ANNOTATION_COMPOSE_APP];
  if (version === undefined) {
    throw new BerthError(
      "invalid_input",
      `${what}: annotation "${ANNOTATION_COMPOSE_APP}" is missing: not a compose app`,
    );
  }
  if (version !== COMPOSE_APP_VERSION) {
    throw new BerthError(
      "unsupported",
      `${what}: annotation "${ANNOTATION_COMPOSE_APP}" is ${
        quoted(version)
      }; berth reads ${COMPOSE_APP_VERSION}`,
    );
  }
  checkDescriptor(manifest.config, `${what} config`, { sizeOptional: true });
  if (!Array.isArray(manifest.layers) || manifest.layers.length === 0) {
    throw new BerthError(
      "invalid_input",
      `${what}: layers is missing or empty; layers[0] must be the app bundle`,
    );
  }
  const bundle = checkDescriptor(manifest.layers[0], `${what} layers[0]`);
  if (bundle.mediaType !== APP_BUNDLE_MEDIA_TYPE) {
    throw new BerthError(
      "invalid_input",
      `${what} layers[0].mediaType: ${quoted(bundle.mediaType)}; an app bundle is ${APP_BUNDLE_MEDIA_TYPE}`,
    );
  }
  let bundleIndex: BlobRef | undefined;
  const indexDigest = bundle.annotations?.[ANNOTATION_BUNDLE_INDEX_DIGEST];
  const indexSize = bundle.annotations?.[ANNOTATION_BUNDLE_INDEX_SIZE];
  if (indexDigest !== undefined || indexSize !== undefined) {
    const where = `${what} layers[0].annotations`;
    if (indexDigest === undefined || indexSize === undefined) {
      throw new BerthError(
        "invalid_input",
        `${where}: ${
          indexDigest === undefined ? ANNOTATION_BUNDLE_INDEX_DIGEST : ANNOTATION_BUNDLE_INDEX_SIZE
        } is missing`,
      );
    }
    parseDigest(indexDigest, `${where}.${ANNOTATION_BUNDLE_INDEX_DIGEST}`);
    if (!/^(0|[1-9][0-9]{0,14})$/.test(indexSize)) {
      throw new BerthError(
        "invalid_input",
        `${where}.${ANNOTATION_BUNDLE_INDEX_SIZE}: ${quoted(indexSize)} is not a size`,
      );
    }
    bundleIndex = { digest: indexDigest, size: Number(indexSize) };
  }
  if (manifest.layers.length > APP_LAYERS) {
    const extra = manifest.layers[APP_LAYERS] as { digest?: unknown };
    throw new BerthError(
      "invalid_input",
      `${what}: layers[${APP_LAYERS}] (${quoted(extra?.digest)}) is not part of a compose app: ` +
        `${COMPOSE_APP_VERSION} defines layers[0], the bundle, and layers[1], the layers meta`,
    );
  }
  let layersMeta: Descriptor | undefined;
  if (manifest.layers.length > 1) {
    const layer = checkDescriptor(manifest.layers[1], `${what} layers[1]`);
    // Devices ignore a layers meta of another version; so does berth.
    if (layer.annotations?.[ANNOTATION_LAYERS_META] === LAYERS_META_VERSION) layersMeta = layer;
  }
  return { manifest, bundle, bundleIndex, layersMeta, annotations };
}

// ---------------------------------------------------------------------------------------------------------
// Extracting and verifying

export interface ExtractOptions extends Partial<BundleLimits> {
  /** Names the bundle in errors; default "app bundle". */
  what?: string;
}

/**
 * Extracts a bundle (.tar.gz) into `destDir`, which should be a fresh empty directory that the caller
 * deletes on failure. Only regular files (written 0644, or 0755 when the archive gives any execute bit),
 * directories (0755) and symlinks that resolve inside `destDir` are created; nothing is ever written through
 * a symlink, so a refused bundle leaves nothing outside `destDir`. Hard links, devices, fifos, absolute
 * paths, ".." components, duplicates and sizes over the limits are refused with a BerthError
 * ("invalid_input") naming the entry. Files are fsynced, and so are the directories at the end.
 * Returns the extracted paths in archive order.
 */
export async function extractBundle(
  stream: ReadableStream<Uint8Array>,
  destDir: string,
  options: ExtractOptions = {},
): Promise<string[]> {
  const limit = { ...DEFAULT_BUNDLE_LIMITS, ...options };
  const what = options.what ?? "app bundle";
  if (!(await Deno.stat(destDir)).isDirectory) {
    throw new BerthError("invalid_input", `${destDir}: not a directory to extract ${what} into`);
  }
  // Headers and padding on top of the content: a bomb of zeros fails here rather than filling memory or disk.
  const cap = limit.maxTotalBytes + limit.maxEntries * 3 * 512 + 2 * MiB;
  let expanded = 0;
  const counted = gunzip(stream).pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        expanded += chunk.length;
        if (expanded > cap) {
          throw new BerthError("invalid_input", `${what}: expands to more than ${cap} bytes`);
        }
        controller.enqueue(chunk);
      },
    }),
  );
  const created = new Map<string, "file" | "dir" | "symlink">();
  const symlinks: string[][] = [];
  const extracted: string[] = [];
  let entries = 0;
  let total = 0;

  for await (const entry of readTar(counted, { what, maxMetaBytes: 64 * 1024 })) {
    const { header } = entry;
    const fail = (problem: string): never => {
      throw new BerthError("invalid_input", `${what}: entry ${JSON.stringify(header.name)}: ${problem}`);
    };
    if (++entries > limit.maxEntries) fail(`more than ${limit.maxEntries} entries in the bundle`);
    const parts = relativeComponents(header.name, fail);
    if (encoder.encode(header.name).length > 4096) fail("the path is longer than 4096 bytes");
    if (parts.some((part) => encoder.encode(part).length > 255)) {
      fail("a path component is longer than 255 bytes");
    }
    if (parts.length === 0) {
      if (header.type === "dir") continue;
      fail("names the destination directory itself");
    }
    const rel = parts.join("/");
    const path = join(destDir, rel);
    const mode = header.mode & 0o111 ? 0o755 : 0o644;

    // Refuse what is not allowed before anything is created for it.
    switch (header.type) {
      case "file": {
        const max = rel === COMPOSE_FILE ? limit.maxComposeBytes : limit.maxFileBytes;
        if (header.size > max) fail(`${header.size} bytes, over the limit of ${max}`);
        total += header.size;
        if (total > limit.maxTotalBytes) {
          fail(`the bundle's files add up to more than ${limit.maxTotalBytes} bytes`);
        }
        break;
      }
      case "dir":
        break;
      case "symlink": {
        const target = header.linkname;
        if (target === "" || target.includes("\0")) fail("symlink with an empty or invalid target");
        if (target.startsWith("/")) {
          fail(`symlink to ${JSON.stringify(target)} points outside the destination (absolute)`);
        }
        if (!staysInside(parts, target)) {
          fail(`symlink to ${JSON.stringify(target)} points outside the destination`);
        }
        break;
      }
      case "hardlink":
        fail(
          `a hard link (to ${
            JSON.stringify(header.linkname)
          }); bundles may hold only files, directories and symlinks`,
        );
        break;
      case "char":
      case "block":
      case "fifo":
        fail(
          `a ${
            header.type === "fifo" ? "fifo" : `${header.type} device`
          }; bundles may hold only files, directories and symlinks`,
        );
        break;
      default:
        fail(`unsupported entry type ${JSON.stringify(header.typeflag)}`);
    }

    // Every directory above the entry must be a real directory made by this extraction (or made now).
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      const known = created.get(parent);
      if (known === "dir") continue;
      if (known === "symlink") {
        fail(`goes through the symlink "${parent}"; nothing is written through a symlink`);
      }
      if (known === "file") fail(`goes through the file "${parent}"`);
      const info = await lstatIfExists(join(destDir, parent));
      if (info?.isSymlink) fail(`goes through the symlink "${parent}"; nothing is written through a symlink`);
      if (info && !info.isDirectory) fail(`goes through "${parent}", which is not a directory`);
      if (!info) {
        await Deno.mkdir(join(destDir, parent), { mode: 0o755 });
        await Deno.chmod(join(destDir, parent), 0o755);
      }
      created.set(parent, "dir");
    }
    const existing = created.get(rel);
    if (existing !== undefined && !(existing === "dir" && header.type === "dir")) {
      fail("appears twice in the bundle");
    }

    if (header.type === "file") {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(path, { write: true, createNew: true, mode });
      } catch (error) {
        if (error instanceof Deno.errors.AlreadyExists) fail("already exists in the destination");
        throw error;
      }
      try {
        for await (const chunk of entry.body) {
          for (let written = 0; written < chunk.length;) written += await file.write(chunk.subarray(written));
        }
        await file.sync();
      } finally {
        file.close();
      }
      await Deno.chmod(path, mode);
      created.set(rel, "file");
    } else if (header.type === "dir") {
      if (existing === undefined) {
        const info = await lstatIfExists(path);
        if (info && (info.isSymlink || !info.isDirectory)) fail("already exists in the destination");
        if (!info) await Deno.mkdir(path, { mode: 0o755 });
      }
      await Deno.chmod(path, 0o755);
      created.set(rel, "dir");
    } else {
      try {
        await Deno.symlink(header.linkname, path);
      } catch (error) {
        if (error instanceof Deno.errors.AlreadyExists) fail("already exists in the destination");
        throw error;
      }
      created.set(rel, "symlink");
      symlinks.push(parts);
      if (await resolveInside(destDir, parts) === undefined) {
        fail(
          `symlink to ${
            JSON.stringify(header.linkname)
          } leads outside the destination through other symlinks, or loops`,
        );
      }
    }
    extracted.push(rel);
  }

  // Later entries may have turned an earlier link's path into an escape; check them all again.
  for (const parts of symlinks) {
    if (await resolveInside(destDir, parts) === undefined) {
      throw new BerthError(
        "invalid_input",
        `${what}: entry ${
          JSON.stringify(parts.join("/"))
        }: symlink leads outside the destination through other symlinks, or loops`,
      );
    }
  }
  if (created.get(COMPOSE_FILE) !== "file") {
    throw new BerthError("invalid_input", `${what}: has no ${COMPOSE_FILE} at its top level`);
  }
  for (const [rel, kind] of created) if (kind === "dir") await fsyncDir(join(destDir, rel));
  await fsyncDir(destDir);
  return extracted;
}

/** Parses a bundle index: `{"relative/path": "sha256:…"}`. */
export function parseBundleIndex(bytes: Uint8Array, what: string): Record<string, string> {
  const json = parseJsonObject(bytes, what);
  for (const [path, digest] of Object.entries(json)) {
    relativeComponents(path, (problem) => {
      throw new BerthError("invalid_input", `${what}: key ${JSON.stringify(path)}: ${problem}`);
    });
    parseDigest(digest, `${what}: ${JSON.stringify(path)}`);
  }
  return json as Record<string, string>;
}

/**
 * Checks an extracted bundle against its index, as a device does after installing: every listed file must
 * exist with that digest (a symlink is read through, inside `destDir`; the digest of empty content, which
 * composeapp's publish gives symlinks, is accepted for a symlink as it is). Beyond the device's check, every
 * regular file in `destDir` must be listed. All mismatches are reported in one BerthError
 * ("verification_failed").
 */
export async function verifyBundleIndex(
  destDir: string,
  indexBytes: Uint8Array,
  what = "app bundle",
): Promise<void> {
  const index = parseBundleIndex(indexBytes, `${what} index`);
  const problems: string[] = [];
  const listed = new Set<string>();
  for (const key of Object.keys(index).sort(compareUtf8)) {
    const digest = index[key];
    const parts = key.split("/").filter((part) => part !== "" && part !== ".");
    const rel = parts.join("/");
    listed.add(rel);
    let parentProblem: string | undefined;
    for (let i = 1; i < parts.length && !parentProblem; i++) {
      const info = await lstatIfExists(join(destDir, parts.slice(0, i).join("/")));
      if (!info) parentProblem = "is missing";
      else if (info.isSymlink || !info.isDirectory) {
        parentProblem = `lies under "${parts.slice(0, i).join("/")}", not a directory`;
      }
    }
    if (parentProblem) {
      problems.push(`"${rel}" ${parentProblem}`);
      continue;
    }
    let info = await lstatIfExists(join(destDir, rel));
    let path = join(destDir, rel);
    if (info?.isSymlink) {
      if (digest === EMPTY_SHA256) continue;
      const resolved = await resolveInside(destDir, parts);
      if (!resolved) {
        problems.push(`"${rel}" is a symlink leading outside the bundle`);
        continue;
      }
      path = join(destDir, resolved.join("/"));
      info = await lstatIfExists(path);
    }
    if (!info) problems.push(`"${rel}" is missing`);
    else if (!info.isFile) problems.push(`"${rel}" is not a regular file`);
    else {
      const actual = await hashFile(path);
      if (actual !== digest) problems.push(`"${rel}" has digest ${actual}, the index says ${digest}`);
    }
  }
  const walk = async (relDir: string): Promise<void> => {
    for await (const entry of Deno.readDir(join(destDir, relDir || "."))) {
      const rel = relDir ? `${relDir}/${entry.name}` : entry.name;
      if (entry.isDirectory) await walk(rel);
      else if (entry.isFile && !listed.has(rel)) problems.push(`"${rel}" is not in the bundle index`);
    }
  };
  await walk("");
  if (problems.length > 0) {
    problems.sort(compareUtf8);
    const shown = problems.slice(0, 5).join("; ");
    const more = problems.length > 5 ? `; and ${problems.length - 5} more` : "";
    throw new BerthError(
      "verification_failed",
      `${what}: ${problems.length} ${
        problems.length === 1 ? "file does" : "files do"
      } not match the bundle index: ${shown}${more}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------
// Layers meta

export interface LayerMeta {
  /** Unpacked size of the layer's files. */
  size: number;
  /** Disk usage of the unpacked layer, data and metadata. */
  usage: number;
  /** The layer blob's (compressed) size; absent or 0 in some files. */
  archive_size?: number;
}

export interface ArchLayersMeta {
  fs_block_size: number;
  layers: Record<string, LayerMeta>;
}

/** `{arch: {fs_block_size, layers: {digest: {size, usage, archive_size}}}}` */
export type LayersMeta = Record<string, ArchLayersMeta>;

/** Parses a layers meta blob (or the factory's full layers-meta file, which has the same shape). */
export function parseLayersMeta(bytes: Uint8Array, what = "layers meta"): LayersMeta {
  const json = parseJsonObject(bytes, what);
  const isObject = (value: unknown): value is Record<string, unknown> =>
    typeof value === "object" && value !== null && !Array.isArray(value);
  const count = (value: unknown, where: string, optional = false) => {
    if (value === undefined && optional) return;
    if (!Number.isSafeInteger(value) || (value as number) < 0) {
      throw new BerthError("invalid_input", `${where}: ${JSON.stringify(value)} is not a valid number`);
    }
  };
  for (const [arch, meta] of Object.entries(json)) {
    if (!isObject(meta)) throw new BerthError("invalid_input", `${what}.${arch}: not an object`);
    count(meta.fs_block_size, `${what}.${arch}.fs_block_size`);
    if (!isObject(meta.layers)) {
      throw new BerthError("invalid_input", `${what}.${arch}.layers: not an object`);
    }
    for (const [digest, layer] of Object.entries(meta.layers)) {
      const where = `${what}.${arch}.layers.${digest}`;
      parseDigest(digest, where);
      if (!isObject(layer)) throw new BerthError("invalid_input", `${where}: not an object`);
      count(layer.size, `${where}.size`);
      count(layer.usage, `${where}.usage`);
      count(layer.archive_size, `${where}.archive_size`, true);
    }
  }
  return json as LayersMeta;
}

/**
 * The layers meta blob of an app, as composeapp's publish makes it: from the factory's layers meta
 * (`source`), the entries of the app's layers per architecture, with archive_size set to each layer blob's
 * size. An architecture or layer missing from `source` is an error.
 */
export function buildLayersMeta(source: LayersMeta, appLayers: Record<string, BlobRef[]>): Uint8Array {
  const out: Record<string, unknown> = {};
  for (const [arch, layers] of Object.entries(appLayers)) {
    const meta = source[arch];
    if (!meta) {
      throw new BerthError("invalid_input", `layers meta: nothing about the app's layers for ${arch}`);
    }
    const entries: Record<string, unknown> = {};
    for (const layer of layers) {
      const known = meta.layers[layer.digest];
      if (!known) {
        throw new BerthError(
          "invalid_input",
          `layers meta: layer ${layer.digest} (${arch}) is not in the layers meta; was the image rebuilt after it was measured?`,
        );
      }
      entries[layer.digest] = {
        size: known.size,
        usage: known.usage,
        archive_size: layer.size === 0 ? undefined : layer.size,
      };
    }
    out[arch] = { fs_block_size: meta.fs_block_size, layers: new GoMap(entries) };
  }
  return encoder.encode(goJson(new GoMap(out)));
}
