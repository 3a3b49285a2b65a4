import assert from "node:assert/strict";
import { type OptionSpec, parseArgs } from "../../src/cli/args.ts";
import { UsageError } from "../../src/util/errors.ts";

const globals: OptionSpec[] = [
  { name: "--store", value: "DIR", help: "" },
  { name: "--json", help: "" },
  { name: "--insecure-registry", value: "HOST", repeat: true, help: "" },
];
const commands = (name: string): OptionSpec[] => name === "fsck" ? [{ name: "--repair", help: "" }] : [];

Deno.test("global options stand before or after the command", () => {
  const parsed = parseArgs(
    ["--store", "/s", "pull", "a", "--json", "b", "--insecure-registry=x", "--insecure-registry", "y"],
    globals,
    commands,
  );
  assert.equal(parsed.command, "pull");
  assert.deepEqual(parsed.positional, ["a", "b"]);
  assert.deepEqual(parsed.options, { store: "/s", json: true, "insecure-registry": ["x", "y"] });
});

Deno.test("command options only after the command; -- ends options", () => {
  assert.equal(parseArgs(["fsck", "--repair"], globals, commands).options.repair, true);
  assert.throws(() => parseArgs(["--repair", "fsck"], globals, commands), UsageError);
  assert.deepEqual(parseArgs(["pull", "--", "--weird"], globals, commands).positional, ["--weird"]);
});

Deno.test("usage errors name the option", () => {
  assert.throws(() => parseArgs(["--nope"], globals, commands), /"--nope"/);
  assert.throws(() => parseArgs(["ls", "--store"], globals, commands), /--store needs a value/);
  assert.throws(() => parseArgs(["ls", "--json=1"], globals, commands), /--json takes no value/);
});
