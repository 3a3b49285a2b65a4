/**
 * `berth pull` on a terminal: one live line redrawn in place on stderr instead of a line per blob. The
 * terminal is a real pty, from util-linux `script`; the registry is the real one.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const ERASE_LINE = "\r\x1b[K";

Deno.test({
  name: "pull on a terminal redraws one progress line; without a terminal it prints plain lines",
  ...withServices,
  async fn() {
    const { appA } = testEnv()!.images;
    const blobs = appA.layers.length + 1;
    const store = await scratchDir("tty-");
    const command = [Deno.execPath(), "run", "-A", "--quiet", MAIN, "--store", store, "pull", appA.ref].join(
      " ",
    );
    // script runs the command under a pty and copies everything it writes (stdout and stderr) to ours.
    const output = await new Deno.Command("script", {
      args: ["-qfec", command, "/dev/null"],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const seen = new TextDecoder().decode(output.stdout);
    assert.equal(output.code, 0, seen + new TextDecoder().decode(output.stderr));
    assert.ok(seen.includes(ERASE_LINE), `no line was redrawn in place: ${JSON.stringify(seen)}`);
    const drawn = seen.split(ERASE_LINE).at(-1)!.split("\r\n")[0];
    assert.match(drawn, new RegExp(`^\\[#{20}\\] {2}.* / .* {2}100% {2}.*/s {2}blobs ${blobs}/${blobs}$`));
    assert.doesNotMatch(seen, /verified \(/, "no line per blob on a terminal");
    assert.match(seen, /\r\nPulled .*berth-test\/app-a:1 /);

    const plain = await runBerth(["--store", await scratchDir("plain-"), "pull", appA.ref]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.ok(!plain.stderr.includes("\x1b"), "no control sequences when stderr is not a terminal");
    assert.equal(plain.stderr.match(/verified \(/g)?.length, blobs);
  },
});
