/**
 * Bundle limits follow the config's limits.bundle (1 GiB by default, as composectl): a project with a
 * 17 MiB file publishes, pulls and installs with the defaults (berth once refused any file over 16 MiB),
 * and with limits.bundle set lower, publish and install refuse, naming the file, the limit and the key. An
 * install whose compose root cannot keep storage.reserve free after the project is refused before writing.
 */
import assert from "node:assert/strict";
import { deviceBerth, runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { writeProject } from "../harness/projects.ts";

const MiB = 1024 * 1024;
const BIG = 17 * MiB;

/** `size` bytes that gzip cannot shrink, so the bundle blob itself is as large as the file. */
function incompressible(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let offset = 0; offset < size; offset += 65536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(size, offset + 65536)));
  }
  return bytes;
}

Deno.test({
  name: "bundle limits: a 17 MiB file installs by default; a lower limits.bundle refuses naming the file",
  ...withServices,
  async fn(t) {
    const env = testEnv()!;
    const dir = await scratchDir("bundle-limits-");
    const lowConfig = `${dir}/low.yml`;
    await Deno.writeTextFile(lowConfig, "limits:\n  bundle: 16MiB\n");
    const berth = deviceBerth(dir, env.dockerHost);
    const lowBerth = deviceBerth(dir, env.dockerHost, ["--config", lowConfig]);

    const project = `${dir}/project`;
    await writeProject(project, { web: env.images.appA.ref }, { conf: true });
    const big = incompressible(BIG);
    await Deno.writeFile(`${project}/conf/big.bin`, big);
    // Compresses to almost nothing: the blob passes a low limits.bundle, the file inside does not.
    const sparse = `${dir}/sparse`;
    await writeProject(sparse, { web: env.images.appA.ref }, { conf: true });
    await Deno.writeFile(`${sparse}/conf/zeros.bin`, new Uint8Array(BIG));

    const ref = `${env.registry}/bundle-limits/big:v1`;
    const sparseRef = `${env.registry}/bundle-limits/sparse:v1`;

    await t.step("a 17 MiB file publishes, pulls and installs with the default limits", async () => {
      const published = await runBerth(["publish", project, ref]);
      assert.equal(published.code, 0, published.stderr);
      const pulled = await berth("pull", ref);
      assert.equal(pulled.code, 0, pulled.stderr);
      const installed = await berth("install", ref);
      assert.equal(installed.code, 0, installed.stderr);
      const copy = await Deno.readFile(`${dir}/apps/big/conf/big.bin`);
      assert.equal(copy.length, BIG);
      assert.deepEqual(copy, big);
    });

    await t.step("publish with a lower limits.bundle refuses, naming the file and the limit", async () => {
      const refused = await runBerth(["--config", lowConfig, "publish", project, `${ref}-low`]);
      assert.equal(refused.code, 1, refused.stdout);
      assert.match(refused.stderr, /conf\/big\.bin: 17825792 bytes, over the limit of 16777216/);
      assert.match(refused.stderr, /limits\.bundle in the config file/);
    });

    await t.step("install with a lower limits.bundle refuses, naming the file and the limit", async () => {
      const published = await runBerth(["publish", sparse, sparseRef]);
      assert.equal(published.code, 0, published.stderr);
      const pulled = await lowBerth("pull", sparseRef);
      assert.equal(pulled.code, 0, pulled.stderr);
      const refused = await lowBerth("install", sparseRef);
      assert.equal(refused.code, 1, refused.stdout);
      assert.match(
        refused.stderr.trim(),
        new RegExp(
          `bundle: entry "conf/zeros\\.bin": 17825792 bytes, over the limit of 16777216 ` +
            `\\(limits\\.bundle in the config file\\)$`,
        ),
      );
      assert.deepEqual(
        (await Array.fromAsync(Deno.readDir(`${dir}/apps`))).map((entry) => entry.name),
        ["big"],
        "no project and no staging leftovers",
      );
      const installed = await berth("install", sparseRef);
      assert.equal(installed.code, 0, installed.stderr);
    });

    await t.step("install refuses, writing nothing, when the compose root lacks the room", async () => {
      const tight = `${dir}/tight.yml`;
      await Deno.writeTextFile(tight, "storage:\n  reserve: 100TB\n");
      const before = await Deno.readFile(`${dir}/apps/big/conf/big.bin`);
      await Deno.remove(`${dir}/apps/big`, { recursive: true });
      const refused = await deviceBerth(dir, env.dockerHost, ["--config", tight])("install", ref);
      assert.equal(refused.code, 1, refused.stdout);
      assert.match(refused.stderr, /not enough space for .*big:v1 bundle in the compose root \(/);
      assert.match(refused.stderr, /needs 17\.\d MiB/);
      assert.deepEqual(
        (await Array.fromAsync(Deno.readDir(`${dir}/apps`))).map((entry) => entry.name),
        ["sparse"],
        "nothing written for the refused install",
      );
      const installed = await berth("install", ref);
      assert.equal(installed.code, 0, installed.stderr);
      assert.deepEqual(await Deno.readFile(`${dir}/apps/big/conf/big.bin`), before);
    });

    await t.step("the big bundle's blob is refused at pull under the lower limit, by its size", async () => {
      const other = `${dir}/other`;
      const again = await deviceBerth(other, env.dockerHost, ["--config", lowConfig])("pull", ref);
      assert.equal(again.code, 1, again.stdout);
      assert.match(again.stderr, /over the 16777216-byte limit \(limits\.bundle in the config file\)/);
    });
  },
});
