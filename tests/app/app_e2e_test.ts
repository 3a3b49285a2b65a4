/**
 * Compose apps end to end on real parts: images built with docker and pushed with skopeo, an app published
 * by berth to a real registry (behind the counting proxy), pulled, installed into a dockerd of its own, run
 * with real compose, updated, removed, and restored after a factory reset with no registry traffic at all.
 */
import { writeProject } from "../harness/projects.ts";
import assert from "node:assert/strict";
import { run, startDockerd } from "../harness/services.ts";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";

interface Variant {
  name: string;
  /** berth's --compose value (undefined: berth's own choice). */
  compose: string;
  env: Record<string, string>;
}

/** compose v1 (Debian's docker-compose 1.29) always; v2 (the plugin) when the harness provides it. */
async function variants(): Promise<Variant[]> {
  const list: Variant[] = [{ name: "compose v1", compose: "docker-compose", env: {} }];
  const services = await import("../harness/services.ts") as Record<string, unknown>;
  if (typeof services.ensureComposeV2 === "function") {
    const v2 = await (services.ensureComposeV2 as (dir: string) => Promise<{ dockerConfigDir: string }>)(
      `${testEnv()!.tmp}/compose-v2`,
    );
    list.push({ name: "compose v2", compose: "docker compose", env: { DOCKER_CONFIG: v2.dockerConfigDir } });
  }
  return list;
}

Deno.test({
  name: "apps: publish, pull, install, run, update, factory reset and offline restore, rm",
  ...withServices,
  async fn(t) {
    const env = testEnv()!;
    const { appA, appB, appC, big } = env.images;
    const proxy = await startFaultProxy(env.registry);
    const viaProxy = (ref: string) => ref.replace(env.registry, proxy.host);
    try {
      const project = await scratchDir("project-");
      await writeProject(
        project,
        {
          web: viaProxy(appA.ref),
          api: viaProxy(appB.ref),
          worker: viaProxy(appC.ref),
        },
        { conf: true },
      );
      const appRef = `${proxy.host}/factory/shop:v1`;
      const published = await runBerth(["--json", "publish", project, appRef]);
      assert.equal(published.code, 0, published.stderr);
      const { digest } = JSON.parse(published.stdout);
      const again = await runBerth(["--json", "publish", project, appRef]);
      assert.equal(
        JSON.parse(again.stdout).digest,
        digest,
        "publishing the same project twice gives the same digest",
      );

      const project2 = await scratchDir("project2-");
      await writeProject(
        project2,
        {
          web: viaProxy(appA.ref),
          api: viaProxy(appB.ref),
          worker: viaProxy(big.ref),
        },
        { conf: true },
      );
      const app2Ref = `${proxy.host}/factory/shop:v2`;
      assert.equal((await runBerth(["publish", project2, app2Ref])).code, 0);

      for (const variant of await variants()) {
        await t.step(variant.name, async () => {
          const dir = await scratchDir("device-");
          const store = `${dir}/store`;
          const composeRoot = `${dir}/apps`;
          let dockerd = await startDockerd(`${dir}/engine`);
          const berth = (...args: string[]) =>
            runBerth([
              "--store",
              store,
              "--compose-root",
              composeRoot,
              "--docker-host",
              dockerd.host,
              "--compose",
              variant.compose,
              ...args,
            ], variant.env);
          const docker = (...args: string[]) => run(["docker", "-H", dockerd.host, ...args]);
          const running = async () =>
            (await docker("ps", "--format", '{{.Label "com.docker.compose.service"}} {{.Image}}')).trim()
              .split("\n")
              .filter(Boolean).sort();
          const imageIdOf = async (service: string) =>
            (await docker(
              "inspect",
              "--format",
              "{{.Image}}",
              (await docker(
                "ps",
                "-q",
                "--filter",
                `label=com.docker.compose.service=${service}`,
              )).trim(),
            )).trim();
          try {
            const pulled = await berth("pull", appRef);
            assert.equal(pulled.code, 0, pulled.stderr);
            const installed = await berth("--json", "install", appRef);
            assert.equal(installed.code, 0, installed.stderr);
            assert.equal(JSON.parse(installed.stdout).imagesLoaded, 3);
            const up = await berth("run", "shop");
            assert.equal(up.code, 0, up.stderr);
            assert.equal((await running()).length, 3);
            // Every container runs the image the app pins: its ID is the config digest.
            assert.equal(await imageIdOf("web"), appA.configDigest);
            assert.equal(await imageIdOf("api"), appB.configDigest);
            assert.equal(await imageIdOf("worker"), appC.configDigest);
            const listed = JSON.parse((await berth("--json", "ls")).stdout);
            assert.deepEqual(
              listed.apps.map((
                app: { name: string; installed: boolean; running: boolean },
              ) => [app.name, app.installed, app.running]),
              [["shop", true, true]],
            );
            const idle = await berth("--json", "install", appRef);
            assert.equal(JSON.parse(idle.stdout).alreadyInstalled, true);

            // Update: v2 keeps web and api and swaps worker for an image sharing only the base layer.
            assert.equal((await berth("pull", app2Ref)).code, 0);
            const updated = await berth("--json", "install", app2Ref);
            assert.equal(updated.code, 0, updated.stderr);
            const update = JSON.parse(updated.stdout);
            assert.equal(
              update.layersSent,
              big.layers.length - 1,
              "only the new image's own layers are sent",
            );
            assert.ok(update.bytesSent < big.layers.slice(1).reduce((sum, l) => sum + l.size, 0) + 64 * 1024);
            assert.equal((await berth("run", "shop")).code, 0);
            assert.equal(await imageIdOf("worker"), big.configDigest);

            // Factory reset: the engine's data root and the compose root are wiped; the store stays.
            await dockerd.stop();
            await Deno.remove(`${dir}/engine`, { recursive: true });
            await Deno.remove(composeRoot, { recursive: true });
            dockerd = await startDockerd(`${dir}/engine`);
            proxy.resetStats();
            const restored = await berth("restore");
            assert.equal(restored.code, 0, restored.stderr);
            assert.deepEqual(proxy.stats.requests, [], "restore made no registry request");
            assert.equal((await running()).length, 3);
            assert.equal(await imageIdOf("worker"), big.configDigest);

            // rm refuses a running app; after stop it removes containers and project, not the content.
            const refused = await berth("rm", "shop");
            assert.equal(refused.code, 1);
            assert.match(refused.stderr.trim(), /^berth: app shop is running .*; stop it first$/);
            assert.equal((await berth("stop", "shop")).code, 0);
            assert.equal((await running()).length, 0);
            assert.equal((await berth("rm", "shop")).code, 0);
            assert.equal(await Deno.stat(`${composeRoot}/shop`).then(() => true, () => false), false);
            assert.equal((await berth("fsck")).code, 0);
          } finally {
            await dockerd.stop();
          }
        });
      }
    } finally {
      await proxy.close();
    }
  },
});
