/**
 * How berth runs compose, shown with compose itself (Debian's v1 1.29 and the v2 plugin, run standalone):
 * whatever sits in a project directory — a `.env` naming COMPOSE_FILE, COMPOSE_PROJECT_NAME and
 * COMPOSE_PROFILES, a docker-compose.override.yml, a compose.yaml — berth's invocation reads
 * docker-compose.yml alone, under berth's project name; and compose interpolates only the variables berth
 * passes on, never the rest of berth's environment, while the project's own `.env` values still apply.
 * `compose config` prints the project as compose loaded it, with no engine involved.
 */
import assert from "node:assert/strict";
import { ensureComposeV2, harnessCacheDir } from "../harness/services.ts";
import { scratchDir, testEnv, withServices } from "../harness/env.ts";
import { type Compose, type ComposeProject, findCompose, runCompose } from "../../src/docker/compose_cli.ts";

const PINNED = `registry.example.com/shop/web@sha256:${"a".repeat(64)}`;

/** compose v1 and the v2 plugin binary, each as berth finds it when named with --compose. */
async function composes(dockerHost: string): Promise<[string, Compose][]> {
  const v2 = await ensureComposeV2(harnessCacheDir());
  return [
    ["compose v1", await findCompose(dockerHost, "docker-compose")],
    ["compose v2", await findCompose(dockerHost, `${v2.dockerConfigDir}/cli-plugins/docker-compose`)],
  ];
}

/** A project whose every other file would, left to compose's own rules, replace the pinned image. */
async function hijackedProject(): Promise<string> {
  const dir = await scratchDir("hijacked-");
  const service = (image: string, extra = "") =>
    `services:\n  web:\n    image: ${image}\n    environment: ["GREETING=\${GREETING}"]\n${extra}`;
  await Deno.writeTextFile(`${dir}/docker-compose.yml`, service(PINNED));
  await Deno.writeTextFile(`${dir}/override.yml`, service("registry.example.com/unpinned:latest"));
  await Deno.writeTextFile(
    `${dir}/docker-compose.override.yml`,
    service("registry.example.com/override:latest"),
  );
  await Deno.writeTextFile(`${dir}/compose.yaml`, service("registry.example.com/compose-yaml:latest"));
  await Deno.writeTextFile(
    `${dir}/.env`,
    "COMPOSE_FILE=docker-compose.yml:override.yml\nCOMPOSE_PROJECT_NAME=hijack\nGREETING=hello\n",
  );
  return dir;
}

/** The image names `compose config` printed. */
const images = (config: string) => [...config.matchAll(/image: (\S+)/g)].map((match) => match[1]);

Deno.test({
  name:
    "berth's compose reads only docker-compose.yml, whatever .env, override or compose.yaml the project holds",
  ...withServices,
  async fn(t) {
    const { dockerHost } = testEnv()!;
    const dir = await hijackedProject();
    const project: ComposeProject = { dockerHost, dir, file: "docker-compose.yml", name: "shop" };
    for (const [name, compose] of await composes(dockerHost)) {
      await t.step(name, async () => {
        // The hijack is real: compose left to itself in the directory runs something else.
        const plain = await new Deno.Command(compose.argv[0], {
          args: [...compose.argv.slice(1), "config"],
          cwd: dir,
          clearEnv: true,
          env: { PATH: Deno.env.get("PATH")!, DOCKER_HOST: dockerHost },
        }).output();
        const plainText = new TextDecoder().decode(plain.stdout);
        assert.ok(plain.success, new TextDecoder().decode(plain.stderr));
        assert.ok(!images(plainText).includes(PINNED), `plain compose config: ${images(plainText)}`);

        const config = await runCompose(compose, project, ["config"]);
        assert.deepEqual(images(config), [PINNED]);
        assert.match(config, /GREETING[=:] ?hello/, "the project's .env still interpolates");
        // v2 prints the project name; v1 does not, and takes -p over COMPOSE_PROJECT_NAME as well.
        if (name === "compose v2") assert.match(config, /^name: shop$/m);
      });
    }
  },
});

Deno.test({
  name: "compose interpolates berth's environment only for the variables berth passes on",
  ...withServices,
  async fn(t) {
    const { dockerHost } = testEnv()!;
    const dir = await scratchDir("interpolate-");
    await Deno.writeTextFile(
      `${dir}/docker-compose.yml`,
      `services:\n  web:\n    image: ${PINNED}\n    environment: ["SEEN=\${SOME_SECRET:-unset}", "SITE=\${SITE}"]\n`,
    );
    await Deno.writeTextFile(`${dir}/.env`, "SITE=from-dotenv\n");
    const project: ComposeProject = { dockerHost, dir, file: "docker-compose.yml", name: "shop" };
    Deno.env.set("SOME_SECRET", "s3cret");
    try {
      for (const [name, compose] of await composes(dockerHost)) {
        await t.step(name, async () => {
          const hidden = await runCompose(compose, project, ["config"]);
          assert.match(hidden, /SEEN[=:] ?unset/);
          assert.ok(!hidden.includes("s3cret"), hidden);
          assert.match(hidden, /SITE[=:] ?from-dotenv/);
          const passed = await runCompose(compose, { ...project, passEnv: ["SOME_SECRET"] }, ["config"]);
          assert.match(passed, /SEEN[=:] ?s3cret/);
        });
      }
    } finally {
      Deno.env.delete("SOME_SECRET");
    }
  },
});
