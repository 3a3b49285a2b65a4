/**
 * The figures measured once, on the "bench" set: bytes re-served when a pull is killed with SIGKILL eight
 * times and then finishes; bytes an app update fetches when one image's top layer changed; and how long
 * `berth agent` takes from start to its first answer on GET /status.
 */
import { type Dockerd, run } from "../harness/services.ts";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { berth } from "./contenders.ts";
import { dockerBuild, type ImageSet, push, type SetBuilder, writeRandomFile } from "./sets.ts";
import { median } from "./report.ts";
import type { Extras } from "./report.ts";

const MiB = 1024 * 1024;
const KILLS = 8;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The size of the store's blob `digest`, 0 when it is not there. */
const blobSize = (store: string, digest: string) =>
  Deno.stat(`${store}/blobs/sha256/${digest.replace(/^sha256:/, "")}`).then((info) => info.size, () => 0);

/** The blob files of a store, by name. */
async function blobNames(store: string): Promise<Set<string>> {
  const names = new Set<string>();
  for await (const entry of Deno.readDir(`${store}/blobs/sha256`)) names.add(entry.name);
  return names;
}

/** Pulls `set` through a throttled counting proxy, killing berth at 8 spread-out points, then finishes. */
export async function resumeAfterKills(
  builder: SetBuilder,
  set: ImageSet,
  dir: string,
): Promise<NonNullable<Extras["resume"]>> {
  const proxy = await startFaultProxy(builder.registry);
  try {
    const refs = set.refs.map((ref) => ref.replace(builder.registry, proxy.host));
    const store = `${dir}/resume-store`;
    // The set's size, to spread the kills over it: a pull straight from the registry.
    const reference = `${dir}/resume-reference`;
    await run(berth("--store", reference, "pull", ...set.refs));
    let expected = 0;
    for (const name of await blobNames(reference)) expected += await blobSize(reference, name);
    await Deno.remove(reference, { recursive: true });
    proxy.setThrottle(24 * MiB);
    let kills = 0;
    for (let round = 1; round <= KILLS; round++) {
      const child = new Deno.Command(berth()[0], {
        args: [...berth("--store", store, "pull", ...refs).slice(1)],
        stdout: "null",
        stderr: "null",
      }).spawn();
      let exited = false;
      child.status.then(() => exited = true);
      while (!exited && proxy.totalBlobBytes() < (expected * round) / (KILLS + 1)) await sleep(10);
      if (exited) break;
      child.kill("SIGKILL");
      await child.status;
      kills++;
    }
    proxy.setThrottle(0);
    await run(berth("--store", store, "pull", ...refs));
    let distinctBytes = 0;
    for (const digest of proxy.stats.blobBytes.keys()) distinctBytes += await blobSize(store, digest);
    return { kills, servedBytes: proxy.totalBlobBytes(), distinctBytes };
  } finally {
    await proxy.close();
  }
}

/** Publishes `images` as an app at `appRef` without layers meta (measuring it would read every layer). */
async function publishApp(dir: string, appRef: string, images: string[]): Promise<void> {
  const project = `${dir}/${appRef.replace(/[^a-z0-9]+/gi, "-")}`;
  await Deno.mkdir(project, { recursive: true });
  const services = images.map((ref, index) => `  s${index}:\n    image: ${ref}\n    network_mode: none`);
  await Deno.writeTextFile(`${project}/docker-compose.yml`, ["services:", ...services, ""].join("\n"));
  await run(berth("publish", "--no-layers-meta", project, appRef));
}

/** Pulls app v1, then v2 whose first image has a new top layer; blob bytes fetched for v2 vs its new blobs. */
export async function updateBytes(
  builder: SetBuilder,
  set: ImageSet,
  dir: string,
): Promise<NonNullable<Extras["update"]>> {
  const context = `${dir}/update-context`;
  await Deno.mkdir(context, { recursive: true });
  await Deno.writeTextFile(
    `${context}/Dockerfile`,
    "FROM berth-test/base:1\nCOPY lower.bin /data/lower.bin\nCOPY top.bin /data/top.bin\n",
  );
  await writeRandomFile(`${context}/lower.bin`, 16 * MiB);
  for (const version of [1, 2]) {
    // Only top.bin changes: the builder's cache keeps the lower layer, so v2 shares it with v1.
    await writeRandomFile(`${context}/top.bin`, 4 * MiB);
    await dockerBuild(builder, `bench/update:${version}`, context);
    await push(builder, `bench/update:${version}`);
  }
  const proxy = await startFaultProxy(builder.registry);
  try {
    const via = (ref: string) => ref.replace(builder.registry, proxy.host);
    const others = set.refs.slice(1, 3).map(via);
    const app = (version: number) => `${proxy.host}/bench/update-app:${version}`;
    for (const version of [1, 2]) {
      await publishApp(dir, app(version), [`${proxy.host}/bench/update:${version}`, ...others]);
    }
    const store = `${dir}/update-store`;
    await run(berth("--store", store, "pull", app(1)));
    const before = await blobNames(store);
    proxy.resetStats();
    await run(berth("--store", store, "pull", app(2)));
    let changedBytes = 0;
    for (const name of await blobNames(store)) {
      if (!before.has(name)) changedBytes += await blobSize(store, name);
    }
    return { fetchedBytes: proxy.totalBlobBytes(), changedBytes };
  } finally {
    await proxy.close();
  }
}

/** Milliseconds from spawning `berth agent` (no apps) to its first 200 on GET /status, `times` starts. */
export async function statusLatency(engine: Dockerd, dir: string, times = 3): Promise<number[]> {
  const result: number[] = [];
  for (let attempt = 0; attempt < times; attempt++) {
    result.push(await firstStatus(engine, `${dir}/agent-${attempt}`));
  }
  console.error(`bench: agent /status after ${median(result).toFixed(0)} ms (median)`);
  return result;
}

/** One start of `berth agent` with a fresh store and socket: milliseconds to its first 200 on /status. */
async function firstStatus(engine: Dockerd, dir: string): Promise<number> {
  await Deno.mkdir(dir, { recursive: true });
  const socket = `${dir}/status.sock`;
  const config = `${dir}/agent.yml`;
  await Deno.writeTextFile(
    config,
    [
      `store: ${dir}/agent-store`,
      `composeRoot: ${dir}/agent-apps`,
      `docker: { host: "${engine.host}" }`,
      "compose: docker-compose",
      "apps: []",
      `status: { listen: "${socket}" }`,
      "",
    ].join("\n"),
  );
  const started = performance.now();
  const agent = new Deno.Command(berth()[0], {
    args: berth("--config", config, "agent").slice(1),
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    while (!(await statusAnswers(socket))) {
      if (performance.now() - started > 60_000) throw new Error("berth agent: no /status within 60 s");
      await sleep(5);
    }
    return performance.now() - started;
  } finally {
    agent.kill("SIGTERM");
    await agent.status;
  }
}

/** Whether GET /status on the unix socket answers 200 now. */
async function statusAnswers(socket: string): Promise<boolean> {
  // Only once the socket is there, and each try bounded: a fetch through a unix socket that does not exist
  // yet can hang for 5 s before it fails (Deno's client), which would be counted as the agent's time.
  if (!(await Deno.stat(socket).then(() => true, () => false))) return false;
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  try {
    const response = await fetch("http://agent/status", { client, signal: AbortSignal.timeout(1000) });
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  } finally {
    client.close();
  }
}
