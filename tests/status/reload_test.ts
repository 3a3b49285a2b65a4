/**
 * SIGHUP in the real agent applies the status settings: a new token at once, new hosts, a new listen
 * address (bound before the old one closes); an address that cannot be bound keeps the old one (with the
 * new hosts), and the log names it.
 */
import assert from "node:assert/strict";
import { scratchDir } from "../harness/env.ts";
import { freePort } from "../harness/services.ts";
import { request } from "./raw_http.ts";
import { startAgent, writeAgentConfig } from "./agent_process.ts";

const TOKEN = "token-for-reload-tests";

/** Polls `check` until it holds, for 10 s at most. */
async function eventually(what: string, check: () => Promise<boolean>, log: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!await check().catch(() => false)) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}; agent log:\n${log()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

Deno.test("SIGHUP applies status.listen, token and hosts; a listen address that cannot be bound keeps the old one", async () => {
  const dir = await scratchDir("status-reload-");
  const agent = await startAgent(dir);
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const first = agent.port;
    assert.equal((await request(first, "/status"))?.status, 200);

    const second = freePort();
    await writeAgentConfig(dir, `{ listen: "127.0.0.1:${second}", token: ${TOKEN} }`);
    agent.process.kill("SIGHUP");
    await eventually(
      "the new address",
      async () => (await request(second, "/healthz"))?.status !== undefined,
      agent.log,
    );
    assert.equal((await request(second, "/status"))?.status, 401, "the new token applies at once");
    const authorized = { headers: { Authorization: `Bearer ${TOKEN}` } };
    assert.equal((await request(second, "/status", authorized))?.status, 200);
    await assert.rejects(
      request(first, "/healthz"),
      Deno.errors.ConnectionRefused,
      "the old address is closed",
    );
    assert.match(agent.log(), new RegExp(`status now at http://127\\.0\\.0\\.1:${second}`));

    await writeAgentConfig(dir, `{ listen: "127.0.0.1:${second}", hosts: [kiosk.lan] }`);
    agent.process.kill("SIGHUP");
    await eventually(
      "the token removed",
      async () => (await request(second, "/status"))?.status === 200,
      agent.log,
    );
    assert.equal((await request(second, "/status", { host: "kiosk.lan" }))?.status, 200);
    assert.equal((await request(second, "/status", { host: "attacker.example" }))?.status, 421);

    const busy = `127.0.0.1:${(taken.addr as Deno.NetAddr).port}`;
    await writeAgentConfig(dir, `{ listen: "${busy}", hosts: [other.lan] }`);
    agent.process.kill("SIGHUP");
    await eventually(
      "the error",
      () => Promise.resolve(agent.log().includes(`status.listen "${busy}"`)),
      agent.log,
    );
    assert.match(
      agent.log(),
      new RegExp(
        `error config reload: the status endpoint: status\\.listen "${busy}": cannot listen: .*; ` +
          `still serving on 127\\.0\\.0\\.1:${second}`,
      ),
    );
    // the address kept takes the new hosts
    assert.equal((await request(second, "/status", { host: "other.lan" }))?.status, 200);
    assert.equal((await request(second, "/status", { host: "kiosk.lan" }))?.status, 421);
    assert.ok(agent.alive());
  } finally {
    taken.close();
    await agent.stop();
  }
});
