/**
 * `export` and `import`: an app (with the images it pins) and an image carried from one store to another
 * as an OCI layout, on real parts: skopeo reads the export, the import makes no request at all (the
 * references name a counting proxy), and the app installs and runs from the imported store on the test
 * dockerd. A damaged copy (a byte flipped, a blob truncated or missing, a planted link or path) is refused
 * naming the digest with nothing recorded; a reference not fully stored is not exported; an import killed
 * mid-copy records nothing and the next one completes, resuming the partial blob.
 */
import assert from "node:assert/strict";
import { writeProject } from "../harness/projects.ts";
import { run } from "../harness/services.ts";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { deviceBerth, runBerth, scratchDir, spawnBerth, testEnv, withServices } from "../harness/env.ts";
import { parseExportIndex } from "../../src/app/exchange_layout.ts";
import { REF_NAME } from "../../src/store/annotations.ts";

const BLOBS = "blobs/sha256";

/** The full references an export's (or a store's) index.json names. */
async function indexRefs(dir: string): Promise<string[]> {
  const index = JSON.parse(await Deno.readTextFile(`${dir}/index.json`));
  return index.manifests.map((entry: { annotations: Record<string, string> }) =>
    entry.annotations["org.opencontainers.image.ref.name"]
  );
}

/** The store's index.json as bytes, or "" when there is none: what an import may not change when refused. */
async function indexText(store: string): Promise<string> {
  return await Deno.readTextFile(`${store}/index.json`).catch(() => "");
}

function ok(result: { code: number; stderr: string }, what: string): void {
  assert.equal(result.code, 0, `${what}: ${result.stderr}`);
}

Deno.test({
  name: "export: skopeo reads it; import: no request, fsck clean, the app installs and runs offline",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { appA, appB, appOci } = env.images;
    const proxy = await startFaultProxy(env.registry);
    const viaProxy = (ref: string) => ref.replace(env.registry, proxy.host);
    const deviceB = await scratchDir("exchange-b-");
    const b = deviceBerth(deviceB, env.dockerHost);
    try {
      const project = await scratchDir("exchange-project-");
      await writeProject(project, { web: viaProxy(appA.ref), api: viaProxy(appOci.ref) });
      const appRef = `${proxy.host}/exchange/crate:v1`;
      ok(await runBerth(["publish", project, appRef]), "publish");
      const imageRef = viaProxy(appB.ref);
      const a = deviceBerth(await scratchDir("exchange-a-"), env.dockerHost);
      ok(await a("pull", appRef, imageRef), "pull into A");

      const dir = `${await scratchDir("exchange-stick-")}/update`;
      const exported = await a("--json", "export", "--to", dir, appRef, imageRef);
      ok(exported, "export");
      // The app, the image, and the two images the app pins (named by digest).
      const all: string[] = JSON.parse(exported.stdout).refs;
      assert.equal(all.length, 4, all.join(" "));
      assert.ok(all.includes(appRef) && all.includes(imageRef), all.join(" "));
      assert.equal(all.filter((ref) => ref.includes("@sha256:")).length, 2, all.join(" "));
      assert.deepEqual((await indexRefs(dir)).sort(), all, "one entry per reference, by its full name");
      assert.deepEqual(JSON.parse(await Deno.readTextFile(`${dir}/oci-layout`)), {
        imageLayoutVersion: "1.0.0",
      });

      // skopeo reads the export as an OCI layout, by the full reference.
      const inspected = JSON.parse(await run(["skopeo", "inspect", `oci:${dir}:${imageRef}`]));
      assert.deepEqual(inspected.Layers, appB.layers.map((layer) => layer.digest));
      const other = await scratchDir("exchange-skopeo-");
      await run(["skopeo", "copy", "-q", `oci:${dir}:${imageRef}`, `oci:${other}:copy`]);
      assert.deepEqual(
        JSON.parse(await run(["skopeo", "inspect", `oci:${other}:copy`])).Layers,
        inspected.Layers,
      );

      proxy.stats.requests.length = 0;
      const imported = await b("--json", "import", dir);
      ok(imported, "import");
      assert.deepEqual(JSON.parse(imported.stdout).refs, all);
      ok(await b("fsck"), "fsck on B");
      const listed = JSON.parse((await b("--json", "ls")).stdout);
      assert.deepEqual(
        listed.images.map((image: { ref: string }) => image.ref).sort(),
        all.filter((ref) => ref !== appRef),
      );
      assert.deepEqual(listed.apps.map((app: { fetched: string[] }) => app.fetched), [[appRef]]);
      ok(await b("install", "crate"), "install offline");
      ok(await b("run", "crate"), "run offline");
      const running = await run([
        "docker",
        "-H",
        env.dockerHost,
        "ps",
        "-q",
        "--filter",
        "label=com.docker.compose.project=crate",
      ]);
      assert.equal(running.trim().split("\n").length, 2, "both services run");
      assert.deepEqual(proxy.stats.requests, [], "neither import nor install nor run asked the registry");

      // Importing the same export again changes nothing but the time of the write.
      ok(await b("import", dir), "import again");
      assert.deepEqual((await indexRefs(`${deviceB}/store`)).sort(), all);
    } finally {
      await b("stop", "crate");
      await b("rm", "crate");
      await proxy.close();
    }
  },
});

/** A copy of the export at `from` (a new directory), for one kind of damage. */
async function copyOf(from: string): Promise<string> {
  const to = `${await scratchDir("exchange-copy-")}/update`;
  await run(["cp", "-a", from, to]);
  return to;
}

Deno.test({
  name:
    "import refuses a damaged copy naming the digest and records nothing; export refuses what is not stored",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { appC, base } = env.images;
    const deviceA = await scratchDir("exchange-damage-a-");
    const a = deviceBerth(deviceA, env.dockerHost);
    ok(await a("pull", appC.ref, base.ref), "pull");
    const dir = `${await scratchDir("exchange-damage-")}/update`;
    ok(await a("export", "--to", dir, appC.ref), "export");

    // B holds something already: a refused import must leave its index.json byte for byte.
    const deviceB = await scratchDir("exchange-damage-b-");
    const b = deviceBerth(deviceB, env.dockerHost);
    const baseDir = `${await scratchDir("exchange-base-")}/update`;
    ok(await a("export", "--to", baseDir, base.ref), "export base");
    ok(await b("import", baseDir), "import base");
    const before = await indexText(`${deviceB}/store`);

    const layer = appC.layers[appC.layers.length - 1].digest;
    const damages: [string, (path: string) => Promise<void>, RegExp][] = [
      ["a byte flipped", async (path) => {
        const bytes = await Deno.readFile(path);
        bytes[bytes.length >> 1] ^= 0xff;
        await Deno.writeFile(path, bytes);
      }, /does not match its digest/],
      ["truncated", async (path) => await Deno.truncate(path, 10), /truncated/],
      ["missing", async (path) => await Deno.remove(path), /is missing/],
      ["a link", async (path) => {
        await Deno.remove(path);
        await Deno.symlink("/etc/passwd", path);
      }, /link/],
    ];
    for (const [what, damage, message] of damages) {
      const copy = await copyOf(dir);
      const path = `${copy}/${BLOBS}/${layer.slice(7)}`;
      await Deno.chmod(path, 0o644);
      await damage(path);
      const refused = await b("import", copy);
      assert.equal(refused.code, 1, `${what}: ${refused.stderr}`);
      assert.ok(refused.stderr.includes(layer), `${what}: names the digest: ${refused.stderr}`);
      assert.match(refused.stderr, message, `${what}: ${refused.stderr}`);
      assert.equal(await indexText(`${deviceB}/store`), before, `${what}: nothing recorded`);
    }

    // A planted digest is checked before it becomes a path.
    const planted = await copyOf(dir);
    const index = JSON.parse(await Deno.readTextFile(`${planted}/index.json`));
    index.manifests[0].digest = "sha256:../../../../etc/passwd";
    await Deno.writeTextFile(`${planted}/index.json`, JSON.stringify(index));
    const traversal = await b("import", planted);
    assert.equal(traversal.code, 1, traversal.stderr);
    assert.match(traversal.stderr, /digest/);
    // A directory without index.json (an export interrupted before its last write) is no export.
    const half = await copyOf(dir);
    await Deno.remove(`${half}/index.json`);
    const incomplete = await b("import", half);
    assert.equal(incomplete.code, 1);
    assert.match(incomplete.stderr, /no complete export: it has no index.json/);
    assert.equal(await indexText(`${deviceB}/store`), before);
    ok(await b("fsck"), "fsck after the refused imports");

    // Export reads only the store: a reference missing a blob is refused, naming it, and no index written.
    await Deno.remove(`${deviceA}/store/${BLOBS}/${layer.slice(7)}`);
    const out = `${await scratchDir("exchange-partial-")}/update`;
    const partial = await a("export", "--to", out, appC.ref);
    assert.equal(partial.code, 1, partial.stderr);
    assert.ok(partial.stderr.includes(layer), partial.stderr);
    assert.match(partial.stderr, /not fully stored/);
    assert.equal(await Deno.lstat(`${out}/index.json`).catch(() => undefined), undefined);
    const absent = await a("export", "--to", out, `${env.registry}/berth-test/nothing:1`);
    assert.equal(absent.code, 1);
    assert.match(absent.stderr, /is not in store/);
    // A directory holding anything else is refused.
    const busy = await scratchDir("exchange-busy-");
    await Deno.writeTextFile(`${busy}/notes.txt`, "mine\n");
    const refusedDir = await a("export", "--to", busy, base.ref);
    assert.equal(refusedDir.code, 1);
    assert.match(refusedDir.stderr, /not empty and not an export/);
    // An earlier export is added to: its references stay.
    ok(await a("export", "--to", baseDir, base.ref), "export into an earlier export");
  },
});

Deno.test({
  name: "import killed mid-copy records nothing; the next import resumes and completes",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { big } = env.images;
    const a = deviceBerth(await scratchDir("exchange-kill-a-"), env.dockerHost);
    ok(await a("pull", big.ref), "pull");
    const dir = `${await scratchDir("exchange-kill-")}/update`;
    ok(await a("export", "--to", dir, big.ref), "export");
    // The copy takes a fraction of a second: should the import finish before the kill, it is tried again
    // on a fresh store.
    let deviceB = "";
    for (let attempt = 0; attempt < 5 && !deviceB; attempt++) {
      const candidate = await scratchDir("exchange-kill-b-");
      if (await killMidCopy(`${candidate}/store`, dir)) deviceB = candidate;
    }
    assert.ok(deviceB, "an import was killed mid-copy");
    const again = await deviceBerth(deviceB, env.dockerHost)("--json", "import", dir);
    ok(again, "import after the kill");
    const result = JSON.parse(again.stdout);
    assert.deepEqual(result.refs, [big.ref]);
    assert.ok(result.bytesCopied < result.bytes, `resumed: ${result.bytesCopied} of ${result.bytes} copied`);
    ok(await deviceBerth(deviceB, env.dockerHost)("fsck"), "fsck after the resumed import");
  },
});

/** Bytes in the store's ingests: what an import copied so far of the blobs it has not committed. */
async function ingested(store: string): Promise<number> {
  let bytes = 0;
  const names = await Array.fromAsync(Deno.readDir(`${store}/ingest`)).catch(() => []);
  for (const entry of names) {
    bytes += await Deno.lstat(`${store}/ingest/${entry.name}/data`).then((info) => info.size, () => 0);
  }
  return bytes;
}

/**
 * Starts `import dir` into `store` and kills it (-9) once a blob is partly copied; false when it finished
 * first. Checks that the killed import recorded nothing.
 */
async function killMidCopy(store: string, dir: string): Promise<boolean> {
  const child = spawnBerth(["--store", store, "import", dir]);
  const stderr = new Response(child.stderr).text();
  let exited = false;
  child.status.then(() => exited = true);
  while (!exited && await ingested(store) < 1024 * 1024) await new Promise((done) => setTimeout(done, 1));
  if (!exited) child.kill("SIGKILL");
  const status = await child.status;
  const errors = await stderr;
  if (status.signal !== "SIGKILL") {
    assert.equal(status.code, 0, errors);
    return false;
  }
  const index = JSON.parse(await indexText(store) || '{"manifests":[]}');
  assert.deepEqual(index.manifests, [], "nothing recorded");
  return true;
}

Deno.test("an export's index.json: each entry one named, full reference, checked before anything is read", () => {
  const digest = `sha256:${"a".repeat(64)}`;
  const entry = (annotations: Record<string, string>, extra: Record<string, unknown> = {}) => ({
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest,
    size: 100,
    annotations,
    ...extra,
  });
  const index = (...manifests: unknown[]) =>
    new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, manifests }));
  const name = "registry.example.com/factory/shop:v1";
  const [kept] = parseExportIndex(index(entry({ [REF_NAME]: name, "com.example.other": "x" })), "index.json");
  assert.deepEqual(kept.annotations, { [REF_NAME]: name }, "unknown annotations are dropped");
  const refusals: [Uint8Array, RegExp][] = [
    [index(entry({})), /no org.opencontainers.image.ref.name annotation/],
    [index(entry({ [REF_NAME]: "shop:v1" })), /not a full reference/],
    [index(entry({ [REF_NAME]: name }), entry({ [REF_NAME]: name })), /named twice/],
    [index(entry({ [REF_NAME]: name }, { digest: "sha256:../../etc/passwd" })), /digest/],
    [index(entry({ [REF_NAME]: name }, { mediaType: "application/octet-stream" })), /is no manifest/],
    [index(entry({ [REF_NAME]: name, "io.berth.manifest.digest": `sha256:${"b".repeat(64)}` })), /manifest/],
    [index(entry({ [REF_NAME]: name, "io.berth.app": "cart" })), /app name/],
    [new Uint8Array(5 * 1024 * 1024), /over the/],
    [new TextEncoder().encode("[]"), /not a JSON object/],
  ];
  for (const [bytes, pattern] of refusals) {
    assert.throws(() => parseExportIndex(bytes, "index.json"), pattern);
  }
});
