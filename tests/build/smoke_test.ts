/**
 * berth run the way the shipped binary runs: with exactly the permissions `deno task compile` bakes in
 * (build/permissions.ts), from the cache only, with no writable home directory and every proxy variable
 * pointing at a closed port (so any attempt to reach the internet at start-up fails loudly) — for
 * `version`, a `pull` from the local registry and a short-lived agent's `/status`. The same cases run against
 * the compiled binaries when `deno task compile` has made them (the aarch64 one under qemu-aarch64-static).
 */
import assert from "node:assert/strict";
import { PERMISSION_FLAGS } from "../../build/permissions.ts";
import { outputPath } from "../../build/compile.ts";
import { freePort, run } from "../harness/services.ts";
import { scratchDir, testEnv, withServices } from "../harness/env.ts";
import { StatusSchema } from "../../src/agent/status_schema.ts";
import { VERSION } from "../../src/version.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const HOST_ARCH = Deno.build.arch === "aarch64" ? "aarch64" : "x86_64";

interface Runner {
  name: string;
  argv: string[];
  /** Why the cases are skipped, when they are. */
  skip?: string;
}

async function denoDir(): Promise<string> {
  const output = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
    .output();
  return JSON.parse(new TextDecoder().decode(output.stdout)).denoDir;
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function runners(): Runner[] {
  const hostBinary = outputPath(HOST_ARCH);
  const armBinary = outputPath("aarch64");
  const howToBuild = (arch: string) =>
    `no ${arch} binary at build/out/berth-${arch}: run 'deno task compile --target ${arch}' with ` +
    `DENORT_BIN_${arch.toUpperCase()} set (no denort runtime can be downloaded here)`;
  return [
    {
      name: "deno run with the binary's permissions",
      argv: [Deno.execPath(), "run", "--cached-only", "--frozen", "--quiet", ...PERMISSION_FLAGS, MAIN],
    },
    {
      name: `compiled ${HOST_ARCH} binary`,
      argv: [hostBinary],
      ...(exists(hostBinary) ? {} : { skip: howToBuild(HOST_ARCH) }),
    },
    ...(HOST_ARCH === "aarch64" ? [] : [{
      name: "compiled aarch64 binary under qemu-aarch64-static",
      argv: ["qemu-aarch64-static", armBinary],
      ...(exists(armBinary) ? {} : { skip: howToBuild("aarch64") }),
    }]),
  ];
}

/** A read-only home directory (root ignores modes, so it is a read-only bind mount). */
async function readOnlyHome(dir: string): Promise<string> {
  const home = `${dir}/home`;
  await Deno.mkdir(home);
  await run(["mount", "--bind", home, home]);
  await run(["mount", "-o", "remount,bind,ro", home]);
  return home;
}

for (const runner of runners()) {
  Deno.test({
    name: `smoke: ${runner.name}: version, pull, the agent's /status${
      runner.skip ? ` (skipped: ${runner.skip})` : ""
    }`,
    ignore: withServices.ignore || runner.skip !== undefined,
    async fn() {
      const env = testEnv()!;
      if (runner.argv[0] === "qemu-aarch64-static") {
        await run(["sh", "-c", "command -v qemu-aarch64-static"]).catch(() =>
          run(["apt-get", "install", "-y", "--no-install-recommends", "qemu-user-static"])
        );
      }
      const dir = await scratchDir("smoke-");
      const home = await readOnlyHome(dir);
      const closed = `http://127.0.0.1:${freePort()}`;
      const environment: Record<string, string> = {
        HOME: home,
        DENO_DIR: await denoDir(), // the cache stays readable: only the home directory moves
        HTTPS_PROXY: closed,
        HTTP_PROXY: closed,
        NO_PROXY: "127.0.0.1,localhost",
        PATH: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      };
      const berth = (...args: string[]) =>
        new Deno.Command(runner.argv[0], {
          args: [...runner.argv.slice(1), ...args],
          env: environment,
          clearEnv: true,
          stdout: "piped",
          stderr: "piped",
        });
      const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
      try {
        const version = await berth("version").output();
        assert.equal(version.code, 0, decode(version.stderr));
        assert.match(decode(version.stdout), new RegExp(`^berth ${VERSION.replaceAll(".", "\\.")} `));
        assert.equal(decode(version.stderr), "", "nothing on stderr");

        const store = `${dir}/store`;
        const pulled = await berth("--store", store, "pull", env.images.appA.ref).output();
        assert.equal(pulled.code, 0, decode(pulled.stderr));
        assert.match(decode(pulled.stdout), /Pulled .*app-a/);

        const port = freePort();
        const config = `${dir}/config.yml`;
        await Deno.writeTextFile(
          config,
          [
            `store: ${store}`,
            `composeRoot: ${dir}/apps`,
            `docker: { host: "${env.dockerHost}" }`,
            "apps: []",
            `status: { listen: "127.0.0.1:${port}" }`,
            "",
          ].join("\n"),
        );
        const agent = berth("--config", config, "agent").spawn();
        try {
          // The status is served from the start; the engine is reached by the start-up audit just after.
          let body: { engine?: { reachable?: boolean } } | undefined;
          for (let attempt = 0; attempt < 100 && body?.engine?.reachable !== true; attempt++) {
            try {
              const response = await fetch(`http://127.0.0.1:${port}/status`);
              if (response.status === 200) body = await response.json();
              else await response.body?.cancel();
            } catch {
              // not listening yet
            }
            if (body?.engine?.reachable !== true) await new Promise((resolve) => setTimeout(resolve, 200));
          }
          const parsed = StatusSchema.safeParse(body);
          assert.ok(parsed.success, `status: ${JSON.stringify(body)}`);
          assert.equal(parsed.data.agent.version, VERSION);
          assert.equal(parsed.data.engine.reachable, true);
        } finally {
          agent.kill("SIGTERM");
          const stopped = await agent.output();
          assert.equal(stopped.code, 0, decode(stopped.stderr));
          assert.doesNotMatch(
            decode(stopped.stderr),
            /NotCapable|Requires .* access/,
            "no permission was missing",
          );
        }
      } finally {
        await run(["umount", home]).catch(() => {});
      }
    },
  });
}
