/**
 * docs/config.md documents the config berth parses: its table of keys names every key the parser knows
 * (found as in config_file_test.ts: build/config.yml with every commented-out key set) and no other. Pure
 * parsing, no services.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/config.ts";

const FILE = new URL("../../build/config.yml", import.meta.url).pathname;
const DOC = new URL("../../docs/config.md", import.meta.url).pathname;
/** `# key: value` (a setting left commented out), indented like the key it would be. */
const COMMENTED_KEY = /^(\s*)# (([A-Za-z]+):(?: |$))/;
/** A row of the keys table: its first cell is the key path in backticks. */
const TABLE_ROW = /^\| `([A-Za-z.]+)`\s*\|/;

/** The key paths of every leaf of a parsed config (lists and values are leaves). */
function leaves(value: unknown, prefix = ""): string[] {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? Object.entries(value).flatMap(([key, inner]) => leaves(inner, prefix ? `${prefix}.${key}` : key))
    : [prefix];
}

Deno.test("docs/config.md's table names every key of the config, and only those", async () => {
  const text = await Deno.readTextFile(FILE);
  const everything = parseConfig(
    text.split("\n").map((line) => line.replace(COMMENTED_KEY, "$1$2")).join("\n"),
    FILE,
  );
  const keys = leaves(everything).sort();
  assert.ok(keys.length >= 22, `the parser's keys: ${keys.join(", ")}`);
  const documented = (await Deno.readTextFile(DOC)).split("\n").flatMap((line) => {
    const row = TABLE_ROW.exec(line);
    return row ? [row[1]] : [];
  }).sort();
  assert.deepEqual(
    documented.filter((key) => !keys.includes(key)),
    [],
    "documented keys the parser does not know",
  );
  assert.deepEqual(
    keys.filter((key) => !documented.includes(key)),
    [],
    "keys docs/config.md does not document",
  );
});
