/** The one listen-address parser that the config check, the status server and `berth status` share. */
import assert from "node:assert/strict";
import { connectHost, formatListen, isLoopback, parseListen } from "../../src/util/listen_address.ts";
import type { BerthError } from "../../src/util/errors.ts";

Deno.test("listen addresses: host:port, [v6]:port and absolute unix socket paths parse", () => {
  assert.deepEqual(parseListen("127.0.0.1:8470"), { transport: "tcp", hostname: "127.0.0.1", port: 8470 });
  assert.deepEqual(parseListen("[::1]:80"), { transport: "tcp", hostname: "::1", port: 80 });
  assert.deepEqual(parseListen("localhost:0"), { transport: "tcp", hostname: "localhost", port: 0 });
  assert.deepEqual(parseListen("0.0.0.0:80"), { transport: "tcp", hostname: "0.0.0.0", port: 80 });
  assert.deepEqual(parseListen("/run/berth/status.sock"), {
    transport: "unix",
    path: "/run/berth/status.sock",
  });
});

Deno.test("listen addresses: every malformed one is refused naming the key and the value", () => {
  const bad = [
    "8470",
    ":8470",
    "127.0.0.1",
    "host:",
    "host:70000",
    "host:99999",
    "::1:8470",
    "[nothost]:80",
    "[localhost]:80",
    "-host:80",
    "run/x.sock",
    "/",
    "/run/",
    "/run/a\0b",
    "a b:1",
    "",
  ];
  for (const listen of bad) {
    assert.throws(() => parseListen(listen), (error: BerthError) => {
      assert.equal(error.reason, "invalid_input");
      assert.ok(error.message.startsWith(`status.listen ${JSON.stringify(listen)}: `), error.message);
      return true;
    }, listen);
  }
  assert.throws(() => parseListen("x", "peer.listen"), /^BerthError: peer\.listen "x": /);
});

Deno.test("listen addresses: loopback means only this device can connect", () => {
  for (
    const listen of [
      "127.0.0.1:1",
      "127.8.9.10:1",
      "localhost:1",
      "[::1]:1",
      "[::ffff:127.0.0.1]:1",
      "/x.sock",
    ]
  ) {
    assert.ok(isLoopback(parseListen(listen)), listen);
  }
  for (const listen of ["0.0.0.0:1", "[::]:1", "10.0.0.1:1", "128.0.0.1:1", "localhost.example.com:1"]) {
    assert.ok(!isLoopback(parseListen(listen)), listen);
  }
});

Deno.test("listen addresses: formatted as typed, wildcards connected to through loopback", () => {
  for (const listen of ["127.0.0.1:8470", "[::1]:80", "/run/berth/status.sock"]) {
    assert.equal(formatListen(parseListen(listen)), listen);
  }
  assert.equal(connectHost({ hostname: "0.0.0.0" }), "127.0.0.1");
  assert.equal(connectHost({ hostname: "::" }), "::1");
  assert.equal(connectHost({ hostname: "device.lan" }), "device.lan");
});
