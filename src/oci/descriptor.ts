/**
 * OCI descriptors, manifests and indexes: their shapes, and the one check every descriptor from outside
 * passes (`checkDescriptor`) — from a registry's manifest or index, an app manifest, or the store's own
 * `index.json` — before anything uses its digest or size.
 */
import { BerthError } from "../util/errors.ts";
import { quoted } from "../util/text.ts";
import { parseDigest } from "./digest.ts";

/** The platform of an index entry, as the image spec writes it. */
export interface DescriptorPlatform {
  os: string;
  architecture: string;
  variant?: string;
  "os.version"?: string;
  "os.features"?: string[];
}

/** Points at one blob by digest; size is in bytes. From outside, only checkDescriptor's result is trusted. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: DescriptorPlatform;
  annotations?: Record<string, string>;
  urls?: string[];
  artifactType?: string;
}

/** An OCI index or Docker manifest list; parseIndex checks every entry before it is returned. */
export interface OciIndex {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** An OCI or Docker v2 manifest: a config blob and its layers, in order; parseImageManifest checks them. */
export interface ImageManifest {
  schemaVersion: number;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

/** The OCI empty descriptor (`{}`): the config of artifacts such as compose apps. */
export const OCI_EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json";
/** The sha256 of OCI_EMPTY_DATA, so the empty config's descriptor is written without hashing anything. */
export const OCI_EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/** The size in bytes of OCI_EMPTY_DATA. */
export const OCI_EMPTY_SIZE = 2;
/** The empty descriptor's two bytes, `{}`, pushed as the config blob of an artifact. */
export const OCI_EMPTY_DATA = new TextEncoder().encode("{}");

/**
 * RFC 6838 allows 127 characters on each side of the slash; parameters ("; charset=utf-8") come from
 * registries that echo a Content-Type. Printable ASCII only: a media type ends up in files and messages.
 */
const MEDIA_TYPE = /^[\x21-\x7e][\x20-\x7e]{0,254}$/;
/** The image spec's platform fields are short words ("linux", "arm64", "v7"). */
const PLATFORM_FIELD = /^[\x21-\x7e]{1,64}$/;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Checks an `annotations` map (absent is empty): an object of strings. */
export function checkAnnotations(value: unknown, where: string): Record<string, string> {
  if (value === undefined) return {};
  if (!isObject(value)) throw new BerthError("invalid_input", `${where}.annotations: not an object`);
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== "string") {
      throw new BerthError("invalid_input", `${where}.annotations[${JSON.stringify(key)}]: not a string`);
    }
  }
  return value as Record<string, string>;
}

function checkPlatform(value: unknown, where: string): void {
  if (value === undefined) return;
  if (!isObject(value)) throw new BerthError("invalid_input", `${where}.platform: not an object`);
  for (const field of ["os", "architecture", "variant", "os.version"]) {
    const item = value[field];
    const required = field === "os" || field === "architecture";
    if (item === undefined && !required) continue;
    if (typeof item !== "string" || !PLATFORM_FIELD.test(item)) {
      throw new BerthError(
        "invalid_input",
        `${where}.platform.${field}: ${quoted(item)} is not a platform name`,
      );
    }
  }
}

/** Exceptions checkDescriptor allows for one caller; the default is the strict check. */
export interface DescriptorRules {
  /** The legacy compose-app config was written without a size (Go omitted 0): absent reads as 0. */
  sizeOptional?: boolean;
  /**
   * For a descriptor whose media type nobody reads (a compose app's layers meta, known by its annotation):
   * the media type it reads as when its own is missing, null, empty or not printable (Go publishers write
   * whatever the registry answered, "" included). Any other string is kept; a number or object is refused.
   */
  mediaTypeFallback?: string;
}

/**
 * Validates one descriptor and returns it typed; `where` names it in errors ("app:1 manifest layers[2]").
 * The digest is a sha256 digest (see digest.ts), the size a whole number of bytes JavaScript holds exactly,
 * the media type printable, annotations strings, a platform (when given) short names.
 */
export function checkDescriptor(value: unknown, where: string, rules: DescriptorRules = {}): Descriptor {
  if (!isObject(value)) throw new BerthError("invalid_input", `${where}: not an object`);
  const mediaType = value.mediaType;
  const unset = mediaType === undefined || mediaType === null || typeof mediaType === "string";
  if (rules.mediaTypeFallback !== undefined && unset && !MEDIA_TYPE.test(String(mediaType ?? ""))) {
    value.mediaType = rules.mediaTypeFallback;
  } else if (typeof mediaType !== "string" || !MEDIA_TYPE.test(mediaType)) {
    throw new BerthError(
      "invalid_input",
      `${where}.mediaType: ${mediaType === undefined ? "missing" : "not a media type"}`,
    );
  }
  parseDigest(value.digest, `${where}.digest`);
  if (value.size === undefined && rules.sizeOptional) value.size = 0;
  if (typeof value.size !== "number" || !Number.isSafeInteger(value.size) || value.size < 0) {
    throw new BerthError(
      "invalid_input",
      `${where}.size: ${quoted(value.size)} is not a size in bytes`,
    );
  }
  checkAnnotations(value.annotations, where);
  checkPlatform(value.platform, where);
  return value as unknown as Descriptor;
}
