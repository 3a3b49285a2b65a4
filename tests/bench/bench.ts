/**
 * `deno task bench`: berth against skopeo and docker on the same images from the same local registry, each
 * contender starting from the same empty state every run, alternating which goes first; prints medians,
 * ratios and peak RSS (from GNU time). Figures, not assertions. Aims: pull no slower than skopeo and under
 * 120 MB peak RSS; load (a restore: store → engine) ≤ 0.5× skopeo and ≤ 1.0× docker load.
 *
 * 1. fetch: `berth pull` vs `skopeo copy docker://… oci:…`
 * 2. restore: `berth load` vs `skopeo copy oci:<berth store>:… docker-daemon:…` vs `docker load` of a
 *    `docker save` archive, into an emptied engine
 * 3. an app of those images: `berth pull` + `install` vs `docker pull` of the images, into an emptied engine
 */
import { ensurePackages, run, startDockerd } from "../harness/services.ts";
import { startServices } from "../harness/images.ts";

const RUNS = Number(Deno.env.get("BERTH_BENCH_RUNS") ?? "5");
const MAIN = new URL("../../main.ts", import.meta.url).pathname;

interface Sample {
  seconds: number;
  peakRssKiB: number;
}

/** Runs a command under GNU time and returns its wall time and peak RSS. */
async function timed(command: string[]): Promise<Sample> {
  const output = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "BENCH %e %M", ...command],
    stdout: "null",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  if (!output.success) throw new Error(`${command.join(" ")} failed:\n${stderr}`);
  const match = /BENCH ([\d.]+) (\d+)/.exec(stderr);
  if (!match) throw new Error(`no timing from GNU time:\n${stderr}`);
  return { seconds: Number(match[1]), peakRssKiB: Number(match[2]) };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function main(): Promise<void> {
  await ensurePackages();
  const tmp = await Deno.makeTempDir({ prefix: "berth-bench-" });
  const services = await startServices(tmp);
  try {
    const { registry, dockerd, images } = services;

    // One larger image besides the test images: three 32 MiB layers of random bytes.
    const context = `${tmp}/large`;
    await Deno.mkdir(context);
    const copies: string[] = [];
    for (let layer = 0; layer < 3; layer++) {
      const bytes = new Uint8Array(32 * 1024 * 1024);
      for (let at = 0; at < bytes.length; at += 65536) crypto.getRandomValues(bytes.subarray(at, at + 65536));
      await Deno.writeFile(`${context}/layer${layer}.bin`, bytes);
      copies.push(`COPY layer${layer}.bin /data/layer${layer}.bin`);
    }
    const base = images.base.ref;
    await run([
      "skopeo",
      "copy",
      "-q",
      "--src-tls-verify=false",
      "--dest-daemon-host",
      dockerd.host,
      `docker://${base}`,
      "docker-daemon:bench-base:1",
    ]);
    await Deno.writeTextFile(`${context}/Dockerfile`, ["FROM bench-base:1", ...copies, ""].join("\n"));
    await run([
      "docker",
      "-H",
      dockerd.host,
      "build",
      "-q",
      "--network",
      "none",
      "-t",
      "bench/large:1",
      context,
    ], {
      env: { DOCKER_BUILDKIT: "0" },
    });
    const large = `${registry.host}/bench/large:1`;
    await run([
      "skopeo",
      "copy",
      "-q",
      "--dest-tls-verify=false",
      "--src-daemon-host",
      dockerd.host,
      "docker-daemon:bench/large:1",
      `docker://${large}`,
    ]);

    const refs = [large, images.big.ref, images.appA.ref, images.appB.ref, images.appC.ref];
    const engine = await startDockerd(`${tmp}/engine`);
    try {
      await benchmarks(tmp, refs, engine.host);
    } finally {
      await engine.stop();
    }
  } finally {
    await services.stop();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

await main();

interface Contender {
  name: string;
  /** Runs once, timed; `round` picks fresh directories. */
  run(round: number): Promise<Sample>;
  /** Brings the state back to empty, untimed. */
  reset?(round: number): Promise<void>;
}

/** Runs every contender RUNS times, rotating who goes first, and prints medians and ratios to the first. */
async function compare(title: string, megabytes: number, contenders: Contender[]): Promise<void> {
  const samples = contenders.map(() => [] as Sample[]);
  for (let round = 0; round < RUNS; round++) {
    for (let turn = 0; turn < contenders.length; turn++) {
      const index = (turn + round) % contenders.length;
      samples[index].push(await contenders[index].run(round));
      await contenders[index].reset?.(round);
    }
  }
  const medians = samples.map((runs) => median(runs.map((sample) => sample.seconds)));
  console.log(`\n${title}: ${megabytes.toFixed(1)} MB, ${RUNS} runs each`);
  for (const [index, contender] of contenders.entries()) {
    const peak = Math.max(...samples[index].map((sample) => sample.peakRssKiB)) / 1024;
    console.log(
      `  ${contender.name.padEnd(22)} median ${medians[index].toFixed(2)} s (${
        (megabytes / medians[index]).toFixed(0)
      } MB/s), ` +
        `peak RSS ${peak.toFixed(1)} MiB, runs: ${
          samples[index].map((sample) => sample.seconds.toFixed(2)).join(" ")
        }`,
    );
  }
  for (let index = 1; index < contenders.length; index++) {
    console.log(
      `  ratio ${contenders[0].name} / ${contenders[index].name}: ${
        (medians[0] / medians[index]).toFixed(2)
      }` +
        " (below 1: berth is faster)",
    );
  }
}

async function benchmarks(tmp: string, refs: string[], engineHost: string): Promise<void> {
  const berth = (...args: string[]) => [Deno.execPath(), "run", "-A", "--quiet", MAIN, ...args];
  const docker = (...args: string[]) => run(["docker", "-H", engineHost, ...args]);
  const emptyEngine = async () => {
    const ids = (await docker("image", "ls", "-aq")).trim().split("\n").filter(Boolean);
    if (ids.length) await docker("rmi", "-f", ...new Set(ids));
  };
  await emptyEngine();

  // 1. fetch
  const skopeoPull = refs.map((ref) =>
    `skopeo copy -q --src-tls-verify=false docker://${ref} "oci:$1:${ref}"`
  )
    .join(" && ");
  const store = `${tmp}/store`;
  await run(berth("--store", store, "pull", ...refs));
  let bytes = 0;
  for await (const entry of Deno.readDir(`${store}/blobs/sha256`)) {
    bytes += (await Deno.stat(`${store}/blobs/sha256/${entry.name}`)).size;
  }
  const megabytes = bytes / 1e6;
  await compare(`fetch (${refs.length} images)`, megabytes, [
    {
      name: "berth pull",
      run: (round) => timed(berth("--store", `${tmp}/pull-${round}`, "pull", ...refs)),
      reset: (round) => Deno.remove(`${tmp}/pull-${round}`, { recursive: true }),
    },
    {
      name: "skopeo copy",
      run: async (round) => {
        await Deno.mkdir(`${tmp}/skopeo-${round}`);
        return await timed(["bash", "-c", skopeoPull, "bench", `${tmp}/skopeo-${round}`]);
      },
      reset: (round) => Deno.remove(`${tmp}/skopeo-${round}`, { recursive: true }),
    },
  ]);

  // 2. restore: store → engine
  const archive = `${tmp}/images.tar`;
  // The archive docker load reads: `docker save` of the very images, as the engine holds them.
  await run(berth("--store", store, "--docker-host", engineHost, "load", ...refs));
  await docker("save", "-o", archive, ...refs);
  await emptyEngine();
  const skopeoLoad = refs.map((ref) =>
    `skopeo copy -q --dest-daemon-host ${engineHost} "oci:${store}:${ref}" "docker-daemon:${ref}"`
  ).join(" && ");
  await compare("restore (store → engine)", megabytes, [
    {
      name: "berth load",
      run: () => timed(berth("--store", store, "--docker-host", engineHost, "load", ...refs)),
      reset: emptyEngine,
    },
    { name: "skopeo copy oci→daemon", run: () => timed(["bash", "-c", skopeoLoad]), reset: emptyEngine },
    {
      name: "docker load",
      run: () => timed(["docker", "-H", engineHost, "load", "-q", "-i", archive]),
      reset: emptyEngine,
    },
  ]);

  // 3. an app of all the images: fetch + install vs docker pull
  const project = `${tmp}/project`;
  await Deno.mkdir(project);
  await Deno.writeTextFile(
    `${project}/docker-compose.yml`,
    ["services:", ...refs.map((ref, n) => `  s${n}:\n    image: ${ref}\n    network_mode: none`), ""].join(
      "\n",
    ),
  );
  const appRef = `${refs[0].slice(0, refs[0].indexOf("/"))}/bench/app:1`;
  await run(berth("publish", project, appRef));
  const berthBoth = (round: number) => {
    const device = ["--store", `${tmp}/both-${round}`, "--compose-root", `${tmp}/apps-${round}`];
    return `${berth(...device, "pull", appRef).join(" ")} >/dev/null 2>&1 && ` +
      `${berth(...device, "--docker-host", engineHost, "install", appRef).join(" ")}`;
  };
  const dockerPull = refs.map((ref) => `docker -H ${engineHost} pull -q ${ref}`).join(" && ");
  await compare("app: fetch + install vs docker pull of its images", megabytes, [
    {
      name: "berth pull + install",
      run: (round) => timed(["bash", "-c", berthBoth(round)]),
      reset: async (round) => {
        await emptyEngine();
        await Deno.remove(`${tmp}/both-${round}`, { recursive: true });
        await Deno.remove(`${tmp}/apps-${round}`, { recursive: true });
      },
    },
    { name: "docker pull", run: () => timed(["bash", "-c", dockerPull]), reset: emptyEngine },
  ]);
}
