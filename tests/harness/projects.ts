/** Compose projects for tests: services that sleep on the busybox test images, with no network. */
import assert from "node:assert/strict";
import { MANIFEST_ACCEPT } from "./images.ts";
import { COMPOSE_FILE } from "../../src/app/bundle_format.ts";
import { readTar } from "../../src/app/tar_read.ts";
import { gunzip } from "../../src/util/gzip.ts";

export interface ProjectOptions {
  /** Also mount a `conf/` directory read-only into every service (a bundle with more than the compose file). */
  conf?: boolean;
  /** This service exits at once with no restart policy: a version that does not come up. */
  failing?: string;
  /** This service runs but its healthcheck never passes: a version that stays `starting`/`unhealthy`. */
  unhealthy?: string;
  /** This service does its work and exits 0, with `restart: "no"`: a one-shot (a migration, say). */
  oneShot?: string;
  /** This service exits 1 after two seconds and is restarted (`restart: always`): a crash loop. */
  crashLoop?: string;
  /** This service runs for one second, then exits 1 with `restart: "no"`: a version that dies once up. */
  exitsLate?: string;
  /** A label every service carries: versions that differ only in it are still new versions (new digests). */
  label?: string;
}

/** Writes `dir/docker-compose.yml` with one service per entry of `images`. */
export async function writeProject(
  dir: string,
  images: Record<string, string>,
  options: ProjectOptions = {},
): Promise<void> {
  if (options.conf) {
    await Deno.mkdir(`${dir}/conf`, { recursive: true });
    await Deno.writeTextFile(`${dir}/conf/app.conf`, "greeting = hello\n");
  }
  const services = Object.entries(images).map(([name, image]) =>
    [
      `  ${name}:`,
      `    image: ${image}`,
      options.failing === name
        ? `    command: ["/bin/busybox", "false"]`
        : options.oneShot === name
        ? `    command: ["/bin/busybox", "true"]\n    restart: "no"`
        : options.crashLoop === name
        ? `    command: ["/bin/busybox", "sh", "-c", "sleep 2; exit 1"]\n    restart: always`
        : options.exitsLate === name
        ? `    command: ["/bin/busybox", "sh", "-c", "sleep 1; exit 1"]\n    restart: "no"`
        : `    command: ["/bin/busybox", "sleep", "600"]`,
      `    network_mode: none`,
      ...(options.label !== undefined
        ? [`    labels: { berth-test.variant: ${JSON.stringify(options.label)} }`]
        : []),
      ...(options.unhealthy === name
        ? [`    healthcheck: { test: ["CMD", "/bin/busybox", "false"], interval: 1s, retries: 1 }`]
        : []),
      // busybox sleep ignores SIGTERM as PID 1: do not wait the default 10 s on every stop.
      `    stop_grace_period: 1s`,
      ...(options.conf ? [`    volumes: ["./conf:/conf:ro"]`] : []),
    ].join("\n")
  );
  await Deno.writeTextFile(`${dir}/docker-compose.yml`, ["services:", ...services, ""].join("\n"));
}

/** The compose file in the bundle of the app published as `ref`, read from the registry. */
export async function publishedCompose(registry: string, repository: string, tag: string): Promise<string> {
  const manifest = await (await fetch(`http://${registry}/v2/${repository}/manifests/${tag}`, {
    headers: { Accept: MANIFEST_ACCEPT },
  })).json() as { layers: { digest: string }[] };
  const blob = await fetch(`http://${registry}/v2/${repository}/blobs/${manifest.layers[0].digest}`);
  assert.equal(blob.status, 200);
  for await (const entry of readTar(gunzip(blob.body!), { what: "bundle" })) {
    if (entry.header.name === COMPOSE_FILE) return new TextDecoder().decode(await entry.bytes());
  }
  throw new Error(`no ${COMPOSE_FILE} in the bundle`);
}
