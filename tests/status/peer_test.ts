/**
 * `berth serve`: a store pulled from the real registry, served over the OCI distribution API and read back
 * by skopeo and by another berth; ranges, sizes, refusals, the token, `?ns=`, and the agent's peer.listen.
 */
import assert from "node:assert/strict";
import { CHILD_ENV, RUN_ARGS, runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { startServe } from "../harness/serve.ts";
import { freePort, run, startRegistry } from "../harness/services.ts";
import { MANIFEST_ACCEPT } from "../harness/images.ts";
import { parseRange } from "../../src/status/peer.ts";
import { request } from "./raw_http.ts";

const TOKEN = "peer-token-for-tests";

/** A store holding app-oci, multi and big, pulled from the test registry (made once for this file). */
let pulled: Promise<string> | undefined;
function storeA(): Promise<string> {
  return pulled ??= (async () => {
    const { images } = testEnv()!;
    const store = `${await scratchDir("peer-a-")}/store`;
    const result = await runBerth([
      "--store",
      store,
      "pull",
      images.appOci.ref,
      images.multi.ref,
      images.big.ref,
    ]);
    assert.equal(result.code, 0, result.stderr);
    return store;
  })();
}

/** The repository and tag part of a test image's reference ("berth-test/app-oci:1"). */
function repoTag(ref: string): string {
  return ref.slice(ref.indexOf("/") + 1);
}

Deno.test("parseRange: one range served, others ignored, a start past the end unsatisfiable", () => {
  assert.deepEqual(parseRange("bytes=0-9", 100), { start: 0, end: 9 });
  assert.deepEqual(parseRange("bytes=90-", 100), { start: 90, end: 99 });
  assert.deepEqual(parseRange("bytes=95-200", 100), { start: 95, end: 99 });
  assert.deepEqual(parseRange("bytes=-10", 100), { start: 90, end: 99 });
  assert.equal(parseRange("bytes=100-", 100), "unsatisfiable");
  assert.equal(parseRange("bytes=-0", 100), "unsatisfiable");
  for (const ignored of [undefined, "", "bytes=5-1", "bytes=0-1,4-5", "items=0-1", "bytes=-", "bytes=a-b"]) {
    assert.equal(parseRange(ignored, 100), undefined, JSON.stringify(ignored));
  }
});

Deno.test({
  name: "skopeo inspects and copies from berth serve; the copied blobs are the store's own bytes",
  ...withServices,
  async fn() {
    const { images } = testEnv()!;
    const store = await storeA();
    const serving = await startServe(store);
    try {
      const inspected = JSON.parse(
        await run([
          "skopeo",
          "inspect",
          "--tls-verify=false",
          `docker://${serving.host}/${repoTag(images.multi.ref)}`,
        ]),
      );
      assert.equal(inspected.Digest, images.multi.digest, "the tag is served as the origin's index");
      assert.deepEqual(inspected.RepoTags, ["1"]);
      assert.deepEqual(inspected.Layers, images.appA.layers.map((layer) => layer.digest), "linux/amd64's");

      const dir = await scratchDir("peer-copy-");
      await run([
        "skopeo",
        "copy",
        "-q",
        "--src-tls-verify=false",
        `docker://${serving.host}/${repoTag(images.appOci.ref)}`,
        `oci:${dir}/layout:copy`,
      ]);
      const copied = await Array.fromAsync(Deno.readDir(`${dir}/layout/blobs/sha256`));
      const expected = [
        images.appOci.digest,
        images.appOci.configDigest,
        ...images.appOci.layers.map((l) => l.digest),
      ];
      assert.deepEqual(copied.map((entry) => `sha256:${entry.name}`).sort(), [...expected].sort());
      for (const entry of copied) {
        assert.deepEqual(
          await Deno.readFile(`${dir}/layout/blobs/sha256/${entry.name}`),
          await Deno.readFile(`${store}/blobs/sha256/${entry.name}`),
          `${entry.name} equals the store's`,
        );
      }
    } finally {
      await serving.stop();
    }
  },
});

Deno.test({
  name: "berth pulls from berth serve into another store, and fsck finds it sound",
  ...withServices,
  async fn() {
    const { images } = testEnv()!;
    const serving = await startServe(await storeA());
    try {
      const storeB = `${await scratchDir("peer-b-")}/store`;
      const refs = [images.multi, images.big].map((image) => `${serving.host}/${repoTag(image.ref)}`);
      const result = await runBerth(["--store", storeB, "pull", ...refs]);
      assert.equal(result.code, 0, result.stderr);
      const fsck = await runBerth(["--store", storeB, "--json", "fsck"]);
      assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
      assert.equal(JSON.parse(fsck.stdout).ok, true);
      const big = images.big.layers.at(-2)!;
      assert.equal((await Deno.stat(`${storeB}/blobs/sha256/${big.digest.slice(7)}`)).size, big.size);
    } finally {
      await serving.stop();
    }
  },
});

Deno.test({
  name:
    "blobs: Range answers 206 with the bytes, HEAD gives sizes; unknown, malformed and written are refused",
  ...withServices,
  async fn() {
    const { images } = testEnv()!;
    const store = await storeA();
    const serving = await startServe(store);
    const port = Number(new URL(serving.url).port);
    try {
      const layer = images.big.layers.find((l) => l.size > 16 * 1024 * 1024)!;
      const bytes = await Deno.readFile(`${store}/blobs/sha256/${layer.digest.slice(7)}`);
      const path = `/v2/berth-test/big/blobs/${layer.digest}`;
      const whole = await fetch(serving.url + path);
      assert.equal(whole.status, 200);
      assert.equal(whole.headers.get("docker-content-digest"), layer.digest);
      assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), bytes, "the whole layer, streamed");

      const part = await fetch(serving.url + path, { headers: { Range: "bytes=1000-1999" } });
      assert.equal(part.status, 206);
      assert.equal(part.headers.get("content-range"), `bytes 1000-1999/${layer.size}`);
      assert.deepEqual(new Uint8Array(await part.arrayBuffer()), bytes.subarray(1000, 2000));
      const tail = await fetch(serving.url + path, { headers: { Range: `bytes=${layer.size - 10}-` } });
      assert.equal(tail.status, 206);
      assert.deepEqual(new Uint8Array(await tail.arrayBuffer()), bytes.subarray(layer.size - 10));
      const past = await fetch(serving.url + path, { headers: { Range: `bytes=${layer.size}-` } });
      assert.equal(past.status, 416);
      assert.equal(past.headers.get("content-range"), `bytes */${layer.size}`);
      await past.body?.cancel();

      const head = await request(port, path, { method: "HEAD" });
      assert.equal(head?.status, 200);
      assert.equal(head?.headers["content-length"], String(layer.size));
      const manifestHead = await fetch(serving.url + `/v2/berth-test/big/manifests/1`, { method: "HEAD" });
      assert.equal(manifestHead.status, 200);
      assert.equal(manifestHead.headers.get("docker-content-digest"), images.big.digest);
      assert.equal(manifestHead.headers.get("content-type"), images.big.mediaType);

      const unknown = await fetch(serving.url + `/v2/berth-test/big/blobs/sha256:${"0".repeat(64)}`);
      assert.equal(unknown.status, 404);
      assert.equal((await unknown.json()).errors[0].code, "BLOB_UNKNOWN");
      const noTag = await fetch(serving.url + `/v2/berth-test/big/manifests/2`);
      assert.equal((await noTag.json()).errors[0].code, "MANIFEST_UNKNOWN");
      const noName = await fetch(serving.url + `/v2/berth-test/nothing/manifests/1`);
      assert.equal((await noName.json()).errors[0].code, "NAME_UNKNOWN");
      const layerAsManifest = await fetch(serving.url + `/v2/berth-test/big/manifests/${layer.digest}`);
      assert.equal(layerAsManifest.status, 404, "a layer is not served as a manifest");
      await layerAsManifest.body?.cancel();

      for (
        const attempt of [
          "/v2/x/blobs/sha256:../../etc/passwd",
          "/v2/x/blobs/sha256:..%2f..%2fberth.json",
          "/v2/x/blobs/..%2f..%2findex.json",
          `/v2/../../blobs/sha256/${layer.digest.slice(7)}`,
          "/v2/x/manifests/..%2findex.json",
        ]
      ) {
        const answer = await request(port, attempt);
        assert.ok(answer?.status === 400 || answer?.status === 404, `${attempt}: ${answer?.status}`);
        assert.ok(!answer.body.includes('manifests"'), `${attempt} reveals nothing`);
      }
      for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
        const answer = await request(port, "/v2/berth-test/big/blobs/uploads/", { method });
        assert.equal(answer?.status, 405, method);
      }
    } finally {
      await serving.stop();
    }
  },
});

Deno.test({
  name:
    "with a token: none or a wrong one is 401 (OCI UNAUTHORIZED), the right one 200; open beyond loopback needs one",
  ...withServices,
  async fn() {
    const store = await storeA();
    const serving = await startServe(store, ["--token", TOKEN]);
    try {
      const none = await fetch(`${serving.url}/v2/`);
      assert.equal(none.status, 401);
      assert.equal(none.headers.get("www-authenticate"), null, "no challenge: a neighbour sends it unasked");
      assert.equal((await none.json()).errors[0].code, "UNAUTHORIZED");
      const wrong = await fetch(`${serving.url}/v2/`, { headers: { Authorization: "Bearer wrong" } });
      assert.equal(wrong.status, 401);
      await wrong.body?.cancel();
      const right = await fetch(`${serving.url}/v2/`, { headers: { Authorization: `Bearer ${TOKEN}` } });
      assert.equal(right.status, 200);
      assert.equal(right.headers.get("docker-distribution-api-version"), "registry/2.0");
      await right.body?.cancel();
    } finally {
      await serving.stop();
    }
    const open = await runBerth(["--store", store, "serve", "--listen", "0.0.0.0:0"]);
    assert.equal(open.code, 1);
    assert.match(open.stderr, /--listen "0\.0\.0\.0:0": a non-loopback address needs --token/);
    const missing = await runBerth(["--store", `${store}-absent`, "serve"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /does not exist: nothing to serve/);
  },
});

Deno.test({
  name: "?ns= chooses between one repo:tag stored from two registries; without it the tag is ambiguous",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const dir = await scratchDir("peer-ns-");
    const other = await startRegistry(`${dir}/registry`);
    try {
      // The other registry's berth-test/app-a:1 is app-b's image, pushed unchanged.
      await run([
        "skopeo",
        "copy",
        "-q",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        `docker://${env.images.appB.ref}`,
        `docker://${other.host}/berth-test/app-a:1`,
      ]);
      const store = `${dir}/store`;
      const pull = await runBerth([
        "--store",
        store,
        "pull",
        env.images.appA.ref,
        `${other.host}/berth-test/app-a:1`,
      ]);
      assert.equal(pull.code, 0, pull.stderr);
      const serving = await startServe(store);
      try {
        const digestFor = async (query: string) => {
          const response = await fetch(`${serving.url}/v2/berth-test/app-a/manifests/1${query}`, {
            headers: { Accept: MANIFEST_ACCEPT },
          });
          const body = await response.json();
          return response.status === 200
            ? response.headers.get("docker-content-digest")
            : body.errors[0].message;
        };
        assert.equal(await digestFor(`?ns=${env.registry}`), env.images.appA.digest);
        assert.equal(await digestFor(`?ns=${other.host}`), env.images.appB.digest);
        assert.match(await digestFor(""), /stored from several registries .*name one with \?ns=/);
        assert.match(await digestFor("?ns=registry.example.com"), /is not stored|no stored reference/);
      } finally {
        await serving.stop();
      }
    } finally {
      await other.stop();
    }
  },
});

Deno.test({
  name: "the agent with peer.listen serves its store at /v2/; a reload moves it and sets its token",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const dir = await scratchDir("peer-agent-");
    const port = freePort();
    const statusPort = freePort();
    const writeConfig = (peer: string) =>
      Deno.writeTextFile(
        `${dir}/config.yml`,
        [
          `store: ${dir}/store`,
          `composeRoot: ${dir}/apps`,
          `docker: { host: "${env.dockerHost}" }`,
          "apps: []",
          `status: { listen: "127.0.0.1:${statusPort}" }`,
          `peer: ${peer}`,
          "",
        ].join("\n"),
      );
    await writeConfig(`{ listen: "127.0.0.1:${port}" }`);
    const agent = new Deno.Command(Deno.execPath(), {
      args: [...RUN_ARGS, "--config", `${dir}/config.yml`, "agent"],
      env: CHILD_ENV,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const reader = agent.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    try {
      while (!text.includes("store served to peers")) {
        const { done, value } = await reader.read();
        if (done) assert.fail(`the agent ended:\n${text}`);
        text += value;
      }
      const answer = await fetch(`http://127.0.0.1:${port}/v2/`);
      assert.equal(answer.status, 200);
      assert.deepEqual(await answer.json(), {});

      // A reload with another address and a token: the new one answers (with the token), the old is gone.
      const moved = freePort();
      await writeConfig(`{ listen: "127.0.0.1:${moved}", token: "${TOKEN}" }`);
      agent.kill("SIGHUP");
      while (!text.includes(`store served to peers at http://127.0.0.1:${moved}`)) {
        const { done, value } = await reader.read();
        if (done) assert.fail(`the agent ended:\n${text}`);
        text += value;
      }
      const refused = await fetch(`http://127.0.0.1:${moved}/v2/`);
      assert.equal(refused.status, 401);
      await refused.body?.cancel();
      const allowed = await fetch(`http://127.0.0.1:${moved}/v2/`, {
        headers: { Authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(allowed.status, 200);
      await allowed.body?.cancel();
      await assert.rejects(fetch(`http://127.0.0.1:${port}/v2/`), "the old address no longer answers");
    } finally {
      agent.kill("SIGTERM");
      (async () => {
        while (!(await reader.read()).done) { /* drain */ }
      })();
      assert.equal((await agent.status).code, 0);
    }
  },
});
