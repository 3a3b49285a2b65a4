/**
 * The Host check against DNS rebinding, over real HTTP: a web page whose name was rebound to 127.0.0.1 must
 * not read a token-less /status from a browser on the device, while every name that really means this
 * agent still works.
 */
import assert from "node:assert/strict";
import { hostAllowed, hostName, serveStatus } from "../../src/status/server.ts";
import { parseListen } from "../../src/util/listen_address.ts";
import { FixedSource } from "./fixture.ts";
import { portOf, request } from "./raw_http.ts";

const TOKEN = "token-for-host-tests";

Deno.test("without a token, a Host naming another site is refused with 421 naming that Host", async () => {
  const server = await serveStatus("127.0.0.1:0", new FixedSource(), { hosts: ["Device.Example.COM"] });
  try {
    const port = portOf(server.url);
    for (
      const host of ["attacker.example", `attacker.example:${port}`, "127.0.0.1.nip.io", "[::2]:80", "a b"]
    ) {
      for (const path of ["/status", "/metrics", "/", "/healthz"]) {
        const response = await request(port, path, { host });
        assert.equal(response?.status, 421, `${host} ${path}`);
        const body = JSON.parse(response!.body);
        assert.equal(body.error, "misdirected_request");
        assert.equal(
          body.message,
          `Host ${JSON.stringify(host)} is not a name of this agent (status.listen ${server.listen}): ` +
            "ask for localhost or the listen address, or add the name to status.hosts",
        );
      }
    }
    const allowed = [
      `127.0.0.1:${port}`,
      "127.0.0.1",
      `localhost:${port}`,
      "LOCALHOST.",
      "localhost:9000", // through a tunnel: the port a browser names is not the agent's
      "127.0.0.2:1",
      `[::1]:${port}`,
      "device.example.com",
      `device.example.com.:${port}`,
    ];
    for (const host of allowed) {
      assert.equal((await request(port, "/status", { host }))?.status, 200, host);
    }
  } finally {
    await server.close();
  }
});

Deno.test("with a token any Host is answered (the token guards it); on a unix socket too (no browser gets there)", async () => {
  const withToken = await serveStatus("127.0.0.1:0", new FixedSource(), { token: TOKEN });
  try {
    const port = portOf(withToken.url);
    const answered = await request(port, "/status", {
      host: "attacker.example",
      headers: { Authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(answered?.status, 200);
    assert.equal((await request(port, "/status", { host: "attacker.example" }))?.status, 401);
  } finally {
    await withToken.close();
  }
  const dir = await Deno.makeTempDir({ prefix: "berth-host-" });
  const unix = await serveStatus(`${dir}/status.sock`, new FixedSource(), {});
  try {
    const client = Deno.createHttpClient({ proxy: { transport: "unix", path: `${dir}/status.sock` } });
    const response = await fetch("http://attacker.example/status", { client });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    client.close();
  } finally {
    await unix.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Host names are compared without port, case or a final dot; a malformed Host is refused", () => {
  assert.equal(hostName("Device.Example.:8470"), "device.example");
  assert.equal(hostName("[::1]:8470"), "::1");
  assert.equal(hostName("[::1]"), "::1");
  assert.equal(hostName("a:b:c"), undefined);
  assert.equal(hostName(""), undefined);
  const settings = { listen: parseListen("localhost:8470"), hosts: ["kiosk.lan"] };
  assert.ok(hostAllowed(undefined, settings), "no Host: not a browser");
  assert.ok(hostAllowed("Kiosk.LAN:80", settings));
  assert.ok(!hostAllowed("kiosk.lan.evil.example", settings));
  assert.ok(!hostAllowed("", settings));
  assert.ok(hostAllowed("anything", { ...settings, token: TOKEN }));
  assert.ok(hostAllowed("anything", { listen: parseListen("/run/berth/status.sock") }));
});
