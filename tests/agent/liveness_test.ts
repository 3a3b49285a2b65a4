/**
 * `/healthz` means alive: 200 while the agent's loop makes progress in any phase — a throttled first
 * download, the image load, compose, the wait for the services — and 503, naming the phase, only when the
 * phase in hand makes no progress for longer than its timeout (here: the engine stops answering). A watchdog
 * that trusts it restarts a hung agent and never a busy one. Real registry, the device's own dockerd.
 */
import assert from "node:assert/strict";
import { run } from "../harness/services.ts";
import { withServices } from "../harness/env.ts";
import { getStatus, inScene, publish, waitFor, waitForApp, writeConfig } from "./agent_harness.ts";

const MiB = 1024 * 1024;

/** The pid of the device's dockerd, found by its socket in the process table. */
async function dockerdPid(socket: string): Promise<number> {
  const out = await run(["pgrep", "-f", `dockerd .*${socket}`]);
  const pid = Number(out.trim().split("\n")[0]);
  assert.ok(pid > 0, `no dockerd for ${socket}`);
  return pid;
}

Deno.test({
  name:
    "liveness: /healthz stays 200 through a long first install, and is 503 naming the phase once the engine hangs",
  ...withServices,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start }) => {
      const ref = `${proxy.host}/fleet/slow:stable`;
      const v1 = await publish(ref, { web: via(env.images.appA.ref), worker: via(env.images.big.ref) });
      // Two-second polls: without phases, health would count a first install longer than two of them dead.
      await writeConfig(device, [ref]);
      const config = await Deno.readTextFile(device.configPath);
      assert.match(config, /^timeouts: \{ (.*) \}$/m);
      await Deno.writeTextFile(
        device.configPath,
        config.replace(/^timeouts: \{ (.*) \}$/m, "timeouts: { $1, engine: 4s }"),
      );
      proxy.setThrottle(4 * MiB); // about ten seconds for the 40 MiB image
      const agent = start();
      const answers: { at: number; status: number; body: string }[] = [];
      const started = Date.now();
      let polling = true;
      const poller = (async () => {
        while (polling) {
          try {
            const response = await getStatus(device, "/healthz");
            answers.push({ at: Date.now() - started, status: response.status, body: await response.text() });
          } catch {
            // not listening yet
          }
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      })();
      await waitForApp(device, "v1 running", (app) =>
        app.state === "running" && app.currentDigest === v1.digest, agent);
      polling = false;
      await poller;
      proxy.setThrottle(0);
      const refused = answers.filter((answer) =>
        answer.status !== 200
      );
      assert.ok(answers.length > 20, `only ${answers.length} answers during the install`);
      assert.deepEqual(refused, [], "/healthz answered 503 while the agent was busy and healthy");

      // The engine stops answering (its process stopped): the next engine call hangs past timeouts.engine.
      const pid = await dockerdPid(device.dockerd.socket);
      Deno.kill(pid, "SIGSTOP");
      try {
        const unhealthy = await waitFor(
          "a 503 once the engine hangs",
          async () => {
            const response = await getStatus(device, "/healthz");
            const body = await response.text();
            return response.status === 503 ? body : undefined;
          },
          30_000,
          200,
          agent.log,
        );
        // Whichever engine call the loop was in: the running check (compose) or the status refresh.
        assert.match(unhealthy, /no progress in its (compose|engine query) for \d+ s \(limit 4 s\)/);
      } finally {
        Deno.kill(pid, "SIGCONT");
      }
      await waitFor(
        "200 again once the engine answers",
        async () =>
          (await getStatus(device, "/healthz")).status === 200,
        60_000,
        200,
        agent.log,
      );
    }),
});
