/**
 * Apps see none of berth's environment unless the operator passes it on: compose interpolates the app's
 * compose file from its own environment, which berth writes out (PATH, HOME, DOCKER_CONFIG, DOCKER_HOST and
 * the config's composeEnvironment). With a secret, the status token and a proxy URL carrying a password in
 * berth's environment, a container that names them gets nothing; once the config lists one of them, the
 * container gets that one. The app's own `.env` interpolates all along. Read from the engine with docker
 * inspect, for compose v1 and v2.
 */
import assert from "node:assert/strict";
import { ensureComposeV2, harnessCacheDir, run, startDockerd } from "../harness/services.ts";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { writeProject } from "../harness/projects.ts";

/** What berth's own environment holds when it runs the app: nothing of it may reach the container. */
const BERTH_ENV = {
  SOME_SECRET: "s3cret-value",
  BERTH_STATUS_TOKEN: "status-token-value",
  HTTPS_PROXY: "http://user:proxy-password@127.0.0.1:9",
};

/** The container's environment names each variable; `unset` is compose's default for a missing one. */
const ENVIRONMENT = [
  "SEEN=${SOME_SECRET:-unset}",
  "TOKEN=${BERTH_STATUS_TOKEN:-unset}",
  "PROXY=${HTTPS_PROXY:-unset}",
  "GREETING=${GREETING:-unset}",
];

Deno.test({
  name: "a container sees berth's environment variables only when composeEnvironment names them",
  ...withServices,
  async fn(t) {
    const env = testEnv()!;
    const project = await scratchDir("env-project-");
    await writeProject(project, { web: env.images.appA.ref });
    const composePath = `${project}/docker-compose.yml`;
    await Deno.writeTextFile(
      composePath,
      (await Deno.readTextFile(composePath)).replace(
        "    network_mode: none\n",
        `    network_mode: none\n    environment: ${JSON.stringify(ENVIRONMENT)}\n`,
      ),
    );
    await Deno.writeTextFile(`${project}/.env`, "GREETING=hello\n");
    const ref = `${env.registry}/env/shop:v1`;
    const published = await runBerth(["publish", project, ref]);
    assert.equal(published.code, 0, published.stderr);

    const v2 = await ensureComposeV2(harnessCacheDir());
    const variants: [string, string, Record<string, string>][] = [
      ["compose v1", "docker-compose", {}],
      ["compose v2", "docker compose", { DOCKER_CONFIG: v2.dockerConfigDir }],
    ];
    for (const [name, compose, composeEnv] of variants) {
      await t.step(name, async () => {
        const dir = await scratchDir("env-device-");
        const config = `${dir}/config.yml`;
        await Deno.writeTextFile(config, "");
        const dockerd = await startDockerd(`${dir}/engine`);
        const berth = (args: string[], extra: Record<string, string> = {}) =>
          runBerth([
            "--config",
            config,
            "--store",
            `${dir}/store`,
            "--compose-root",
            `${dir}/apps`,
            "--docker-host",
            dockerd.host,
            "--compose",
            compose,
            ...args,
          ], { ...composeEnv, ...extra });
        const docker = (...args: string[]) => run(["docker", "-H", dockerd.host, ...args]);
        const containerEnv = async () => {
          const id = (await docker("ps", "-q", "--filter", "label=com.docker.compose.project=shop")).trim();
          const list: string[] = JSON.parse(await docker("inspect", "--format", "{{json .Config.Env}}", id));
          return Object.fromEntries(list.map((entry) => entry.split(/=(.*)/s).slice(0, 2)));
        };
        try {
          assert.equal((await berth(["pull", ref])).code, 0);
          assert.equal((await berth(["install", ref])).code, 0);
          const up = await berth(["run", "shop"], BERTH_ENV);
          assert.equal(up.code, 0, up.stderr);
          const hidden = await containerEnv();
          assert.deepEqual(
            [hidden.SEEN, hidden.TOKEN, hidden.PROXY, hidden.GREETING],
            ["unset", "unset", "unset", "hello"],
          );
          for (const value of Object.values(BERTH_ENV)) {
            assert.ok(!JSON.stringify(hidden).includes(value), `${value} is not in the container`);
          }

          await Deno.writeTextFile(config, "composeEnvironment: [SOME_SECRET]\n");
          const again = await berth(["run", "shop"], BERTH_ENV);
          assert.equal(again.code, 0, again.stderr);
          const passed = await containerEnv();
          assert.deepEqual(
            [passed.SEEN, passed.TOKEN, passed.PROXY, passed.GREETING],
            [BERTH_ENV.SOME_SECRET, "unset", "unset", "hello"],
          );
        } finally {
          await berth(["stop", "shop"]).catch(() => {});
          await dockerd.stop();
        }
      });
    }
  },
});
