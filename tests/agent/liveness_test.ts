/**
 * `/healthz` means alive: 200 while the agent's loop makes progress in any phase — a throttled first
 * download, the image load, compose, the wait for the services — and 503, naming the phase, only when the
 * phase in hand makes no progress for longer than its timeout (here: the engine stops answering). A watchdog
 * that trusts it restarts a hung agent and never a busy one. systemd's own watchdog is fed from the same
 * measure: with NOTIFY_SOCKET set (a socket of the test's standing in for systemd's) the agent sends READY=1
 * after its audit, WATCHDOG=1 while it is healthy, none while it is not, and STOPPING=1 as it stops. Real
 * registry, the device's own dockerd.
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
    "liveness: /healthz stays 200 and the systemd watchdog is pinged through a long first install; once the engine hangs, 503 naming the phase and no pings",
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
      // As under systemd with Type=notify and WatchdogSec=2: the agent's notify messages, as they arrive.
      const notify = listenForNotify(`${device.dir}/notify.sock`);
      const agent = start({ NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: "2000000" });
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
      // READY=1 once the audit was done, then WATCHDOG=1 (every second) through the install.
      const ready = notify.messages.findIndex((message) =>
        message.fields.READY === "1"
      );
      assert.ok(ready >= 0, `no READY=1 in ${JSON.stringify(notify.messages)}`);
      const pings = notify.messages.slice(ready).filter((message) => message.fields.WATCHDOG === "1");
      assert.ok(pings.length >= 5, `only ${pings.length} watchdog pings during the install`);
      // Within the watchdog period (2 s), whatever else the machine is doing.
      assert.ok(longestGap(pings) < 2_000, `a gap of ${longestGap(pings)} ms between watchdog pings`);

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
        // No watchdog ping while unhealthy: past WatchdogSec, systemd would restart this agent.
        const since = Date.now();
        await new Promise((resolve) => setTimeout(resolve, 3_000));
        const late = notify.messages.filter((message) => message.at >= since && message.fields.WATCHDOG);
        assert.deepEqual(late, [], "the watchdog was pinged while /healthz said 503");
        assert.ok(
          notify.messages.some((message) =>
            message.at >= since && /not making progress/.test(message.fields.STATUS)
          ),
          "STATUS says why",
        );
      } finally {
        Deno.kill(pid, "SIGCONT");
      }
      await waitFor(
        "200 again once the engine answers",
        async () => (await getStatus(device, "/healthz")).status === 200,
        60_000,
        200,
        agent.log,
      );
      const resumed = Date.now();
      await waitFor(
        "watchdog pings again",
        () =>
          Promise.resolve(
            notify.messages.some((message) => message.at >= resumed && message.fields.WATCHDOG),
          ),
        10_000,
        100,
        agent.log,
      );
      assert.equal(await agent.stop(), 0);
      assert.equal(notify.messages.at(-1)?.fields.STOPPING, "1", "STOPPING=1 as it stops");
      notify.close();
    }),
});

interface NotifyMessage {
  at: number;
  fields: Record<string, string>;
}

/** A unix datagram socket at `path` standing in for systemd's, collecting what is sent to it. */
function listenForNotify(path: string): { path: string; messages: NotifyMessage[]; close(): void } {
  const socket = Deno.listenDatagram({ transport: "unixpacket", path });
  const messages: NotifyMessage[] = [];
  (async () => {
    try {
      for (;;) {
        const [data] = await socket.receive();
        const fields = Object.fromEntries(
          new TextDecoder().decode(data).split("\n").map((
            line,
          ) => [line.split("=")[0], line.slice(line.indexOf("=") + 1)]),
        );
        messages.push({ at: Date.now(), fields });
      }
    } catch {
      // closed
    }
  })();
  return { path, messages, close: () => socket.close() };
}

/** The longest time between two consecutive messages, in ms. */
function longestGap(messages: NotifyMessage[]): number {
  let longest = 0;
  for (let i = 1; i < messages.length; i++) longest = Math.max(longest, messages[i].at - messages[i - 1].at);
  return longest;
}
