/**
 * `berth install --pull REF` against a real registry (behind the throttling proxy) and a fresh dockerd:
 * an image is in the engine while another is still downloading, and the end state is what `pull` then
 * `install` gives. A bundle refused before any load leaves the engine empty; a kill -9 in the middle is
 * finished by running the command again; a fresh store that fails is taken back.
 */
import assert from "node:assert/strict";
import { run, startDockerd } from "../harness/services.ts";
import { deviceBerth, scratchDir, spawnBerth, testEnv, withServices } from "../harness/env.ts";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { writeProject } from "../harness/projects.ts";
import { RegistryPusher } from "../../src/registry/push.ts";
import { file, pushApp } from "./crafted.ts";

/** `berth install --pull REF` on the device under `dir`, started without waiting (to watch it or kill it). */
function spawnInstallPull(dir: string, dockerHost: string, ref: string): Deno.ChildProcess {
  const device = ["--store", `${dir}/store`, "--compose-root", `${dir}/apps`, "--docker-host", dockerHost];
  return spawnBerth([...device, "install", "--pull", ref]);
}

Deno.test({
  name: "install --pull: each image loads while the others download; the app ends installed, fsck clean",
  ...withServices,
  async fn(t) {
    const env = testEnv()!;
    const { appA, big } = env.images;
    const dockerd = await startDockerd(`${await scratchDir("install-pull-engine-")}/engine`);
    const proxy = await startFaultProxy(env.registry);
    // Through the proxy, so that its throttle slows the device's downloads.
    const viaProxy = (image: string) => image.replace(env.registry, proxy.host);
    const project = await scratchDir("install-pull-project-");
    await writeProject(project, { web: viaProxy(appA.ref), data: viaProxy(big.ref) });
    const docker = (...args: string[]) => run(["docker", "-H", dockerd.host, ...args]);
    const hasImage = (configDigest: string) =>
      docker("image", "inspect", configDigest).then(() => true, () => false);
    try {
      const ref = `${proxy.host}/install-pull/shop:v1`;
      const published = await deviceBerth(await scratchDir("install-pull-publisher-"), dockerd.host)(
        "publish",
        "--no-layers-meta",
        project,
        ref,
      );
      assert.equal(published.code, 0, published.stderr);

      await t.step("the small image is in the engine while the big one still downloads", async () => {
        const dir = await scratchDir("install-pull-device-");
        // The big image's 32 MiB layer takes about 4 s; the small image's blobs are in at once.
        proxy.setThrottle(8 * 1024 * 1024);
        const child = spawnInstallPull(dir, dockerd.host, ref);
        let smallFirst = false;
        const output = child.output();
        let done = false;
        output.then(() => (done = true), () => (done = true));
        while (!done) {
          if (await hasImage(appA.configDigest)) {
            smallFirst = !(await hasImage(big.configDigest)) && !done;
            break;
          }
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        const { code, stderr } = await output;
        assert.equal(code, 0, new TextDecoder().decode(stderr));
        assert.ok(smallFirst, "app-a was loaded before big was, while berth was still running");
        proxy.setThrottle(0);

        const berth = deviceBerth(dir, dockerd.host);
        const listed = JSON.parse((await berth("--json", "ls")).stdout);
        assert.equal(listed.apps[0].installedRef, ref);
        assert.ok(await hasImage(big.configDigest));
        const fsck = await berth("fsck");
        assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
        const again = await berth("install", "--pull", ref);
        assert.equal(again.code, 0, again.stderr);
        assert.match(again.stdout, /is installed already/);
      });
    } finally {
      proxy.setThrottle(0);
      await proxy.close();
      await dockerd.stop();
    }
  },
});

Deno.test({
  name: "install --pull: a bundle refused before any load leaves the engine as it was",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const pinned = `${env.registry}/berth-test/app-a@${env.images.appA.digest}`;
    const ref = `${env.registry}/install-pull/refused:v1`;
    const pusher = new RegistryPusher();
    await pushApp(pusher, ref, [
      file("docker-compose.yml", `services:\n  web:\n    image: ${pinned}\n    network_mode: none\n`),
      file(".env", "COMPOSE_FILE=docker-compose.yml:override.yml\n"),
    ]);
    const dockerd = await startDockerd(`${await scratchDir("install-pull-refused-engine-")}/engine`);
    try {
      const dir = await scratchDir("install-pull-refused-");
      const berth = deviceBerth(dir, dockerd.host);
      const installed = await berth("install", "--pull", ref);
      assert.equal(installed.code, 1, installed.stdout);
      assert.match(installed.stderr, /\.env: COMPOSE_FILE is not allowed/);
      const images = await run(["docker", "-H", dockerd.host, "image", "ls", "-aq"]);
      assert.equal(images.trim(), "", "no image was loaded");
      assert.deepEqual(await Array.fromAsync(Deno.readDir(`${dir}/apps`)), [], "no project, no staging");
    } finally {
      await dockerd.stop();
    }
  },
});

Deno.test({
  name:
    "install --pull: killed -9 while loading, the same command finishes the install; a failure leaves no store",
  ...withServices,
  async fn(t) {
    const env = testEnv()!;
    const project = await scratchDir("install-pull-kill-project-");
    await writeProject(project, { web: env.images.appB.ref, data: env.images.big.ref });
    const ref = `${env.registry}/install-pull/killed:v1`;
    const dir = await scratchDir("install-pull-kill-");
    const berth = deviceBerth(dir, env.dockerHost);
    assert.equal((await berth("publish", "--no-layers-meta", project, ref)).code, 0);

    await t.step("kill -9 in the middle, then again", async () => {
      const child = spawnInstallPull(dir, env.dockerHost, ref);
      await new Promise((resolve) => setTimeout(resolve, 700));
      try {
        child.kill("SIGKILL");
      } catch {
        // it ended already: the second run then finds it installed
      }
      await child.status;
      await child.stderr.cancel();
      const again = await berth("install", "--pull", ref);
      assert.equal(again.code, 0, again.stderr);
      const listed = JSON.parse((await berth("--json", "ls")).stdout);
      assert.equal(listed.apps[0].installedRef, ref);
      const fsck = await berth("fsck");
      assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
    });

    await t.step("a fresh store whose install --pull fails is not left behind", async () => {
      const fresh = await scratchDir("install-pull-fresh-");
      const failed = await deviceBerth(fresh, env.dockerHost)(
        "install",
        "--pull",
        `${env.registry}/install-pull/no-such-app:v1`,
      );
      assert.equal(failed.code, 1);
      assert.match(failed.stderr, /not found/);
      assert.deepEqual(await Array.fromAsync(Deno.readDir(fresh)), []);
    });
  },
});
