/**
 * Pushing to real docker-registries, in-process through RegistryPusher (the library `berth publish` is
 * built on): an OCI artifact (the empty config and one layer) lands byte for byte, a second push uploads
 * nothing, a mount copies nothing, tags resolve to the registry's own digests; failed uploads start again
 * from a new POST while a manifest PUT is simply repeated; logins go through Basic and bearer tokens with
 * the push scope, and a missing one fails with one auth_failed line that holds no secret.
 */
import assert from "node:assert/strict";
import { scratchDir, testEnv, withServices } from "../harness/env.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault_proxy.ts";
import { htpasswdLine } from "../harness/htpasswd.ts";
import { makeCa, makeSigningPair } from "../harness/pki.ts";
import { certsDir, credentialsFile, startSecureRegistry } from "../harness/secure_registry.ts";
import { run } from "../harness/services.ts";
import { startTokenServer } from "../harness/token_server.ts";
import { tokenScopes } from "../../src/registry/auth.ts";
import { type BlobPushResult, RegistryPusher, withDigest } from "../../src/registry/push.ts";
import { MANIFEST_TYPES, OCI_MANIFEST } from "../../src/oci/mediatypes.ts";
import { parseReference, type Reference } from "../../src/oci/reference.ts";
import type { RegistryOptions } from "../../src/registry/options.ts";
import { sha256Of } from "../../src/oci/digest.ts";
import { BerthError, type Reason } from "../../src/util/errors.ts";

const USER = "alice";
const PASSWORD = "pw-push-3e9a61";
const WRONG = "pw-wrong-7c22b0";

/** The OCI empty descriptor's content, `{}`, and its well-known digest. */
const EMPTY_CONFIG = new TextEncoder().encode("{}");
const EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/** Retries without the production backoff, so fault tests take milliseconds. */
const FAST: Partial<RegistryOptions> = { backoffMs: 5, maxBackoffMs: 20 };

interface Artifact {
  layer: Uint8Array;
  layerDigest: string;
  manifest: Uint8Array;
  digest: string;
}

/** An OCI artifact manifest: the empty config and one octet-stream layer of fresh random bytes. */
function makeArtifact(layerSize = 3000): Artifact {
  const layer = crypto.getRandomValues(new Uint8Array(layerSize));
  const layerDigest = sha256Of(layer);
  const manifest = new TextEncoder().encode(JSON.stringify(
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: "application/vnd.berth.test.v1",
      config: { mediaType: "application/vnd.oci.empty.v1+json", digest: EMPTY_DIGEST, size: 2 },
      layers: [{ mediaType: "application/octet-stream", digest: layerDigest, size: layer.length }],
    },
    null,
    2,
  ));
  return { layer, layerDigest, manifest, digest: sha256Of(manifest) };
}

/** Pushes the artifact's blobs and then its manifest to `ref`; the blob results and the manifest digest. */
async function pushArtifact(
  pusher: RegistryPusher,
  ref: Reference,
  artifact: Artifact,
): Promise<{ blobs: BlobPushResult[]; digest: string }> {
  const blobs = [
    await pusher.pushBlob(ref, EMPTY_DIGEST, EMPTY_CONFIG),
    await pusher.pushBlob(ref, artifact.layerDigest, artifact.layer),
  ];
  return { blobs, digest: await pusher.pushManifest(ref, artifact.manifest, OCI_MANIFEST) };
}

/** A repository name no other test (or earlier run against the same registry) has used. */
function freshRepo(name: string): string {
  return `berth-test/push-${name}-${crypto.randomUUID().slice(0, 8)}`;
}

/** `promise` rejects with a BerthError of `reason`; returns its message. */
async function failure(promise: Promise<unknown>, reason: Reason): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof BerthError, `not a BerthError: ${error}`);
    assert.equal(error.reason, reason, error.message);
    assert.ok(!error.message.includes("\n"), `more than one line: ${error.message}`);
    return error.message;
  }
  assert.fail(`expected a ${reason} failure`);
}

/** None of `secrets` (nor their base64 forms) appears in `text`. */
function assertNoSecrets(text: string, secrets: string[]): void {
  for (const secret of secrets) {
    for (const form of [secret, btoa(secret)]) {
      assert.ok(!text.includes(form), `a secret (${secret.slice(0, 4)}…) was printed: ${text}`);
    }
  }
}

/**
 * The proxy's requests since the last reset as "METHOD kind status", kind being what the path addresses;
 * without the transport's one-time probe of /v2/ (which decides between HTTPS and plain HTTP).
 */
function exchanges(proxy: FaultProxy): string[] {
  return proxy.stats.requests.filter(({ path }) => path !== "/v2/").map(({ method, path, status }) => {
    const kind = path.includes("/blobs/uploads/")
      ? (path.includes("mount=") ? "mount" : "upload")
      : path.includes("/blobs/")
      ? "blob"
      : path.includes("/manifests/")
      ? "manifest"
      : path;
    return `${method} ${kind} ${status}`;
  });
}

/** What a pull of `path` gets from `baseUrl`, with every manifest type accepted. */
async function servedManifest(
  baseUrl: string,
  path: string,
  init: { authorization?: string; client?: Deno.HttpClient } = {},
): Promise<Uint8Array> {
  const headers = new Headers({ Accept: MANIFEST_TYPES.join(", ") });
  if (init.authorization) headers.set("Authorization", init.authorization);
  const response = await fetch(`${baseUrl}${path}`, { headers, client: init.client });
  const bytes = new Uint8Array(await response.arrayBuffer());
  assert.equal(response.status, 200, new TextDecoder().decode(bytes));
  return bytes;
}

Deno.test({
  name: "push: an OCI artifact lands byte for byte; pushing again uploads nothing; a mount copies nothing",
  ...withServices,
  fn: async (t) => {
    const env = testEnv()!;
    const proxy = await startFaultProxy(env.registry);
    const pusher = new RegistryPusher(FAST);
    try {
      const repo = freshRepo("artifact");
      const ref = parseReference(`${proxy.host}/${repo}:v1`);
      const artifact = makeArtifact();

      await t.step(
        "first push: a POST and a PUT per blob, one manifest PUT; skopeo reads the bytes",
        async () => {
          const pushed = await pushArtifact(pusher, ref, artifact);
          assert.deepEqual(pushed.blobs, ["uploaded", "uploaded"]);
          assert.equal(pushed.digest, sha256Of(artifact.manifest));
          assert.deepEqual(exchanges(proxy), [
            "HEAD blob 404",
            "POST upload 202",
            "PUT upload 201",
            "HEAD blob 404",
            "POST upload 202",
            "PUT upload 201",
            "PUT manifest 201",
          ]);
          const raw = await run([
            "skopeo",
            "inspect",
            "--raw",
            "--no-creds",
            "--tls-verify=false",
            `docker://${env.registry}/${repo}:v1`,
          ]);
          assert.equal(raw, new TextDecoder().decode(artifact.manifest));
          assert.equal(await pusher.blobExists(ref, artifact.layerDigest), artifact.layer.length);
          assert.equal(await pusher.blobExists(ref, EMPTY_DIGEST), 2);
          assert.equal(await pusher.blobExists(ref, sha256Of(new Uint8Array([1, 2, 3]))), undefined);
          assert.deepEqual(await pusher.resolveDigest(ref), {
            digest: pushed.digest,
            mediaType: OCI_MANIFEST,
            size: artifact.manifest.length,
          });
        },
      );

      await t.step("second push: no POST, no blob PUT, the same digest", async () => {
        proxy.resetStats();
        const again = await pushArtifact(pusher, ref, artifact);
        assert.deepEqual(again.blobs, ["exists", "exists"]);
        assert.equal(again.digest, artifact.digest);
        assert.deepEqual(exchanges(proxy), ["HEAD blob 200", "HEAD blob 200", "PUT manifest 201"]);
      });

      await t.step("a mount from the first repository copies nothing; push by digest", async () => {
        const copy = parseReference(`${proxy.host}/${freshRepo("copy")}@${artifact.digest}`);
        proxy.resetStats();
        assert.equal(await pusher.pushBlob(copy, EMPTY_DIGEST, EMPTY_CONFIG, { from: repo }), "mounted");
        assert.equal(
          await pusher.pushBlob(copy, artifact.layerDigest, artifact.layer, { from: repo }),
          "mounted",
        );
        assert.equal(await pusher.pushManifest(copy, artifact.manifest, OCI_MANIFEST), artifact.digest);
        assert.deepEqual(exchanges(proxy), [
          "HEAD blob 404",
          "POST mount 201",
          "HEAD blob 404",
          "POST mount 201",
          "PUT manifest 201",
        ]);
        assert.ok(proxy.stats.requests.at(-1)!.path.endsWith(`/manifests/${artifact.digest}`));
        assert.equal((await pusher.resolveDigest(copy)).digest, artifact.digest);
      });

      await t.step("a mount from a repository without the blob falls back to an upload", async () => {
        const other = parseReference(`${proxy.host}/${freshRepo("other")}:v1`);
        const fresh = makeArtifact();
        proxy.resetStats();
        assert.equal(
          await pusher.pushBlob(other, fresh.layerDigest, fresh.layer, { from: repo }),
          "uploaded",
        );
        assert.deepEqual(exchanges(proxy), ["HEAD blob 404", "POST mount 202", "PUT upload 201"]);
      });

      await t.step("refusals name the reference, the digest and what is wrong", async () => {
        const broken = makeArtifact();
        // The layer was never pushed: the registry refuses the manifest.
        let message = await failure(pusher.pushManifest(ref, broken.manifest, OCI_MANIFEST), "not_found");
        assert.ok(message.includes(`${proxy.host}/${repo}:v1`), message);
        assert.ok(message.includes(broken.digest), message);
        assert.match(message, /MANIFEST_BLOB_UNKNOWN/);
        assert.match(message, /push the blobs first/);

        message = await failure(
          pusher.pushManifest(ref, artifact.manifest, "application/vnd.oci.image.index.v1+json"),
          "invalid_input",
        );
        assert.match(message, /mediaType application\/vnd\.oci\.image\.manifest\.v1\+json/);

        message = await failure(
          pusher.pushBlob(ref, broken.layerDigest, artifact.layer),
          "invalid_input",
        );
        assert.ok(message.includes(broken.layerDigest) && message.includes(artifact.layerDigest), message);

        message = await failure(
          pusher.pushManifest({ ...ref, digest: broken.digest }, artifact.manifest, OCI_MANIFEST),
          "invalid_input",
        );
        assert.ok(message.includes(broken.digest) && message.includes(artifact.digest), message);
      });
    } finally {
      await pusher.close();
      await proxy.close();
    }
  },
});

Deno.test({
  name: "resolveDigest: a tag resolves to the digest the registry serves, also when HEAD says nothing",
  ...withServices,
  fn: async () => {
    const { registry, images } = testEnv()!;
    const proxy = await startFaultProxy(registry);
    const client = new RegistryPusher(FAST);
    try {
      for (const image of [images.appA, images.appOci, images.multi]) {
        const resolved = await client.resolveDigest(parseReference(image.ref));
        assert.equal(resolved.digest, image.digest, image.ref);
        assert.equal(resolved.mediaType, image.mediaType, image.ref);
      }
      const appA = parseReference(images.appA.ref.replace(registry, proxy.host));
      assert.equal((await client.resolveDigest(appA)).digest, images.appA.digest);
      assert.equal(
        (await client.resolveDigest({ ...appA, tag: undefined, digest: images.appA.digest })).digest,
        images.appA.digest,
      );

      // A HEAD answered without Docker-Content-Digest or a manifest type: the GET's body is hashed.
      proxy.resetStats();
      proxy.addRequestFault({ method: "HEAD", path: /\/manifests\//, status: 200 });
      const fallback = await client.resolveDigest(appA);
      assert.equal(fallback.digest, images.appA.digest);
      assert.equal(fallback.mediaType, images.appA.mediaType);
      assert.deepEqual(exchanges(proxy), ["HEAD manifest 200", "GET manifest 200"]);

      const missing = parseReference(`${registry}/berth-test/app-a:no-such-tag`);
      const message = await failure(client.resolveDigest(missing), "not_found");
      assert.ok(message.includes("berth-test/app-a:no-such-tag"), message);
    } finally {
      await client.close();
      await proxy.close();
    }
  },
});

Deno.test({
  name: "push faults: a failed upload starts again from a new POST; a manifest PUT is repeated; 413 is final",
  ...withServices,
  fn: async (t) => {
    const proxy = await startFaultProxy(testEnv()!.registry);
    const pusher = new RegistryPusher({ ...FAST, attempts: 3 });
    const ref = parseReference(`${proxy.host}/${freshRepo("faults")}:v1`);
    const upload = /\/blobs\/uploads\/[^?]/;
    try {
      await t.step("a 500 on the upload PUT: a new POST and PUT, and the blob is there", async () => {
        const artifact = makeArtifact();
        proxy.resetStats();
        proxy.addRequestFault({ method: "PUT", path: upload, status: 500 });
        assert.equal(await pusher.pushBlob(ref, artifact.layerDigest, artifact.layer), "uploaded");
        assert.deepEqual(exchanges(proxy), [
          "HEAD blob 404",
          "POST upload 202",
          "PUT upload 500",
          "HEAD blob 404",
          "POST upload 202",
          "PUT upload 201",
        ]);
        assert.equal(await pusher.blobExists(ref, artifact.layerDigest), artifact.layer.length);
      });

      await t.step("a PUT that landed but whose answer was lost: found by HEAD, not sent again", async () => {
        const artifact = makeArtifact();
        proxy.resetStats();
        proxy.addRequestFault({ method: "PUT", path: upload, status: 502, afterUpstream: true });
        assert.equal(await pusher.pushBlob(ref, artifact.layerDigest, artifact.layer), "uploaded");
        assert.deepEqual(exchanges(proxy), [
          "HEAD blob 404",
          "POST upload 202",
          "PUT upload 502",
          "HEAD blob 200",
        ]);
      });

      await t.step("a 503 on the manifest PUT: the same PUT again", async () => {
        const artifact = makeArtifact();
        await pusher.pushBlob(ref, EMPTY_DIGEST, EMPTY_CONFIG);
        await pusher.pushBlob(ref, artifact.layerDigest, artifact.layer);
        proxy.resetStats();
        proxy.addRequestFault({ method: "PUT", path: /\/manifests\//, status: 503 });
        assert.equal(await pusher.pushManifest(ref, artifact.manifest, OCI_MANIFEST), artifact.digest);
        assert.deepEqual(exchanges(proxy), ["PUT manifest 503", "PUT manifest 201"]);
        assert.deepEqual(
          new Uint8Array(await servedManifest(`http://${proxy.host}`, `/v2/${ref.repository}/manifests/v1`)),
          artifact.manifest,
        );
      });

      await t.step("413 on every upload: one attempt, a line saying too large", async () => {
        const artifact = makeArtifact(50_000);
        proxy.resetStats();
        proxy.addRequestFault({ method: "PUT", path: upload, status: 413, times: Infinity });
        const message = await failure(
          pusher.pushBlob(ref, artifact.layerDigest, artifact.layer),
          "registry_error",
        );
        proxy.clearFaults();
        assert.ok(message.includes(artifact.layerDigest), message);
        assert.ok(message.includes(`${proxy.host}/${ref.repository}`), message);
        assert.match(message, /too large \(50000 bytes\)/);
        assert.deepEqual(exchanges(proxy), ["HEAD blob 404", "POST upload 202", "PUT upload 413"]);
      });

      await t.step(
        "500 on every upload: each attempt from a new POST, then a transient failure",
        async () => {
          const artifact = makeArtifact();
          proxy.resetStats();
          proxy.addRequestFault({ method: "PUT", path: upload, status: 500, times: Infinity });
          let caught: unknown;
          await pusher.pushBlob(ref, artifact.layerDigest, artifact.layer).catch((error) => caught = error);
          proxy.clearFaults();
          assert.ok(caught instanceof BerthError && caught.transient, String(caught));
          assert.ok(caught.message.includes(artifact.layerDigest), caught.message);
          assert.match(caught.message, /gave up after 3 uploads/);
          const methods = exchanges(proxy).filter((line) => !line.startsWith("HEAD"));
          assert.deepEqual(methods, Array(3).fill(["POST upload 202", "PUT upload 500"]).flat());
        },
      );
    } finally {
      await pusher.close();
      await proxy.close();
    }
  },
});

Deno.test({
  name: "push with Basic over TLS: a login pushes; none or a wrong one fails as auth_failed without secrets",
  ...withServices,
  fn: async (t) => {
    const dir = await scratchDir("push-basic-");
    const ca = await makeCa(`${dir}/pki`);
    await Deno.writeTextFile(`${dir}/htpasswd`, (await htpasswdLine(USER, PASSWORD)) + "\n");
    const registry = await startSecureRegistry(`${dir}/registry`, {
      tls: { server: await ca.server("registry"), ca },
      auth: { htpasswd: { realm: "berth-test", path: `${dir}/htpasswd` } },
    });
    const certs = await certsDir(`${dir}/certs`, registry.host, { ca });
    const secrets = [PASSWORD, WRONG, `${USER}:${PASSWORD}`, `${USER}:${WRONG}`];
    const repo = freshRepo("basic");
    const ref = parseReference(`${registry.host}/${repo}:v1`);
    const pusherWith = (credentials: string) =>
      new RegistryPusher({ ...FAST, certsDirs: [certs], credentialFiles: [credentials] });
    try {
      await t.step("with credentials the artifact is pushed and served as pushed", async () => {
        const file = await credentialsFile(`${dir}/credentials.json`, registry.host, USER, PASSWORD);
        const pusher = pusherWith(file);
        try {
          const artifact = makeArtifact();
          const pushed = await pushArtifact(pusher, ref, artifact);
          assert.deepEqual(pushed.blobs, ["uploaded", "uploaded"]);
          assert.equal(pushed.digest, artifact.digest);
          const served = await servedManifest(registry.baseUrl, `/v2/${repo}/manifests/v1`, {
            authorization: `Basic ${btoa(`${USER}:${PASSWORD}`)}`,
            client: registry.client,
          });
          assert.deepEqual(served, artifact.manifest);
          assert.equal((await pusher.resolveDigest(ref)).digest, artifact.digest);
        } finally {
          await pusher.close();
        }
      });

      await t.step("without credentials: auth_failed asking for a login to push", async () => {
        const missing = `${dir}/no-credentials.json`;
        const pusher = pusherWith(missing);
        try {
          const artifact = makeArtifact();
          const message = await failure(
            pusher.pushBlob(ref, artifact.layerDigest, artifact.layer),
            "auth_failed",
          );
          assert.ok(message.includes(registry.host), message);
          assert.ok(message.includes(`repository:${repo}:pull,push`), message);
          assert.ok(message.includes(missing), message);
          assert.match(message, /requires a login/);
          assertNoSecrets(message, secrets);
        } finally {
          await pusher.close();
        }
      });

      await t.step("with a wrong password: auth_failed, refused, without the password", async () => {
        const file = await credentialsFile(`${dir}/wrong.json`, registry.host, USER, WRONG);
        const pusher = pusherWith(file);
        try {
          const artifact = makeArtifact();
          const message = await failure(
            pusher.pushManifest(ref, artifact.manifest, OCI_MANIFEST),
            "auth_failed",
          );
          assert.ok(message.includes(registry.host), message);
          assert.ok(message.includes(artifact.digest), message);
          assert.match(message, /credentials were refused or have no push access/);
          assertNoSecrets(message, secrets);
        } finally {
          await pusher.close();
        }
      });
    } finally {
      await registry.stop();
    }
  },
});

Deno.test({
  name: "push with bearer tokens: Basic to the token server for pull,push; no login is a clear auth_failed",
  ...withServices,
  fn: async (t) => {
    const dir = await scratchDir("push-token-");
    const tokens = await startTokenServer(await makeSigningPair(`${dir}/pki`), {
      users: { [USER]: PASSWORD },
      anonymousPull: true,
    });
    const registry = await startSecureRegistry(`${dir}/registry`, { auth: tokens.registryAuth() });
    const secrets = () => [PASSWORD, `${USER}:${PASSWORD}`, ...tokens.tokens];
    const repo = freshRepo("token");
    const ref = parseReference(`${registry.host}/${repo}:v1`);
    const file = await credentialsFile(`${dir}/credentials.json`, registry.host, USER, PASSWORD);
    try {
      await t.step(
        "with credentials: one token, asked with Basic for pull,push, serves the push",
        async () => {
          const pusher = new RegistryPusher({ ...FAST, credentialFiles: [file] });
          try {
            tokens.requests.length = 0;
            const artifact = makeArtifact();
            const pushed = await pushArtifact(pusher, ref, artifact);
            assert.deepEqual(pushed.blobs, ["uploaded", "uploaded"]);
            assert.equal(pushed.digest, artifact.digest);
            assert.deepEqual(tokens.requests, [{
              service: tokens.service,
              scopes: [`repository:${repo}:pull,push`],
              account: null,
              authorization: "basic",
              user: USER,
              status: 200,
            }]);

            // A mount needs pull on the source as well: one token for both repositories.
            tokens.requests.length = 0;
            const copyRepo = freshRepo("token-copy");
            const copy = parseReference(`${registry.host}/${copyRepo}:v1`);
            assert.equal(
              await pusher.pushBlob(copy, artifact.layerDigest, artifact.layer, { from: repo }),
              "mounted",
            );
            assert.deepEqual(
              tokens.requests.map(({ scopes, authorization }) => ({ scopes, authorization })),
              [
                { scopes: [`repository:${copyRepo}:pull,push`], authorization: "basic" },
                {
                  scopes: [`repository:${copyRepo}:pull,push`, `repository:${repo}:pull`],
                  authorization: "basic",
                },
              ],
            );

            // Resolving is a pull: it asks for (and caches) a pull token of its own.
            tokens.requests.length = 0;
            assert.equal((await pusher.resolveDigest(ref)).digest, artifact.digest);
            assert.deepEqual(tokens.requests.map(({ scopes }) => scopes), [[`repository:${repo}:pull`]]);
          } finally {
            await pusher.close();
          }
        },
      );

      await t.step(
        "without credentials: anonymous tokens, then auth_failed naming the missing push access",
        async () => {
          const missing = `${dir}/no-credentials.json`;
          const pusher = new RegistryPusher({ ...FAST, credentialFiles: [missing] });
          try {
            tokens.requests.length = 0;
            const artifact = makeArtifact();
            const message = await failure(
              pusher.pushBlob(ref, artifact.layerDigest, artifact.layer),
              "auth_failed",
            );
            assert.ok(message.includes(registry.host), message);
            assert.ok(message.includes(artifact.layerDigest), message);
            assert.ok(message.includes(`push access to ${repo} is missing`), message);
            assert.ok(message.includes(`no credentials for ${registry.host} in ${missing}`), message);
            assertNoSecrets(message, secrets());
            assert.ok(tokens.requests.length >= 1);
            for (const request of tokens.requests) {
              assert.equal(request.authorization, "none");
              assert.deepEqual(request.scopes, [`repository:${repo}:pull,push`]);
            }
          } finally {
            await pusher.close();
          }
        },
      );
    } finally {
      await registry.stop();
      await tokens.close();
    }
  },
});

Deno.test("an upload Location keeps its query, byte for byte, and gets the digest appended", () => {
  const digest = EMPTY_DIGEST;
  const param = `digest=${encodeURIComponent(digest)}`;
  const base = "https://registry.example.com/v2/a/b/blobs/uploads/";
  assert.equal(
    withDigest(new URL("/v2/a/b/blobs/uploads/u1", base), digest).href,
    `https://registry.example.com/v2/a/b/blobs/uploads/u1?${param}`,
  );
  assert.equal(
    withDigest(new URL("u1?_state=a%2Bb%3D%3D&x=1+2", base), digest).href,
    `https://registry.example.com/v2/a/b/blobs/uploads/u1?_state=a%2Bb%3D%3D&x=1+2&${param}`,
  );
  assert.equal(
    withDigest(new URL("https://uploads.example.com/session/9?sig=abc", base), digest).href,
    `https://uploads.example.com/session/9?sig=abc&${param}`,
  );
});

Deno.test("token scopes: ours first, and what the challenge names only when ours do not cover it", () => {
  const push = "repository:a/b:pull,push";
  assert.deepEqual(tokenScopes([push], "repository:a/b:pull"), [push]);
  assert.deepEqual(tokenScopes([push], undefined), [push]);
  assert.deepEqual(tokenScopes(["repository:a/b:pull"], "repository:a/b:pull"), ["repository:a/b:pull"]);
  assert.deepEqual(tokenScopes(["repository:a/b:pull"], "repository:a/b:pull,push"), [
    "repository:a/b:pull",
    "repository:a/b:pull,push",
  ]);
  assert.deepEqual(
    tokenScopes([push, "repository:c/d:pull"], "repository:a/b:push repository:c/d:pull"),
    [push, "repository:c/d:pull"],
  );
  assert.deepEqual(tokenScopes(["repository:h:5000/x:pull"], "registry:catalog:*"), [
    "repository:h:5000/x:pull",
    "registry:catalog:*",
  ]);
});
