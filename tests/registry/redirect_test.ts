/**
 * Blob redirects with a login: a real docker-registry with its `redirect` storage middleware answers blob
 * GETs with 307 to another origin (as registries in front of a CDN or object store do). berth must follow
 * them without the Authorization header, which belongs to the registry alone: with Basic it is the
 * password itself. The other origin here serves the registry's own storage files and records what arrived.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { htpasswdLine } from "../harness/htpasswd.ts";
import { makeSigningPair } from "../harness/pki.ts";
import { copyImage } from "../harness/push.ts";
import {
  assertNoSecrets,
  credentialsFile,
  type SecureRegistry,
  startSecureRegistry,
} from "../harness/secure_registry.ts";
import { startTokenServer } from "../harness/token_server.ts";

const USER = "alice";
const PASSWORD = "pw-redirect-92ab17";
const REPO = "berth-test/app";

/** The stand-in for a CDN: serves files under `root` (the registry's storage), recording each request. */
function startBlobHost() {
  const requests: { path: string; authorization: string | null }[] = [];
  const state = { root: "" };
  const { promise: listening, resolve } = Promise.withResolvers<number>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: ({ port }) => resolve(port) },
    async (request) => {
      const path = new URL(request.url).pathname;
      requests.push({ path, authorization: request.headers.get("authorization") });
      // The middleware's URLs are the filesystem driver's paths below its root directory.
      if (request.method !== "GET" || path.includes("..") || !state.root) {
        return new Response(null, { status: 404 });
      }
      try {
        return new Response(await Deno.readFile(`${state.root}${path}`));
      } catch {
        return new Response(null, { status: 404 });
      }
    },
  );
  return { state, listening, requests, close: () => server.shutdown() };
}

/** A registry with `scheme` login and blob redirects to `baseurl`; `fn` gets it and a push Authorization. */
async function withLoginRegistry(
  scheme: "bearer" | "basic",
  dir: string,
  baseurl: string,
  fn: (registry: SecureRegistry, pushAuthorization: string, secrets: () => string[]) => Promise<void>,
): Promise<void> {
  const extra = { middleware: { storage: [{ name: "redirect", options: { baseurl } }] } };
  if (scheme === "basic") {
    await Deno.writeTextFile(`${dir}/htpasswd`, (await htpasswdLine(USER, PASSWORD)) + "\n");
    const registry = await startSecureRegistry(`${dir}/registry`, {
      auth: { htpasswd: { realm: "berth-test", path: `${dir}/htpasswd` } },
      extra,
    });
    try {
      await fn(registry, `Basic ${btoa(`${USER}:${PASSWORD}`)}`, () => [PASSWORD, `${USER}:${PASSWORD}`]);
    } finally {
      await registry.stop();
    }
    return;
  }
  const tokens = await startTokenServer(await makeSigningPair(`${dir}/pki`), { users: { [USER]: PASSWORD } });
  try {
    const registry = await startSecureRegistry(`${dir}/registry`, { auth: tokens.registryAuth(), extra });
    try {
      const token = await tokens.mint([{ type: "repository", name: REPO, actions: ["pull", "push"] }]);
      await fn(registry, `Bearer ${token}`, () => [PASSWORD, `${USER}:${PASSWORD}`, ...tokens.tokens]);
    } finally {
      await registry.stop();
    }
  } finally {
    await tokens.close();
  }
}

for (const scheme of ["bearer", "basic"] as const) {
  Deno.test({
    name: `${scheme}: a blob redirected to another origin is fetched there without the Authorization header`,
    ...withServices,
    fn: async () => {
      const dir = await scratchDir(`redirect-${scheme}-`);
      await Deno.mkdir(`${dir}/docker-config`);
      const blobHost = startBlobHost();
      // Not "localhost": that may resolve to ::1 as well, and these tests talk to 127.0.0.1 only. Another
      // port is another origin, the case that a client comparing host names alone would get wrong.
      const baseurl = `http://127.0.0.1:${await blobHost.listening}`;
      try {
        await withLoginRegistry(scheme, dir, baseurl, async (registry, authorization, secrets) => {
          blobHost.state.root = registry.dataDir;
          const image = await copyImage(
            testEnv()!.images.appA.ref,
            { ...registry, authorization },
            REPO,
            "a",
          );
          const store = `${dir}/store`;
          const file = await credentialsFile(`${dir}/credentials.json`, registry.host, USER, PASSWORD);
          const result = await runBerth(
            ["--store", store, "--credentials", file, "pull", `${registry.host}/${REPO}:a`],
            { DOCKER_CONFIG: `${dir}/docker-config` },
          );
          assert.equal(result.code, 0, result.stderr);
          assertNoSecrets(result, secrets());
          // Every blob came through the redirect, and none of those requests carried credentials.
          assert.equal(blobHost.requests.length, image.blobs.length, JSON.stringify(blobHost.requests));
          for (const blob of image.blobs) {
            const hex = blob.digest.slice("sha256:".length);
            assert.ok(blobHost.requests.some((request) => request.path.includes(hex)), blob.digest);
          }
          assert.deepEqual(blobHost.requests.filter((request) => request.authorization !== null), []);
          const fsck = await runBerth(["--store", store, "fsck"]);
          assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
        });
      } finally {
        await blobHost.close();
      }
    },
  });
}
