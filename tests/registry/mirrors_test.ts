/**
 * Mirrors from containerd's hosts.toml, against the real registry: each mirror is a byte-counting fault proxy
 * in front of it (the content a mirror serves is the registry's), and the registry the references name is
 * one more proxy, so that every byte the device asked of "the origin" is counted. Faults on a mirror — down,
 * 503, cut mid-blob, a flipped bit — hand over to the next host, which continues from the byte reached; the
 * store verifies as after any pull. Then a real pull-through cache (docker-registry in proxy mode).
 */
import assert from "node:assert/strict";
import { type FaultProxy, startFaultProxy } from "../harness/fault_proxy.ts";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { freePort, startRegistry } from "../harness/services.ts";
import { startServe } from "../harness/serve.ts";

interface Hosts {
  origin: FaultProxy;
  mirrors: FaultProxy[];
  certsDir: string;
}

/** hosts.toml for `origin.host` naming `mirrors` in order (and `extra` text), under a fresh certs directory. */
async function writeHosts(origin: string, mirrors: string[], extra = ""): Promise<string> {
  const certsDir = await scratchDir("mirror-certs-");
  await Deno.mkdir(`${certsDir}/${origin}`);
  const tables = mirrors.map((host) => `[host."http://${host}"]\ncapabilities = ["pull", "resolve"]\n`);
  await Deno.writeTextFile(`${certsDir}/${origin}/hosts.toml`, `${extra}\n${tables.join("\n")}`);
  return certsDir;
}

async function withHosts(count: number, fn: (hosts: Hosts) => Promise<void>): Promise<void> {
  const env = testEnv()!;
  const origin = await startFaultProxy(env.registry);
  const mirrors: FaultProxy[] = [];
  try {
    for (let i = 0; i < count; i++) mirrors.push(await startFaultProxy(env.registry));
    const certsDir = await writeHosts(origin.host, mirrors.map((mirror) => mirror.host));
    await fn({ origin, mirrors, certsDir });
  } finally {
    for (const proxy of [origin, ...mirrors]) await proxy.close();
  }
}

const refVia = (name: "appA" | "big" | "appC", host: string) =>
  testEnv()!.images[name].ref.replace(testEnv()!.registry, host);

/** The distinct blob bytes the proxies served: each blob GET's digest counted once, at its stored size. */
async function distinctBytes(store: string, proxies: FaultProxy[]): Promise<number> {
  const digests = new Set(proxies.flatMap((proxy) => [...proxy.stats.blobBytes.keys()]));
  let total = 0;
  for (const digest of digests) total += (await Deno.stat(`${store}/blobs/sha256/${digest.slice(7)}`)).size;
  return total;
}

const totalBlobBytes = (proxies: FaultProxy[]) =>
  proxies.reduce((sum, proxy) => sum + proxy.totalBlobBytes(), 0);

async function pullAndCheck(ref: string, certsDir: string, prefix: string): Promise<string> {
  const store = await scratchDir(prefix);
  const result = await runBerth(["--store", store, "--certs-dir", certsDir, "pull", ref]);
  assert.equal(result.code, 0, result.stderr);
  const fsck = await runBerth(["--store", store, "fsck"]);
  assert.equal(fsck.code, 0, fsck.stderr);
  return store;
}

Deno.test({
  name: "mirrors: a mirror that is down hands over to the next; the origin is never asked",
  ...withServices,
  fn: () =>
    withHosts(1, async ({ origin, mirrors }) => {
      const down = `127.0.0.1:${freePort()}`;
      const certsDir = await writeHosts(origin.host, [down, mirrors[0].host]);
      const store = await pullAndCheck(refVia("appA", origin.host), certsDir, "mirror-down-");
      assert.equal(origin.stats.requests.length, 0, JSON.stringify(origin.stats.requests));
      assert.equal(mirrors[0].totalBlobBytes(), await distinctBytes(store, mirrors));
      // containerd's ns parameter names the registry the content belongs to.
      assert.ok(
        mirrors[0].stats.requests.every((request) =>
          request.path.endsWith(`?ns=${encodeURIComponent(origin.host)}`) || request.path === "/v2/"
        ),
        JSON.stringify(mirrors[0].stats.requests),
      );
    }),
});

Deno.test({
  name: "mirrors: a mirror answering 503 hands over to the next",
  ...withServices,
  fn: () =>
    withHosts(2, async ({ origin, mirrors, certsDir }) => {
      for (const method of ["GET", "HEAD"]) {
        mirrors[0].addRequestFault({ method, path: /^\/v2\/.+/, status: 503, times: Infinity });
      }
      const store = await pullAndCheck(refVia("appA", origin.host), certsDir, "mirror-503-");
      assert.equal(origin.stats.requests.length, 0);
      assert.equal(mirrors[0].totalBlobBytes(), 0);
      assert.equal(mirrors[1].totalBlobBytes(), await distinctBytes(store, mirrors));
    }),
});

Deno.test({
  name: "mirrors: a mirror cut mid-blob hands over; the next host continues with Range from the byte reached",
  ...withServices,
  fn: () =>
    withHosts(2, async ({ origin, mirrors, certsDir }) => {
      const layer = testEnv()!.images.big.layers.find((candidate) => candidate.size > 8 * 1024 * 1024)!;
      const dropAt = 3 * 1024 * 1024 + 17;
      mirrors[0].addFault({ digest: layer.digest, kind: "drop", atByte: dropAt, times: Infinity });
      const store = await pullAndCheck(refVia("big", origin.host), certsDir, "mirror-cut-");
      const ranged = mirrors[1].stats.requests.filter((request) => request.path.includes(layer.digest));
      assert.equal(ranged.length, 1, JSON.stringify(mirrors[1].stats.requests));
      assert.equal(ranged[0].range, `bytes=${dropAt}-${layer.size - 1}`);
      assert.equal(ranged[0].status, 206);
      assert.equal(origin.totalBlobBytes(), 0);
      const served = totalBlobBytes([origin, ...mirrors]);
      const distinct = await distinctBytes(store, mirrors);
      console.log(`cut mid-blob: ${served} bytes served by all hosts for ${distinct} distinct`);
      assert.ok(served <= 1.05 * distinct, `${served} bytes served for ${distinct}`);
    }),
});

Deno.test({
  name: "mirrors: a mirror serving a flipped bit is blamed; the blob comes whole from the next host",
  ...withServices,
  fn: () =>
    withHosts(2, async ({ origin, mirrors, certsDir }) => {
      const layer = testEnv()!.images.appA.layers[1];
      mirrors[0].addFault({ digest: layer.digest, kind: "flip-bit", times: Infinity });
      const store = await pullAndCheck(refVia("appA", origin.host), certsDir, "mirror-flip-");
      assert.equal(mirrors[1].stats.blobBytes.get(layer.digest), layer.size);
      assert.equal(origin.totalBlobBytes(), 0);
      // The corrupt copy is the only byte fetched twice.
      assert.ok(totalBlobBytes([origin, ...mirrors]) <= await distinctBytes(store, mirrors) + layer.size);
    }),
});

Deno.test({
  name: "mirrors: a pull-only mirror is not asked to resolve a tag; a digest reference is pulled from it",
  ...withServices,
  fn: () =>
    withHosts(1, async ({ origin, mirrors }) => {
      const certsDir = await scratchDir("mirror-pull-only-");
      await Deno.mkdir(`${certsDir}/${origin.host}`);
      await Deno.writeTextFile(
        `${certsDir}/${origin.host}/hosts.toml`,
        `[host."http://${mirrors[0].host}"]\ncapabilities = ["pull"]\n`,
      );
      const tag = testEnv()!.images.appA.ref.split(":").at(-1)!;
      const store = await pullAndCheck(refVia("appA", origin.host), certsDir, "mirror-pull-only-");
      assert.ok(
        !mirrors[0].stats.requests.some((request) => request.path.includes(`/manifests/${tag}`)),
        JSON.stringify(mirrors[0].stats.requests),
      );
      assert.ok(origin.stats.requests.some((request) => request.path.includes(`/manifests/${tag}`)));
      assert.equal(origin.totalBlobBytes(), 0);
      assert.equal(mirrors[0].totalBlobBytes(), await distinctBytes(store, mirrors));
    }),
});

Deno.test({
  name: "mirrors: a hosts.toml with an unknown key or skip_verify is refused, naming the file and the key",
  ...withServices,
  fn: async () => {
    const certsDir = await scratchDir("mirror-bad-");
    const registry = testEnv()!.registry;
    await Deno.mkdir(`${certsDir}/${registry}`);
    const file = `${certsDir}/${registry}/hosts.toml`;
    for (
      const [text, expected] of [
        [`[host."http://127.0.0.1:1"]\ncapabilites = ["pull"]\n`, /unknown key "capabilites"/],
        [`[host."https://127.0.0.1:1"]\nskip_verify = true\n`, /skip_verify = true" is not supported/],
        [`server = 7\n`, /"server" must be a URL string/],
      ] as const
    ) {
      await Deno.writeTextFile(file, text);
      const store = await scratchDir("mirror-bad-store-");
      const result = await runBerth([
        "--store",
        store,
        "--certs-dir",
        certsDir,
        "pull",
        testEnv()!.images.appA.ref,
      ]);
      assert.equal(result.code, 1);
      const last = result.stderr.trim().split("\n").at(-1)!;
      assert.ok(last.includes(file), last);
      assert.match(last, expected);
    }
  },
});

Deno.test({
  name:
    "a real pull-through cache (docker-registry in proxy mode): cold and warm, the device never asks the origin",
  ...withServices,
  fn: async () => {
    const env = testEnv()!;
    const origin = await startFaultProxy(env.registry);
    const cache = await startRegistry(await scratchDir("pull-through-"), {
      extra: { proxy: { remoteurl: `http://${env.registry}` } },
    });
    try {
      const certsDir = await writeHosts(origin.host, [cache.host]);
      const ref = refVia("appC", origin.host);
      const cold = await pullAndCheck(ref, certsDir, "cache-cold-");
      const warm = await pullAndCheck(ref, certsDir, "cache-warm-");
      assert.equal(origin.stats.requests.length, 0, JSON.stringify(origin.stats.requests));
      assert.deepEqual(
        await Deno.readTextFile(`${warm}/index.json`).then((text) => JSON.parse(text).manifests[0].digest),
        await Deno.readTextFile(`${cold}/index.json`).then((text) => JSON.parse(text).manifests[0].digest),
      );
    } finally {
      await cache.stop();
      await origin.close();
    }
  },
});

Deno.test({
  name: "two stores: one pulled from the origin and served with berth serve, the other pulls through it",
  ...withServices,
  fn: async () => {
    const origin = await startFaultProxy(testEnv()!.registry);
    try {
      const ref = refVia("big", origin.host);
      const first = await pullAndCheck(ref, await scratchDir("peer-empty-certs-"), "peer-first-");
      const token = "a-peer-token-for-this-test";
      const peer = await startServe(first, ["--token", token]);
      try {
        origin.resetStats();
        const certsDir = await scratchDir("peer-certs-");
        await Deno.mkdir(`${certsDir}/${origin.host}`);
        await Deno.writeTextFile(
          `${certsDir}/${origin.host}/hosts.toml`,
          `[host."http://${peer.host}"]\ncapabilities = ["pull", "resolve"]\n` +
            `[host."http://${peer.host}".header]\nAuthorization = "Bearer ${token}"\n`,
        );
        const second = await pullAndCheck(ref, certsDir, "peer-second-");
        assert.equal(origin.stats.requests.length, 0, JSON.stringify(origin.stats.requests));
        const entries = async (store: string) =>
          (JSON.parse(await Deno.readTextFile(`${store}/index.json`)).manifests as { digest: string }[])
            .map((entry) => entry.digest);
        assert.deepEqual(await entries(second), await entries(first));
        for (const digest of testEnv()!.images.big.layers.map((layer) => layer.digest)) {
          const path = (store: string) => `${store}/blobs/sha256/${digest.slice(7)}`;
          assert.equal((await Deno.stat(path(second))).size, (await Deno.stat(path(first))).size);
        }
      } finally {
        await peer.stop();
      }
    } finally {
      await origin.close();
    }
  },
});

Deno.test({
  name: "mirrors: a mirror that stalls mid-blob hands over after the stall timeout, from the byte reached",
  ...withServices,
  fn: () =>
    withHosts(2, async ({ origin, mirrors, certsDir }) => {
      const config = `${await scratchDir("mirror-stall-config-")}/config.yml`;
      await Deno.writeTextFile(config, "registries: { stallTimeout: 2s }\n");
      // One byte every five seconds: a transfer that has started and then says nothing.
      mirrors[0].setThrottle(0.2);
      const store = await scratchDir("mirror-stall-");
      const ref = refVia("appA", origin.host);
      const result = await runBerth([
        "--config",
        config,
        "--store",
        store,
        "--certs-dir",
        certsDir,
        "pull",
        ref,
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal((await runBerth(["--store", store, "fsck"])).code, 0);
      assert.equal(origin.totalBlobBytes(), 0);
      // Whatever the stalled mirror delivered was kept: the next host was asked only for the rest (the
      // proxy may count one piece the client never read).
      for (const [digest, bytes] of mirrors[0].stats.blobBytes) {
        if (bytes === 0) continue;
        const rest = mirrors[1].stats.requests.find((request) => request.path.includes(digest));
        const start = Number(/^bytes=(\d+)-/.exec(rest?.range ?? "")?.[1] ?? NaN);
        assert.ok(start >= bytes - 1 && start <= bytes, `${digest}: ${bytes} served, then ${rest?.range}`);
      }
      const blobs = mirrors[0].stats.blobBytes.size;
      assert.ok(totalBlobBytes([origin, ...mirrors]) <= await distinctBytes(store, mirrors) + blobs);
    }),
});
