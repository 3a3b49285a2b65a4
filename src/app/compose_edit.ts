/**
 * Edits of one service in a compose document. Values that reach a service through an alias or a `<<` merge
 * are given to the service as its own copy before they change, so that other services sharing them keep
 * theirs.
 */
import YAML from "yaml";
import type { Document, Scalar, YAMLMap } from "yaml";
import {
  asMap,
  detachedCopy,
  isMergeKey,
  lookup,
  mergeSources,
  ownPair,
  resolveNode,
} from "../util/yaml_nodes.ts";

/** The mapping of service `name`, made the service's own when it came through an alias or a merge. */
export function ownServiceMap(doc: Document, name: string): YAMLMap {
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
export function setOwnScalar(doc: Document, map: YAMLMap, key: string, value: string): void {
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

/**
 * The service's own labels node (a mapping or a list of "key=value"), copied into the service when it came
 * through an alias or a merge; an empty mapping is added when it has none.
 */
export function ownLabels(doc: Document, map: YAMLMap): unknown {
  const pair = ownPair(map, "labels");
  if (pair) {
    if (YAML.isAlias(pair.value) || (!YAML.isMap(pair.value) && !YAML.isSeq(pair.value))) {
      pair.value = YAML.isAlias(pair.value) ? detachedCopy(doc, pair.value) : new YAML.YAMLMap();
    }
    return pair.value;
  }
  const inherited = lookup(doc, map, "labels");
  const labels = inherited === undefined ? new YAML.YAMLMap() : detachedCopy(doc, inherited);
  map.add(doc.createPair("labels", labels));
  return labels;
}

/** Sets one label in the service's own labels, in their form (mapping or list of "key=value"). */
export function setOwnLabel(doc: Document, map: YAMLMap, key: string, value: string): void {
  const labels = ownLabels(doc, map);
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

/** The keys `map` takes through its `<<` merges and not itself, each with its node (earlier sources win). */
function mergedPairs(doc: Document, map: YAMLMap): Map<string, unknown> {
  const found = new Map<string, unknown>();
  for (const source of mergeSources(doc, map)) {
    const entries = [
      ...source.items.filter((pair) => !isMergeKey(pair.key)).map((pair) =>
        [String(YAML.isScalar(pair.key) ? pair.key.value : pair.key), pair.value] as const
      ),
      ...mergedPairs(doc, source),
    ];
    for (const [key, value] of entries) if (!found.has(key) && !ownPair(map, key)) found.set(key, value);
  }
  return found;
}

/**
 * Removes `key` from the service's own mapping. When the key also comes through a `<<` merge, the merged
 * keys are copied into the mapping and its merges dropped, so that the key is gone from the service alone.
 */
export function deleteOwnKey(doc: Document, map: YAMLMap, key: string): void {
  if (lookup(doc, map, key) === undefined) return;
  const own = ownPair(map, key);
  if (own) map.items.splice(map.items.indexOf(own), 1);
  if (lookup(doc, map, key) === undefined) return;
  const merged = mergedPairs(doc, map);
  map.items = map.items.filter((pair) => !isMergeKey(pair.key));
  for (const [name, value] of merged) {
    if (name !== key) map.add(doc.createPair(name, detachedCopy(doc, value)));
  }
}
