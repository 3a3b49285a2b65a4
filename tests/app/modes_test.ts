/**
 * File modes from project to device: publish carries each file's and directory's permission bits (uid/gid
 * 0 whoever owns them), so a secret kept 0600 does not ship world-readable; install keeps those bits but
 * drops setuid, setgid and sticky, and everything it writes is root's.
 */
import assert from "node:assert/strict";
import { startDockerd } from "../harness/services.ts";
import { deviceBerth, runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { readTar } from "../../src/app/tar_read.ts";
import { gunzip } from "../../src/util/gzip.ts";

/** The permission bits of a path with setuid, setgid and sticky (not following a symlink). */
const modeOf = async (path: string) => ((await Deno.lstat(path)).mode! & 0o7777).toString(8);

/** The tar headers of the bundle of the app published as `repository:tag` on the test registry. */
async function publishedHeaders(registry: string, repository: string, tag: string) {
  const manifest = await fetch(`http://${registry}/v2/${repository}/manifests/${tag}`, {
    headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
  }).then((response) => response.json());
  const blob = await fetch(`http://${registry}/v2/${repository}/blobs/${manifest.layers[0].digest}`);
  const headers: Record<string, { mode: string; uid: number; gid: number }> = {};
  for await (const { header } of readTar(gunzip(blob.body!))) {
    headers[header.name] = { mode: header.mode.toString(8), uid: header.uid, gid: header.gid };
  }
  return headers;
}

Deno.test({
  name:
    "modes: publish keeps a 0600 secret, a 0750 directory and script and a setuid bit; install drops setuid",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const project = await scratchDir("modes-project-");
    const write = async (path: string, text: string, mode: number) => {
      await Deno.writeTextFile(`${project}/${path}`, text);
      await Deno.chmod(`${project}/${path}`, mode);
    };
    await write("docker-compose.yml", `services:\n  web:\n    image: ${env.images.appA.ref}\n`, 0o640);
    await write("secret.key", "do not share\n", 0o600);
    await Deno.mkdir(`${project}/scripts`);
    await Deno.chmod(`${project}/scripts`, 0o750);
    await write("scripts/start.sh", "#!/bin/sh\necho start\n", 0o750);
    await write("helper", "#!/bin/sh\nid\n", 0o4755);
    // Owners are not carried: a file of someone else's is uid/gid 0 in the bundle.
    await Deno.chown(`${project}/secret.key`, 1000, 1000);

    const ref = `${env.registry}/modes/shop:v1`;
    const published = await runBerth(["publish", project, ref]);
    assert.equal(published.code, 0, published.stderr);
    const headers = await publishedHeaders(env.registry, "modes/shop", "v1");
    assert.deepEqual(headers, {
      "docker-compose.yml": { mode: "640", uid: 0, gid: 0 },
      "helper": { mode: "4755", uid: 0, gid: 0 },
      "scripts/": { mode: "750", uid: 0, gid: 0 },
      "scripts/start.sh": { mode: "750", uid: 0, gid: 0 },
      "secret.key": { mode: "600", uid: 0, gid: 0 },
    });

    const device = await scratchDir("modes-device-");
    const dockerd = await startDockerd(`${device}/engine`);
    try {
      const berth = deviceBerth(device, dockerd.host, ["--compose", "docker-compose"]);
      const pulled = await berth("pull", ref);
      assert.equal(pulled.code, 0, pulled.stderr);
      const installed = await berth("install", ref);
      assert.equal(installed.code, 0, installed.stderr);
      const app = `${device}/apps/shop`;
      const modes: Record<string, string> = {};
      for (const path of ["docker-compose.yml", "secret.key", "scripts", "scripts/start.sh", "helper"]) {
        modes[path] = await modeOf(`${app}/${path}`);
        const info = await Deno.lstat(`${app}/${path}`);
        assert.deepEqual([info.uid, info.gid], [0, 0], `${path} is root's`);
      }
      assert.deepEqual(modes, {
        "docker-compose.yml": "640", // rewritten for the engine, its mode kept
        "secret.key": "600",
        "scripts": "750",
        "scripts/start.sh": "750",
        "helper": "755",
      });
      assert.equal(await modeOf(app), "700", "the project directory stays root's alone");
    } finally {
      await dockerd.stop();
    }
  },
});
