/**
 * `berth restore` after a factory reset (the engine's data root and the compose root wiped, the store kept),
 * each test on a dockerd of its own: every app comes back at the version that was installed, whatever its
 * tag names in the store now, and one app that cannot come back keeps no other app down.
 */
import assert from "node:assert/strict";
import { writeProject } from "../harness/projects.ts";
import { type Dockerd, run, startDockerd } from "../harness/services.ts";
import { type BerthRun, deviceBerth, runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";

/** Publishes a one-service app (`web` on `image`) as `ref`; returns its app manifest digest. */
async function publish(ref: string, image: string): Promise<string> {
  const project = await scratchDir("restore-project-");
  await writeProject(project, { web: image });
  const published = await runBerth(["--json", "publish", project, ref]);
  assert.equal(published.code, 0, published.stderr);
  return JSON.parse(published.stdout).digest;
}

/** A device: its store and compose root under a directory of its own, and a dockerd of its own. */
class Device {
  private constructor(readonly dir: string, private dockerd: Dockerd) {}

  static async start(): Promise<Device> {
    const dir = await scratchDir("restore-device-");
    return new Device(dir, await startDockerd(`${dir}/engine`));
  }

  get store(): string {
    return `${this.dir}/store`;
  }

  berth(...args: string[]): Promise<BerthRun> {
    return deviceBerth(this.dir, this.dockerd.host)(...args);
  }

  async ok(...args: string[]): Promise<string> {
    const result = await this.berth(...args);
    assert.equal(result.code, 0, `berth ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  }

  docker(...args: string[]): Promise<string> {
    return run(["docker", "-H", this.dockerd.host, ...args]);
  }

  /** The image ID (config digest) the running container of `app`'s `web` service runs, or "" if none runs. */
  async webImage(app: string): Promise<string> {
    const id = (await this.docker(
      "ps",
      "-q",
      "--filter",
      `label=com.docker.compose.project=${app}`,
      "--filter",
      "label=com.docker.compose.service=web",
    )).trim();
    return id ? (await this.docker("inspect", "--format", "{{.Image}}", id)).trim() : "";
  }

  /** Factory reset: the engine's data root and the compose root go; the store stays. */
  async factoryReset(): Promise<void> {
    await this.dockerd.stop();
    await Deno.remove(`${this.dir}/engine`, { recursive: true });
    await Deno.remove(`${this.dir}/apps`, { recursive: true });
    this.dockerd = await startDockerd(`${this.dir}/engine`);
    assert.equal((await this.docker("image", "ls", "-a", "-q")).trim(), "", "the engine is empty");
  }

  /** The installed version as the store records it and as the installed project says. */
  async installedDigest(app: string): Promise<{ record: string; project: string }> {
    const apps = JSON.parse(await Deno.readTextFile(`${this.store}/apps.json`)).apps;
    const project = await Deno.readTextFile(`${this.dir}/apps/${app}/.berth-app-digest`);
    return { record: apps[app].digest, project };
  }

  stop(): Promise<void> {
    return this.dockerd.stop();
  }
}

/** `ls --json`'s apps as [name, installed ref, running]. */
async function listedApps(device: Device): Promise<[string, string | undefined, boolean | undefined][]> {
  const listed = JSON.parse(await device.ok("--json", "ls"));
  return listed.apps.map((app: { name: string; installedRef?: string; running?: boolean }) => [
    app.name,
    app.installedRef,
    app.running,
  ]);
}

Deno.test({
  name:
    "restore brings back the installed version of an app, not the newer one its tag names in the store now",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { appA, appB } = env.images;
    const ref = `${env.registry}/restore-pin/shop:stable`;
    const v1 = await publish(ref, appA.ref);
    const device = await Device.start();
    try {
      await device.ok("pull", ref);
      await device.ok("install", ref);
      await device.ok("run", "shop");
      assert.equal(await device.webImage("shop"), appA.configDigest);

      // v2 under the same tag, fetched but not installed: the store's tag now names v2.
      const v2 = await publish(ref, appB.ref);
      assert.notEqual(v2, v1);
      await device.ok("pull", ref);
      const stored = JSON.parse(await device.ok("--json", "ls")).apps[0];
      assert.deepEqual(stored.fetched, [ref]);

      await device.factoryReset();
      const restored = await device.berth("--json", "restore");
      assert.equal(restored.code, 0, restored.stderr);
      assert.equal(await device.webImage("shop"), appA.configDigest, "v1's image runs, not v2's");
      assert.deepEqual(await device.installedDigest("shop"), { record: v1, project: v1 });
      assert.deepEqual(await listedApps(device), [["shop", ref, true]]);
      assert.deepEqual(
        JSON.parse(restored.stdout).apps.map((
          app: { name: string; digest: string; ok: boolean },
        ) => [app.name, app.digest, app.ok]),
        [["shop", v1, true]],
      );
      // The version restored is the one installed: install of the tag is an update to v2, not a no-op.
      const update = JSON.parse(await device.ok("--json", "install", ref));
      assert.deepEqual([update.digest, update.alreadyInstalled], [v2, false]);
    } finally {
      await device.stop();
    }
  },
});

Deno.test({
  name:
    "restore tries every app: one that cannot come back is reported on one line with its digest and reason, the others run",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { appA, appB } = env.images;
    // "cart" is installed first, so it is the first app restore meets.
    const cartRef = `${env.registry}/restore-all/cart:v1`;
    const shopRef = `${env.registry}/restore-all/shop:v1`;
    const cart = await publish(cartRef, appB.ref);
    const shop = await publish(shopRef, appA.ref);
    const device = await Device.start();
    try {
      for (const [ref, name] of [[cartRef, "cart"], [shopRef, "shop"]]) {
        await device.ok("pull", ref);
        await device.ok("install", ref);
        await device.ok("run", name);
      }

      // Both fine: restore says so for each and exits 0.
      await device.factoryReset();
      const restored = await device.berth("restore");
      assert.equal(restored.code, 0, restored.stderr);
      assert.deepEqual(restored.stdout.trim().split("\n"), [
        `Restored app cart ${cart} and started it`,
        `Restored app shop ${shop} and started it`,
      ]);
      assert.equal(await device.webImage("cart"), appB.configDigest);
      assert.equal(await device.webImage("shop"), appA.configDigest);

      // cart's bundle is gone from the store: cart cannot be installed again, shop can.
      const manifest = JSON.parse(await Deno.readTextFile(`${device.store}/blobs/sha256/${cart.slice(7)}`));
      const bundle: string = manifest.layers[0].digest;
      await Deno.remove(`${device.store}/blobs/sha256/${bundle.slice(7)}`);
      await device.factoryReset();
      const partial = await device.berth("restore");
      assert.equal(partial.code, 1, partial.stderr);
      assert.deepEqual(partial.stdout.trim().split("\n"), [`Restored app shop ${shop} and started it`]);
      const failures = partial.stderr.trim().split("\n").filter((line) => line.startsWith("berth: "));
      assert.equal(failures.length, 1, partial.stderr);
      assert.match(
        failures[0],
        new RegExp(`^berth: app cart ${cart} was not restored \\(not_found\\): .*${bundle}`),
      );
      assert.equal(await device.webImage("shop"), appA.configDigest, "shop runs although cart failed first");
      assert.equal(await device.webImage("cart"), "");
      assert.deepEqual(await listedApps(device), [["cart", cartRef, false], ["shop", shopRef, true]]);

      // --json: one object per app, and the same exit code.
      await device.factoryReset();
      const json = await device.berth("--json", "restore");
      assert.equal(json.code, 1, json.stderr);
      const apps = JSON.parse(json.stdout).apps as {
        name: string;
        digest: string;
        ok: boolean;
        reason?: string;
      }[];
      assert.deepEqual(apps.map(({ name, digest, ok, reason }) => ({ name, digest, ok, reason })), [
        { name: "cart", digest: cart, ok: false, reason: "not_found" },
        { name: "shop", digest: shop, ok: true, reason: undefined },
      ]);
      assert.equal(await device.webImage("shop"), appA.configDigest);
    } finally {
      await device.stop();
    }
  },
});
