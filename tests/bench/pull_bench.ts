/**
 * `deno task bench`: times `berth pull` against `skopeo copy docker://… oci:…` on the same images from the
 * same local registry, into a fresh directory each run, alternating which goes first, and prints the
 * median of each, their ratio and both peak RSS figures (from GNU time). Figures, not assertions: the aims
 * are berth no slower than skopeo and under 120 MB peak RSS.
 */
import { ensurePackages, run } from "../harness/services.ts";
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
    const berthRuns: Sample[] = [];
    const skopeoRuns: Sample[] = [];
    const skopeoScript = refs.map((ref) =>
      `skopeo copy -q --src-tls-verify=false docker://${ref} "oci:$1:${ref}"`
    ).join(" && ");
    let bytes = 0;
    for (let round = 0; round < RUNS; round++) {
      const berthStore = `${tmp}/berth-${round}`;
      const skopeoLayout = `${tmp}/skopeo-${round}`;
      await Deno.mkdir(skopeoLayout);
      const berth = () =>
        timed([Deno.execPath(), "run", "-A", "--quiet", MAIN, "--store", berthStore, "pull", ...refs]);
      const skopeo = () => timed(["bash", "-c", skopeoScript, "bench", skopeoLayout]);
      if (round % 2 === 0) {
        berthRuns.push(await berth());
        skopeoRuns.push(await skopeo());
      } else {
        skopeoRuns.push(await skopeo());
        berthRuns.push(await berth());
      }
      if (round === 0) {
        for await (const entry of Deno.readDir(`${berthStore}/blobs/sha256`)) {
          bytes += (await Deno.stat(`${berthStore}/blobs/sha256/${entry.name}`)).size;
        }
      }
      await Deno.remove(berthStore, { recursive: true });
      await Deno.remove(skopeoLayout, { recursive: true });
    }

    const berthSeconds = median(berthRuns.map((sample) => sample.seconds));
    const skopeoSeconds = median(skopeoRuns.map((sample) => sample.seconds));
    const mb = bytes / 1e6;
    console.log(
      `\nberth pull vs skopeo copy: ${refs.length} images, ${mb.toFixed(1)} MB of blobs, ${RUNS} runs each`,
    );
    console.log(
      `  berth   median ${berthSeconds.toFixed(2)} s (${(mb / berthSeconds).toFixed(0)} MB/s), ` +
        `peak RSS ${(Math.max(...berthRuns.map((s) => s.peakRssKiB)) / 1024).toFixed(1)} MiB, runs: ${
          berthRuns.map((s) => s.seconds.toFixed(2)).join(" ")
        }`,
    );
    console.log(
      `  skopeo  median ${skopeoSeconds.toFixed(2)} s (${(mb / skopeoSeconds).toFixed(0)} MB/s), ` +
        `peak RSS ${(Math.max(...skopeoRuns.map((s) => s.peakRssKiB)) / 1024).toFixed(1)} MiB, runs: ${
          skopeoRuns.map((s) => s.seconds.toFixed(2)).join(" ")
        }`,
    );
    console.log(
      `  ratio berth/skopeo: ${(berthSeconds / skopeoSeconds).toFixed(2)} (below 1 means berth is faster)`,
    );
  } finally {
    await services.stop();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

await main();
