/**
 * kill -9 of `berth install` at several moments (before, during and after the image load), then one more
 * install: the app installs and runs, the engine holds exactly the app's images, whole, and the compose
 * root holds no leftovers.
 */
import assert from "node:assert/strict";
import { run, startDockerd } from "../harness/services.ts";
import { runBerth, scratchDir, spawnBerth, testEnv, withServices } from "../harness/env.ts";

Deno.test({
  name: "install killed with SIGKILL at random moments is completed by the next install",
  ...withServices,
  async fn() {
    const { appA, appB, big } = testEnv()!.images;
    const project = await scratchDir("crash-project-");
    const services = { web: appA, api: appB, worker: big };
    await Deno.writeTextFile(
      `${project}/docker-compose.yml`,
      [
        "services:",
        ...Object.entries(services).map(([name, image]) =>
          `  ${name}:\n    image: ${image.ref}\n    command: ["/bin/busybox", "sleep", "600"]\n` +
          `    network_mode: none\n    stop_grace_period: 1s`
        ),
        "",
      ].join("\n"),
    );
    const appRef = `${testEnv()!.registry}/factory/crashy:v1`;
    assert.equal((await runBerth(["publish", project, appRef])).code, 0);
    const dir = await scratchDir("crash-device-");
    const dockerd = await startDockerd(`${dir}/engine`);
    try {
      const device = [
        "--store",
        `${dir}/store`,
        "--compose-root",
        `${dir}/apps`,
        "--docker-host",
        dockerd.host,
      ];
      assert.equal((await runBerth([...device, "pull", appRef])).code, 0);
      // Delays spread over one install's life (about half a second here); a run that ends before its kill
      // simply completes the install, which the later rounds then find done.
      let killed = 0;
      for (const delayMs of [20, 60, 120, 200, 300, 450]) {
        const child = spawnBerth([...device, "install", appRef]);
        const stderr = new Response(child.stderr).text();
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        try {
          child.kill("SIGKILL");
        } catch {
          // it finished first
        }
        if ((await child.status).signal === "SIGKILL") killed++;
        await stderr;
      }
      console.log(`${killed} of 6 installs killed mid-way`);
      assert.ok(killed >= 1, "at least one install was interrupted");
      const installed = await runBerth([...device, "install", appRef]);
      assert.equal(installed.code, 0, installed.stderr);
      const up = await runBerth([...device, "--compose", "docker-compose", "run", "crashy"]);
      assert.equal(up.code, 0, up.stderr);
      const docker = (...args: string[]) => run(["docker", "-H", dockerd.host, ...args]);
      const running = (await docker("ps", "-q")).trim().split("\n").filter(Boolean);
      assert.equal(running.length, 3);
      const ids = new Set((await docker("image", "ls", "-a", "-q", "--no-trunc")).trim().split("\n"));
      assert.deepEqual([...ids].sort(), [appA.configDigest, appB.configDigest, big.configDigest].sort());
      for (const id of ids) {
        await docker("image", "inspect", id);
        await docker("run", "--rm", "--network", "none", id, "/bin/busybox", "true");
      }
      const entries = (await Array.fromAsync(Deno.readDir(`${dir}/apps`))).map((entry) => entry.name);
      assert.deepEqual(entries, ["crashy"], "no staging or old project left behind");
      assert.equal((await runBerth([...device, "fsck"])).code, 0);
    } finally {
      await dockerd.stop();
    }
  },
});
