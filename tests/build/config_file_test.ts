/**
 * The shipped default config, `build/config.yml` (installed to /etc/berth/config.yml): it parses to exactly
 * the defaults, names every key the parser knows, and each commented-out key still parses when uncommented,
 * to its documented default. Pure parsing, no services.
 */
import assert from "node:assert/strict";
import { type Config, parseConfig } from "../../src/config/config.ts";
import {
  DEFAULT_CERTS_DIR,
  DEFAULT_COMPOSE_ROOT,
  DEFAULT_CREDENTIALS_FILE,
  DEFAULT_DOCKER_HOST,
  DEFAULT_POLICY_FILE,
  DEFAULT_STORE,
  defaultConfig,
} from "../../src/config/defaults.ts";
import { DEFAULT_REGISTRY_OPTIONS } from "../../src/registry/options.ts";

const FILE = new URL("../../build/config.yml", import.meta.url).pathname;
const TEXT = await Deno.readTextFile(FILE);
const LINES = TEXT.split("\n");
/** `# key: value` (a setting left commented out), indented like the key it would be. */
const COMMENTED_KEY = /^(\s*)# (([A-Za-z]+):(?: |$))/;

/** JSON drops the keys a config leaves undefined, so a parsed file and defaultConfig() compare equal. */
const plain = (config: Config) => JSON.parse(JSON.stringify(config));

/** The leaf key paths where two configs differ. */
function differences(a: unknown, b: unknown, prefix = ""): string[] {
  if (typeof a === "object" && a !== null && !Array.isArray(a) && typeof b === "object" && b !== null) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((key) =>
      differences(
        (a as Record<string, unknown>)[key],
        (b as Record<string, unknown>)[key],
        prefix ? `${prefix}.${key}` : key,
      )
    );
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix];
}

/** The file with line `index` uncommented. */
function uncommented(index: number): string {
  return LINES.map((line, at) => at === index ? line.replace(COMMENTED_KEY, "$1$2") : line).join("\n");
}

/** The commented-out settings: line index and key path (`storage.watermark`), parents found by indentation. */
function commentedKeys(): { index: number; keyPath: string }[] {
  const found: { index: number; keyPath: string }[] = [];
  let parent = "";
  for (const [index, line] of LINES.entries()) {
    const mapping = /^([A-Za-z]+):\s*$/.exec(line);
    if (mapping) parent = mapping[1];
    else if (/^[A-Za-z]/.test(line)) parent = "";
    const match = COMMENTED_KEY.exec(line);
    if (!match) continue;
    const nested = match[1].length > 0;
    found.push({ index, keyPath: nested ? `${parent}.${match[3]}` : match[3] });
  }
  return found;
}

/**
 * What uncommenting a key gives: the default berth applies, also for keys whose default the CLI decides
 * (those are undefined in the parsed config). Keys missing here are examples (no fixed default) and only
 * have to parse.
 */
const DEFAULT_WHEN_SET: Record<string, unknown> = {
  "store": DEFAULT_STORE,
  "composeRoot": DEFAULT_COMPOSE_ROOT,
  "docker.host": DEFAULT_DOCKER_HOST,
  "parallel": 3,
  "registries.credentials": DEFAULT_CREDENTIALS_FILE,
  "registries.certsDir": DEFAULT_CERTS_DIR,
  "registries.policy": DEFAULT_POLICY_FILE,
  "registries.stallTimeout": DEFAULT_REGISTRY_OPTIONS.stallTimeoutMs / 1000,
  "registries.timeout": DEFAULT_REGISTRY_OPTIONS.deadlineMs / 1000,
};
const EXAMPLES = [
  "compose",
  "platform",
  "status.token",
  "peer.listen",
  "peer.token",
  "rateLimit",
  "registries.insecure",
];

function valueAt(config: Config, keyPath: string): unknown {
  return keyPath.split(".").reduce<unknown>(
    (value, key) => (value as Record<string, unknown>)?.[key],
    config,
  );
}

Deno.test("build/config.yml parses to exactly the defaults", () => {
  const config = parseConfig(TEXT, FILE);
  assert.deepEqual(plain(config), plain(defaultConfig()));
  assert.deepEqual(plain(config), plain(parseConfig("", FILE)));
  assert.equal(config.status.listen, "127.0.0.1:8470", "the status endpoint stays on loopback");
  assert.deepEqual(config.apps, []);
});

Deno.test("build/config.yml names every key of the config, set or commented out", () => {
  const named = new Set(commentedKeys().map(({ keyPath }) => keyPath));
  named.add("apps").add("status.listen");
  // Every leaf of a config with every optional key set is a key the file must mention.
  const leaves = (value: unknown, prefix = ""): string[] =>
    typeof value === "object" && value !== null && !Array.isArray(value)
      ? Object.entries(value).flatMap(([key, inner]) => leaves(inner, prefix ? `${prefix}.${key}` : key))
      : [prefix];
  const everything = parseConfig(
    LINES.map((line) => line.replace(COMMENTED_KEY, "$1$2")).join("\n"),
    FILE,
  );
  const keys = leaves(everything);
  assert.ok(keys.length >= 22, `the parser's keys: ${keys.join(", ")}`);
  assert.deepEqual(keys.filter((key) => !named.has(key)), [], "keys the file does not mention");
  assert.deepEqual([...named].filter((key) => !keys.includes(key)), [], "keys the parser does not know");
});

Deno.test("build/config.yml: each commented-out key, uncommented alone, parses to its default", () => {
  const baseline = parseConfig(TEXT, FILE);
  const keys = commentedKeys();
  assert.ok(keys.length >= 20, `commented keys found: ${keys.map(({ keyPath }) => keyPath).join(", ")}`);
  for (const { index, keyPath } of keys) {
    const config = parseConfig(uncommented(index), FILE);
    const changed = differences(plain(config), plain(baseline));
    if (keyPath in DEFAULT_WHEN_SET) {
      assert.deepEqual(changed, [keyPath], `uncommenting ${keyPath} sets only it`);
      assert.equal(valueAt(config, keyPath), DEFAULT_WHEN_SET[keyPath], `${keyPath} shows its default`);
    } else if (EXAMPLES.includes(keyPath)) {
      assert.ok(
        changed.every((path) => path === keyPath),
        `uncommenting ${keyPath} sets only it: ${changed}`,
      );
    } else {
      assert.deepEqual(changed, [], `uncommenting ${keyPath} (line ${index + 1}) keeps the default`);
    }
  }
});
