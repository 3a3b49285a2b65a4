/**
 * A bundle's `.env` may give values to its compose file, never compose's or docker's own settings. The
 * attack it stops: `.env` with COMPOSE_FILE=docker-compose.yml:override.yml and an override naming an
 * unpinned image; before, `berth install` took it and `berth run` had the engine pull that image from the
 * registry (no pinning, no verification, no offline restore). Now install refuses such a bundle with one
 * line naming the file and the key, before anything is loaded; publish refuses such a directory before
 * anything is pushed; run refuses a project installed before. Installed projects are root's alone: the
 * compose root and project 0700, `.env` 0600, the next install fixing an older project's modes.
 */
import assert from "node:assert/strict";
import { run, startDockerd } from "../harness/services.ts";
import { runBerth, scratchDir, snapshotTree, testEnv, withServices } from "../harness/env.ts";
import { RegistryPusher } from "../../src/registry/push.ts";
import { assertNothingInstalled, file, pushApp } from "./crafted.ts";

/** Names go into a RegExp literally. */
const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

/** The permission bits of a path (not following a symlink). */
const modeOf = async (path: string) => (await Deno.lstat(path)).mode! & 0o777;

/** A pinned compose file whose service shows GREETING (from `.env`) in its environment. */
function composeText(pinned: string): string {
  return [
    "services:",
    "  web:",
    `    image: ${pinned}`,
    `    command: ["/bin/busybox", "sleep", "600"]`,
    "    network_mode: none",
    "    stop_grace_period: 1s",
    '    environment: ["GREETING=${GREETING}"]',
    `    volumes: ["./conf:/conf:ro"]`,
    "",
  ].join("\n");
}

interface Case {
  name: string;
  dotenv: string;
  key: string;
  line: number;
}

const CASES: Case[] = [
  {
    name: "COMPOSE_FILE adding an override",
    dotenv: "COMPOSE_FILE=docker-compose.yml:override.yml\n",
    key: "COMPOSE_FILE",
    line: 1,
  },
  {
    name: "an exported DOCKER_HOST",
    dotenv: "# engine\nexport DOCKER_HOST=tcp://10.0.0.1:2375\n",
    key: "DOCKER_HOST",
    line: 2,
  },
  {
    name: "a key after a multi-line quoted value",
    dotenv: 'MOTD="hello\nCOMPOSE_ENV_FILES=/etc/berth/credentials.json"\n',
    key: "COMPOSE_ENV_FILES",
    line: 2,
  },
  {
    name: "a quoted key",
    dotenv: "GREETING=hi\r\n'COMPOSE_PROFILES'=debug\r\n",
    key: "COMPOSE_PROFILES",
    line: 2,
  },
];

Deno.test({
  name:
    "install refuses a bundle whose .env sets COMPOSE_* or DOCKER_* with one line naming the key; nothing is loaded or started",
  ...withServices,
  async fn(t) {
    const env = testEnv()!;
    const pinned = `${env.registry}/berth-test/app-a@${env.images.appA.digest}`;
    const dir = await scratchDir("dotenv-device-");
    const store = `${dir}/store`;
    const composeRoot = `${dir}/apps`;
    const dockerd = await startDockerd(`${await scratchDir("dotenv-engine-")}/engine`);
    const berth = (...args: string[]) =>
      runBerth([
        "--store",
        store,
        "--compose-root",
        composeRoot,
        "--docker-host",
        dockerd.host,
        "--compose",
        "docker-compose",
        ...args,
      ]);
    const docker = (...args: string[]) => run(["docker", "-H", dockerd.host, ...args]);
    const list = async (path: string) =>
      (await Array.fromAsync(Deno.readDir(path))).map((e) => e.name).sort();
    const containerEnv = async () => {
      const id = (await docker("ps", "-q", "--filter", "label=com.docker.compose.project=shop")).trim();
      return JSON.parse(await docker("inspect", "--format", "{{json .Config.Env}}", id)) as string[];
    };
    const pusher = new RegistryPusher();
    const push = (ref: string, dotenv: string) =>
      pushApp(pusher, ref, [
        file("docker-compose.yml", composeText(pinned)),
        file(".env", dotenv),
        file("override.yml", `services:\n  web:\n    image: ${env.images.appB.ref}\n`),
        { name: "conf/", type: "dir" },
        file("conf/app.conf", "greeting = hello\n"),
      ]);
    try {
      for (const [index, each] of CASES.entries()) {
        await t.step(each.name, async () => {
          const ref = `${env.registry}/dotenv/case${index}/shop:v1`;
          await push(ref, each.dotenv);
          assert.equal((await berth("pull", ref)).code, 0);
          const installed = await berth("install", ref);
          assert.equal(installed.code, 1, installed.stdout + installed.stderr);
          const lines = installed.stderr.trim().split("\n");
          assert.equal(lines.length, 1, installed.stderr);
          assert.match(
            lines[0],
            new RegExp(
              `^berth: ${literal(ref)} bundle: \\.env: ${each.key} is not allowed: line ${each.line} `,
            ),
          );
          assert.deepEqual(await list(composeRoot), [], "no project and no staging leftovers");
          await assertNothingInstalled(store, docker);
        });
      }

      await t.step(
        "a .env of values installs, interpolates, and is root's alone; a bad update changes nothing",
        async () => {
          const ref = `${env.registry}/dotenv/benign/shop:v1`;
          await push(ref, "# values for the compose file\nGREETING=hello\n");
          assert.equal((await berth("pull", ref)).code, 0);
          const installed = await berth("install", ref);
          assert.equal(installed.code, 0, installed.stderr);
          const project = `${composeRoot}/shop`;
          assert.equal(await modeOf(composeRoot), 0o700, "compose root");
          assert.equal(await modeOf(project), 0o700, "project");
          assert.equal(await modeOf(`${project}/.env`), 0o600, ".env");
          assert.equal(await modeOf(`${project}/docker-compose.yml`), 0o644);
          assert.equal(await modeOf(`${project}/conf`), 0o755, "bind-mounted directories stay readable");
          assert.equal(await modeOf(`${project}/conf/app.conf`), 0o644);
          const up = await berth("run", "shop");
          assert.equal(up.code, 0, up.stderr);
          assert.ok(
            (await containerEnv()).includes("GREETING=hello"),
            "the .env value reached the container",
          );

          // A project installed before: open modes, which the next install closes.
          await Deno.chmod(composeRoot, 0o755);
          await Deno.chmod(project, 0o755);
          await Deno.chmod(`${project}/.env`, 0o644);
          const again = await berth("--json", "install", ref);
          assert.equal(again.code, 0, again.stderr);
          assert.equal(JSON.parse(again.stdout).alreadyInstalled, true);
          assert.deepEqual(
            [await modeOf(composeRoot), await modeOf(project), await modeOf(`${project}/.env`)],
            [0o700, 0o700, 0o600],
          );

          const before = await snapshotTree(project);
          const containers = await docker("ps", "-q");
          const evil = `${env.registry}/dotenv/case0/shop:v1`;
          const refused = await berth("install", evil);
          assert.equal(refused.code, 1);
          assert.match(refused.stderr.trim(), /\.env: COMPOSE_FILE is not allowed/);
          assert.deepEqual(await list(composeRoot), ["shop"], "no staging leftovers");
          assert.deepEqual(await snapshotTree(project), before, "the installed project is untouched");
          assert.equal(await docker("ps", "-q"), containers, "the running container is untouched");
        },
      );

      await t.step(
        "a project installed before with such a .env is refused by run, and repaired by install",
        async () => {
          const project = `${composeRoot}/shop`;
          await Deno.writeTextFile(
            `${project}/.env`,
            "GREETING=hello\nCOMPOSE_FILE=docker-compose.yml:override.yml\n",
          );
          await Deno.writeTextFile(
            `${project}/override.yml`,
            `services:\n  web:\n    image: ${env.images.appB.ref}\n`,
          );
          const refused = await berth("run", "shop");
          assert.equal(refused.code, 1);
          assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
          assert.match(
            refused.stderr.trim(),
            new RegExp(`^berth: app shop: ${literal(project)}/\\.env: COMPOSE_FILE is not allowed: line 2 `),
          );
          const repaired = await berth("--json", "install", `${env.registry}/dotenv/benign/shop:v1`);
          assert.equal(repaired.code, 0, repaired.stderr);
          assert.equal(JSON.parse(repaired.stdout).alreadyInstalled, false, "the project is written anew");
          assert.equal(
            await Deno.readTextFile(`${project}/.env`),
            "# values for the compose file\nGREETING=hello\n",
          );
          const up = await berth("run", "shop");
          assert.equal(up.code, 0, up.stderr);
          const images = (await docker("ps", "--format", "{{.Image}}")).trim();
          assert.ok(!images.includes("app-b"), `no unpinned image runs: ${images}`);
          assert.ok(
            !(await docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}")).includes("app-b"),
            "nothing was pulled",
          );
        },
      );
    } finally {
      await pusher.close();
      await run([
        "docker",
        "-H",
        dockerd.host,
        "rm",
        "-f",
        ...(await docker("ps", "-aq")).trim().split("\n").filter(Boolean),
      ])
        .catch(() => {});
      await dockerd.stop();
    }
  },
});

Deno.test({
  name:
    "publish refuses a project whose .env sets COMPOSE_* or DOCKER_*, before pushing anything; an ignored .env is fine",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const dir = await scratchDir("dotenv-project-");
    await Deno.writeTextFile(`${dir}/docker-compose.yml`, composeText(env.images.appA.ref));
    await Deno.writeTextFile(`${dir}/.env`, "GREETING=hi\nCOMPOSE_FILE=docker-compose.yml:override.yml\n");
    const ref = `${env.registry}/dotenv/publish/shop:v1`;
    const published = await runBerth(["publish", dir, ref]);
    assert.equal(published.code, 1, published.stdout + published.stderr);
    const lines = published.stderr.trim().split("\n");
    assert.equal(lines.length, 1, published.stderr);
    assert.match(
      lines[0],
      new RegExp(`^berth: ${literal(dir)}/\\.env: COMPOSE_FILE is not allowed: line 2 `),
    );
    const manifest = await fetch(`http://${env.registry}/v2/dotenv/publish/shop/manifests/v1`, {
      method: "HEAD",
    });
    assert.equal(manifest.status, 404, "nothing was pushed");

    await Deno.writeTextFile(`${dir}/.composeappignores`, ".env\n");
    const ignored = await runBerth(["publish", dir, ref]);
    assert.equal(ignored.code, 0, ignored.stderr);
  },
});
