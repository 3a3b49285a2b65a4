/**
 * The README's demo command, run as a user would: it prints the status URL, the app comes up running, and
 * Ctrl-C (SIGINT) stops it cleanly and removes everything it started.
 */
import assert from "node:assert/strict";
import { withServices } from "../harness/env.ts";

const DEMO = new URL("../../build/demo/demo.ts", import.meta.url).pathname;

Deno.test({
  name: "demo: brings up a registry and an engine, publishes an app, the agent runs it; Ctrl-C cleans up",
  // It needs what the test services need (dockerd, docker-registry); it starts its own.
  ...withServices,
  async fn() {
    const demo = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--frozen", DEMO],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let output = "";
    const reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of demo.stdout) output += decoder.decode(chunk, { stream: true });
    })();
    let errors = "";
    const readingErrors = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of demo.stderr) errors += decoder.decode(chunk, { stream: true });
    })();
    const waitFor = async (pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = output.match(pattern);
        if (match) return match;
        if (Date.now() > deadline) {
          throw new Error(`no ${pattern} after ${timeoutMs / 1000} s:\n${output}\n${errors}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    };
    try {
      const [, statusUrl] = await waitFor(/status: (http:\/\/127\.0\.0\.1:\d+)\b/, 120_000);
      const [, appUrl] = await waitFor(/app hello is running: (http:\/\/127\.0\.0\.1:\d+\/)/, 120_000);
      const status = await (await fetch(`${statusUrl}/status`)).json();
      assert.equal(status.apps[0].name, "hello");
      assert.equal(status.apps[0].state, "running");
      assert.equal(status.apps[0].services[0].state, "running");
      assert.match(await (await fetch(appUrl)).text(), /hello from berth/);
      const page = await (await fetch(statusUrl)).text();
      assert.match(page, /<html/i, "the status URL serves the page");
      const [, dir] = await waitFor(/working under (\S+)/, 1_000);

      demo.kill("SIGINT");
      const { code } = await demo.status;
      await reading;
      await readingErrors;
      assert.equal(code, 0, output + errors);
      assert.match(output, /agent stopped \(exit 0\)/);
      assert.match(errors, /SIGTERM: stopping|SIGINT: stopping/);
      await assert.rejects(Deno.stat(dir), Deno.errors.NotFound, "the demo's directory is removed");
      await assert.rejects(fetch(`${statusUrl}/status`), "the agent no longer answers");
    } finally {
      try {
        demo.kill("SIGKILL");
      } catch {
        // already exited
      }
      await demo.status;
    }
  },
});
