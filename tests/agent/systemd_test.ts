/**
 * What the agent tells systemd, read from a unix datagram socket standing in for systemd's: the start
 * timeout extended while the audit makes progress and not once it stops, READY=1, then WATCHDOG=1 only while
 * healthy, and STOPPING=1. The agent's loop itself is played by a StatusModel on the test's clock.
 */
import assert from "node:assert/strict";
import { StatusModel } from "../../src/agent/model.ts";
import { SystemdSupervision } from "../../src/agent/systemd.ts";
import { createLogger } from "../../src/util/log.ts";

const NOTIFY_VARS = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

Deno.test("systemd: EXTEND_TIMEOUT_USEC while the audit makes progress, READY=1, WATCHDOG=1 while healthy, STOPPING=1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-notify-test-" });
  const socket = Deno.listenDatagram({ transport: "unixpacket", path: `${dir}/notify.sock` });
  const received: Record<string, string>[] = [];
  const reading = (async () => {
    try {
      for (;;) {
        const [data] = await socket.receive();
        received.push(Object.fromEntries(
          new TextDecoder().decode(data).split("\n").map((
            line,
          ) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
        ));
      }
    } catch {
      // closed
    }
  })();
  let clock = Date.now();
  const lines: string[] = [];
  const model = new StatusModel({
    version: "test",
    storePath: "/store",
    pollIntervalSeconds: 300,
    stallSeconds: 60,
    log: createLogger("debug", (line) => lines.push(line)),
    now: () => clock,
  });
  const saved = Object.fromEntries(NOTIFY_VARS.map((name) => [name, Deno.env.get(name)]));
  Deno.env.set("NOTIFY_SOCKET", `${dir}/notify.sock`);
  Deno.env.set("WATCHDOG_USEC", "400000"); // a tick every 200 ms
  Deno.env.delete("WATCHDOG_PID");
  const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const since = () => received.length;
  try {
    model.setAgentState("auditing");
    const auditPhase = model.beginPhase("audit", 5_000);
    const supervision = await SystemdSupervision.start(
      model,
      createLogger("debug", (line) => lines.push(line)),
    );
    assert.ok(supervision, lines.join("\n"));
    await wait(700);
    assert.equal(received[0]?.STATUS, "auditing the installed apps");
    const extensions = received.filter((message) => message.EXTEND_TIMEOUT_USEC);
    assert.ok(extensions.length >= 2, JSON.stringify(received));
    assert.equal(extensions[0].EXTEND_TIMEOUT_USEC, "90000000");
    assert.ok(
      !received.some((message) => message.READY || message.WATCHDOG),
      "nothing but extensions before ready",
    );

    // An audit that stops making progress gets no more extensions: systemd's start timeout then fires.
    clock += 6_000;
    let mark = since();
    await wait(500);
    assert.ok(
      !received.slice(mark).some((message) => message.EXTEND_TIMEOUT_USEC),
      JSON.stringify(received.slice(mark)),
    );
    model.phaseProgress();
    model.endPhase(auditPhase);

    mark = since();
    await supervision.ready();
    await wait(50);
    assert.equal(received[mark]?.READY, "1", JSON.stringify(received.slice(mark)));
    model.setAgentState("idle");
    model.setLastReconcile(true);
    mark = since();
    await wait(700);
    assert.ok(
      received.slice(mark).filter((message) => message.WATCHDOG === "1").length >= 2,
      "pings while healthy",
    );

    // Unhealthy (a phase without progress beyond its timeout): no pings, and STATUS says why.
    model.beginPhase("compose", 1_000);
    clock += 5_000;
    mark = since();
    await wait(700);
    const quiet = received.slice(mark);
    assert.ok(!quiet.some((message) => message.WATCHDOG), JSON.stringify(quiet));
    assert.match(quiet.at(-1)?.STATUS ?? "", /not making progress: .*compose/);

    mark = since();
    await supervision.stop();
    await wait(50);
    assert.equal(received.at(-1)?.STOPPING, "1", JSON.stringify(received.slice(mark)));
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
    socket.close();
    await reading;
    await Deno.remove(dir, { recursive: true });
  }
});
