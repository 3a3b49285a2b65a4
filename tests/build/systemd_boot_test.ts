/**
 * The shipped unit, `build/systemd/berth.service`, run by a real systemd: a Debian bookworm root booted with
 * `systemd-nspawn --boot`, the unit in it byte for byte and enabled, with a drop-in that starts berth from
 * this checkout (`deno run` with the binary's permissions) against the test run's registry and dockerd. It
 * proves what `systemd-analyze verify` (systemd_test.ts) cannot: berth says READY=1 and runs its app,
 * `systemctl reload` re-reads the config, a `kill -9` is restarted, and the watchdog restarts an agent whose
 * event loop stops (SIGSTOP).
 *
 * Opt-in (BERTH_TEST_SYSTEMD_BOOT=1): it needs root, debootstrap, systemd-nspawn and, to build the root
 * once, deb.debian.org. The root is built under BERTH_TEST_SYSTEMD_ROOT (default: the run's scratch space,
 * so built every run) and reused when its marker file says the build finished. The container is named
 * BERTH_TEST_SYSTEMD_MACHINE (default berth-boot-<pid>); it is not registered with systemd-machined.
 */
import assert from "node:assert/strict";
import { PERMISSION_FLAGS } from "../../build/permissions.ts";
import { aptInstall, run, unmountUnder } from "../harness/services.ts";
import { scratchDir, testEnv, withServices } from "../harness/env.ts";
import { publish, waitFor } from "../agent/agent_harness.ts";

const ENABLED = Deno.env.get("BERTH_TEST_SYSTEMD_BOOT") === "1";
if (!ENABLED) {
  console.warn(
    "systemd boot test skipped: set BERTH_TEST_SYSTEMD_BOOT=1 to boot the unit under systemd-nspawn",
  );
}

const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const UNIT_FILE = `${REPO}/build/systemd/berth.service`;
const MIRROR = "http://deb.debian.org/debian";
/** What berth runs beside systemd in the root: /bin/kill (ExecReload), compose v1, and curl to look around. */
const EXTRA_PACKAGES = ["procps", "docker-compose", "curl"];
/** Where the container sees what the host lends it. */
const IN_CONTAINER = {
  repo: "/srv/berth",
  denoDir: "/srv/deno-dir",
  deno: "/usr/local/bin/deno",
  docker: "/srv/host-docker",
};
const CONFIG = "/etc/berth/config.yml";
const APP = "boot-app";

/** Runs `cmd`, its output on stderr (a root build is long and worth watching). */
async function loud(cmd: string[]): Promise<void> {
  const { code } = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) throw new Error(`command failed (exit ${code}): ${cmd.join(" ")}`);
}

/** A bookworm root with systemd under `dir`: reused when its marker exists, else (re)built. */
async function bookwormRoot(dir: string): Promise<string> {
  const root = `${dir}/bookworm`;
  const marker = `${dir}/bookworm.complete`;
  try {
    await Deno.stat(marker);
    return root;
  } catch {
    // not built, or the build was interrupted: start again from nothing
  }
  await unmountUnder(root);
  await Deno.remove(root, { recursive: true }).catch(() => {});
  const started = Date.now();
  await loud([
    "debootstrap",
    "--variant=minbase",
    "--include=systemd,systemd-sysv,dbus",
    "bookworm",
    root,
    MIRROR,
  ]);
  await loud(["chroot", root, "apt-get", "install", "-y", "--no-install-recommends", ...EXTRA_PACKAGES]);
  await Deno.writeTextFile(marker, `built ${new Date().toISOString()}\n`);
  console.log(`bookworm root built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return root;
}

async function denoDir(): Promise<string> {
  const output = await run([Deno.execPath(), "info", "--json"]);
  return JSON.parse(output).denoDir;
}

/** Writes the unit (byte for byte, enabled), its drop-ins and berth's config into `root`. */
async function installUnit(root: string, registryApp: string): Promise<void> {
  const units = `${root}/etc/systemd/system`;
  await Deno.copyFile(UNIT_FILE, `${units}/berth.service`);
  await Deno.mkdir(`${units}/multi-user.target.wants`, { recursive: true });
  await Deno.remove(`${units}/multi-user.target.wants/berth.service`).catch(() => {});
  await Deno.symlink("/etc/systemd/system/berth.service", `${units}/multi-user.target.wants/berth.service`);
  await Deno.mkdir(`${units}/berth.service.d`, { recursive: true });
  const execStart = [
    IN_CONTAINER.deno,
    "run",
    "--cached-only",
    "--frozen",
    "--quiet",
    ...PERMISSION_FLAGS,
    `${IN_CONTAINER.repo}/main.ts`,
    "agent",
    "--config",
    CONFIG,
  ];
  await Deno.writeTextFile(
    `${units}/berth.service.d/dev.conf`,
    [
      "[Service]",
      "ExecStart=",
      `ExecStart=${execStart.join(" ")}`,
      `Environment=DENO_DIR=${IN_CONTAINER.denoDir} DENO_NO_UPDATE_CHECK=1`,
      "",
    ].join("\n"),
  );
  // The watchdog case waits out WatchdogSec=: 5 s instead of the unit's 60 s keeps it to seconds. Set from
  // the first start, so the whole test also shows a healthy agent keeps a short watchdog fed (no restart
  // but the two the test causes).
  await Deno.writeTextFile(`${units}/berth.service.d/watchdog.conf`, "[Service]\nWatchdogSec=5s\n");
  await Deno.mkdir(`${root}/etc/berth`, { recursive: true });
  await Deno.writeTextFile(
    `${root}${CONFIG}`,
    [
      "store: /var/lib/berth/store",
      "composeRoot: /var/lib/berth/apps",
      `docker: { host: "unix://${IN_CONTAINER.docker}/docker.sock" }`,
      "compose: docker-compose",
      `apps: ["${registryApp}"]`,
      `status: { listen: "/run/berth/status.sock" }`,
      "",
    ].join("\n"),
  );
  // A reused root starts clean: no store or apps of an earlier run, no journal of its boots (the container
  // shares the host's boot id, so `journalctl -b` would not tell them apart).
  await Deno.remove(`${root}/var/lib/berth`, { recursive: true }).catch(() => {});
  await Deno.remove(`${root}/var/log/journal`, { recursive: true }).catch(() => {});
}

/** The container's processes as seen from the host, and how to run commands in it. */
interface Container {
  nspawn: Deno.ChildProcess;
  /** The console's output read to its end (once nspawn exits). */
  drained: Promise<unknown>;
  /** The container's systemd (its pid 1), as a host pid. */
  init: number;
  /** Runs `cmd` in all of the container's namespaces; returns stdout. */
  exec(...cmd: string[]): Promise<string>;
  /** What the console printed so far. */
  console(): string;
}

/** A host pid's children. */
function children(pid: number): number[] {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/).filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function command(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/comm`).trim();
  } catch {
    return "";
  }
}

/** Boots `root`: the repo, the deno cache and binary read-only, the dockerd socket's directory read-write. */
async function boot(root: string, machine: string, dockerSocketDir: string): Promise<Container> {
  const deno = await Deno.realPath(Deno.execPath());
  // setsid: the container gets a session of its own, away from the test's terminal and its signals.
  // No --private-network: the registry on the host's loopback is the one berth fetches from.
  // --register=no --keep-unit: no systemd-machined is needed on the host.
  const nspawn = new Deno.Command("setsid", {
    args: [
      "systemd-nspawn",
      "-D",
      root,
      "--boot",
      "--register=no",
      "--keep-unit",
      "--console=pipe",
      "-M",
      machine,
      `--bind-ro=${REPO}:${IN_CONTAINER.repo}`,
      `--bind-ro=${await denoDir()}:${IN_CONTAINER.denoDir}`,
      `--bind-ro=${deno}:${IN_CONTAINER.deno}`,
      `--bind=${dockerSocketDir}:${IN_CONTAINER.docker}`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const drained = Promise.all(
    [nspawn.stdout, nspawn.stderr].map((stream) =>
      stream.pipeTo(new WritableStream({ write: (chunk) => void (text += decoder.decode(chunk)) }))
    ),
  );
  const consoleText = () => text;
  // setsid execs in place (a spawned child leads no process group), so this pid is systemd-nspawn's; its
  // container's pid 1 is the descendant running systemd.
  const findInit = () => {
    const queue = children(nspawn.pid);
    while (queue.length) {
      const pid = queue.shift()!;
      if (command(pid) === "systemd") return Promise.resolve(pid);
      queue.push(...children(pid));
    }
    return Promise.resolve(undefined);
  };
  let init: number;
  try {
    init = await waitFor("the container's systemd", findInit, 30_000, 100, consoleText);
  } catch (error) {
    nspawn.kill("SIGKILL");
    await nspawn.status;
    await drained;
    throw error;
  }
  return {
    nspawn,
    drained,
    init,
    exec: (...cmd) => run(["nsenter", "-t", String(init), "-a", ...cmd]),
    console: consoleText,
  };
}

/** Powers the container off (SIGTERM to nspawn, then SIGKILL to its pid 1, if it lingers). */
async function powerOff(container: Container): Promise<void> {
  const exited = container.nspawn.status.then(() => true);
  const within = (ms: number) =>
    Promise.race([exited, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);
  await container.exec("systemctl", "poweroff", "--no-block").catch(() => {});
  if (await within(30_000)) return;
  console.error("the container did not power off in 30 s: SIGTERM to systemd-nspawn");
  container.nspawn.kill("SIGTERM");
  if (await within(15_000)) return;
  console.error("still running: SIGKILL to the container's pid 1");
  Deno.kill(container.init, "SIGKILL");
  await container.nspawn.status;
}

type UnitState = Record<string, string>;

/** ActiveState, SubState, StatusText, NRestarts and MainPID of berth.service; {} while systemd is not up. */
async function unitState(container: Container): Promise<UnitState> {
  const fields = ["ActiveState", "SubState", "StatusText", "NRestarts", "MainPID"];
  try {
    const out = await container.exec("systemctl", "show", "berth.service", ...fields.map((f) => `-p${f}`));
    return Object.fromEntries(
      out.trim().split("\n").map((
        line,
      ) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
    );
  } catch {
    return {};
  }
}

async function journal(container: Container): Promise<string> {
  return await container.exec("journalctl", "--no-pager", "-o", "short-precise", "-u", "berth.service")
    .catch((error) => `(no journal: ${error})`);
}

/** Waits until berth.service is active with its app running and `condition` holds; returns the state. */
async function waitForRunning(
  container: Container,
  what: string,
  condition: (state: UnitState) => boolean,
  timeoutMs: number,
): Promise<UnitState> {
  let last: UnitState = {};
  try {
    return await waitFor(
      what,
      async () => {
        last = await unitState(container);
        const running = last.ActiveState === "active" && /: 1 of 1 apps running$/.test(last.StatusText ?? "");
        return running && condition(last) ? last : undefined;
      },
      timeoutMs,
      500,
    );
  } catch (error) {
    throw new Error(
      `${error instanceof Error ? error.message : error}\nlast state: ${JSON.stringify(last)}\n` +
        `journal:\n${await journal(container)}\nconsole:\n${container.console().slice(-4000)}`,
    );
  }
}

/** The app's containers in the test's dockerd, as `name state` lines. */
async function appContainers(dockerHost: string): Promise<string[]> {
  const out = await run([
    "docker",
    "-H",
    dockerHost,
    "ps",
    "-a",
    "--filter",
    `label=com.docker.compose.project=${APP}`,
    "--format",
    "{{.Names}} {{.State}}",
  ]);
  return out.trim().split("\n").filter(Boolean);
}

async function ensureTools(): Promise<void> {
  const missing = ["debootstrap", "systemd-nspawn", "nsenter"].filter((tool) =>
    !["/usr/sbin", "/usr/bin", "/sbin", "/bin"].some((dir) => {
      try {
        return Deno.statSync(`${dir}/${tool}`).isFile;
      } catch {
        return false;
      }
    })
  );
  if (missing.length) {
    await aptInstall(["debootstrap", "systemd-container", "util-linux"], `missing: ${missing.join(", ")}`);
  }
}

Deno.test({
  name: "systemd boot: READY with the app running, reload, kill -9 and the watchdog restart berth",
  ignore: withServices.ignore || !ENABLED,
  async fn() {
    const env = testEnv()!;
    await ensureTools();
    const rootDir = Deno.env.get("BERTH_TEST_SYSTEMD_ROOT") ?? await scratchDir("systemd-boot-");
    await Deno.mkdir(rootDir, { recursive: true });
    const root = await bookwormRoot(rootDir);
    const ref = `${env.registry}/systemd-boot/${APP}:1`;
    await publish(ref, { web: env.images.appA.ref });
    await installUnit(root, ref);
    const dockerSocket = env.dockerHost.replace(/^unix:\/\//, "");
    const machine = Deno.env.get("BERTH_TEST_SYSTEMD_MACHINE") ?? `berth-boot-${Deno.pid}`;
    const container = await boot(root, machine, dockerSocket.slice(0, dockerSocket.lastIndexOf("/")));
    try {
      // 1. Enabled, so started at boot; READY=1, then the app installed and running (STATUS=).
      const first = await waitForRunning(container, "berth active, its app running", () => true, 180_000);
      assert.equal(first.NRestarts, "0");
      assert.deepEqual((await appContainers(env.dockerHost)).map((line) => line.split(" ")[1]), ["running"]);

      // 2. systemctl reload: SIGHUP, the config re-read by the same process.
      await container.exec("systemctl", "reload", "berth.service");
      await waitFor(
        "config reloaded in the journal",
        async () => /config reloaded/.test(await journal(container)),
      );
      const reloaded = await unitState(container);
      assert.equal(reloaded.MainPID, first.MainPID);
      assert.equal(reloaded.ActiveState, "active");

      // 3. kill -9 of the agent: Restart=on-failure brings it back (RestartSec=5s).
      await container.exec("kill", "-9", first.MainPID);
      const killed = await waitForRunning(
        container,
        "berth restarted after kill -9",
        (state) => state.NRestarts === "1" && state.MainPID !== first.MainPID,
        60_000,
      );

      // 4. SIGSTOP: no WATCHDOG=1 any more; after WatchdogSec=5s systemd aborts it and restarts it.
      await container.exec("kill", "-STOP", killed.MainPID);
      await waitForRunning(
        container,
        "berth restarted by the watchdog",
        (state) => state.NRestarts === "2" && state.MainPID !== killed.MainPID,
        90_000,
      );
      const log = await journal(container);
      assert.match(log, /Watchdog timeout \(limit 5s\)!/);
      assert.match(log, /Killing process \d+ \(\S+\) with signal SIGABRT/);
    } finally {
      await powerOff(container);
      await container.drained;
      // The app's containers live in the test's dockerd, which other tests share.
      const leftovers = (await appContainers(env.dockerHost)).map((line) => line.split(" ")[0]);
      if (leftovers.length) await run(["docker", "-H", env.dockerHost, "rm", "-f", ...leftovers]);
    }
  },
});
