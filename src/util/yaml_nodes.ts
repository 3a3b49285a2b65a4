/**
 * Reading and copying the nodes of the `yaml` library's documents the way YAML's merge keys and aliases
 * mean them: what a mapping holds, whether it is set there or merged in, and copies that stand on their own.
 */
import YAML from "yaml";
import type { Document, Node, Pair, YAMLMap } from "yaml";

/** The mapping `node` is or names through aliases; throws when it is not one (callers validated first). */
export function asMap(doc: Document, node: unknown): YAMLMap {
  const resolved = resolveNode(doc, node);
  if (!YAML.isMap(resolved)) throw new Error("expected a YAML mapping (the file was validated)");
  return resolved;
}

/** Follows aliases to the node they name; throws on an alias loop. */
export function resolveNode(doc: Document, node: unknown): unknown {
  let current = node;
  for (let hops = 0; YAML.isAlias(current); hops++) {
    if (hops > 100) throw new Error("alias loop");
    current = current.resolve(doc);
  }
  return current;
}

/** Whether a mapping key is the merge key `<<` (plain, untagged or tagged !!merge). */
export function isMergeKey(key: unknown): boolean {
  return YAML.isScalar(key) && (key.type ?? "PLAIN") === "PLAIN" && key.source === "<<" &&
    (key.tag === undefined || key.tag === "tag:yaml.org,2002:merge");
}

/** A scalar key's text; undefined for any other key. */
function keyText(key: unknown): string | undefined {
  if (!YAML.isScalar(key)) return undefined;
  return typeof key.value === "symbol" ? undefined : String(key.value);
}

/** The pair that sets `key` in `map` itself (not through a merge). */
export function ownPair(map: YAMLMap, key: string): Pair | undefined {
  return map.items.find((pair) => !isMergeKey(pair.key) && keyText(pair.key) === key);
}

/** The merge sources of a mapping, in order (earlier ones win). */
export function mergeSources(doc: Document, map: YAMLMap): YAMLMap[] {
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
export function lookup(doc: Document, map: YAMLMap, key: string): unknown {
  const own = ownPair(map, key);
  if (own) return own.value;
  for (const source of mergeSources(doc, map)) {
    const found = lookup(doc, source, key);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** A deep copy of a node without its anchors, to stand on its own in another place. */
export function detachedCopy(doc: Document, node: unknown): Node {
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
