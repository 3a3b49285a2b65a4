/**
 * `deno task demo`: berth's main job on a machine with nothing set up. It brings up what is missing — a
 * local docker-registry and a docker engine on private sockets, from Debian packages — builds a small
 * image with docker and pushes it, publishes a sample compose app that runs it, and starts `berth agent`
 * against that app, printing the status URL. The agent fetches the app into its own store, loads the
 * image into the engine, and runs the app. Ctrl-C stops the agent cleanly and removes everything the demo
 * started. Needs root (dockerd), like docker itself.
 */
import {
  aptInstall,
  busyboxRootfsTar,
  freePort,
  isStaticElf,
  run,
  startDockerd,
  startRegistry,
} from "../../tests/harness/services.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const PAGE = new URL("./index.html", import.meta.url).pathname;
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

async function main(): Promise<number> {
  if (Deno.uid() !== 0) {
    console.error("demo: run it as root: it starts a docker engine of its own (dockerd needs root)");
    return 1;
  }
  const missing = await missingPackages();
  if (missing.length > 0) await aptInstall(missing, "the demo runs a local registry and a docker engine");

  const dir = await Deno.makeTempDir({ prefix: "berth-demo-" });
  say(`working under ${dir}`);
  const stops: (() => Promise<void>)[] = [];
  let agent: Deno.ChildProcess | undefined;
  let stopping = false;
  const cleanUp = async () => {
    if (agent) {
      try {
        agent.kill("SIGTERM");
      } catch {
        // already gone
      }
      const { code } = await agent.status;
      say(`agent stopped (exit ${code})`);
    }
    for (const stop of stops.reverse()) {
      await stop().catch((error) => console.error(`demo: cleanup: ${error}`));
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    say(`removed ${dir}; nothing the demo started is left`);
  };
  const stopped = new Promise<void>((resolve) => {
    const onSignal = () => {
      if (stopping) return;
      stopping = true;
      say("stopping…");
      resolve();
    };
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
  });

  try {
    say("starting a docker-registry and a docker engine on private sockets");
    const registry = await startRegistry(`${dir}/registry`);
    stops.push(registry.stop);
    const dockerd = await startDockerd(`${dir}/engine`);
    stops.push(dockerd.stop);
    const docker = (...args: string[]) => run(["docker", "-H", dockerd.host, ...args]);

    const image = `${registry.host}/demo/web:1`;
    say(`building ${image} (busybox httpd) and pushing it`);
    await buildImage(dir, docker, image);

    const appPort = freePort();
    const project = `${dir}/project`;
    await Deno.mkdir(project);
    await Deno.writeTextFile(
      `${project}/docker-compose.yml`,
      [
        "services:",
        "  web:",
        `    image: ${image}`,
        `    command: ["/bin/busybox", "httpd", "-f", "-h", "/www", "-p", "127.0.0.1:${appPort}"]`,
        "    network_mode: host",
        "    restart: unless-stopped",
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
    if (!published.success) throw new Error("berth publish failed");

    const statusPort = freePort();
    const config = `${dir}/config.yml`;
    await Deno.writeTextFile(
      config,
      [
        `store: ${dir}/store`,
        `composeRoot: ${dir}/apps`,
        `docker: { host: "${dockerd.host}" }`,
        `apps: ["${app}"]`,
        "pollInterval: 30s",
        `status: { listen: "127.0.0.1:${statusPort}" }`,
        "",
      ].join("\n"),
    );
    say(`starting berth agent --config ${config}`);
    agent = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, "--config", config, "agent"],
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const statusUrl = `http://127.0.0.1:${statusPort}`;
    say(`status: ${statusUrl}  (the page; ${statusUrl}/status is the JSON)`);

    const running = (async () => {
      for (;;) {
        try {
          const status = await (await fetch(`${statusUrl}/status`)).json();
          if (status.apps?.[0]?.state === "running") return true;
        } catch {
          // not listening yet
        }
        if (stopping) return false;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    })();
    if (await Promise.race([running, stopped.then(() => false)])) {
      say(`app hello is running: http://127.0.0.1:${appPort}/ — try: curl http://127.0.0.1:${appPort}/`);
      say("publish a new version with 'berth publish' to watch the agent update it; Ctrl-C to stop");
    }
    await stopped;
    return 0;
  } catch (error) {
    console.error(`demo: ${error instanceof Error ? error.message : error}`);
    return 1;
  } finally {
    await cleanUp();
  }
}

Deno.exit(await main());
