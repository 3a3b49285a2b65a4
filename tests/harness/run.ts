/**
 * `deno task test`: the one command that runs every test on a fresh Debian machine. It checks formatting,
 * lint and types, installs the Debian packages the tests need when they are missing, starts a real
 * docker-registry and a real dockerd on private ports and sockets under a temporary directory, builds and
 * pushes the test images with docker and skopeo, runs `deno test`, and stops and removes all of it.
 */
import { ensurePackages } from "./services.ts";
import { startServices, type TestServices } from "./images.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const deno = Deno.execPath();
// Deno's once-a-day update check would be a connection of its own from every test's child: through a
// test proxy it shows up as a CONNECT nobody asked for, and tests must not depend on outside hosts.
Deno.env.set("DENO_NO_UPDATE_CHECK", "1");

async function step(name: string, args: string[]): Promise<void> {
  console.log(`\n== ${name}: deno ${args.join(" ")}`);
  const { code } = await new Deno.Command(deno, { args, cwd: ROOT, stdout: "inherit", stderr: "inherit" })
    .output();
  if (code !== 0) throw new Error(`${name} failed (exit ${code})`);
}

/**
 * What a whole run starts beside the rest of the suite, each group in a `deno test` of its own, its output
 * printed once it ends:
 * - files that spend their time waiting out real timeouts, using no CPU and none of the shared engine;
 * - the agent's tests, which each start a dockerd of their own and spend most of their time waiting on the
 *   agent's polls, soak periods and restarts (half of a serial run's minutes), so they do not add to it.
 */
const BESIDE_GROUPS = [["tests/registry/default_timeouts_test.ts"], ["tests/agent/"]];

/**
 * With no arguments: the whole suite, after format, lint and type checks. With test files or directories
 * (`deno task test tests/agent/`): only those, against the same services, without the static checks — for
 * working on one part.
 */
async function main(paths: string[]): Promise<number> {
  if (paths.length === 0) {
    await step("format", ["fmt", "--check"]);
    await step("lint", ["lint"]);
    await step("types", ["check", "main.ts", "src/", "tests/", "build/"]);
  }

  await ensurePackages();
  const tmp = await Deno.makeTempDir({ prefix: "berth-test-" });
  let services: TestServices | undefined;
  const stopAll = async () => {
    await services?.stop();
    await Deno.remove(tmp, { recursive: true }).catch((error) => console.error(`cleanup: ${error}`));
  };
  const onSignal = () => {
    stopAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    console.log(`\n== services under ${tmp}`);
    services = await startServices(tmp);
    const { registry, dockerd, images } = services;
    console.log(`test images built and pushed in ${services.buildSeconds.toFixed(1)} s`);
    await Deno.writeTextFile(`${tmp}/images.json`, JSON.stringify(images, null, 2));
    await Deno.mkdir(`${tmp}/scratch`);
    console.log("\n== deno test");
    const testCommand = (args: string[], output: "inherit" | "piped") =>
      new Deno.Command(deno, {
        args: ["test", "-A", "--frozen", ...args],
        cwd: ROOT,
        env: {
          BERTH_TEST_REGISTRY: registry.host,
          BERTH_TEST_DOCKER_HOST: dockerd.host,
          BERTH_TEST_IMAGES: `${tmp}/images.json`,
          BERTH_TEST_TMP: `${tmp}/scratch`,
        },
        stdout: output,
        stderr: output,
      }).output();
    if (paths.length) return (await testCommand(paths, "inherit")).code;
    // The whole suite, with the groups that mostly wait beside the rest (see BESIDE_GROUPS).
    const beside = BESIDE_GROUPS.map((group) => ({ group, run: testCommand(group, "piped") }));
    const ignored = BESIDE_GROUPS.flat().map((path) => path.replace(/\/$/, ""));
    let { code } = await testCommand(["--ignore=" + ignored.join(","), "tests/"], "inherit");
    for (const { group, run } of beside) {
      const result = await run;
      console.log(`\n== deno test (run beside the rest): ${group.join(", ")}`);
      await Deno.stdout.write(result.stdout);
      await Deno.stderr.write(result.stderr);
      if (code === 0) code = result.code;
    }
    return code;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await stopAll();
  }
}

try {
  Deno.exit(await main(Deno.args));
} catch (error) {
  console.error(`test run failed: ${error instanceof Error ? error.message : error}`);
  Deno.exit(1);
}
