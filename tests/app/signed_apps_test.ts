/**
 * Signed apps under a containers-policy.json, with signatures made by real cosign in the real registry: a
 * signed app is fetched, installed and run; an unsigned one, one signed with another key, a signature copied
 * to another digest, one made for another repository and a `reject` scope are refused before any layer is
 * fetched, with nothing recorded; a factory reset is restored with the registry gone, the signature judged
 * from the store; a signature altered on disk is refused at restore. cosign verify agrees on each case.
 */
import assert from "node:assert/strict";
import { writeProject } from "../harness/projects.ts";
import { type Dockerd, run, startDockerd } from "../harness/services.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault_proxy.ts";
import { type CosignSigner, cosignSigner } from "../harness/cosign.ts";
import { deviceBerth, runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";

interface Scene {
  dir: string;
  signer: CosignSigner;
  origin: FaultProxy;
  /** "<origin>/signed-<id>": apps are published under it, through the proxy. */
  repo: string;
}

async function publish(ref: string, image: string): Promise<string> {
  const project = await scratchDir("signed-project-");
  await writeProject(project, { web: image });
  const published = await runBerth(["--json", "publish", project, ref]);
  assert.equal(published.code, 0, published.stderr);
  return JSON.parse(published.stdout).digest;
}

/** cosign sign with key `key` ("one" or "two"), through the proxy: the identity is the repository berth names. */
function sign(scene: Scene, name: string, digest: string, key: string): Promise<void> {
  return scene.signer.sign(`${scene.repo}/${name}@${digest}`, key);
}

/** Whether `cosign verify` accepts `name@digest` with `key`. */
function cosignAccepts(scene: Scene, name: string, digest: string, key: string): Promise<boolean> {
  return scene.signer.verifies(`${scene.repo}/${name}@${digest}`, key);
}

/**
 * Copies manifest `from` (repository:tag or @digest) of the registry to `toRepo:toTag`, its blobs mounted
 * across repositories: the same digest in another repository, as a registry user with push rights could.
 */
async function copyManifest(from: string, toRepo: string, toTag: string): Promise<void> {
  const registry = `http://${testEnv()!.registry}/v2`;
  const [fromRepo, reference] = from.includes("@") ? from.split("@") : from.split(":");
  const accept = "application/vnd.oci.image.manifest.v1+json";
  const response = await fetch(`${registry}/${fromRepo}/manifests/${reference}`, {
    headers: { Accept: accept },
  });
  assert.equal(response.status, 200, from);
  const bytes = await response.bytes();
  const manifest = JSON.parse(new TextDecoder().decode(bytes));
  for (const blob of [manifest.config, ...manifest.layers]) {
    const mounted = await fetch(
      `${registry}/${toRepo}/blobs/uploads/?mount=${blob.digest}&from=${fromRepo}`,
      {
        method: "POST",
      },
    );
    await mounted.body?.cancel();
    assert.equal(mounted.status, 201, `mount ${blob.digest}`);
  }
  const put = await fetch(`${registry}/${toRepo}/manifests/${toTag}`, {
    method: "PUT",
    headers: { "Content-Type": manifest.mediaType ?? accept },
    body: bytes,
  });
  await put.body?.cancel();
  assert.equal(put.status, 201, `PUT ${toRepo}:${toTag}`);
}

/** The config and layer digests of the app manifest `repo@digest`: none may be fetched for a refused app. */
async function appBlobs(repo: string, digest: string): Promise<string[]> {
  const response = await fetch(`http://${testEnv()!.registry}/v2/${repo}/manifests/${digest}`, {
    headers: { Accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  const manifest = await response.json();
  return [manifest.config.digest, ...manifest.layers.map((layer: { digest: string }) => layer.digest)];
}

/** A policy: the scene's repositories need key `key` (matchRepository, cosign's identity), the rest `rest`. */
async function policy(
  scene: Scene,
  key: string,
  rest: unknown[] = [{ type: "insecureAcceptAnything" }],
  extra = {},
) {
  const file = `${scene.dir}/policy-${crypto.randomUUID().slice(0, 8)}.json`;
  const requirement = {
    type: "sigstoreSigned",
    keyPath: scene.signer.publicKey(key),
    signedIdentity: { type: "matchRepository" },
  };
  await Deno.writeTextFile(
    file,
    JSON.stringify({ default: rest, transports: { docker: { [scene.repo]: [requirement], ...extra } } }),
  );
  return file;
}

async function withScene(work: (scene: Scene) => Promise<void>): Promise<void> {
  const dir = await scratchDir("signed-");
  const signer = await cosignSigner(dir, ["one", "two"]);
  const origin = await startFaultProxy(testEnv()!.registry);
  try {
    await work({ dir, signer, origin, repo: `${origin.host}/signed-${crypto.randomUUID().slice(0, 8)}` });
  } finally {
    await origin.close();
  }
}

const lastLine = (text: string) => text.trim().split("\n").at(-1)!;
const image = (name: "appA" | "appB" | "appC", origin: FaultProxy) =>
  testEnv()!.images[name].ref.replace(testEnv()!.registry, origin.host);

Deno.test({
  name: "signed apps: refusals before any layer, with nothing recorded; cosign verify agrees",
  ...withServices,
  fn: () =>
    withScene(async (scene) => {
      const { origin, repo } = scene;
      const signedDigest = await publish(`${repo}/shop:1`, image("appA", origin));
      await sign(scene, "shop", signedDigest, "one");
      const unsignedDigest = await publish(`${repo}/shop:2`, image("appB", origin));
      const path = repo.slice(origin.host.length + 1);
      // A signature copied to another digest's tag; the signed version copied to another repository with
      // its signature (same digest, identity naming shop).
      await copyManifest(
        `${path}/shop:sha256-${signedDigest.slice(7)}.sig`,
        `${path}/shop`,
        `sha256-${unsignedDigest.slice(7)}.sig`,
      );
      await copyManifest(`${path}/shop@${signedDigest}`, `${path}/copy`, "1");
      await copyManifest(
        `${path}/shop:sha256-${signedDigest.slice(7)}.sig`,
        `${path}/copy`,
        `sha256-${signedDigest.slice(7)}.sig`,
      );
      const keyOne = await policy(scene, "one");
      const keyTwo = await policy(scene, "two");
      const rejecting = await policy(scene, "one", [{ type: "reject" }]);

      const cases: {
        ref: string;
        policy: string;
        expect: string;
        cosign?: [string, string, string, boolean];
      }[] = [
        { ref: `${repo}/shop:1`, policy: keyOne, expect: "ok", cosign: ["shop", signedDigest, "one", true] },
        {
          ref: `${repo}/shop:1`,
          policy: keyTwo,
          expect: "signature_invalid",
          cosign: ["shop", signedDigest, "two", false],
        },
        // The copied signature names another digest: cosign refuses it too.
        {
          ref: `${repo}/shop:2`,
          policy: keyOne,
          expect: "signature_invalid",
          cosign: ["shop", unsignedDigest, "one", false],
        },
        // Signed as shop, asked for as copy: cosign verify does not compare repositories, the policy does.
        {
          ref: `${repo}/copy:1`,
          policy: keyOne,
          expect: "signature_identity_mismatch",
          cosign: ["copy", signedDigest, "one", true],
        },
        // The scoped requirement applies only to its scope: an unsigned image elsewhere is accepted.
        { ref: image("appA", origin), policy: keyOne, expect: "ok" },
        // A default of reject refuses what no scope names.
        { ref: image("appA", origin), policy: rejecting, expect: "policy_rejected" },
      ];
      const refusedBlobs = new Set([
        ...await appBlobs(`${path}/shop`, signedDigest),
        ...await appBlobs(`${path}/shop`, unsignedDigest),
      ]);
      for (const { ref, policy: file, expect, cosign } of cases) {
        const store = await scratchDir("signed-store-");
        origin.resetStats();
        const result = await runBerth(["--store", store, "--policy", file, "pull", ref]);
        if (expect === "ok") {
          assert.equal(result.code, 0, `${ref}: ${result.stderr}`);
          assert.equal((await runBerth(["--store", store, "fsck"])).code, 0);
        } else {
          assert.equal(result.code, 1, `${ref} under ${file}: ${result.stderr}`);
          const line = lastLine(result.stderr);
          assert.ok(line.includes(ref.replace(/^[^/]+\//, "")), line);
          assert.ok(line.endsWith(`[${expect}]`), line);
          if (expect !== "policy_rejected") assert.match(line, /key .*cosign\.pub/);
          // Before any layer: no blob of the app (nor of any image) was fetched, only the signature's own.
          const fetched = [...origin.stats.blobBytes.keys()];
          assert.ok(fetched.every((digest) => !refusedBlobs.has(digest)), JSON.stringify(fetched));
          assert.ok(
            fetched.every((digest) => !testEnv()!.images.appA.layers.some((l) => l.digest === digest)),
          );
          const index = JSON.parse(
            await Deno.readTextFile(`${store}/index.json`).catch(() => '{"manifests":[]}'),
          );
          assert.deepEqual(index.manifests, [], "nothing recorded");
        }
        if (cosign) {
          const [name, digest, key, accepts] = cosign;
          assert.equal(await cosignAccepts(scene, name, digest, key), accepts, `cosign verify on ${ref}`);
        }
      }

      // Unsigned: v2 of a fresh repository has no .sig at all.
      const bare = await publish(`${repo}/bare:1`, image("appA", origin));
      const bareFile = await policy({ ...scene, repo: `${repo}/bare` }, "one");
      const store = await scratchDir("signed-store-");
      const missing = await runBerth(["--store", store, "--policy", bareFile, "pull", `${repo}/bare:1`]);
      assert.equal(missing.code, 1);
      assert.ok(lastLine(missing.stderr).endsWith("[signature_missing]"), missing.stderr);
      assert.equal(await cosignAccepts(scene, "bare", bare, "one"), false);
    }),
});

Deno.test({
  name:
    "signed apps: installed and run; a factory reset restored with the registry gone; an altered signature refused",
  ...withServices,
  fn: () =>
    withScene(async (scene) => {
      const { origin, repo } = scene;
      const digest = await publish(`${repo}/shop:1`, image("appA", origin));
      await sign(scene, "shop", digest, "one");
      const file = await policy(scene, "one");
      const dir = await scratchDir("signed-device-");
      let dockerd: Dockerd = await startDockerd(`${dir}/engine`);
      try {
        const berth = () => deviceBerth(dir, dockerd.host, ["--policy", file]);
        for (const args of [["install", "--pull", `${repo}/shop:1`], ["run", "shop"]]) {
          const result = await berth()(...args);
          assert.equal(result.code, 0, result.stderr);
        }
        const index = JSON.parse(await Deno.readTextFile(`${dir}/store/index.json`)).manifests;
        const signature = index.find((entry: { annotations: Record<string, string> }) =>
          entry.annotations["io.berth.signatureOf"] === digest
        );
        assert.ok(signature, "the signature is kept in the store beside the app");
        const listed = JSON.parse((await berth()("--json", "ls")).stdout);
        assert.deepEqual(listed.signatures, [{
          ref: `${repo}/shop:sha256-${digest.slice(7)}.sig`,
          signs: digest,
        }]);
        assert.ok(!listed.images.some((image: { ref: string }) => image.ref.endsWith(".sig")));

        // Export carries the signature; import judges it before recording anything.
        const media = `${await scratchDir("signed-media-")}/export`;
        const exported = await runBerth([
          "--store",
          `${dir}/store`,
          "export",
          "--to",
          media,
          `${repo}/shop:1`,
        ]);
        assert.equal(exported.code, 0, exported.stderr);
        const accepted = await scratchDir("signed-import-");
        const imported = await runBerth(["--store", accepted, "--policy", file, "import", media]);
        assert.equal(imported.code, 0, imported.stderr);
        const otherKey = await policy(scene, "two");
        const refusedStore = await scratchDir("signed-import-refused-");
        const refusedImport = await runBerth([
          "--store",
          refusedStore,
          "--policy",
          otherKey,
          "import",
          media,
        ]);
        assert.equal(refusedImport.code, 1);
        assert.ok(lastLine(refusedImport.stderr).endsWith("[signature_invalid]"), refusedImport.stderr);
        const refusedIndex = await Deno.readTextFile(`${refusedStore}/index.json`).catch(() =>
          '{"manifests":[]}'
        );
        assert.deepEqual(JSON.parse(refusedIndex).manifests, [], "a refused import records nothing");

        // Factory reset, and the registry gone: restore judges the stored signature and runs the app.
        await origin.close();
        await dockerd.stop();
        await Deno.remove(`${dir}/engine`, { recursive: true });
        await Deno.remove(`${dir}/apps`, { recursive: true });
        dockerd = await startDockerd(`${dir}/engine`);
        const restored = await berth()("restore");
        assert.equal(restored.code, 0, restored.stderr);
        const running = await run([
          "docker",
          "-H",
          dockerd.host,
          "ps",
          "-q",
          "--filter",
          "label=com.docker.compose.project=shop",
        ]);
        assert.notEqual(running.trim(), "", "the app runs again");

        // One byte of the stored signature payload changed: the next restore refuses the app.
        const sig = JSON.parse(
          await Deno.readTextFile(`${dir}/store/blobs/sha256/${signature.digest.slice(7)}`),
        );
        const payload = `${dir}/store/blobs/sha256/${sig.layers[0].digest.slice(7)}`;
        const bytes = await Deno.readFile(payload);
        bytes[bytes.length - 3] ^= 1;
        await Deno.chmod(payload, 0o644);
        await Deno.writeFile(payload, bytes);
        await dockerd.stop();
        await Deno.remove(`${dir}/engine`, { recursive: true });
        await Deno.remove(`${dir}/apps`, { recursive: true });
        dockerd = await startDockerd(`${dir}/engine`);
        const refused = await berth()("restore");
        assert.equal(refused.code, 1, refused.stderr);
        assert.match(refused.stderr, /shop.*\[signature_invalid\]/);
        // Without a policy the same store restores: the refusal came from the policy alone.
        const plain = await deviceBerth(dir, dockerd.host)("restore");
        assert.equal(plain.code, 0, plain.stderr);
      } finally {
        await dockerd.stop();
      }
    }),
});
