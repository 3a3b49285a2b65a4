/**
 * A self-check of compose in the harness, run only with BERTH_HARNESS_SELFTEST=1 (it starts its own registry
 * and dockerd): compose v2 (Debian 13's plugin, provisioned by `ensureComposeV2`) through every docker CLI
 * the machine has, and Debian 12's compose v1, each run the same project against the test dockerd. The
 * project is made the way berth installs an app: pinned, labelled with the config hash and rewritten to a
 * local tag with `pull_policy: never` by src/app/compose_pin.ts and src/app/config_hash.ts.
 */
import { type ImageInfo, startServices } from "./images.ts";
import { ensureComposeV2, ensurePackages, harnessCacheDir, run } from "./services.ts";
import { formatComposeFile, parseComposeFile } from "../../src/app/compose_file.ts";
import { pinImages, rewriteForEngine } from "../../src/app/compose_pin.ts";
import { CONFIG_HASH_LABEL, labelServices } from "../../src/app/config_hash.ts";

/** The docker CLIs to drive the v2 plugin with: the one first on PATH, and Debian's when that is another. */
async function dockerClis(): Promise<string[]> {
  const found: string[] = [];
  const seen = new Set<string>();
  const candidates = (Deno.env.get("PATH") ?? "").split(":").filter((dir) => dir).map((dir) =>
    `${dir}/docker`
  );
  for (const path of [candidates.find(isExecutable), "/usr/bin/docker"]) {
    if (!path || !isExecutable(path)) continue;
    const real = await Deno.realPath(path);
    if (seen.has(real)) continue;
    seen.add(real);
    found.push(path);
  }
  return found;
}

function isExecutable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Runs a command and returns whether it succeeded, with its output (for commands expected to fail). */
async function attempt(cmd: string[], env: Record<string, string>, cwd: string) {
  const output = await new Deno.Command(cmd[0], { args: cmd.slice(1), env, cwd, stdin: "null" }).output();
  const decoder = new TextDecoder();
  return { success: output.success, text: decoder.decode(output.stdout) + decoder.decode(output.stderr) };
}

Deno.test({
  name: "harness: compose v1 and v2 run a berth-made project on the test dockerd",
  ignore: Deno.env.get("BERTH_HARNESS_SELFTEST") !== "1",
  async fn() {
    await ensurePackages();
    const started = Date.now();
    const composeV2 = await ensureComposeV2(harnessCacheDir());
    console.log(`compose v2 ${composeV2.version} ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const tmp = await Deno.makeTempDir({ prefix: "berth-compose-" });
    const services = await startServices(tmp);
    try {
      const host = services.dockerd.host;
      const env = { DOCKER_CONFIG: composeV2.dockerConfigDir };
      const docker = (args: string[]) => run(["docker", "-H", host, ...args], { env });
      const app: ImageInfo = services.images.appA;
      const pinnedRef = `${app.ref.replace(/:1$/, "")}@${app.digest}`;
      const localRef = `berth.local/berth-test/app-a:sha256-${app.digest.slice(7, 19)}`;
      // What berth's load does, by hand: the image in the engine under a local tag.
      await docker(["pull", pinnedRef]);
      await docker(["tag", pinnedRef, localRef]);

      const template = [
        "services:",
        "  web:",
        `    image: ${app.ref}`,
        "    network_mode: none",
        '    command: ["sleep", "30"]',
        "    labels:",
        "      com.example.smoke: yes",
        "",
      ].join("\n");
      const labelled = labelServices(
        pinImages(
          parseComposeFile(new TextEncoder().encode(template), "docker-compose.yml"),
          new Map([[app.ref, pinnedRef]]),
        ),
      );
      const hash = (labelled.services[0].config.labels as Record<string, string>)[CONFIG_HASH_LABEL];
      const project = `${tmp}/project`;
      await Deno.mkdir(project);
      await Deno.writeFile(
        `${project}/docker-compose.yml`,
        formatComposeFile(rewriteForEngine(labelled, new Map([[pinnedRef, localRef]]))),
      );

      const tools: { name: string; compose: string[]; separator: string }[] = [];
      for (const cli of await dockerClis()) {
        const cliVersion = (await run([cli, "--version"])).trim();
        tools.push({
          name: `compose v2 via ${cli} (${cliVersion})`,
          compose: [cli, "-H", host, "compose"],
          separator: "-",
        });
      }
      tools.push({
        name: "compose v1 (docker-compose)",
        compose: ["docker-compose", "-H", host],
        separator: "_",
      });

      for (const tool of tools) {
        const name = "berthsmoke";
        const compose = (args: string[]) =>
          run([...tool.compose, "-p", name, ...args], { env, cwd: project });
        if (tool.separator === "-") {
          const version = (await compose(["version", "--short"])).trim();
          if (version !== composeV2.version) throw new Error(`${tool.name}: compose version ${version}`);
        }
        await compose(["up", "-d"]);
        try {
          const ids = (await compose(["ps", "-q"])).split("\n").filter((id) => id);
          if (ids.length !== 1) throw new Error(`${tool.name}: ps -q listed ${ids.length} containers`);
          const [info] = JSON.parse(await docker(["inspect", ids[0]]));
          const labels: Record<string, string> = info.Config.Labels;
          const expectedName = `/${name}${tool.separator}web${tool.separator}1`;
          if (!info.State.Running || info.Name !== expectedName || info.Config.Image !== localRef) {
            throw new Error(
              `${tool.name}: container ${info.Name} (want ${expectedName}) image ${info.Config.Image} running ${info.State.Running}`,
            );
          }
          if (labels[CONFIG_HASH_LABEL] !== hash || labels["com.docker.compose.project"] !== name) {
            throw new Error(`${tool.name}: labels ${JSON.stringify(labels)}`);
          }
          if (info.HostConfig.NetworkMode !== "none") {
            throw new Error(`${tool.name}: ${info.HostConfig.NetworkMode}`);
          }
          console.log(
            `${tool.name}: ${info.Name.slice(1)} up, compose labels ${
              Object.keys(labels).filter((key) => key.startsWith("com.docker.compose.")).join(", ")
            }`,
          );
        } finally {
          await compose(["down", "-t", "0"]);
        }
        const left = (await docker(["ps", "-aq", "--filter", `label=com.docker.compose.project=${name}`]))
          .trim();
        if (left) throw new Error(`${tool.name}: down left containers ${left}`);
      }

      // pull_policy: never is accepted by both, honoured by v2 only: with the image absent from the engine,
      // v2 refuses to start and v1 pulls it from the (loopback) test registry.
      const absent = services.images.appB.ref;
      const negative = `${tmp}/negative`;
      await Deno.mkdir(negative);
      await Deno.writeTextFile(
        `${negative}/docker-compose.yml`,
        `services:\n  web:\n    image: ${absent}\n    pull_policy: never\n    network_mode: none\n    command: ["sleep", "30"]\n`,
      );
      await docker(["rmi", absent]).catch(() => {});
      const fullEnv = { ...Deno.env.toObject(), ...env };
      const v2 = await attempt(
        ["docker", "-H", host, "compose", "-p", "berthneg", "up", "-d"],
        fullEnv,
        negative,
      );
      if (v2.success || !/no such image/i.test(v2.text)) {
        throw new Error(`compose v2 with pull_policy never: ${v2.text}`);
      }
      const v1 = await attempt(
        ["docker-compose", "-H", host, "-p", "berthneg", "up", "-d"],
        fullEnv,
        negative,
      );
      await attempt(["docker-compose", "-H", host, "-p", "berthneg", "down", "-t", "0"], fullEnv, negative);
      if (!v1.success || !/pulling/i.test(v1.text)) {
        throw new Error(`compose v1 with pull_policy never: ${v1.text}`);
      }
      console.log(
        "pull_policy never: compose v2 refuses a missing image, compose v1 accepts the key and pulls",
      );
    } finally {
      await services.stop();
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
