/**
 * Crash safety of the agent's update transaction as the kernel sees it: the agent runs under `strace -f`
 * while it installs v1 and updates it to v2, and each step it records in agent.json must be durable (the
 * temporary file fsynced, renamed, the store directory fsynced) before the next step's record and before
 * the step's work: compose `up` only once `starting` is, the project swap only once `installing` is. Every
 * other rename of the run must follow the store's rules too (checkDurability).
 */
import assert from "node:assert/strict";
import { withServices } from "../harness/env.ts";
import { inScene, publish, waitForApp, writeConfig } from "./agent_harness.ts";
import {
  agentStepWork,
  assertStraceWorks,
  checkAgentSteps,
  checkDurability,
  composeUp,
  TRACED_CALLS,
} from "../store/durability_trace.ts";

Deno.test({
  name: "agent update: each step is durable in agent.json before the next, and before compose up runs",
  ...withServices,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start }) => {
      await assertStraceWorks();
      const { appA, appB } = env.images;
      const ref = `${proxy.host}/fleet/shop:stable`;
      const v1 = await publish(ref, { web: via(appA.ref) });
      await writeConfig(device, [ref]);
      const trace = `${device.dir}/agent.strace`;
      const calls = [...TRACED_CALLS, "execve"].join(",");
      // -s: long enough to read each agent.json written whole, and compose's arguments.
      const agent = start({}, [
        "strace",
        "-f",
        "-y",
        "-qq",
        "-s",
        "8192",
        "-o",
        trace,
        "-e",
        `trace=${calls}`,
      ]);
      await waitForApp(
        device,
        "v1 running",
        (app) => app.state === "running" && app.currentDigest === v1.digest,
        agent,
      );
      const v2 = await publish(ref, { web: via(appB.ref) });
      const done = await waitForApp(
        device,
        "v2 complete",
        (app) => app.currentDigest === v2.digest && app.update?.outcome === "complete" && app,
        agent,
      );
      // The end of the download is recorded with the update, which went on installing meanwhile.
      assert.ok(done.update?.fetchedAt && Date.parse(done.update.fetchedAt) <= Date.parse(done.update.since));
      assert.equal(await agent.stop(), 0, agent.log());
      const log = await Deno.readTextFile(trace);

      const steps = checkAgentSteps(log, `${device.store}/agent.json`, agentStepWork(device.composeRoot));
      const problems = steps.violations.map((violation) =>
        `${violation.problem}\n${violation.lines.map((line) => `    ${line}`).join("\n")}`
      );
      assert.deepEqual(
        problems,
        [],
        `${problems.length} step ordering violation(s):\n${problems.join("\n")}`,
      );
      // Each update's steps in order, as the trace shows them written (repeats of a step merged).
      const recorded = steps.writes.map((write) => write.steps?.shop ?? "unreadable")
        .filter((step, i, all) => step !== all[i - 1]);
      console.log(`agent.json steps: ${recorded.join(" ")}`);
      // Images load while the version downloads: `installing` follows `fetching` (fetchedAt marks the end).
      const update = ["fetching", "installing", "installed", "starting", "verifying", "complete"];
      assert.deepEqual(recorded, [...update, ...update], "v1's install and v2's update, each step recorded");
      // Not vacuous: v1's and v2's compose up and project swap were each found and checked.
      const ups = steps.work.filter((call) => composeUp(call)).length;
      assert.equal(ups, 2, "compose up runs checked");
      assert.equal(steps.work.length - ups, 2, "project swaps checked");

      const store = checkDurability(log, device.dir);
      const renames = store.violations.map((violation) =>
        `${violation.problem}\n${violation.lines.map((line) => `    ${line}`).join("\n")}`
      );
      assert.deepEqual(renames, [], `${renames.length} rename ordering violation(s):\n${renames.join("\n")}`);
      const targets = new Set(store.renames.map((rename) => rename.to.slice(device.dir.length)));
      for (const expected of ["/store/agent.json", "/store/apps.json", "/apps/shop"]) {
        assert.ok(targets.has(expected), `no rename to ${expected} in the trace: ${[...targets].join(" ")}`);
      }
    }),
});
