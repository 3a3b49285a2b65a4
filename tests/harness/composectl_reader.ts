/**
 * A second reading of what Foundries' devices (composectl, fioup, aktualizr-lite through composeapp) check
 * in a compose app, written from composeapp's reader and publish rules (foundriesio/composeapp,
 * pkg/compose/v1/app.go, pkg/compose/v1/publish.go, internal/app_manifest_builder.go), and deliberately not
 * through berth's own parsers in src/app: the app manifest is fetched over plain HTTP, its JSON, the bundle's
 * gzip and tar, the bundle index and the layers meta are read here.
 *
 * The one shared piece is the yaml.v3 marshaller (src/util/yaml_v3_marshal.ts) used to recompute each
 * service's `io.compose-spec.config-hash`: composeapp hashes `yaml.Marshal` of the service map, and a second
 * marshaller is out of scope here. The YAML is read with the npm `yaml` package (failsafe schema: every
 * scalar a string) and its plain scalars typed here as yaml.v3's resolve does, not with berth's decoder.
 */
import { type Document, isAlias, isMap, isScalar, isSeq, parseDocument } from "yaml";
import { GoFloat, GoInt, type GoMap, GoTime, type GoValue } from "../../src/util/yaml_v3_decode.ts";
import { marshalGoYaml } from "../../src/util/yaml_v3_marshal.ts";

// composeapp's constants (pkg/compose/v1/app.go, internal/app_manifest_builder.go).
const MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json";
const ARTIFACT_TYPE = "application/vnd.fio+compose-app";
const MANIFEST_MAX_SIZE = 50 * 1024;
const COMPOSE_MAX_SIZE = 1024 * 1024;
const BUNDLE_MAX_SIZE = 1024 * 1024 * 1024;
const BUNDLE_MEDIA_TYPE = "application/octet-stream";
const INDEX_DIGEST_KEY = "org.foundries.app.bundle.index.digest";
const INDEX_SIZE_KEY = "org.foundries.app.bundle.index.size";
const HASH_LABEL = "io.compose-spec.config-hash";
const EMPTY_CONFIG = {
  mediaType: "application/vnd.oci.empty.v1+json",
  digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
  size: 2,
};
const COMPOSE_FILE = "docker-compose.yml";

/** What the checker read and what it found wrong (empty `problems`: composeapp's reader would take it). */
export interface ReaderReport {
  problems: string[];
  /** The manifest's digest, as the registry's bytes hash. */
  digest: string;
  /** Every regular file of the bundle, by its name in the tar. */
  files: Map<string, Uint8Array>;
}

type Json = Record<string, unknown>;

async function sha256(bytes: Uint8Array): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return "sha256:" + Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function get(url: string, accept?: string): Promise<Uint8Array> {
  const response = await fetch(url, { headers: accept ? { Accept: accept } : {} });
  const body = new Uint8Array(await response.arrayBuffer());
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  return body;
}

const isObject = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** The entries of a tar (Go's archive/tar reads ustar prefixes and PAX `path`/`size`); regular files only. */
function readTar(tar: Uint8Array): Map<string, Uint8Array> {
  const text = (from: number, length: number) => {
    const raw = tar.subarray(from, from + length);
    const end = raw.indexOf(0);
    return new TextDecoder().decode(end < 0 ? raw : raw.subarray(0, end));
  };
  const files = new Map<string, Uint8Array>();
  let pax: Record<string, string> = {};
  for (let at = 0; at + 512 <= tar.length;) {
    if (tar.subarray(at, at + 512).every((b) => b === 0)) break;
    const prefix = text(at + 345, 155);
    let name = prefix ? `${prefix}/${text(at, 100)}` : text(at, 100);
    let size = parseInt(text(at + 124, 12).trim() || "0", 8);
    const type = text(at + 156, 1);
    if (pax.path !== undefined) name = pax.path;
    if (pax.size !== undefined) size = Number(pax.size);
    const body = tar.subarray(at + 512, at + 512 + size);
    at += 512 + Math.ceil(size / 512) * 512;
    if (type === "x") {
      pax = {};
      for (const line of new TextDecoder().decode(body).split("\n").filter((l) => l)) {
        const record = line.slice(line.indexOf(" ") + 1);
        pax[record.slice(0, record.indexOf("="))] = record.slice(record.indexOf("=") + 1);
      }
      continue;
    }
    pax = {};
    if (type === "0" || type === "") files.set(name, body);
  }
  return files;
}

async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const YAML_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;
// Go's strconv.ParseInt(s, 0, 64) forms (0x, 0o, 0b, and a leading 0 for octal), after yaml.v3 drops "_".
const GO_INT = /^[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$/;

/** yaml.v3's resolve of an untagged plain scalar (resolve.go), as read for this checker. */
function resolveScalar(text: string): GoValue {
  if (["", "~", "null", "Null", "NULL"].includes(text)) return null;
  if (["true", "True", "TRUE"].includes(text)) return true;
  if (["false", "False", "FALSE"].includes(text)) return false;
  const special = /^([-+]?)\.(inf|Inf|INF)$/.exec(text);
  if (special) return new GoFloat(special[1] === "-" ? -Infinity : Infinity);
  if ([".nan", ".NaN", ".NAN"].includes(text)) return new GoFloat(NaN);
  if (!/^[-+.0-9]/.test(text)) return text;
  const date = /^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})$/.exec(text);
  if (date) return new GoTime(`${date[1]}-${date[2].padStart(2, "0")}-${date[3].padStart(2, "0")}T00:00:00Z`);
  const plain = text.replaceAll("_", "");
  if (GO_INT.test(plain)) {
    const negative = plain.startsWith("-");
    const digits = plain.replace(/^[-+]/, "");
    const octal = /^0[0-7]+$/.test(digits) ? `0o${digits.slice(1)}` : digits;
    const value = BigInt(octal) * (negative ? -1n : 1n);
    if (value >= -(2n ** 63n) && value < 2n ** 64n) return new GoInt(value);
  }
  if (YAML_FLOAT.test(plain)) return new GoFloat(Number(plain));
  return text;
}

/** A node of npm yaml's failsafe parse → what yaml.v3 decodes into `interface{}` (merge keys resolved). */
function toGo(doc: Document, node: unknown): GoValue {
  if (isAlias(node)) return toGo(doc, node.resolve(doc));
  if (isScalar(node)) {
    return node.type === "PLAIN" && !node.tag ? resolveScalar(String(node.value)) : String(node.value);
  }
  if (isSeq(node)) return node.items.map((item) => toGo(doc, item));
  const map: GoMap = new Map();
  if (!isMap(node)) return node === null || node === undefined ? null : map;
  for (const pair of node.items) {
    const key = toGo(doc, pair.key);
    if (key === "<<" && isScalar(pair.key) && pair.key.type === "PLAIN") {
      const merged = toGo(doc, pair.value);
      for (const source of Array.isArray(merged) ? merged : [merged]) {
        if (!(source instanceof Map)) continue;
        for (const [k, v] of source) if (!map.has(k)) map.set(k, v);
      }
      continue;
    }
    map.set(String(key instanceof GoInt ? key.value : key), toGo(doc, pair.value));
  }
  return map;
}

/** The services of a compose file, as yaml.v3 decodes them into `map[string]interface{}`. */
export function goServices(text: string): Map<string, GoValue> | undefined {
  const doc = parseDocument(text, { schema: "failsafe", merge: false, uniqueKeys: false });
  if (doc.errors.length > 0) return undefined;
  const top = toGo(doc, doc.contents);
  const services = top instanceof Map ? top.get("services") : undefined;
  return services instanceof Map ? services : undefined;
}

/** composeapp's config hash of a service: sha256 of yaml.v3's Marshal of its map, without the label. */
export async function recomputeConfigHash(service: GoMap): Promise<string> {
  const copy: GoMap = new Map(service);
  const labels = copy.get("labels");
  if (labels instanceof Map) {
    const rest = new Map(labels);
    rest.delete(HASH_LABEL);
    if (rest.size > 0) copy.set("labels", rest);
    else copy.delete("labels");
  }
  const yaml = new TextEncoder().encode(marshalGoYaml(copy));
  return (await sha256(yaml)).slice("sha256:".length);
}

/** Each service: image pinned to domain/path@digest, no build, and its config hash as composeapp computes it. */
async function checkServices(compose: Uint8Array, problems: string[]): Promise<void> {
  const services = goServices(new TextDecoder().decode(compose));
  if (!services) return void problems.push(`${COMPOSE_FILE}: no services mapping`);
  for (const [name, service] of services) {
    if (!(service instanceof Map)) {
      problems.push(`service ${name}: not a mapping`);
      continue;
    }
    const image = service.get("image");
    if (typeof image !== "string" || !/^[^/@]+\/[^@]+@sha256:[0-9a-f]{64}$/.test(image)) {
      problems.push(`service ${name}: image ${JSON.stringify(image)} is not pinned domain/path@digest`);
    }
    if (service.has("build")) problems.push(`service ${name}: still has build`);
    const labels = service.get("labels");
    const label = labels instanceof Map ? labels.get(HASH_LABEL) : undefined;
    if (typeof label !== "string" || !/^[0-9a-f]{64}$/.test(label)) {
      problems.push(`service ${name}: ${HASH_LABEL} label missing or not hex sha256 (${String(label)})`);
      continue;
    }
    const recomputed = await recomputeConfigHash(service);
    if (recomputed !== label) {
      problems.push(`service ${name}: ${HASH_LABEL} ${label}, recomputed ${recomputed}`);
    }
  }
}

/** A blob the manifest names, checked against its descriptor's digest and size. */
async function blob(base: string, digest: string, size: number, what: string, problems: string[]) {
  const bytes = await get(`${base}/blobs/${digest}`);
  if (bytes.length !== size) problems.push(`${what}: ${bytes.length} bytes, descriptor says ${size}`);
  if (await sha256(bytes) !== digest) problems.push(`${what}: content does not hash to ${digest}`);
  return bytes;
}

/** Layers meta (layers[1], annotation layers-meta: v1): per architecture, fs_block_size and each layer's sizes. */
function checkLayersMeta(meta: unknown, problems: string[]): void {
  if (!isObject(meta)) return void problems.push("layers meta: not a JSON object");
  for (const [arch, entry] of Object.entries(meta)) {
    if (!isObject(entry)) {
      problems.push(`layers meta ${arch}: not an object`);
      continue;
    }
    if (entry.fs_block_size !== undefined && !Number.isInteger(entry.fs_block_size)) {
      problems.push(`layers meta ${arch}: fs_block_size not an integer`);
    }
    if (entry.layers === undefined) continue;
    if (!isObject(entry.layers)) {
      problems.push(`layers meta ${arch}: layers not an object`);
      continue;
    }
    for (const [digest, layer] of Object.entries(entry.layers)) {
      if (!/^sha256:[0-9a-f]{64}$/.test(digest)) {
        problems.push(`layers meta ${arch}: key ${digest} not a digest`);
      }
      for (const field of ["size", "usage", "archive_size"]) {
        const value = isObject(layer) ? layer[field] : undefined;
        if (value !== undefined && !Number.isInteger(value)) {
          problems.push(`layers meta ${arch} ${digest}: ${field} not an integer`);
        }
      }
    }
  }
}

/** The bundle index against the bundle: the same regular files, each with its sha256. */
async function checkIndex(index: unknown, files: Map<string, Uint8Array>, problems: string[]) {
  if (!isObject(index)) return void problems.push("bundle index: not a JSON object");
  for (const [name, digest] of Object.entries(index)) {
    const file = files.get(name);
    if (typeof digest !== "string" || !/^sha256:[0-9a-f]{64}$/.test(digest)) {
      problems.push(`bundle index: ${name}: ${JSON.stringify(digest)} is not a digest`);
    } else if (!file) problems.push(`bundle index: ${name} is not in the bundle`);
    else if (await sha256(file) !== digest) problems.push(`bundle index: ${name} does not hash to ${digest}`);
  }
  for (const name of files.keys()) {
    if (!(name in index)) problems.push(`bundle index: bundle file ${name} is not indexed`);
  }
}

/** Checks the app `ref` ("repo:tag" or "repo@digest") in the plain-HTTP registry `registry` (host:port). */
export async function checkComposectlApp(registry: string, ref: string): Promise<ReaderReport> {
  const problems: string[] = [];
  const at = ref.includes("@") ? ref.indexOf("@") : ref.lastIndexOf(":");
  const base = `http://${registry}/v2/${ref.slice(0, at)}`;
  const bytes = await get(`${base}/manifests/${ref.slice(at + 1)}`, MANIFEST_MEDIA_TYPE);
  const digest = await sha256(bytes);
  const report: ReaderReport = { problems, digest, files: new Map() };
  if (ref.includes("@") && ref.slice(at + 1) !== digest) problems.push(`manifest hashes to ${digest}`);
  if (bytes.length > MANIFEST_MAX_SIZE) {
    problems.push(`manifest: ${bytes.length} bytes, over composeapp's limit`);
  }
  const manifest = JSON.parse(new TextDecoder().decode(bytes));
  if (manifest.schemaVersion !== 2) problems.push(`manifest: schemaVersion ${manifest.schemaVersion}`);
  if (manifest.mediaType !== MANIFEST_MEDIA_TYPE) problems.push(`manifest: mediaType ${manifest.mediaType}`);
  if (manifest.artifactType !== ARTIFACT_TYPE) {
    problems.push(`manifest: artifactType ${manifest.artifactType}`);
  }
  const config = isObject(manifest.config) ? manifest.config : {};
  if (Object.entries(EMPTY_CONFIG).some(([key, value]) => config[key] !== value)) {
    problems.push(`manifest: config ${JSON.stringify(manifest.config)} is not the empty descriptor`);
  } else if (
    new TextDecoder().decode(await blob(base, EMPTY_CONFIG.digest, 2, "config", problems)) !== "{}"
  ) {
    problems.push("config blob is not {}");
  }
  if (manifest.annotations?.["compose-app"] !== "v1") {
    problems.push("manifest: annotation compose-app is not v1");
  }
  const layers = Array.isArray(manifest.layers) ? manifest.layers : [];
  const bundleDesc = layers[0];
  if (!isObject(bundleDesc)) return problems.push("manifest: no layers"), report;
  if (bundleDesc.mediaType !== BUNDLE_MEDIA_TYPE) problems.push(`bundle: mediaType ${bundleDesc.mediaType}`);
  if (typeof bundleDesc.size !== "number" || bundleDesc.size > BUNDLE_MAX_SIZE) {
    problems.push(`bundle: size ${bundleDesc.size}`);
  }
  const bundle = await blob(base, String(bundleDesc.digest), Number(bundleDesc.size), "bundle", problems);
  report.files = readTar(await gunzip(bundle));
  const compose = report.files.get(COMPOSE_FILE);
  if (!compose) problems.push(`bundle: no ${COMPOSE_FILE}`);
  else if (compose.length > COMPOSE_MAX_SIZE) problems.push(`${COMPOSE_FILE}: over composeapp's limit`);
  else await checkServices(compose, problems);

  // composectl takes the index only when both annotations parse (Atoi, digest.Parse); berth always writes it.
  const annotations = isObject(bundleDesc.annotations) ? bundleDesc.annotations : {};
  const indexDigest = annotations[INDEX_DIGEST_KEY];
  const indexSize = annotations[INDEX_SIZE_KEY];
  if (typeof indexDigest !== "string" || !/^sha256:[0-9a-f]{64}$/.test(indexDigest)) {
    problems.push(`bundle: annotation ${INDEX_DIGEST_KEY} ${indexDigest}`);
  } else if (typeof indexSize !== "string" || !/^[0-9]+$/.test(indexSize)) {
    problems.push(`bundle: annotation ${INDEX_SIZE_KEY} ${indexSize}`);
  } else {
    const index = await blob(base, indexDigest, Number(indexSize), "bundle index", problems);
    await checkIndex(JSON.parse(new TextDecoder().decode(index)), report.files, problems);
  }

  const metaDesc = layers[1];
  if (isObject(metaDesc) && isObject(metaDesc.annotations) && "layers-meta" in metaDesc.annotations) {
    if (metaDesc.annotations["layers-meta"] !== "v1") problems.push("layers meta: version is not v1");
    const meta = await blob(base, String(metaDesc.digest), Number(metaDesc.size), "layers meta", problems);
    checkLayersMeta(JSON.parse(new TextDecoder().decode(meta)), problems);
  }
  return report;
}
