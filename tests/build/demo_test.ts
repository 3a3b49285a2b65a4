/**
 * The README's demo command, run as a user runs it in a terminal: `deno task demo` in a process group of
 * its own, as a shell's job. It prints the status URL before any other URL, the app comes up running, the
 * update command it prints works as printed, and Ctrl-C (SIGINT to the whole process group, so every
 * process the terminal's job holds gets it) stops it within 30 s, ending with `agent stopped (exit 0)`,
 * with no process it started left and its directory gone.
 */
import assert from "node:assert/strict";
import { withServices } from "../harness/env.ts";
import {
  describe,
  type ProcessInfo,
  processTable,
  stillRuns,
  withDescendants,
} from "../../build/demo/processes.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
/** What the demo promises between Ctrl-C and its exit. */
const STOP_MS = 30_000;

Deno.test({
  name: "demo: the app runs, its update command works, and Ctrl-C to its process group leaves nothing behind",
  // It needs what the test services need (dockerd, docker-registry); it starts its own.
  ...withServices,
  async fn() {
    const started = Date.now();
    const demo = new Deno.Command(Deno.execPath(), {
      args: ["task", "demo"],
      cwd: ROOT,
      // A session and process group of its own, like a shell's job: the group is the target of the SIGINT.
      detached: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let output = "";
    const reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of demo.stdout) output += decoder.decode(chunk, { stream: true });
    })();
    let errors = "";
    const readingErrors = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of demo.stderr) errors += decoder.decode(chunk, { stream: true });
    })();
    let exited = false;
    demo.status.then(() => exited = true);
    const waitFor = async (pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = output.match(pattern);
        if (match) return match;
        if (Date.now() > deadline || exited) {
          throw new Error(`no ${pattern} after ${(Date.now() - started) / 1000} s:\n${output}\n${errors}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    };
    const appStatus = async (statusUrl: string) =>
      (await (await fetch(`${statusUrl}/status`)).json()).apps[0];
    let seen: ProcessInfo[] = [];
    let ours: (table: ProcessInfo[]) => ProcessInfo[] = () => [];
    try {
      const [, dir] = await waitFor(/working under (\S+)/, 120_000);
      assert.match(dir, /\/berth-demo-[^/]+$/);
      const [, statusUrl] = await waitFor(/status: (http:\/\/127\.0\.0\.1:\d+)\b/, 120_000);
      assert.equal(
        output.match(/\w+:\/\/\S+/)?.[0],
        statusUrl,
        `the status URL is the first URL:\n${output}`,
      );
      const [, appUrl] = await waitFor(/app hello is running: (http:\/\/127\.0\.0\.1:\d+\/)/, 120_000);
      const [, update] = await waitFor(/^ {2}(sed -i .* publish .*)$/m, 1_000);
      await waitFor(/Ctrl-C to stop/, 1_000);

      const before = await appStatus(statusUrl);
      assert.equal(before.name, "hello");
      assert.equal(before.state, "running");
      assert.equal(before.services[0].state, "running");
      assert.match(await (await fetch(appUrl)).text(), /hello from berth/);
      assert.match(await (await fetch(statusUrl)).text(), /<html/i, "the status URL serves the page");

      // Everything the demo started, while it runs: its process tree, what names its directory, and the
      // engine's container shims with their containers (nobody's children once containerd started them),
      // found by the containerd socket and exec root its dockerd was given, wherever the demo put them.
      const tree = withDescendants(processTable(), (p) => p.pid === demo.pid || p.cmdline.includes(dir));
      const engineArgs = tree.find((p) => p.cmdline.startsWith("dockerd "))?.cmdline.split(" ") ?? [];
      const enginePaths = ["--containerd", "--exec-root"].map((flag) => engineArgs.indexOf(flag))
        .filter((at) => at >= 0 && at + 1 < engineArgs.length).map((at) => engineArgs[at + 1]);
      assert.equal(enginePaths.length, 2, `dockerd's socket and exec root: ${engineArgs.join(" ")}`);
      ours = (table) =>
        withDescendants(
          table,
          (p) =>
            p.pid === demo.pid || p.cmdline.includes(dir) ||
            enginePaths.some((path) => p.cmdline.includes(path)),
        );
      seen = ours(processTable());
      for (const what of ["containerd-shim-runc-v2", "dockerd", "containerd ", "docker-registry", " agent"]) {
        assert.ok(seen.some((p) => p.cmdline.includes(what)), `no ${what} among ${describe(seen)}`);
      }

      // The update command, pasted into a shell elsewhere: the agent installs the new version.
      const pasted = await new Deno.Command("sh", { args: ["-c", update], cwd: "/", stdin: "null" }).output();
      const decoder = new TextDecoder();
      assert.ok(
        pasted.success,
        `${update}\n${decoder.decode(pasted.stdout)}${decoder.decode(pasted.stderr)}`,
      );
      const published = decoder.decode(pasted.stdout).match(/Published \S+ (sha256:[0-9a-f]{64})/)?.[1];
      assert.ok(published && published !== before.currentDigest, decoder.decode(pasted.stdout));
      const deadline = Date.now() + 60_000;
      for (;;) {
        const now = await appStatus(statusUrl);
        if (now.currentDigest === published && now.state === "running") break;
        assert.ok(Date.now() < deadline, `not updated to ${published} after 60 s: ${JSON.stringify(now)}`);
        await new Promise((resolve) => setTimeout(resolve, 500));
      }

      // The update started a new container, with a new shim.
      seen = [...seen, ...ours(processTable()).filter((p) => !seen.some((q) => q.pid === p.pid))];
      const interrupted = Date.now();
      Deno.kill(-demo.pid, "SIGINT");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        demo.status,
        new Promise<"hung">((resolve) => timer = setTimeout(() => resolve("hung"), STOP_MS)),
      ]);
      clearTimeout(timer);
      assert.notEqual(
        outcome,
        "hung",
        `still running ${STOP_MS / 1000} s after SIGINT:\n${output}\n${errors}`,
      );
      const stopSeconds = (Date.now() - interrupted) / 1000;
      await reading;
      await readingErrors;
      assert.equal((outcome as Deno.CommandStatus).code, 0, output + errors);
      const lines = output.trimEnd().split("\n");
      assert.match(lines[lines.length - 1], /agent stopped \(exit 0\)$/, output + errors);
      assert.match(lines[lines.length - 1], /nothing the demo started is left/);
      assert.match(errors, /SIGTERM: stopping/, "the agent was asked to stop, not killed");

      const naming = ours(processTable());
      assert.deepEqual(naming, [], `processes naming ${dir} or the engine's sockets: ${describe(naming)}`);
      const left = seen.filter(stillRuns);
      assert.deepEqual(left, [], `processes the demo started, still running: ${describe(left)}`);
      const mounts = (await Deno.readTextFile("/proc/self/mountinfo")).split("\n")
        .filter((line) => [dir, enginePaths[1]].some((root) => line.split(" ")[4]?.startsWith(root)));
      assert.deepEqual(mounts, [], "nothing is mounted under the demo's directory or the engine's exec root");
      await assert.rejects(Deno.stat(dir), Deno.errors.NotFound, "the demo's directory is removed");
      await assert.rejects(fetch(`${statusUrl}/status`), "the agent no longer answers");
      console.log(
        `demo: up and updated in ${((interrupted - started) / 1000).toFixed(1)} s, stopped in ` +
          `${stopSeconds.toFixed(1)} s`,
      );
    } finally {
      if (!exited) {
        try {
          Deno.kill(-demo.pid, "SIGKILL");
        } catch {
          // already exited
        }
      }
      await demo.status;
      await reading.catch(() => {});
      await readingErrors.catch(() => {});
      // What a failed run left must not outlive the test.
      for (const process of [...seen.filter(stillRuns), ...ours(processTable())]) {
        try {
          Deno.kill(process.pid, "SIGKILL");
        } catch {
          // already exited
        }
      }
    }
  },
});
