/**
 * `deno task demo`: berth's main job on a machine with nothing set up. It brings up what is missing — a
 * local docker-registry and a docker engine on private sockets, from Debian packages — builds a small
 * image with docker and pushes it, publishes a sample compose app that runs it, and starts `berth agent`
 * against that app, printing the status URL. The agent fetches the app into its own store, loads the
 * image into the engine, and runs the app. Needs root (dockerd), like docker itself.
 *
 * Stopping: the services run in a session of their own under a second demo process, so a terminal's Ctrl-C
 * (SIGINT to the whole foreground process group) reaches only this first one, which passes it on once.
 * The second then stops, in this order, the agent, the app, the engine with its container shims, and the
 * registry, each waited for, and checks the process table before it says that nothing is left. It also
 * stops when this first process dies (its stdin pipe closes). `--keep` keeps the working directory.
 */
import {
  aptInstall,
  busyboxRootfsTar,
  type Dockerd,
  freePort,
  isStaticElf,
  type Registry,
  run,
  startDockerd,
  startRegistry,
} from "../../tests/harness/services.ts";
import { describe, type ProcessInfo, processTable, stillRuns, withDescendants } from "./processes.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const PAGE = new URL("./index.html", import.meta.url).pathname;
const SELF = new URL(import.meta.url).pathname;
/** The argument that starts the second demo process, the one that runs the services. */
const IN_OWN_SESSION = "--in-own-session";
/** How long the agent gets to close its status listener and its store before it is killed. */
const AGENT_STOP_MS = 15_000;
/** How long the engine's container shims get to exit once dockerd and containerd are gone. */
const SHIM_STOP_MS = 5_000;
/** How often the agent asks the demo registry whether the app changed: short, so an update shows soon. */
const POLL_SECONDS = 10;
const say = (line: string) => console.log(`demo: ${line}`);

/** The Debian packages of what the demo runs, and a tool of each that tells whether it is there. */
const PACKAGES: Record<string, string> = {
  "docker.io": "dockerd",
  "docker-registry": "docker-registry",
  "docker-compose": "docker-compose",
};

async function missingPackages(): Promise<string[]> {
  const missing: string[] = [];
  for (const [pkg, tool] of Object.entries(PACKAGES)) {
    const found = await new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "null" })
      .output();
    if (!found.success) missing.push(pkg);
  }
  // The image's rootfs has no libc: it needs the static busybox.
  if (!isStaticElf("/bin/busybox")) missing.push("busybox-static");
  return missing;
}

/** A busybox image serving `index.html` with httpd: one layer, built with `docker import`. */
async function buildImage(dir: string, docker: (...args: string[]) => Promise<string>, tag: string) {
  const tar = await busyboxRootfsTar(dir, ["sh"], { "www/index.html": await Deno.readTextFile(PAGE) });
  await docker(
    "import",
    "--change",
    'CMD ["/bin/busybox", "httpd", "-f", "-h", "/www"]',
    tar,
    tag,
  );
  await docker("push", tag);
  // The engine starts empty, as on a fresh device: the agent has to bring the image in from its store.
  await docker("rmi", tag);
}

/** Thrown between steps when a stop was asked for, so the start-up goes no further. */
class Stopped extends Error {}

/** `word` as one shell word: quoted only when it needs it, so the printed commands stay readable. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Resolves after `ms`, or at once when `stopped` settles first. */
function pause(ms: number, stopped: Promise<unknown>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
    stopped.then(() => {}),
  ]).finally(() => clearTimeout(timer));
}

/**
 * SIGKILLs `processes` (what the engine left: its container shims and their containers' processes) and
 * waits up to `timeoutMs` for each to be gone; returns those still there.
 */
async function killAndWait(processes: ProcessInfo[], timeoutMs: number): Promise<ProcessInfo[]> {
  for (const process of processes) {
    try {
      if (stillRuns(process)) Deno.kill(process.pid, "SIGKILL");
    } catch {
      // Exited between the check and the kill.
    }
  }
  const deadline = Date.now() + timeoutMs;
  let left = processes.filter(stillRuns);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    left = left.filter(stillRuns);
  }
  return left;
}

/** The session this process leads, or undefined when it leads none (started by hand, not by `launch`). */
function ownSession(): number | undefined {
  const me = processTable().find((process) => process.pid === Deno.pid);
  return me?.sid === Deno.pid ? Deno.pid : undefined;
}

/**
 * The first demo process: root and packages, then the second process in a session of its own; the first
 * SIGINT or SIGTERM here is passed on there, later ones are not (the stop is under way). Exits with its
 * exit code.
 */
async function launch(args: string[]): Promise<number> {
  if (Deno.uid() !== 0) {
    console.error("demo: run it as root: it starts a docker engine of its own (dockerd needs root)");
    return 1;
  }
  const missing = await missingPackages();
  if (missing.length > 0) await aptInstall(missing, "the demo runs a local registry and a docker engine");
  const services = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--frozen", SELF, IN_OWN_SESSION, ...args],
    // A session of its own: a terminal's Ctrl-C does not reach the registry, dockerd or the agent, which
    // would each stop on their own, in no order, while the demo still needs them to stop the app.
    detached: true,
    // Never written: it closes when this process dies, however it dies, and that stops the services too.
    stdin: "piped",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  let asked = false;
  const passOn = (signal: "SIGINT" | "SIGTERM") => () => {
    if (asked) return;
    asked = true;
    try {
      services.kill(signal);
    } catch {
      // Already exited.
    }
  };
  Deno.addSignalListener("SIGINT", passOn("SIGINT"));
  Deno.addSignalListener("SIGTERM", passOn("SIGTERM"));
  const { code } = await services.status;
  return code;
}

/** The second demo process: starts everything, waits for a stop, stops everything in order. */
async function demo(keep: boolean): Promise<number> {
  let stopRequested: () => void = () => {};
  const stopped = new Promise<void>((resolve) => stopRequested = resolve);
  let stopping = false;
  const requestStop = (why: string) => {
    if (stopping) return;
    stopping = true;
    say(`stopping (${why})…`);
    stopRequested();
  };
  Deno.addSignalListener("SIGINT", () => requestStop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => requestStop("SIGTERM"));
  const session = ownSession();
  if (session !== undefined) {
    (async () => {
      try {
        for await (const _ of Deno.stdin.readable) {
          // Nothing is ever sent: only the end matters.
        }
      } catch {
        // A read error means the same: the first demo process is gone.
      }
      requestStop("the first demo process is gone");
    })();
  }
  // Only now, with the listeners in place: a stop before them ends this process with nothing made yet.
  const dir = await Deno.makeTempDir({ prefix: "berth-demo-" });
  say(`working under ${dir}`);
  const checkpoint = () => {
    if (stopping) throw new Stopped();
  };

  let registry: Registry | undefined;
  let dockerd: Dockerd | undefined;
  let agent: Deno.ChildProcess | undefined;
  let config: string | undefined;
  let code = 0;
  try {
    say("starting a docker-registry and a docker engine on private sockets");
    registry = await startRegistry(`${dir}/registry`);
    checkpoint();
    // The engine's sockets and exec root go in a short temporary directory: inside ours, so that its
    // container shims (which name their socket) are found by our path and removed with it.
    const tmpWas = Deno.env.get("TMPDIR");
    Deno.env.set("TMPDIR", dir);
    try {
      dockerd = await startDockerd(`${dir}/engine`);
    } finally {
      if (tmpWas === undefined) Deno.env.delete("TMPDIR");
      else Deno.env.set("TMPDIR", tmpWas);
    }
    checkpoint();
    const host = dockerd.host;
    const docker = (...args: string[]) => run(["docker", "-H", host, ...args]);

    const image = `${registry.host}/demo/web:1`;
    say(`building ${image} (busybox httpd) and pushing it`);
    await buildImage(dir, docker, image);
    checkpoint();

    const appPort = freePort();
    const project = `${dir}/project`;
    const composeFile = `${project}/docker-compose.yml`;
    await Deno.mkdir(project);
    await Deno.writeTextFile(
      composeFile,
      [
        "services:",
        "  web:",
        `    image: ${image}`,
        `    command: ["/bin/busybox", "httpd", "-f", "-h", "/www", "-p", "127.0.0.1:${appPort}"]`,
        "    network_mode: host",
        "    restart: unless-stopped",
        // httpd runs as the container's PID 1, which ignores SIGTERM: a stop would wait out 10 s first.
        "    stop_signal: SIGKILL",
        "    environment:",
        '      DEMO_VERSION: "1"',
        "",
      ].join("\n"),
    );
    const app = `${registry.host}/demo/hello:stable`;
    say(`publishing the compose app ${app}`);
    const published = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, "publish", project, app],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!published.success) throw new Error(`berth publish ${project} ${app} failed (see above)`);
    checkpoint();

    const statusPort = freePort();
    config = `${dir}/config.yml`;
    await Deno.writeTextFile(
      config,
      [
        `store: ${dir}/store`,
        `composeRoot: ${dir}/apps`,
        `docker: { host: "${host}" }`,
        `apps: ["${app}"]`,
        `pollInterval: ${POLL_SECONDS}s`,
        `status: { listen: "127.0.0.1:${statusPort}" }`,
        "",
      ].join("\n"),
    );
    const statusUrl = `http://127.0.0.1:${statusPort}`;
    // Before the agent starts, whose own log names URLs too: this is the one to open.
    say(`status: ${statusUrl}  (the page; ${statusUrl}/status is the JSON)`);
    say(`starting berth agent --config ${config}`);
    agent = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, "--config", config, "agent"],
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();

    for (;;) {
      try {
        const status = await (await fetch(`${statusUrl}/status`)).json();
        if (status.apps?.[0]?.state === "running") break;
      } catch {
        // not listening yet
      }
      checkpoint();
      await pause(500, stopped);
    }
    const publish = [Deno.execPath(), "run", "-A", MAIN, "--config", config, "publish", project, app]
      .map(shellWord).join(" ");
    say(`app hello is running: http://127.0.0.1:${appPort}/ — try: curl http://127.0.0.1:${appPort}/`);
    say(
      `to watch the agent update it, change the app and publish it again (it looks every ${POLL_SECONDS} s):`,
    );
    console.log(
      `  sed -i "s/DEMO_VERSION: .*/DEMO_VERSION: \\"$(date +%s)\\"/" ${
        shellWord(composeFile)
      } && ${publish}`,
    );
    say("Ctrl-C to stop");
    await stopped;
  } catch (error) {
    if (!(error instanceof Stopped)) {
      console.error(`demo: ${error instanceof Error ? error.message : error}`);
      code = 1;
    }
  }

  // The order matters: the agent first, so that it does not start the app again; the app while the engine
  // still runs; the engine before the registry it might still pull from.
  let agentCode: number | undefined;
  if (agent) {
    try {
      agent.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ended = await Promise.race([
      agent.status,
      new Promise<undefined>((resolve) => timer = setTimeout(() => resolve(undefined), AGENT_STOP_MS)),
    ]);
    clearTimeout(timer);
    if (!ended) {
      console.error(`demo: the agent did not stop within ${AGENT_STOP_MS / 1000} s; killing it`);
      agent.kill("SIGKILL");
    }
    agentCode = (await agent.status).code;
    say(`the agent exited with ${agentCode}`);
  }
  if (dockerd && config) {
    const host = dockerd.host;
    try {
      const running = await run(
        ["docker", "-H", host, "ps", "-q", "--filter", "label=com.docker.compose.project=hello"],
      );
      if (running.trim()) {
        await run([Deno.execPath(), "run", "-A", "--quiet", MAIN, "--config", config, "stop", "hello"]);
        say("stopped the app (berth stop hello)");
      }
    } catch (error) {
      console.error(`demo: stopping the app: ${error instanceof Error ? error.message : error}`);
    }
  }
  if (dockerd) {
    await dockerd.stop().catch((error) => console.error(`demo: stopping the engine: ${error}`));
    // A shim outlives containerd while its container runs: it names the engine's socket directory, and
    // the container's processes are its children.
    const engineDir = dockerd.socket.replace(/\/[^/]*$/, "");
    const shims = withDescendants(processTable(), (process) => process.cmdline.includes(engineDir), [
      Deno.pid,
    ]);
    const left = await killAndWait(shims, SHIM_STOP_MS);
    if (left.length > 0) console.error(`demo: the engine left running: ${describe(left)}`);
    say(`stopped the engine${shims.length > 0 ? ` (and killed ${shims.length} processes it left)` : ""}`);
  }
  if (registry) {
    await registry.stop().catch((error) => console.error(`demo: stopping the registry: ${error}`));
    say("stopped the registry");
  }

  // The closing line must be true: look rather than assume.
  let left = withDescendants(
    processTable(),
    (process) => process.sid === session || process.cmdline.includes(dir),
    [Deno.pid],
  );
  if (left.length > 0) {
    console.error(`demo: still running after the stop, killing: ${describe(left)}`);
    left = await killAndWait(left, SHIM_STOP_MS);
  }
  let where = `kept ${dir}`;
  if (!keep) {
    where = `removed ${dir}`;
    await Deno.remove(dir, { recursive: true }).catch((error) => {
      where = `could not remove ${dir}: ${error}`;
      code = 1;
    });
  }
  if (left.length > 0) code = 1;
  const agentPart = agentCode === undefined ? "the agent never started" : `agent stopped (exit ${agentCode})`;
  say(
    left.length > 0
      ? `${where}; still running: ${describe(left)}; ${agentPart}`
      : `${where}; nothing the demo started is left; ${agentPart}`,
  );
  if (agentCode !== undefined && agentCode !== 0) code = 1;
  return code;
}

/** `deno task demo [--keep]`. */
async function main(args: string[]): Promise<number> {
  const inOwnSession = args[0] === IN_OWN_SESSION;
  const options = inOwnSession ? args.slice(1) : args;
  const unknown = options.find((arg) => arg !== "--keep");
  if (unknown !== undefined) {
    console.error(`demo: unknown argument "${unknown}"; the only one is --keep (keep the working directory)`);
    return 2;
  }
  return inOwnSession ? await demo(options.includes("--keep")) : await launch(options);
}

Deno.exit(await main(Deno.args));
