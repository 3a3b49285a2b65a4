/** `--help`: every command's line in the list is whole, and says the same as the command's own help. */
import assert from "node:assert/strict";
import { runBerth } from "../harness/env.ts";

const COMMANDS = [
  "pull",
  "check",
  "publish",
  "install",
  "run",
  "stop",
  "rm",
  "restore",
  "agent",
  "load",
  "export",
  "import",
  "ls",
  "fsck",
  "status",
  "serve",
  "prune",
  "version",
];

Deno.test("berth --help lists every command with its usage and summary apart, as its own --help says", async () => {
  const help = await runBerth(["--help"]);
  assert.equal(help.code, 0, help.stderr);
  const list = help.stdout.slice(
    help.stdout.indexOf("Commands:\n"),
    help.stdout.indexOf("\nGlobal options:"),
  );
  for (const command of COMMANDS) {
    const own = await runBerth([command, "--help"]);
    assert.equal(own.code, 0, `${command}: ${own.stderr}`);
    const [usageLine, blank, summary] = own.stdout.split("\n");
    const usage = usageLine.replace("Usage: berth [global options] ", "");
    assert.equal(blank, "", command);
    // Two spaces at least, or the summary on the next line: never "[--dry-run]remove".
    const entry = new RegExp(`^  ${RegExp.escape(usage)}(?: {2,}|\\n {4,})${RegExp.escape(summary)}$`, "m");
    assert.match(list, entry, `${command}'s entry in:\n${list}`);
  }
  const entries = list.split("\n").filter((line) => /^ {2}\S/.test(line)).map((line) =>
    line.trim().split(" ")[0]
  );
  assert.deepEqual(entries, COMMANDS, "every command, and nothing else, is listed");
  assert.match(list, /^ {2}ls +list the images and apps in the store/m);
});
