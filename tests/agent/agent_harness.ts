/**
 * What the agent tests share: a device (its own dockerd, store, compose root and config), apps published
 * through the counting proxy, the agent run as a separate process, and its status read over its socket.
 */
import { type ProjectOptions, writeProject } from "../harness/projects.ts";
import assert from "node:assert/strict";
import { type Dockerd, run, startDockerd } from "../harness/services.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault_proxy.ts";
import { CHILD_ENV, RUN_ARGS, runBerth, scratchDir, type TestEnv, testEnv } from "../harness/env.ts";
import { type AppStatus, type Status, StatusSchema } from "../../src/agent/status_schema.ts";
import type { ManagedApp } from "../../src/agent/state.ts";
import { parseExposition } from "../status/metrics_check.ts";

export interface Device {
  dir: string;
  store: string;
  composeRoot: string;
  dockerd: Dockerd;
  configPath: string;
  statusSocket: string;
  /** berth's global options for this device (for one-off commands beside the agent). */
  options: string[];
}

export async function makeDevice(): Promise<Device> {
  const dir = await scratchDir("agent-device-");
  const dockerd = await startDockerd(`${dir}/engine`);
  const store = `${dir}/store`;
  const composeRoot = `${dir}/apps`;
  return {
    dir,
    store,
    composeRoot,
    dockerd,
    configPath: `${dir}/config.yml`,
    statusSocket: `${dir}/status.sock`,
    options: [
      "--store",
      store,
      "--compose-root",
      composeRoot,
      "--docker-host",
      dockerd.host,
      "--compose",
      "docker-compose",
    ],
  };
}

/** Writes the device's config: its paths, the apps, and short intervals so tests run in seconds. */
export async function writeConfig(device: Device, apps: string[], extra: string[] = []): Promise<void> {
  await Deno.writeTextFile(
    device.configPath,
    [
      `store: ${device.store}`,
      `composeRoot: ${device.composeRoot}`,
      `docker: { host: "${device.dockerd.host}" }`,
      `compose: docker-compose`,
      `apps: ${JSON.stringify(apps)}`,
      `pollInterval: 2s`,
      `pollJitter: 1s`,
      `status: { listen: "${device.statusSocket}" }`,
      `timeouts: { stall: 60s, start: 20s, retryMax: 3s, soak: 3s }`,
      `logLevel: debug`,
      ...extra,
      "",
    ].join("\n"),
  );
}

export interface Published {
  digest: string;
  /** Pinned image references, by service. */
  pinned: Record<string, string>;
}

/** Publishes a project with these images (given through the proxy) under `ref`. */
export async function publish(
  ref: string,
  images: Record<string, string>,
  options: ProjectOptions = {},
): Promise<Published> {
  const project = await scratchDir("agent-project-");
  await writeProject(project, images, options);
  // Without layers meta: measuring it reads every layer through the test's proxy, which would count (and,
  // throttled, slow) as the device's own downloads. Layers meta has tests of its own (tests/app/).
  const published = await runBerth(["--json", "publish", "--no-layers-meta", project, ref]);
  assert.equal(published.code, 0, published.stderr);
  const result = JSON.parse(published.stdout) as {
    digest: string;
    images: { service: string; pinned: string }[];
  };
  return {
    digest: result.digest,
    pinned: Object.fromEntries(result.images.map((image) => [image.service, image.pinned])),
  };
}

export interface RunningAgent {
  process: Deno.ChildProcess;
  /** Everything the agent logged so far. */
  log(): string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number>;
  kill(): Promise<void>;
}

/**
 * Starts the agent on `device`. With a `wrapper` (a command line such as strace's) the agent runs under it,
 * and signals go to the agent itself, the wrapper's child: strace ignores SIGTERM and, killed, leaves its
 * command running.
 */
export function startAgent(
  device: Device,
  extraArgs: string[] = [],
  env: Record<string, string> = {},
  wrapper: string[] = [],
): RunningAgent {
  const [command, ...prefix] = [...wrapper, Deno.execPath()];
  const process = new Deno.Command(command, {
    args: [...prefix, ...RUN_ARGS, "--config", device.configPath, ...extraArgs, "agent"],
    env: { ...CHILD_ENV, ...env },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const signal = (name: Deno.Signal) => {
    const pid = wrapper.length ? childOf(process.pid) ?? process.pid : process.pid;
    if (pid !== undefined) Deno.kill(pid, name);
  };
  let text = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of process.stderr) text += decoder.decode(chunk, { stream: true });
  })();
  return {
    process,
    log: () => text,
    async stop() {
      try {
        signal("SIGTERM");
      } catch {
        // already gone
      }
      const { code } = await process.status;
      await reading;
      return code;
    },
    async kill() {
      try {
        signal("SIGKILL");
      } catch {
        // already gone
      }
      await process.status;
      await reading;
    },
  };
}

/** The first child of process `pid`, or undefined when it has none (any more). */
function childOf(pid: number): number | undefined {
  try {
    const first = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(" ")[0];
    return first ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}

/** GET on the agent's status socket. */
export async function getStatus(
  device: Device,
  path = "/status",
  headers: Record<string, string> = {},
): Promise<Response> {
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: device.statusSocket } });
  try {
    const response = await fetch(`http://agent${path}`, { client, headers });
    const body = new Uint8Array(await response.arrayBuffer());
    return new Response(response.status === 304 ? null : body, {
      status: response.status,
      headers: response.headers,
    });
  } finally {
    client.close();
  }
}

/** The agent's status, validated against the schema; undefined while it does not answer. */
export async function status(device: Device): Promise<Status | undefined> {
  let response: Response;
  try {
    response = await getStatus(device);
  } catch {
    return undefined;
  }
  assert.equal(response.status, 200);
  const parsed = StatusSchema.safeParse(await response.json());
  assert.ok(parsed.success, `status does not match the schema: ${JSON.stringify(parsed.error?.issues)}`);
  return parsed.data;
}

/** Reconcile passes the agent has finished since it started (`berth_reconciles_total` on /metrics). */
export async function reconciles(device: Device): Promise<number> {
  const response = await getStatus(device, "/metrics");
  const text = new TextDecoder().decode(await response.bytes());
  assert.equal(response.status, 200, text);
  const sample = parseExposition(text).samples.find((sample) => sample.name === "berth_reconciles_total");
  assert.ok(sample, `/metrics has no berth_reconciles_total:\n${text}`);
  return sample.value;
}

/**
 * Waits until the agent has finished `passes` more reconcile passes than when called. The pass in flight
 * may count as the first, so `passes - 1` whole passes ran after the call: what they would have done (a
 * retry, a fetch) has had its chance, and a check that it did not happen means something.
 */
export async function waitForPasses(
  device: Device,
  passes: number,
  agent: RunningAgent,
  timeoutMs = 30_000,
): Promise<void> {
  const from = await reconciles(device);
  await waitFor(
    `${passes} reconcile passes after pass ${from}`,
    async () => (await reconciles(device)) >= from + passes,
    timeoutMs,
    100,
    agent.log,
  );
}

/** Polls `check` every `everyMs` until it returns a value, or fails after `timeoutMs` saying `what`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
  everyMs = 200,
  log?: () => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value as T;
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs / 1000} s waiting for ${what}${log ? `\nagent log:\n${log()}` : ""}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Service → image of the running containers of `project`. */
export async function runningServices(device: Device, project: string): Promise<Record<string, string>> {
  const out = await run([
    "docker",
    "-H",
    device.dockerd.host,
    "ps",
    "--filter",
    `label=com.docker.compose.project=${project}`,
    "--format",
    '{{.Label "com.docker.compose.service"}} {{.Image}}',
  ]);
  return Object.fromEntries(out.trim().split("\n").filter(Boolean).map((line) => line.split(" ")));
}

/** Every blob digest in the store. */
export async function storedBlobs(device: Device): Promise<Set<string>> {
  const found = new Set<string>();
  try {
    for await (const entry of Deno.readDir(`${device.store}/blobs/sha256`)) found.add(`sha256:${entry.name}`);
  } catch {
    // no store yet
  }
  return found;
}

/** Image tags in the device's engine. */
export async function engineTags(device: Device): Promise<string[]> {
  const out = await run([
    "docker",
    "-H",
    device.dockerd.host,
    "images",
    "--format",
    "{{.Repository}}:{{.Tag}}",
  ]);
  return out.trim().split("\n").filter(Boolean);
}

/**
 * Every byte of an app version for this platform, counted from the registry itself (independently of
 * berth): the app manifest, its config, bundle and bundle index, and each pinned image's manifest,
 * config and layers.
 */
export async function versionBytes(
  registry: string,
  repository: string,
  published: Published,
): Promise<number> {
  const get = async (path: string) => {
    const response = await fetch(`http://${registry}/v2/${path}`, {
      headers: {
        Accept: [
          "application/vnd.oci.image.manifest.v1+json",
          "application/vnd.docker.distribution.manifest.v2+json",
        ].join(", "),
      },
    });
    assert.equal(response.status, 200, path);
    return new Uint8Array(await response.arrayBuffer());
  };
  type M = {
    config: { digest: string; size: number };
    layers: { digest: string; size: number; annotations?: Record<string, string> }[];
    annotations?: Record<string, string>;
  };
  // Each distinct blob counts once (images share base layers); every manifest counts.
  const blobs = new Map<string, number>();
  const add = (bytes: Uint8Array) => {
    const manifest = JSON.parse(new TextDecoder().decode(bytes)) as M;
    for (const blob of [manifest.config, ...manifest.layers]) blobs.set(blob.digest, blob.size);
    return { manifest, bytes: bytes.length };
  };
  const app = add(await get(`${repository}/manifests/${published.digest}`));
  let manifestBytes = app.bytes;
  const indexDigest = app.manifest.layers[0]?.annotations?.["org.foundries.app.bundle.index.digest"];
  const indexSize = app.manifest.layers[0]?.annotations?.["org.foundries.app.bundle.index.size"];
  if (indexDigest) blobs.set(indexDigest, Number(indexSize));
  for (const pinned of new Set(Object.values(published.pinned))) {
    const at = pinned.indexOf("/");
    const [repo, digest] = pinned.slice(at + 1).split("@");
    manifestBytes += add(await get(`${repo}/manifests/${digest}`)).bytes;
  }
  return manifestBytes + [...blobs.values()].reduce((sum, size) => sum + size, 0);
}

/** What an agent test works with; `inScene` makes it and takes it all down afterwards. */
export interface Scene {
  env: TestEnv;
  /** The counting, fault-injecting proxy in front of the registry. */
  proxy: FaultProxy;
  /** A test image reference, through the proxy. */
  via(ref: string): string;
  device: Device;
  /**
   * Starts an agent on the device (with `env` added, under `wrapper` if given); any still running at the
   * end is killed.
   */
  start(env?: Record<string, string>, wrapper?: string[]): RunningAgent;
  /** Runs at the end, before the engine is stopped (e.g. unmount what the test mounted). */
  onCleanup(step: () => Promise<void>): void;
}

/** Runs `work` with a proxy, a device and its own dockerd, and removes all of it afterwards. */
export async function inScene(work: (scene: Scene) => Promise<void>): Promise<void> {
  const env = testEnv()!;
  const proxy = await startFaultProxy(env.registry);
  const device = await makeDevice();
  const agents: RunningAgent[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  try {
    await work({
      env,
      proxy,
      via: (ref) => ref.replace(env.registry, proxy.host),
      device,
      start(env, wrapper) {
        const agent = startAgent(device, [], env, wrapper);
        agents.push(agent);
        return agent;
      },
      onCleanup: (step) => cleanups.push(step),
    });
  } finally {
    for (const agent of agents) await agent.kill();
    const ids = await run(["docker", "-H", device.dockerd.host, "ps", "-aq"]).catch(() => "");
    const containers = ids.trim().split("\n").filter(Boolean);
    if (containers.length) {
      await run(["docker", "-H", device.dockerd.host, "rm", "-f", ...containers]).catch(() => {});
    }
    for (const step of cleanups) await step().catch((error) => console.error(`cleanup: ${error}`));
    await device.dockerd.stop();
    await proxy.close();
  }
}

/**
 * A factory reset: the engine's data root and the compose root are wiped (the store is kept) and a fresh
 * dockerd starts; `device` is updated in place.
 */
export async function factoryReset(device: Device): Promise<void> {
  const ids = (await run(["docker", "-H", device.dockerd.host, "ps", "-aq"])).trim().split("\n").filter(
    Boolean,
  );
  if (ids.length) await run(["docker", "-H", device.dockerd.host, "rm", "-f", ...ids]);
  await device.dockerd.stop();
  await Deno.remove(device.dockerd.dataRoot, { recursive: true });
  await Deno.remove(device.composeRoot, { recursive: true });
  device.dockerd = await startDockerd(`${device.dir}/engine`);
  device.options = device.options.map((option, i, all) =>
    all[i - 1] === "--docker-host" ? device.dockerd.host : option
  );
}

/**
 * The app's entry of agent.json as last written, read as a file (the agent holds the store's lock);
 * undefined before the agent wrote one.
 */
export async function managed(device: Device, name: string): Promise<ManagedApp | undefined> {
  try {
    const state = JSON.parse(await Deno.readTextFile(`${device.store}/agent.json`));
    return state.apps?.[name];
  } catch {
    return undefined;
  }
}

/** Waits until the device's first app satisfies `check`; returns what `check` returned. */
export function waitForApp<T>(
  device: Device,
  what: string,
  check: (app: AppStatus) => T | undefined | false,
  agent: RunningAgent,
  timeoutMs = 90_000,
  everyMs = 200,
): Promise<T> {
  return waitFor(
    what,
    async () => {
      const app = (await status(device))?.apps[0];
      return app ? check(app) : undefined;
    },
    timeoutMs,
    everyMs,
    agent.log,
  );
}

export { testEnv };
export type { FaultProxy };
