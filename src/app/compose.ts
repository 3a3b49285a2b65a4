/**
 * The compose file of a berth app bundle: parsed, validated, pinned to image digests, labelled with a
 * per-service config hash, and rewritten for an offline engine.
 *
 * Facts this module relies on (read from the public sources; nothing here is copied from them):
 *
 * - The label `io.compose-spec.config-hash` is Foundries' composeapp's, not docker compose's. In
 *   foundriesio/composeapp, pkg/compose/v1/publish.go (`DoPublish`) reads the file with compose-go v1's
 *   `loader.ParseYAML` (compose-spec/compose-go v1.20.2, loader/loader.go: gopkg.in/yaml.v3 decoded into
 *   `map[string]interface{}`, merge keys resolved, no interpolation), pins each service's image to
 *   `domain/path@digest` (`pinServiceImages`), and then, in `pinServiceConfigs`, hashes each service as
 *   `sha256(yaml.Marshal(serviceMap))` with gopkg.in/yaml.v3 v3.0.1, writes the lower-case hex into the
 *   service's `labels` under `io.compose-spec.config-hash` (replacing `labels` by the loaded project's map,
 *   so composeapp turns a list of labels into a map), and publishes the result. pkg/compose/v1/app.go copies
 *   the label into the app manifest's image annotations (`AppServiceHashLabelKey`), and
 *   pkg/compose/status.go finds a service's running container by that label (compose copies service labels
 *   onto containers) together with the container's image.
 * - `configHash` below reproduces that hash: the service is typed the way yaml.v3's `resolve` types plain
 *   scalars (resolve.go: YAML 1.2 booleans only, `0755` and `0o755` octal, `_` in numbers, timestamps) and
 *   written the way yaml.v3's `Marshal` writes a map (encode.go, emitterc.go, sorter.go: keys in yaml.v3's
 *   "natural" order, 4-space indent, sequences indented inside mappings, no line wrapping, strings quoted
 *   when they would read back as another type or as a YAML 1.1 bool or base-60 number). One deliberate
 *   difference: an `io.compose-spec.config-hash` label already in the service is left out of the hash, so
 *   labelling a labelled file changes nothing (composeapp hashes files that do not carry it yet). Not
 *   reproduced: compose-go's `!reset`/`!override` tags (their scalars count as strings here), and services
 *   switched off by `profiles` are labelled too (composeapp only walks the project's active services). The
 *   tests hold texts and hashes that yaml.v3 v3.0.1 itself produced.
 * - docker compose has its own, unrelated `com.docker.compose.config-hash` container label, which it uses to
 *   decide whether to recreate a container. Compose v2 (docker/compose v2.26.1, pkg/compose/hash.go
 *   `ServiceHash`, set in pkg/compose/create.go, compared in pkg/compose/convergence.go) hashes
 *   `json.Marshal` of the loaded `types.ServiceConfig` with build, pull_policy, scale and deploy.replicas
 *   cleared; it also recreates when `com.docker.compose.image` (the image ID) changes. Compose v1
 *   (docker/compose 1.29.2, compose/service.py `config_hash`, compose/utils.py `json_hash`) hashes
 *   `json.dumps(sort_keys=True, separators=(",", ":"))` of the service options, the image ID, links,
 *   network and ipc modes, networks, secrets and volumes_from. Neither is computable before the engine has
 *   the image, which is why apps carry composeapp's label.
 * - `pull_policy`: compose v1 1.29 validates every file (any `version`) against compose/config/
 *   compose_spec.json, which allows `pull_policy`, but does not use it (it is not in config.py's
 *   ALLOWED_KEYS, and service.py's `ensure_image_exists` pulls whenever the image is missing). Compose v2
 *   honours `never`. So `rewriteForEngine` sets `pull_policy: never`: v2 then fails at once instead of
 *   reaching for a registry when a loaded image is missing, and v1 accepts the key.
 */
import YAML from "yaml";
import type { Document, Node, Pair, Scalar, ScalarTag, Tags, YAMLMap } from "yaml";
import { z } from "zod";
import { createHash } from "node:crypto";
import { BerthError } from "../util/errors.ts";
import { parseReference, type Reference } from "../oci/reference.ts";

/** The label composeapp sets on each service (and compose copies onto its containers). */
export const CONFIG_HASH_LABEL = "io.compose-spec.config-hash";
/** The largest compose file berth reads. */
export const MAX_COMPOSE_FILE_BYTES = 1 << 20;
/** The YAML parser's guard against alias expansion bombs ("billion laughs"). */
const MAX_ALIAS_COUNT = 100;
/** Service names compose accepts. */
const SERVICE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
/** How a pinned image ends: a sha256 digest. */
const DIGEST_SUFFIX = /@sha256:[a-f0-9]{64}$/;

/** One service of a compose file. */
export interface ComposeService {
  /** Its key under `services`. */
  readonly name: string;
  /** Its `image`, as written. */
  readonly image: string;
  /** Its settings as plain data (aliases and `<<` merges resolved), in the file's key order. */
  readonly config: Readonly<Record<string, unknown>>;
  /** The same settings typed as gopkg.in/yaml.v3 types them: what `configHash` hashes. */
  readonly goConfig: GoMap;
}

/** A parsed and validated compose file. */
export interface ComposeFile {
  /** The file's name, used in every message. */
  readonly file: string;
  /** The services, in the file's order. */
  readonly services: readonly ComposeService[];
  /** The whole file as plain data. */
  readonly config: Readonly<Record<string, unknown>>;
  /**
   * The YAML document, which `formatComposeFile` writes: key order, comments, quoting and anchors of the
   * input survive. Read-only: the functions here change copies.
   */
  readonly doc: Document;
}

function invalid(file: string, path: string, message: string): BerthError {
  return new BerthError("invalid_input", path ? `${file}: ${path}: ${message}` : `${file}: ${message}`);
}

/** A path for messages: `services.web.image`, `services.web.labels["com.example.a"]`, `…command[1]`. */
function formatPath(path: readonly (string | number)[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else if (/^[A-Za-z0-9_][A-Za-z0-9_-]*$/.test(part)) out += out ? `.${part}` : part;
    else out += `[${JSON.stringify(part)}]`;
  }
  return out;
}

/** "a string", "a number", "a list", "a mapping", "null": what a value is, for messages. */
function describe(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "number" || typeof value === "bigint") return "a number";
  return `a ${typeof value}`;
}

/** Names for zod's type names. */
const ZOD_TYPE_NAMES: Record<string, string> = {
  object: "a mapping",
  array: "a list",
  string: "a string",
  number: "a number",
  integer: "an integer",
  boolean: "a boolean",
  null: "null",
  undefined: "nothing",
};

const zodErrorMap: z.ZodErrorMap = (issue, ctx) => {
  if (issue.code === z.ZodIssueCode.invalid_type) {
    if (issue.received === "undefined") return { message: "missing" };
    const expected = ZOD_TYPE_NAMES[issue.expected] ?? issue.expected;
    const received = ZOD_TYPE_NAMES[issue.received] ?? issue.received;
    return { message: `expected ${expected}, got ${received}` };
  }
  return { message: ctx.defaultError };
};

/** Checks a service's `labels`: a mapping of scalars, or a list of "key=value" strings. */
function checkLabels(labels: unknown, ctx: z.RefinementCtx): void {
  if (labels === undefined) return;
  if (Array.isArray(labels)) {
    labels.forEach((item, index) => {
      if (typeof item !== "string") {
        ctx.addIssue({
          code: "custom",
          path: ["labels", index],
          message: `expected a "key=value" string, got ${describe(item)}`,
        });
      }
    });
  } else if (labels !== null && typeof labels === "object") {
    for (const [key, value] of Object.entries(labels)) {
      if (value !== null && !["string", "number", "boolean"].includes(typeof value)) {
        ctx.addIssue({
          code: "custom",
          path: ["labels", key],
          message: `expected a string, got ${describe(value)}`,
        });
      }
    }
  } else {
    ctx.addIssue({
      code: "custom",
      path: ["labels"],
      message: `expected a mapping or a list of "key=value" strings, got ${describe(labels)}`,
    });
  }
}

const ServiceSchema = z.object({ image: z.string().min(1, "must not be empty").optional() }).passthrough()
  .superRefine((service, ctx) => {
    if (service.image === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["image"],
        message: service.build === undefined
          ? "missing: every service needs an image"
          : "missing: berth does not build images, so a service with `build` needs an `image` too",
      });
    }
    checkLabels(service.labels, ctx);
  });

/** `volumes`, `networks`, `configs`, `secrets`: names mapped to their settings (or nothing). */
const NamedSettings = z.record(z.record(z.unknown()).nullable()).nullable().optional();

const ComposeSchema = z.object({
  version: z.string().optional(),
  name: z.string().optional(),
  services: z.record(
    z.string().regex(
      SERVICE_NAME,
      'not a valid service name: compose wants letters, digits, "_", "." and "-", starting with a letter or digit',
    ),
    ServiceSchema,
  ).refine((services) => Object.keys(services).length > 0, "empty: an app needs at least one service"),
  volumes: NamedSettings,
  networks: NamedSettings,
  configs: NamedSettings,
  secrets: NamedSettings,
}).passthrough();

/**
 * Number scalars are written back as they were read (`0755` stays `0755`, `1e3` stays `1e3`): the YAML
 * library would otherwise write the value it parsed with the YAML 1.2 schema, and compose-go (yaml.v3)
 * reads `0755` as octal where YAML 1.2 reads 755.
 */
function keepNumberSource(tags: Tags): Tags {
  return tags.map((tag) => {
    if (typeof tag === "string" || tag.collection || !/:(int|float)$/.test(tag.tag)) return tag;
    const scalarTag = tag as ScalarTag;
    return {
      ...scalarTag,
      stringify(item, ctx, onComment, onChompKeep) {
        if (typeof item.source === "string" && item.source !== "" && (item.type ?? "PLAIN") === "PLAIN") {
          return item.source;
        }
        return scalarTag.stringify
          ? scalarTag.stringify(item, ctx, onComment, onChompKeep)
          : String(item.value);
      },
    };
  });
}

const PARSE_OPTIONS = { merge: true, uniqueKeys: true, prettyErrors: true, customTags: keepNumberSource };

/**
 * Parses and validates a compose file. Throws BerthError("invalid_input") naming the file, and where there
 * is one the service and field, for anything berth cannot run.
 */
export function parseComposeFile(bytes: Uint8Array, file: string): ComposeFile {
  if (bytes.length > MAX_COMPOSE_FILE_BYTES) {
    throw invalid(file, "", `${bytes.length} bytes, more than the ${MAX_COMPOSE_FILE_BYTES} (1 MiB) allowed`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw invalid(file, "", "not valid UTF-8");
  }
  const doc = YAML.parseDocument(text, PARSE_OPTIONS);
  // The parser's messages end their first line with "at line L, column C:" before a code excerpt.
  if (doc.errors.length > 0) throw invalid(file, "", doc.errors[0].message.split("\n")[0].replace(/:$/, ""));
  return fromDocument(doc, file);
}

/** Validates a document and builds the ComposeFile view of it. */
function fromDocument(doc: Document, file: string): ComposeFile {
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (/resource exhaustion/i.test(message)) {
      throw invalid(file, "", "too many alias expansions (refused as a resource exhaustion attack)");
    }
    throw invalid(file, "", message.split("\n")[0]);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw invalid(file, "", `expected a mapping at the top level, got ${describe(data)}`);
  }
  checkKeys(doc, doc.contents, [], file);
  const result = ComposeSchema.safeParse(data, { errorMap: zodErrorMap });
  if (!result.success) {
    const issue = result.error.issues[0];
    throw invalid(file, formatPath(issue.path), issue.message);
  }
  const config = data as Record<string, unknown>;
  const servicesData = config.services as Record<string, Record<string, unknown>>;
  const servicesNode = resolveNode(doc, lookup(doc, asMap(doc, doc.contents), "services"));
  const services = Object.keys(servicesData).map((name): ComposeService => {
    const node = resolveNode(doc, lookup(doc, asMap(doc, servicesNode), name));
    return {
      name,
      image: servicesData[name].image as string,
      config: servicesData[name],
      goConfig: goValue(doc, node) as GoMap,
    };
  });
  return { file, services, config, doc };
}

/**
 * Rejects mapping keys that compose-go would not take: it wants string keys, and yaml.v3 reads `1:`,
 * `true:` or `~:` as a number, a bool or null. Aliases are not followed: their anchors are checked where
 * they are defined.
 */
function checkKeys(doc: Document, node: unknown, path: (string | number)[], file: string): void {
  if (YAML.isSeq(node)) {
    node.items.forEach((item, index) => checkKeys(doc, item, [...path, index], file));
  } else if (YAML.isMap(node)) {
    for (const pair of node.items) {
      if (isMergeKey(pair.key)) continue;
      const key = YAML.isScalar(pair.key) || YAML.isAlias(pair.key)
        ? goValue(doc, pair.key as Node)
        : YAML.isCollection(pair.key)
        ? new Map()
        : null;
      if (typeof key !== "string") {
        const shown = YAML.isScalar(pair.key)
          ? ` ${JSON.stringify(String(pair.key.source ?? pair.key.value))}`
          : "";
        throw invalid(
          file,
          formatPath(path),
          `key${shown} is ${describeGo(key)}, but compose takes only string keys (quote it)`,
        );
      }
      checkKeys(doc, pair.value, [...path, key], file);
    }
  }
}

/** The images of the services, in the file's order. */
export function serviceImages(compose: ComposeFile): { service: string; image: string }[] {
  return compose.services.map((service) => ({ service: service.name, image: service.image }));
}

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
    if (pin === undefined) throw invalid(compose.file, where, `no pinned digest for "${service.image}"`);
    const parsed = parsePinned(pin);
    if (typeof parsed === "string") {
      throw invalid(compose.file, where, `the pin "${pin}" for "${service.image}" is not pinned: ${parsed}`);
    }
  }
  const doc = compose.doc.clone();
  for (const service of compose.services) {
    setOwnScalar(doc, ownServiceMap(doc, service.name), "image", pins.get(service.image)!);
  }
  return fromDocument(doc, compose.file);
}

/**
 * Characters not to write raw: those outside YAML's c-printable (yaml.v3's reader refuses them), and NEL,
 * LS, PS and BOM, which yaml.v3 (YAML 1.1) reads as line breaks or a byte order mark.
 */
const NOT_PRINTABLE =
  /[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\u{10000}-\u{10ffff}]/u;

/** The compose file as YAML: deterministic, keeping the input's key order, comments and quoting. */
export function formatComposeFile(compose: ComposeFile): Uint8Array {
  const doc = compose.doc.clone();
  // The YAML library writes characters such as U+0080 raw even inside double quotes, where compose-go's
  // reader refuses them: such strings are double-quoted and those characters escaped.
  let escape = false;
  YAML.visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value === "string" && NOT_PRINTABLE.test(node.value)) {
        node.type = "QUOTE_DOUBLE";
        escape = true;
      }
    },
  });
  let text = doc.toString({ lineWidth: 0, flowCollectionPadding: false });
  if (escape) {
    text = text.replace(
      new RegExp(NOT_PRINTABLE.source, "gu"),
      (char) => `\\u${char.codePointAt(0)!.toString(16).padStart(4, "0")}`,
    );
  }
  return new TextEncoder().encode(text);
}

/**
 * composeapp's config hash of a service: lower-case hex sha256 of the service's mapping as gopkg.in/yaml.v3
 * marshals it (see the top of this file), without any config-hash label it already has.
 */
export function configHash(service: ComposeService): string {
  const config = new Map(service.goConfig);
  const labels = config.get("labels");
  if (labels instanceof Map) {
    const rest = new Map(labels);
    rest.delete(CONFIG_HASH_LABEL);
    if (rest.size > 0) config.set("labels", rest);
    else config.delete("labels");
  } else if (Array.isArray(labels)) {
    const rest = labels.filter((item) =>
      !(typeof item === "string" && (item === CONFIG_HASH_LABEL || item.startsWith(`${CONFIG_HASH_LABEL}=`)))
    );
    if (rest.length > 0) config.set("labels", rest);
    else config.delete("labels");
  }
  return createHash("sha256").update(marshalGoYaml(config)).digest("hex");
}

/**
 * Sets `io.compose-spec.config-hash` on every service to its `configHash`, in the form its labels have (a
 * mapping, or a list of "key=value"; a service without labels gets a mapping). Pin first: the hash covers
 * the image.
 */
export function labelServices(compose: ComposeFile): ComposeFile {
  const hashes = compose.services.map((service) => configHash(service));
  const doc = compose.doc.clone();
  compose.services.forEach((service, index) => {
    setOwnLabel(doc, ownServiceMap(doc, service.name), CONFIG_HASH_LABEL, hashes[index]);
  });
  return fromDocument(doc, compose.file);
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
      throw invalid(
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
    if (local === undefined) throw invalid(compose.file, where, `no local reference for "${image}"`);
    let ref: Reference;
    try {
      ref = parseReference(local);
    } catch (error) {
      throw invalid(compose.file, where, error instanceof Error ? error.message : String(error));
    }
    if (ref.digest !== undefined) {
      throw invalid(
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
  return fromDocument(doc, compose.file);
}

// ---------------------------------------------------------------------------------------------------------
// Document editing. Values that reach a service through an alias or a `<<` merge are given to the service
// as its own copy before they change, so that other services sharing them keep theirs.

function asMap(doc: Document, node: unknown): YAMLMap {
  const resolved = resolveNode(doc, node);
  if (!YAML.isMap(resolved)) throw new Error("expected a YAML mapping (the file was validated)");
  return resolved;
}

/** Follows aliases to the node they name. */
function resolveNode(doc: Document, node: unknown): unknown {
  let current = node;
  for (let hops = 0; YAML.isAlias(current); hops++) {
    if (hops > 100) throw new Error("alias loop");
    current = current.resolve(doc);
  }
  return current;
}

function isMergeKey(key: unknown): boolean {
  return YAML.isScalar(key) && (key.type ?? "PLAIN") === "PLAIN" && key.source === "<<" &&
    (key.tag === undefined || key.tag === "tag:yaml.org,2002:merge");
}

function keyText(key: unknown): string | undefined {
  if (!YAML.isScalar(key)) return undefined;
  return typeof key.value === "symbol" ? undefined : String(key.value);
}

/** The pair that sets `key` in `map` itself (not through a merge). */
function ownPair(map: YAMLMap, key: string): Pair | undefined {
  return map.items.find((pair) => !isMergeKey(pair.key) && keyText(pair.key) === key);
}

/** The merge sources of a mapping, in order (earlier ones win). */
function mergeSources(doc: Document, map: YAMLMap): YAMLMap[] {
  const sources: YAMLMap[] = [];
  for (const pair of map.items) {
    if (!isMergeKey(pair.key)) continue;
    const value = resolveNode(doc, pair.value);
    for (const item of YAML.isSeq(value) ? value.items : [value]) {
      const source = resolveNode(doc, item);
      if (YAML.isMap(source)) sources.push(source);
    }
  }
  return sources;
}

/** The node for `key` in `map`: its own pair's value, else the first merge source that has it. */
function lookup(doc: Document, map: YAMLMap, key: string): unknown {
  const own = ownPair(map, key);
  if (own) return own.value;
  for (const source of mergeSources(doc, map)) {
    const found = lookup(doc, source, key);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** A deep copy of a node without its anchors, to stand on its own in another place. */
function detachedCopy(doc: Document, node: unknown): Node {
  const resolved = resolveNode(doc, node);
  if (!YAML.isNode(resolved)) return doc.createNode(resolved ?? null);
  const copy = resolved.clone() as Node;
  YAML.visit(copy, {
    Node(_key, item) {
      if ("anchor" in item) delete item.anchor;
    },
  });
  return copy;
}

/** The mapping of service `name`, made the service's own when it came through an alias or a merge. */
function ownServiceMap(doc: Document, name: string): YAMLMap {
  const services = asMap(doc, lookup(doc, asMap(doc, doc.contents), "services"));
  const pair = ownPair(services, name);
  if (!pair) {
    const copy = detachedCopy(doc, lookup(doc, services, name)) as YAMLMap;
    services.add(doc.createPair(name, copy));
    return copy;
  }
  if (!YAML.isMap(pair.value)) pair.value = detachedCopy(doc, pair.value);
  return pair.value as YAMLMap;
}

/**
 * Sets `key` to the string `value` in the service's own mapping. A scalar already there is changed in
 * place, keeping its comments, style and anchor (aliases of an anchored image name follow: they named the
 * same image, so they get the same replacement).
 */
function setOwnScalar(doc: Document, map: YAMLMap, key: string, value: string): void {
  const pair = ownPair(map, key);
  if (pair && YAML.isScalar(pair.value)) {
    const scalar = pair.value as Scalar;
    scalar.value = value;
    delete scalar.source;
    delete scalar.format;
    if (scalar.tag && scalar.tag !== "tag:yaml.org,2002:str") delete scalar.tag;
  } else if (pair) {
    pair.value = doc.createNode(value);
  } else {
    map.add(doc.createPair(key, value));
  }
}

/** Sets one label in the service's own labels, in their form (mapping or list of "key=value"). */
function setOwnLabel(doc: Document, map: YAMLMap, key: string, value: string): void {
  let labels: unknown;
  const pair = ownPair(map, "labels");
  if (pair) {
    if (YAML.isAlias(pair.value) || (!YAML.isMap(pair.value) && !YAML.isSeq(pair.value))) {
      pair.value = YAML.isAlias(pair.value) ? detachedCopy(doc, pair.value) : new YAML.YAMLMap();
    }
    labels = pair.value;
  } else {
    const inherited = lookup(doc, map, "labels");
    labels = inherited === undefined ? new YAML.YAMLMap() : detachedCopy(doc, inherited);
    map.add(doc.createPair("labels", labels));
  }
  if (YAML.isMap(labels)) {
    const own = ownPair(labels, key);
    if (own) own.value = doc.createNode(value);
    else labels.add(doc.createPair(key, value));
  } else if (YAML.isSeq(labels)) {
    const index = labels.items.findIndex((item) => {
      const text = resolveNode(doc, item);
      return YAML.isScalar(text) && typeof text.value === "string" &&
        (text.value === key || text.value.startsWith(`${key}=`));
    });
    const entry = doc.createNode(`${key}=${value}`);
    if (index >= 0) labels.items[index] = entry;
    else labels.items.push(entry);
  }
}

// ---------------------------------------------------------------------------------------------------------
// The service as gopkg.in/yaml.v3 sees it, and yaml.v3's Marshal of it.

/** A Go int (int/int64/uint64 alike: only its decimal form matters here). */
export class GoInt {
  constructor(readonly value: bigint) {}
}
/** A Go float64. */
export class GoFloat {
  constructor(readonly value: number) {}
}
/** A time.Time, kept as its RFC 3339 (nano) form, which is how yaml.v3 writes it. */
export class GoTime {
  constructor(readonly text: string) {}
}
/** A value decoded by yaml.v3 into `interface{}`. */
export type GoValue = null | boolean | string | GoInt | GoFloat | GoTime | GoValue[] | GoMap;
/** A `map[string]interface{}`. */
export type GoMap = Map<string, GoValue>;

function describeGo(value: GoValue | undefined): string {
  if (value === null || value === undefined) return "null";
  if (value instanceof GoInt || value instanceof GoFloat) return "a number";
  if (value instanceof GoTime) return "a timestamp";
  if (typeof value === "boolean") return "a boolean";
  if (value instanceof Map) return "a mapping";
  if (Array.isArray(value)) return "a list";
  return "a string";
}

/** A node as yaml.v3 decodes it into `interface{}` (aliases and merge keys resolved). */
function goValue(doc: Document, node: unknown): GoValue {
  const resolved = resolveNode(doc, node);
  if (resolved === null || resolved === undefined) return null;
  if (YAML.isMap(resolved)) {
    const out: GoMap = new Map();
    for (const pair of resolved.items) {
      if (isMergeKey(pair.key)) continue;
      const key = goValue(doc, pair.key);
      out.set(typeof key === "string" ? key : String(key), goValue(doc, pair.value));
    }
    // Keys of the mapping itself win over merged ones, and earlier merge sources over later ones.
    for (const source of mergeSources(doc, resolved)) {
      for (const [key, value] of goValue(doc, source) as GoMap) if (!out.has(key)) out.set(key, value);
    }
    return out;
  }
  if (YAML.isSeq(resolved)) return resolved.items.map((item) => goValue(doc, item));
  if (YAML.isScalar(resolved)) return goScalar(resolved);
  return fromJs((resolved as { toJSON?: () => unknown }).toJSON?.() ?? null);
}

/** A plain JS value (from a node berth created, which has no source text) as Go would hold it. */
function fromJs(value: unknown): GoValue {
  if (value === null || value === undefined) return null;
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "bigint") return new GoInt(value);
  if (typeof value === "number") {
    return Number.isInteger(value) ? new GoInt(BigInt(value)) : new GoFloat(value);
  }
  if (Array.isArray(value)) return value.map(fromJs);
  if (typeof value === "object") return new Map(Object.entries(value).map(([k, v]) => [k, fromJs(v)]));
  return String(value);
}

function goScalar(scalar: Scalar): GoValue {
  const text = scalar.source;
  if (typeof text !== "string") return fromJs(scalar.value);
  const tag = scalar.tag;
  // Explicit !!str, the non-specific "!" and application tags (yaml.v3 cannot resolve those) give strings.
  if (tag && (!tag.startsWith("tag:yaml.org,2002:") || tag === "tag:yaml.org,2002:str")) return text;
  if ((scalar.type ?? "PLAIN") !== "PLAIN" && !tag) return text;
  return resolvePlain(text).value;
}

const RESOLVE_MAP = new Map<string, GoValue>([
  ...["true", "True", "TRUE"].map((s): [string, GoValue] => [s, true]),
  ...["false", "False", "FALSE"].map((s): [string, GoValue] => [s, false]),
  ...["", "~", "null", "Null", "NULL"].map((s): [string, GoValue] => [s, null]),
  ...[".nan", ".NaN", ".NAN"].map((s): [string, GoValue] => [s, new GoFloat(NaN)]),
  ...[".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"].map((
    s,
  ): [string, GoValue] => [s, new GoFloat(Infinity)]),
  ...["-.inf", "-.Inf", "-.INF"].map((s): [string, GoValue] => [s, new GoFloat(-Infinity)]),
]);

const YAML_STYLE_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;

/** yaml.v3's resolve() of an untagged plain scalar. */
function resolvePlain(text: string): { tag: "str" | "other"; value: GoValue } {
  const first = text === "" ? "" : text[0];
  const hint = first === ""
    ? "M"
    : "+-".includes(first)
    ? "S"
    : "0123456789".includes(first)
    ? "D"
    : "yYnNtTfFoO~".includes(first)
    ? "M"
    : first === "."
    ? "."
    : "";
  if (hint === "") return { tag: "str", value: text };
  if (RESOLVE_MAP.has(text)) return { tag: "other", value: RESOLVE_MAP.get(text)! };
  if (hint === ".") {
    if (/^\.[0-9]+([eE][-+]?[0-9]+)?$/.test(text)) {
      const float = Number(text);
      if (Number.isFinite(float)) return { tag: "other", value: new GoFloat(float) };
    }
    return { tag: "str", value: text };
  }
  if (hint === "D" || hint === "S") {
    const time = parseGoTimestamp(text);
    if (time !== undefined) return { tag: "other", value: new GoTime(time) };
    const plain = text.replaceAll("_", "");
    const int = parseGoInt(plain, true) ?? parseGoInt(plain, false);
    if (int !== undefined) return { tag: "other", value: new GoInt(int) };
    if (YAML_STYLE_FLOAT.test(plain)) {
      const float = Number(plain);
      if (Number.isFinite(float)) return { tag: "other", value: new GoFloat(float) };
    }
    // yaml.v3's own 0b/0o branches only accept what strconv's base-0 parse above already did.
  }
  return { tag: "str", value: text };
}

/** strconv.ParseInt(s, 0, 64) (signed) or strconv.ParseUint(s, 0, 64); undefined where Go fails. */
function parseGoInt(s: string, signed: boolean): bigint | undefined {
  let body = s;
  let negative = false;
  if (signed && (body[0] === "+" || body[0] === "-")) {
    negative = body[0] === "-";
    body = body.slice(1);
  }
  if (body === "") return undefined;
  let base = 10;
  if (body[0] === "0") {
    const prefix = body.length >= 3 ? body[1].toLowerCase() : "";
    if (prefix === "b" || prefix === "o" || prefix === "x") {
      base = prefix === "b" ? 2 : prefix === "o" ? 8 : 16;
      body = body.slice(2);
    } else {
      base = 8;
      body = body.slice(1);
    }
  }
  let value = 0n;
  for (const char of body) {
    const digit = parseInt(char, 36);
    if (Number.isNaN(digit) || digit >= base) return undefined;
    value = value * BigInt(base) + BigInt(digit);
    if (value > 0xffffffffffffffffn) return undefined;
  }
  if (!signed) return value;
  if (negative ? value > 1n << 63n : value >= 1n << 63n) return undefined;
  return negative ? -value : value;
}

/**
 * yaml.v3's parseTimestamp (Go's time.Parse with "2006-1-2T15:4:5.999999999Z07:00", the same with "t",
 * "2006-1-2 15:4:5.999999999" and "2006-1-2"; at most 9 fraction digits, as Go 1.19's Parse takes),
 * returned as Go's RFC3339Nano text, or undefined.
 */
function parseGoTimestamp(text: string): string | undefined {
  const match = text.match(
    /^(\d{4})-(\d{1,2})-(\d{1,2})(?:([Tt]| +)(\d{1,2}):(\d{1,2}):(\d{1,2})(?:[.,](\d{1,9}))?(Z|[+-]\d{2}:\d{2})?)?$/,
  );
  if (!match) return undefined;
  const [, y, mo, d, sep, h = "0", mi = "0", s = "0", fraction, zone] = match;
  // A space in Go's layout matches one or more spaces; only the T forms carry a zone.
  if (sep?.startsWith(" ") ? zone !== undefined : sep !== undefined && zone === undefined) return undefined;
  const year = Number(y), month = Number(mo), day = Number(d);
  const hour = Number(h), minute = Number(mi), second = Number(s);
  const daysInMonth = new Date(Date.UTC(2000, month, 0)).getUTCDate() -
    (month === 2 && !(year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)) ? 1 : 0);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  let offset = "Z";
  if (zone && zone !== "Z" && !/^[+-]00:00$/.test(zone)) offset = zone;
  const nanos = (fraction ?? "").padEnd(9, "0").replace(/0+$/, "");
  const two = (n: number) => String(n).padStart(2, "0");
  return `${y}-${two(month)}-${two(day)}T${two(hour)}:${two(minute)}:${two(second)}${
    nanos ? `.${nanos}` : ""
  }${offset}`;
}

/** strconv.FormatFloat(f, 'g', -1, 64), with yaml.v3's spellings of the infinities and NaN. */
function formatGoFloat(f: number): string {
  if (Number.isNaN(f)) return ".nan";
  if (f === Infinity) return ".inf";
  if (f === -Infinity) return "-.inf";
  if (f === 0) return Object.is(f, -0) ? "-0" : "0";
  const sign = f < 0 ? "-" : "";
  const [mantissa, exponent] = Math.abs(f).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const exp = Number(exponent);
  if (exp < -4 || exp >= 6) {
    const abs = Math.abs(exp);
    return `${sign}${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ""}e${exp < 0 ? "-" : "+"}${
      abs < 10 ? `0${abs}` : abs
    }`;
  }
  const point = exp + 1;
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${"0".repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** yaml.v3's isBase60Float: strings it quotes so that YAML 1.1 readers do not take them for numbers. */
function isBase60Float(s: string): boolean {
  return /^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$/.test(s);
}

const OLD_BOOLS = new Set([
  "y",
  "Y",
  "yes",
  "Yes",
  "YES",
  "on",
  "On",
  "ON",
  "n",
  "N",
  "no",
  "No",
  "NO",
  "off",
  "Off",
  "OFF",
]);

/** yaml.v3's sorter.go keyList.Less for two string keys: letters and digit runs in "natural" order. */
function goKeyLess(a: string, b: string): boolean {
  const ar = Array.from(a, (c) => c.codePointAt(0)!);
  const br = Array.from(b, (c) => c.codePointAt(0)!);
  const isLetter = (c: number) => /\p{L}/u.test(String.fromCodePoint(c));
  const isDigit = (c: number) => /\p{Nd}/u.test(String.fromCodePoint(c));
  let digits = false;
  for (let i = 0; i < ar.length && i < br.length; i++) {
    if (ar[i] === br[i]) {
      digits = isDigit(ar[i]);
      continue;
    }
    const al = isLetter(ar[i]);
    const bl = isLetter(br[i]);
    if (al && bl) return ar[i] < br[i];
    if (al || bl) return digits ? al : bl;
    let an = 0n;
    let bn = 0n;
    if (ar[i] === 48 || br[i] === 48) {
      for (let j = i - 1; j >= 0 && isDigit(ar[j]); j--) {
        if (ar[j] !== 48) {
          an = 1n;
          bn = 1n;
          break;
        }
      }
    }
    let ai = i;
    for (; ai < ar.length && isDigit(ar[ai]); ai++) an = BigInt.asIntN(64, an * 10n + BigInt(ar[ai] - 48));
    let bi = i;
    for (; bi < br.length && isDigit(br[bi]); bi++) bn = BigInt.asIntN(64, bn * 10n + BigInt(br[bi] - 48));
    if (an !== bn) return an < bn;
    if (ai !== bi) return ai < bi;
    return ar[i] < br[i];
  }
  return ar.length < br.length;
}

/** libyaml's is_printable, for a code point. */
function isPrintable(c: number): boolean {
  return c === 0x0a || (c >= 0x20 && c <= 0x7e) || (c >= 0xa0 && c <= 0xd7ff) ||
    (c >= 0xe000 && c <= 0xfffd && c !== 0xfeff);
}
function isBreak(c: number | undefined): boolean {
  return c === 0x0d || c === 0x0a || c === 0x85 || c === 0x2028 || c === 0x2029;
}
function isBlank(c: number | undefined): boolean {
  return c === 0x20 || c === 0x09;
}

/** libyaml's analyze_scalar: which styles can carry the string. */
function analyzeScalar(cps: number[]) {
  if (cps.length === 0) {
    return { multiline: false, blockPlain: true, singleQuoted: true, block: false };
  }
  let blockIndicators = false;
  let lineBreaks = false;
  let special = false;
  let tabs = false;
  let leadingSpace = false, leadingBreak = false, trailingSpace = false, trailingBreak = false;
  let breakSpace = false, spaceBreak = false;
  let previousSpace = false, previousBreak = false;
  let precededByWhitespace = true;
  const head = String.fromCodePoint(...cps.slice(0, 3));
  if (head === "---" || head === "...") blockIndicators = true;
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i];
    const followedByWhitespace = i + 1 >= cps.length || isBlank(cps[i + 1]);
    const ch = String.fromCodePoint(c);
    if (i === 0) {
      if ("#,[]{}&*!|>'\"%@`".includes(ch)) blockIndicators = true;
      else if ((ch === "?" || ch === ":" || ch === "-") && followedByWhitespace) blockIndicators = true;
    } else if (ch === ":" && followedByWhitespace) {
      blockIndicators = true;
    } else if (ch === "#" && precededByWhitespace) {
      blockIndicators = true;
    }
    if (c === 0x09) tabs = true;
    else if (!isPrintable(c)) special = true;
    if (c === 0x20) {
      if (i === 0) leadingSpace = true;
      if (i === cps.length - 1) trailingSpace = true;
      if (previousBreak) breakSpace = true;
      previousSpace = true;
      previousBreak = false;
    } else if (isBreak(c)) {
      lineBreaks = true;
      if (i === 0) leadingBreak = true;
      if (i === cps.length - 1) trailingBreak = true;
      if (previousSpace) spaceBreak = true;
      previousSpace = false;
      previousBreak = true;
    } else {
      previousSpace = false;
      previousBreak = false;
    }
    precededByWhitespace = isBlank(c) || isBreak(c) || c === 0;
  }
  let blockPlain = true, singleQuoted = true, block = true;
  if (leadingSpace || leadingBreak || trailingSpace || trailingBreak) blockPlain = false;
  if (trailingSpace) block = false;
  if (breakSpace) blockPlain = singleQuoted = false;
  if (spaceBreak || tabs || special) blockPlain = singleQuoted = false;
  if (spaceBreak || special) block = false;
  if (lineBreaks || blockIndicators) blockPlain = false;
  return { multiline: lineBreaks, blockPlain, singleQuoted, block };
}

type Style = "plain" | "single" | "double" | "literal";

const BEST_INDENT = 4;

/** A port of the parts of libyaml's emitter (as changed in yaml.v3) that a decoded map can reach. */
class GoYamlEmitter {
  out = "";
  column = 0;
  whitespace = true;
  indention = true;

  put(text: string): void {
    this.out += text;
    this.column += Array.from(text).length;
  }
  putBreak(): void {
    this.out += "\n";
    this.column = 0;
    this.indention = true;
  }
  writeBreak(c: number): void {
    if (c === 0x0a) {
      this.putBreak();
    } else {
      this.out += String.fromCodePoint(c);
      this.column = 0;
      this.indention = true;
    }
  }
  writeIndent(indent: number): void {
    const at = Math.max(indent, 0);
    if (!this.indention || this.column > at || (this.column === at && !this.whitespace)) this.putBreak();
    while (this.column < at) this.put(" ");
    this.whitespace = true;
  }
  indicator(text: string, needWhitespace: boolean, isWhitespace: boolean, isIndention: boolean): void {
    if (needWhitespace && !this.whitespace) this.put(" ");
    this.put(text);
    this.whitespace = isWhitespace;
    this.indention = this.indention && isIndention;
  }

  /** increase_indent: `indent` is the emitter's current one, `inSequence` whether the node is a list item. */
  static deeper(indent: number, inSequence: boolean, flow: boolean): number {
    if (indent < 0) return flow ? BEST_INDENT : 0;
    if (inSequence) return indent + 2;
    return BEST_INDENT * Math.floor((indent + BEST_INDENT) / BEST_INDENT);
  }

  document(root: GoValue): string {
    this.node(root, -1, false, false);
    this.writeIndent(0);
    return this.out;
  }

  node(value: GoValue, indent: number, inSequence: boolean, simpleKey: boolean): void {
    if (value instanceof Map || Array.isArray(value)) {
      const empty = value instanceof Map ? value.size === 0 : value.length === 0;
      if (empty) {
        this.indicator(value instanceof Map ? "{" : "[", true, true, false);
        this.indicator(value instanceof Map ? "}" : "]", false, false, false);
        return;
      }
      const inner = GoYamlEmitter.deeper(indent, inSequence, false);
      if (value instanceof Map) this.mapping(value, inner);
      else this.sequence(value, inner);
      return;
    }
    const [text, style] = scalarText(value);
    this.scalar(text, style, GoYamlEmitter.deeper(indent, inSequence, true), simpleKey);
  }

  mapping(map: GoMap, indent: number): void {
    const keys = [...map.keys()].sort((a, b) => goKeyLess(a, b) ? -1 : goKeyLess(b, a) ? 1 : 0);
    for (const key of keys) {
      this.writeIndent(indent);
      const cps = Array.from(key, (c) => c.codePointAt(0)!);
      const simple = !cps.some(isBreak) && new TextEncoder().encode(key).length <= 128;
      if (simple) {
        this.node(key, indent, false, true);
        this.indicator(":", false, false, false);
      } else {
        this.indicator("?", true, false, true);
        this.node(key, indent, false, false);
        this.writeIndent(indent);
        this.indicator(":", true, false, true);
      }
      this.node(map.get(key)!, indent, false, false);
    }
  }

  sequence(items: GoValue[], indent: number): void {
    for (const item of items) {
      this.writeIndent(indent);
      this.indicator("-", true, false, true);
      this.node(item, indent, true, false);
    }
  }

  scalar(text: string, requested: Style, indent: number, simpleKey: boolean): void {
    const cps = Array.from(text, (c) => c.codePointAt(0)!);
    const analysis = analyzeScalar(cps);
    let style = requested;
    if (simpleKey && analysis.multiline) style = "double";
    if (style === "plain" && (!analysis.blockPlain || (cps.length === 0 && simpleKey))) style = "single";
    if (style === "single" && !analysis.singleQuoted) style = "double";
    if (style === "literal" && (!analysis.block || simpleKey)) style = "double";
    if (style === "plain") {
      if (cps.length > 0 && !this.whitespace) this.put(" ");
      this.put(text);
      if (cps.length > 0) this.whitespace = false;
      this.indention = false;
    } else if (style === "single") {
      this.singleQuoted(cps, indent);
    } else if (style === "double") {
      this.doubleQuoted(cps);
    } else {
      this.literal(cps, indent);
    }
  }

  singleQuoted(cps: number[], indent: number): void {
    this.indicator("'", true, false, false);
    let breaks = false;
    for (const c of cps) {
      if (c === 0x20) {
        this.put(" ");
      } else if (isBreak(c)) {
        if (!breaks && c === 0x0a) this.putBreak();
        this.writeBreak(c);
        breaks = true;
      } else {
        if (breaks) this.writeIndent(indent);
        if (c === 0x27) this.put("'");
        this.put(String.fromCodePoint(c));
        this.indention = false;
        breaks = false;
      }
    }
    this.indicator("'", false, false, false);
    this.whitespace = false;
    this.indention = false;
  }

  doubleQuoted(cps: number[]): void {
    this.indicator('"', true, false, false);
    const bom = cps[0] === 0xfeff; // libyaml's is_bom looks at the start of the value, whatever the position
    const named: Record<number, string> = {
      0x00: "0",
      0x07: "a",
      0x08: "b",
      0x09: "t",
      0x0a: "n",
      0x0b: "v",
      0x0c: "f",
      0x0d: "r",
      0x1b: "e",
      0x22: '"',
      0x5c: "\\",
      0x85: "N",
      0xa0: "_",
      0x2028: "L",
      0x2029: "P",
    };
    for (const c of cps) {
      if (!isPrintable(c) || bom || isBreak(c) || c === 0x22 || c === 0x5c) {
        const escape = named[c] ??
          (c <= 0xff
            ? `x${c.toString(16).toUpperCase().padStart(2, "0")}`
            : c <= 0xffff
            ? `u${c.toString(16).toUpperCase().padStart(4, "0")}`
            : `U${c.toString(16).toUpperCase().padStart(8, "0")}`);
        this.put(`\\${escape}`);
      } else {
        this.put(String.fromCodePoint(c));
      }
    }
    this.indicator('"', false, false, false);
    this.whitespace = false;
    this.indention = false;
  }

  literal(cps: number[], indent: number): void {
    this.indicator("|", true, false, false);
    if (cps[0] === 0x20 || isBreak(cps[0])) this.indicator(String(BEST_INDENT), false, false, false);
    const last = cps.length - 1;
    let chomp = "";
    if (!isBreak(cps[last])) chomp = "-";
    else if (last === 0 || isBreak(cps[last - 1])) chomp = "+";
    if (chomp) this.indicator(chomp, false, false, false);
    this.whitespace = true;
    let breaks = true;
    for (const c of cps) {
      if (isBreak(c)) {
        this.writeBreak(c);
        breaks = true;
      } else {
        if (breaks) this.writeIndent(indent);
        this.put(String.fromCodePoint(c));
        this.indention = false;
        breaks = false;
      }
    }
  }
}

/** The text and requested style yaml.v3's encoder gives a scalar value (encode.go). */
function scalarText(value: GoValue): [string, Style] {
  if (value === null) return ["null", "plain"];
  if (typeof value === "boolean") return [value ? "true" : "false", "plain"];
  if (value instanceof GoInt) return [value.value.toString(), "plain"];
  if (value instanceof GoFloat) return [formatGoFloat(value.value), "plain"];
  if (value instanceof GoTime) return [value.text, "plain"];
  const text = value as string;
  if (text.includes("\n")) return [text, "literal"];
  const plainOk = resolvePlain(text).tag === "str" && !isBase60Float(text) && !OLD_BOOLS.has(text);
  return [text, plainOk ? "plain" : "double"];
}

/** gopkg.in/yaml.v3's `yaml.Marshal` of a `map[string]interface{}` decoded by yaml.v3. */
export function marshalGoYaml(value: GoMap): string {
  return new GoYamlEmitter().document(value);
}
