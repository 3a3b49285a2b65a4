/** Reading systemd's notify settings from the environment (pure). */
import assert from "node:assert/strict";
import { type NotifyEnvironment, notifySettings } from "../../src/util/sd_notify.ts";

const envOf = (vars: NotifyEnvironment) => vars;

Deno.test("no NOTIFY_SOCKET: not under systemd's notify protocol", () => {
  assert.equal(notifySettings(envOf({}), 42), undefined);
  assert.equal(notifySettings(envOf({ NOTIFY_SOCKET: "" }), 42), undefined);
});

Deno.test("the socket, and the watchdog period when it is meant for this process", () => {
  assert.deepEqual(notifySettings(envOf({ NOTIFY_SOCKET: "/run/systemd/notify" }), 42), {
    socket: "/run/systemd/notify",
  });
  const watched = { NOTIFY_SOCKET: "/run/systemd/notify", WATCHDOG_USEC: "30000000" };
  assert.deepEqual(notifySettings(envOf(watched), 42), { socket: "/run/systemd/notify", watchdogMs: 30_000 });
  assert.deepEqual(notifySettings(envOf({ ...watched, WATCHDOG_PID: "42" }), 42)?.watchdogMs, 30_000);
  // A child that inherited the variables is not the process systemd watches.
  assert.equal(notifySettings(envOf({ ...watched, WATCHDOG_PID: "7" }), 42)?.watchdogMs, undefined);
  assert.equal(notifySettings(envOf({ ...watched, WATCHDOG_USEC: "soon" }), 42)?.watchdogMs, undefined);
});

Deno.test("an abstract socket, which Deno cannot address, is an error naming it", () => {
  assert.throws(
    () => notifySettings(envOf({ NOTIFY_SOCKET: "@/org/freedesktop/systemd1/notify" }), 1),
    /abstract/,
  );
});
