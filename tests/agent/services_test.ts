/** The start check's verdict on one look at a version's containers (pure: the checks are given). */
import assert from "node:assert/strict";
import { judgeStart, type ServiceCheck } from "../../src/agent/services.ts";

const check = (
  name: string,
  state: string,
  extra: { exitCode?: number; health?: string; restarts?: boolean } = {},
): ServiceCheck => ({
  status: {
    name,
    state,
    ...(extra.exitCode !== undefined ? { exitCode: extra.exitCode } : {}),
    ...(extra.health ? { health: extra.health } : {}),
  },
  restarts: extra.restarts ?? false,
});

Deno.test("start check: running, healthy, and a one-shot that exited 0 count as up", () => {
  assert.deepEqual(
    judgeStart([
      check("web", "running"),
      check("db", "running", { health: "healthy" }),
      check("migrate", "exited", { exitCode: 0 }),
    ]),
    { up: true, problems: [] },
  );
});

Deno.test("start check: a service still starting or unhealthy is not up yet, and not final", () => {
  const verdict = judgeStart([
    check("web", "running", { health: "starting" }),
    check("worker", "restarting", { restarts: true }),
    check("cron", "exited", { exitCode: 0, restarts: true }),
  ]);
  assert.equal(verdict.up, false);
  assert.equal(verdict.final, undefined, "each may still come up");
  assert.deepEqual(verdict.problems, [
    "service web is starting",
    "service worker is restarting",
    "service cron is exited (exit code 0)",
  ]);
});

Deno.test("start check: an exit other than 0 with no restart policy, or a dead container, is final", () => {
  assert.equal(
    judgeStart([check("web", "running"), check("migrate", "exited", { exitCode: 2 })]).final,
    "service migrate is exited (exit code 2)",
  );
  assert.equal(judgeStart([check("web", "dead")]).final, "service web is dead");
  assert.equal(
    judgeStart([check("web", "missing")]).final,
    undefined,
    "a missing container may be created yet",
  );
});
