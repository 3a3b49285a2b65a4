/**
 * SIGTERM stops the agent at any moment, also in its first milliseconds: a supervisor (systemd) that stops
 * it while it starts must not wait for a poll interval or kill it.
 */
import assert from "node:assert/strict";
import { scratchDir, spawnBerth, testEnv, withServices } from "../harness/env.ts";
import { freePort } from "../harness/services.ts";

/** How long a stop may take: the agent checkpoints and closes, nothing more. */
const STOP_MS = 5_000;

Deno.test({
  name:
    "SIGTERM at any moment of the start-up (audit, first pass, first sleep) ends the agent at once, exit 0",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const dir = await scratchDir("signals-");
    const config = `${dir}/config.yml`;
    await Deno.writeTextFile(
      config,
      [
        `store: ${dir}/store`,
        `composeRoot: ${dir}/apps`,
        `docker: { host: "${env.dockerHost}" }`,
        "apps: []",
        `status: { listen: "127.0.0.1:${freePort()}" }`,
        "",
      ].join("\n"),
    );
    // From the moment the engine answers, the audit, the first pass and its store figures take some tens of
    // milliseconds: the stops land in each of them, and in the first sleep.
    for (const delayMs of [0, 5, 10, 20, 30, 40, 60, 80, 120, 200, 400]) {
      const agent = spawnBerth(["--config", config, "agent"]);
      let text = "";
      const log = (async () => {
        const decoder = new TextDecoder();
        for await (const chunk of agent.stderr) text += decoder.decode(chunk, { stream: true });
        return text;
      })();
      while (!text.includes("engine reachable")) await new Promise((resolve) => setTimeout(resolve, 2));
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      agent.kill("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        agent.status,
        new Promise<"hung">((resolve) => timer = setTimeout(() => resolve("hung"), STOP_MS)),
      ]);
      clearTimeout(timer);
      if (outcome === "hung") agent.kill("SIGKILL");
      await log;
      if (outcome === "hung") {
        assert.fail(`SIGTERM ${delayMs} ms after the engine answered: still running, log:\n${text}`);
      }
      // A SIGTERM before Deno installed the agent's handler ends it the default way; after, cleanly.
      assert.ok(
        outcome.code === 0 || outcome.signal === "SIGTERM",
        `${delayMs} ms: ${JSON.stringify(outcome)}`,
      );
    }
    await Deno.remove(dir, { recursive: true });
  },
});
