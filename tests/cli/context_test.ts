/** Settings resolve flag > environment variable > config file > default, for every setting the file holds. */
import assert from "node:assert/strict";
import { parseArgs } from "../../src/cli/args.ts";
import { GLOBAL_OPTIONS, makeContext } from "../../src/cli/context.ts";
import { hostPlatform } from "../../src/oci/platform.ts";
import { BerthError } from "../../src/util/errors.ts";
import {
  DEFAULT_CERTS_DIR,
  DEFAULT_COMPOSE_ROOT,
  DEFAULT_CONFIG_FILE,
  DEFAULT_CREDENTIALS_FILE,
  DEFAULT_DOCKER_HOST,
  DEFAULT_STORE,
} from "../../src/config/defaults.ts";

const CONFIG = `store: /file/store
composeRoot: /file/apps
docker: { host: unix:///file/docker.sock }
compose: file-compose
platform: linux/arm/v6
parallel: 5
registries:
  credentials: /file/credentials.json
  certsDir: /file/certs.d
  insecure: [file.local:5000]
`;

const ENV = {
  BERTH_STORE: "/env/store",
  BERTH_COMPOSE_ROOT: "/env/apps",
  DOCKER_HOST: "unix:///env/docker.sock",
  BERTH_COMPOSE: "env-compose",
  BERTH_PARALLEL: "6",
  BERTH_CREDENTIALS: "/env/credentials.json",
};

const FLAGS = [
  "--store",
  "/flag/store",
  "--compose-root",
  "/flag/apps",
  "--docker-host",
  "unix:///flag/docker.sock",
  "--compose",
  "flag-compose",
  "--platform",
  "linux/arm64",
  "--parallel",
  "7",
  "--credentials",
  "/flag/credentials.json",
  "--certs-dir",
  "/flag/certs.d",
  "--insecure-registry",
  "flag.local:5000",
];

async function context(argv: string[], env: Record<string, string>) {
  const args = parseArgs([...argv, "ls"], GLOBAL_OPTIONS, () => []);
  return await makeContext(args, { env: (name) => env[name] });
}

function settings(resolved: Awaited<ReturnType<typeof context>>) {
  return {
    store: resolved.storePath,
    composeRoot: resolved.composeRoot,
    dockerHost: resolved.dockerHost,
    compose: resolved.composeCommand,
    platform: resolved.platform,
    parallel: resolved.parallel,
    credentials: resolved.registry.credentialFiles?.[0],
    certsDir: resolved.registry.certsDirs?.[0],
    insecure: resolved.registry.insecureRegistries,
  };
}

Deno.test("flag > environment > config file > default, setting by setting", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-context-" });
  const file = `${dir}/config.yml`;
  await Deno.writeTextFile(file, CONFIG);
  try {
    const withConfig = ["--config", file];
    assert.deepEqual(settings(await context([...withConfig, ...FLAGS], ENV)), {
      store: "/flag/store",
      composeRoot: "/flag/apps",
      dockerHost: "unix:///flag/docker.sock",
      compose: "flag-compose",
      platform: { os: "linux", architecture: "arm64" },
      parallel: 7,
      credentials: "/flag/credentials.json",
      certsDir: "/flag/certs.d",
      insecure: ["file.local:5000", "flag.local:5000"],
    });
    assert.deepEqual(settings(await context(withConfig, ENV)), {
      store: "/env/store",
      composeRoot: "/env/apps",
      dockerHost: "unix:///env/docker.sock",
      compose: "env-compose",
      platform: { os: "linux", architecture: "arm", variant: "v6" },
      parallel: 6,
      credentials: "/env/credentials.json",
      certsDir: "/file/certs.d",
      insecure: ["file.local:5000"],
    });
    assert.deepEqual(settings(await context(withConfig, {})), {
      store: "/file/store",
      composeRoot: "/file/apps",
      dockerHost: "unix:///file/docker.sock",
      compose: "file-compose",
      platform: { os: "linux", architecture: "arm", variant: "v6" },
      parallel: 5,
      credentials: "/file/credentials.json",
      certsDir: "/file/certs.d",
      insecure: ["file.local:5000"],
    });
    await Deno.writeTextFile(file, "keep: 2\n");
    const defaults = await context(withConfig, {});
    assert.deepEqual(settings(defaults), {
      store: DEFAULT_STORE,
      composeRoot: DEFAULT_COMPOSE_ROOT,
      dockerHost: DEFAULT_DOCKER_HOST,
      compose: undefined,
      platform: hostPlatform(),
      parallel: 3,
      credentials: DEFAULT_CREDENTIALS_FILE,
      certsDir: DEFAULT_CERTS_DIR,
      insecure: [],
    });
    assert.equal(defaults.config.keep, 2);
    assert.equal(defaults.configPath, file);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the config file comes from --config, else BERTH_CONFIG; only a named one must exist", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-context-" });
  try {
    await Deno.writeTextFile(`${dir}/flag.yml`, "store: /from/flag-file\n");
    await Deno.writeTextFile(`${dir}/env.yml`, "store: /from/env-file\n");
    const env = { BERTH_CONFIG: `${dir}/env.yml` };
    const fromFlag = await context(["--config", `${dir}/flag.yml`], env);
    assert.equal(fromFlag.storePath, "/from/flag-file");
    assert.equal(fromFlag.configPath, `${dir}/flag.yml`);
    assert.equal((await context([], env)).storePath, "/from/env-file");
    assert.equal((await context([], { BERTH_CONFIG: "" })).configPath, DEFAULT_CONFIG_FILE);
    for (
      const [argv, envVars] of [[["--config", `${dir}/absent.yml`], {}], [[], {
        BERTH_CONFIG: `${dir}/absent.yml`,
      }]] as const
    ) {
      await assert.rejects(
        context([...argv], envVars),
        (error: unknown) =>
          error instanceof BerthError && error.reason === "invalid_input" &&
          error.message.includes(`${dir}/absent.yml`),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
