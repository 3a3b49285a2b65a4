/**
 * The compose file of a berth app bundle: read (UTF-8, at most 1 MiB, no alias bombs), validated against
 * what compose-go would take, and written back deterministically. The document is kept, so that key order,
 * comments, quoting and anchors of the input survive every rewrite (see compose_pin.ts, config_hash.ts).
 *
 * compose-go v1 reads the file with gopkg.in/yaml.v3, which differs from the YAML 1.2 library used here:
 * numbers are written back as they were read, keys that yaml.v3 takes for numbers, booleans or null are
 * refused, and each service is also kept as yaml.v3 decodes it (util/yaml_v3_decode.ts).
 */
import YAML from "yaml";
import type { Document, Node, ScalarTag, Tags } from "yaml";
import { asMap, isMergeKey, lookup, resolveNode } from "../util/yaml_nodes.ts";
import { describeGoValue, type GoMap, goValue } from "../util/yaml_v3_decode.ts";
import { composeErrorMap, ComposeSchema, describe, formatPath, invalidCompose } from "./compose_schema.ts";

/** The largest compose file berth reads. */
export const MAX_COMPOSE_FILE_BYTES = 1 << 20;
/** The YAML parser's guard against alias expansion bombs ("billion laughs"). */
const MAX_ALIAS_COUNT = 100;

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
   * input survive. Read-only: rewrites change copies.
   */
  readonly doc: Document;
}

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
    throw invalidCompose(
      file,
      "",
      `${bytes.length} bytes, more than the ${MAX_COMPOSE_FILE_BYTES} (1 MiB) allowed`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw invalidCompose(file, "", "not valid UTF-8");
  }
  const doc = YAML.parseDocument(text, PARSE_OPTIONS);
  // The parser's messages end their first line with "at line L, column C:" before a code excerpt.
  if (doc.errors.length > 0) {
    throw invalidCompose(file, "", doc.errors[0].message.split("\n")[0].replace(/:$/, ""));
  }
  return composeFromDocument(doc, file);
}

/** Validates a document (a parsed file or an edited copy) and builds its ComposeFile view; throws as parseComposeFile. */
export function composeFromDocument(doc: Document, file: string): ComposeFile {
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (/resource exhaustion/i.test(message)) {
      throw invalidCompose(file, "", "too many alias expansions (refused as a resource exhaustion attack)");
    }
    throw invalidCompose(file, "", message.split("\n")[0]);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw invalidCompose(file, "", `expected a mapping at the top level, got ${describe(data)}`);
  }
  checkKeys(doc, doc.contents, [], file);
  const result = ComposeSchema.safeParse(data, { errorMap: composeErrorMap });
  if (!result.success) {
    const issue = result.error.issues[0];
    throw invalidCompose(file, formatPath(issue.path), issue.message);
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
        throw invalidCompose(
          file,
          formatPath(path),
          `key${shown} is ${describeGoValue(key)}, but compose takes only string keys (quote it)`,
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
