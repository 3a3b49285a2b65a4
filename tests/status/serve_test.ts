/**
 * The status server on real sockets (TCP on 127.0.0.1:0 and a unix socket), `berth status` against it as a
 * separate process, and the rules on where it may listen.
 */
import assert from "node:assert/strict";
import { StatusSchema } from "../../src/agent/status_schema.ts";
import { serveStatus } from "../../src/status/server.ts";
import { fetchAgentStatus, formatStatus } from "../../src/cli/status.ts";
import { BerthError } from "../../src/util/errors.ts";
import { runBerth } from "../harness/env.ts";
import { freePort } from "../harness/services.ts";
import { FixedSource, sampleStatus } from "./fixture.ts";
import { portOf, request } from "./raw_http.ts";

const TOKEN = "token-for-serve-tests";

Deno.test("serve on 127.0.0.1:0: real HTTP, ETag round trip, fetchAgentStatus with and without the token", async () => {
  const server = await serveStatus("127.0.0.1:0", new FixedSource(), { token: TOKEN });
  try {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(server.listen, "127.0.0.1:0");
    const first = await fetch(`${server.url}/status`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(first.status, 200);
    StatusSchema.parse(await first.json());
    const again = await fetch(`${server.url}/status`, {
      headers: { Authorization: `Bearer ${TOKEN}`, "If-None-Match": first.headers.get("etag")! },
    });
    assert.equal(again.status, 304);
    await again.body?.cancel();
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200);
    await health.body?.cancel();

    assert.deepEqual(await fetchAgentStatus(server.listen, TOKEN), sampleStatus());
    await assert.rejects(fetchAgentStatus(server.listen), (error: BerthError) => {
      assert.equal(error.reason, "auth_failed");
      assert.match(error.message, /needs its status token/);
      return true;
    });
    await assert.rejects(fetchAgentStatus(server.listen, "wrong"), /refused the status token/);
  } finally {
    await server.close();
  }
});

Deno.test("serve on a unix socket: fetch over it; a stale socket file is replaced, a live one refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-status-" });
  const path = `${dir}/status.sock`;
  try {
    // a leftover from an agent that died: a socket file nobody listens on
    const stale = Deno.listen({ transport: "unix", path });
    stale.close();
    await Deno.writeTextFile(`${dir}/not-a-socket`, "x");

    const server = await serveStatus(path, new FixedSource(), {});
    try {
      assert.equal(server.url, `unix:${path}`);
      const client = Deno.createHttpClient({ proxy: { transport: "unix", path } });
      const response = await fetch("http://berth/status", { client });
      assert.equal(response.status, 200);
      StatusSchema.parse(await response.json());
      client.close();
      assert.deepEqual(await fetchAgentStatus(path), sampleStatus());
      await assert.rejects(
        serveStatus(path, new FixedSource(), {}),
        /another process answers on this socket/,
      );
      await assert.rejects(
        serveStatus(`${dir}/not-a-socket`, new FixedSource(), {}),
        /exists and is not a socket/,
      );
    } finally {
      await server.close();
    }
    await assert.rejects(Deno.lstat(path), Deno.errors.NotFound, "close removes the socket");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a non-loopback listen address without a token is refused at start; with one it serves", async () => {
  for (const listen of ["0.0.0.0:0", "[::]:0", "192.0.2.10:8470", "device.local:8470"]) {
    await assert.rejects(serveStatus(listen, new FixedSource(), {}), (error: BerthError) => {
      assert.equal(error.reason, "invalid_input");
      assert.equal(
        error.message,
        `status.listen "${listen}": a non-loopback address needs status.token ` +
          "(set one, or listen on 127.0.0.1:PORT or a unix socket path)",
      );
      return true;
    });
  }
  const server = await serveStatus("0.0.0.0:0", new FixedSource(), { token: TOKEN });
  try {
    assert.match(server.listen, /^0\.0\.0\.0:\d+$/);
    assert.deepEqual(await fetchAgentStatus(server.listen, TOKEN), sampleStatus()); // reached via loopback
  } finally {
    await server.close();
  }
});

Deno.test("berth status: the report for a person, --json, and a clear error when no agent answers", async () => {
  const server = await serveStatus("127.0.0.1:0", new FixedSource(), { token: TOKEN });
  try {
    const env = { BERTH_STATUS_TOKEN: TOKEN };
    const human = await runBerth(["status", "--listen", server.listen], env);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^agent {3}berth 0\.1\.0, reconciling, up /);
    assert.match(
      human.stdout,
      /^ {2}shop {2}updating {2}sha256:a1a1a1a1a1a1 {2}\(registry\.example\.com\/factory\/shop:stable\)$/m,
    );
    assert.match(human.stdout, /^ {4}42% {2}40\.5 MiB of 95\.4 MiB, 7\/12 blobs, 1\.1 MiB\/s$/m);
    assert.match(human.stdout, /^ {4}service db: running, 2 restarts$/m);
    assert.match(human.stdout, /^store {3}\/var\/lib\/berth\/store: 178\.8 MiB in 41 blobs/m);
    assert.match(human.stdout, /^engine {2}docker 20\.10\.24 \(API 1\.41\)$/m);

    const json = await runBerth(["status", "--json"], { ...env, BERTH_STATUS_LISTEN: server.listen });
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), sampleStatus());

    const denied = await runBerth(["status", "--listen", server.listen]);
    assert.equal(denied.code, 1);
    assert.equal(
      denied.stderr.trim(),
      `berth: the berth agent at ${server.listen} needs its status token (status.token in the config)`,
    );
  } finally {
    await server.close();
  }
  const port = freePort();
  const absent = await runBerth(["status", "--listen", `127.0.0.1:${port}`]);
  assert.equal(absent.code, 1);
  assert.equal(
    absent.stderr.trim(),
    `berth: no berth agent answers at 127.0.0.1:${port} (connection refused); is \`berth agent\` running?`,
  );
  const noSocket = await runBerth(["status", "--listen", "/nonexistent/berth.sock"]);
  assert.equal(noSocket.code, 1);
  assert.match(
    noSocket.stderr,
    /^berth: no berth agent answers at \/nonexistent\/berth\.sock \(no such socket\)/,
  );
});

Deno.test("formatStatus: a blocked app shows its reason and facts; an unreachable engine says so", () => {
  const status = sampleStatus();
  status.apps[0].state = "blocked";
  status.apps[0].progress = undefined;
  status.apps[0].reason = {
    code: "insufficient_storage",
    message: "needs 95.4 MiB, 12.0 MiB free on /var/lib/berth/store",
    details: { needBytes: 100_000_000, freeBytes: 12_582_912 },
    at: "2025-03-01T09:59:00.000Z",
  };
  status.engine = { reachable: false, error: "connection refused" };
  const lines = formatStatus(status, Date.parse("2025-03-01T10:00:00Z"));
  assert.ok(lines.includes("engine  unreachable: connection refused"), lines.join("\n"));
  assert.ok(
    lines.includes(
      "    reason: insufficient_storage: needs 95.4 MiB, 12.0 MiB free on /var/lib/berth/store " +
        "(needBytes=100000000 freeBytes=12582912)",
    ),
    lines.join("\n"),
  );
  assert.equal(
    lines[0],
    "agent   berth 0.1.0, reconciling, up 2h, last reconcile 5m ago, polls every 5m",
  );
  assert.ok(lines.includes("host    10.0.0.5:8471 (mirror of registry.example): 1.0 KiB served, 0 errors"));
  assert.ok(
    lines.includes("host    registry.example (registry): 0 B served, 2 errors, skipped until 00:00:30Z"),
    lines.join("\n"),
  );
});

Deno.test("reconfigure: a new token and hosts apply at once; a new address is bound before the old is closed", async () => {
  const server = await serveStatus("127.0.0.1:0", new FixedSource(), {});
  try {
    const first = server.listen;
    const port = portOf(server.url);
    assert.equal((await request(port, "/status"))?.status, 200);
    assert.equal((await request(port, "/status", { host: "kiosk.lan" }))?.status, 421);

    await server.reconfigure("127.0.0.1:0", { token: TOKEN, hosts: ["kiosk.lan"] });
    assert.equal(server.listen, first, "the same listen text keeps the listener, even for port 0");
    assert.equal((await request(port, "/status"))?.status, 401, "the new token applies at once");
    await server.reconfigure("127.0.0.1:0", { hosts: ["kiosk.lan"] });
    assert.equal((await request(port, "/status", { host: "kiosk.lan" }))?.status, 200, "new hosts apply");

    const next = freePort();
    await server.reconfigure(`127.0.0.1:${next}`, {});
    assert.equal(server.listen, `127.0.0.1:${next}`);
    assert.equal(server.url, `http://127.0.0.1:${next}`);
    assert.equal((await request(next, "/healthz"))?.status, 200);
    await assert.rejects(
      request(port, "/healthz"),
      Deno.errors.ConnectionRefused,
      "the old address is closed",
    );
  } finally {
    await server.close();
  }
});

Deno.test("reconfigure: when the new address cannot be bound the old one keeps serving and the error names both", async () => {
  const server = await serveStatus("127.0.0.1:0", new FixedSource(), {});
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = portOf(server.url);
    const busy = `127.0.0.1:${(taken.addr as Deno.NetAddr).port}`;
    await assert.rejects(server.reconfigure(busy, { token: TOKEN }), (error: BerthError) => {
      assert.equal(error.reason, "invalid_input");
      assert.match(
        error.message,
        new RegExp(`^status\\.listen "${busy}": cannot listen: .*; still serving on ${server.listen}$`),
      );
      return true;
    });
    assert.equal(server.listen, `127.0.0.1:${port}`);
    assert.equal((await request(port, "/status"))?.status, 401, "the token applies on the address kept");
    await assert.rejects(server.reconfigure("0.0.0.0:0", {}), /a non-loopback address needs status\.token/);
    assert.equal((await request(port, "/healthz"))?.status, 200);
  } finally {
    taken.close();
    await server.close();
  }
});
