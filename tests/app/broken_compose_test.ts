/**
 * Broken compose apps and bad app commands: `publish` refuses a broken compose file with one line naming
 * the file, the service and the field, before pushing anything; `pull` of a pushed app whose bundle holds a
 * broken compose file fails with one line naming the compose file and the service, and the store gets no
 * index entry for the app; `run`/`stop`/`rm` of an unknown app and `install` of what is not an installable
 * app fail with one line that says so.
 */
import assert from "node:assert/strict";
import { deviceBerth, runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { RegistryPusher } from "../../src/registry/push.ts";
import { parseReference } from "../../src/oci/reference.ts";
import { OCI_MANIFEST } from "../../src/oci/mediatypes.ts";
import { appManifest } from "../../src/app/app_manifest.ts";
import { OCI_EMPTY_DATA, OCI_EMPTY_DIGEST } from "../../src/oci/descriptor.ts";
import { type TarEntry, writeTar } from "../../src/app/tar_write.ts";
import { gzip } from "../../src/util/gzip.ts";
import { sha256Of } from "../../src/oci/digest.ts";

const encoder = new TextEncoder();

function oneLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line expected on stderr, got:\n${stderr}`);
  return lines[0];
}

/** The error line of a command that reports progress on stderr (pull): the one "berth:" line, the last. */
function errorLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  const errors = lines.filter((line) => line.startsWith("berth: "));
  assert.equal(errors.length, 1, `one error line expected on stderr, got:\n${stderr}`);
  assert.equal(lines.at(-1), errors[0], `the error line comes last:\n${stderr}`);
  return errors[0];
}

/** The status of a HEAD request to the registry's API. */
async function head(registry: string, path: string): Promise<number> {
  const response = await fetch(`http://${registry}/v2/${path}`, {
    method: "HEAD",
    headers: { Accept: OCI_MANIFEST },
  });
  await response.body?.cancel();
  return response.status;
}

/** The references named in a store's index.json. */
async function storedRefs(store: string): Promise<string[]> {
  const index = JSON.parse(await Deno.readTextFile(`${store}/index.json`).catch(() => '{"manifests":[]}'));
  return (index.manifests as { annotations?: Record<string, string> }[])
    .map((entry) => entry.annotations?.["org.opencontainers.image.ref.name"] ?? "");
}

/** Pushes a compose app whose bundle holds `entries`, with an index of its files, as publish would. */
async function pushApp(pusher: RegistryPusher, refText: string, entries: TarEntry[]): Promise<void> {
  const ref = parseReference(refText);
  const bundle = await gzip(writeTar(entries));
  const index = Object.fromEntries(
    entries.filter((entry) => entry.type === "file").map((entry) => [entry.name, sha256Of(entry.data!)]),
  );
  const indexBytes = encoder.encode(JSON.stringify(index));
  const bundleRef = { digest: sha256Of(bundle), size: bundle.length };
  const indexRef = { digest: sha256Of(indexBytes), size: indexBytes.length };
  await pusher.pushBlob(ref, OCI_EMPTY_DIGEST, OCI_EMPTY_DATA);
  await pusher.pushBlob(ref, indexRef.digest, indexBytes);
  await pusher.pushBlob(ref, bundleRef.digest, bundle);
  await pusher.pushManifest(ref, appManifest({ bundle: bundleRef, bundleIndex: indexRef }), OCI_MANIFEST);
}

const SERVICE_TAIL =
  `    command: ["/bin/busybox", "sleep", "600"]\n    network_mode: none\n    stop_grace_period: 1s\n`;

Deno.test({
  name:
    "publish refuses a broken compose file with one line naming file, service and field; nothing is pushed",
  ...withServices,
  async fn(t) {
    const env = testEnv()!;
    const good = env.images.appA.ref;
    const cases: { name: string; compose: string; message: RegExp }[] = [
      {
        name: "a service without image",
        compose: `services:\n  web:\n    image: ${good}\n${SERVICE_TAIL}  api:\n${SERVICE_TAIL}`,
        message: /: services\.api\.image: missing: every service needs an image$/,
      },
      {
        name: "image: 42",
        compose: `services:\n  web:\n    image: 42\n${SERVICE_TAIL}`,
        message: /: services\.web\.image: expected a string, got a number$/,
      },
      {
        name: "an empty image",
        compose: `services:\n  web:\n    image: ""\n${SERVICE_TAIL}`,
        message: /: services\.web\.image: must not be empty$/,
      },
      {
        name: "build without image",
        compose: `services:\n  web:\n    build: .\n${SERVICE_TAIL}`,
        message: /: services\.web\.image: missing: berth does not build images/,
      },
      {
        name: "invalid YAML",
        compose: `services:\n  web: [unclosed\n`,
        message: /: .* at line \d+, column \d+$/,
      },
      {
        name: "a key compose cannot take",
        compose: `services:\n  web:\n    image: ${good}\n    1: one\n`,
        message: /: services\.web: key "1" is .*, but compose takes only string keys/,
      },
    ];
    for (const [index, each] of cases.entries()) {
      await t.step(each.name, async () => {
        const project = await scratchDir("broken-publish-");
        await Deno.writeTextFile(`${project}/docker-compose.yml`, each.compose);
        const repo = `broken-compose/publish${index}/shop`;
        const result = await runBerth(["publish", project, `${env.registry}/${repo}:v1`]);
        assert.equal(result.code, 1, result.stdout + result.stderr);
        const line = oneLine(result.stderr);
        assert.ok(line.startsWith(`berth: ${project}/docker-compose.yml: `), line);
        assert.match(line, each.message);
        assert.equal(await head(env.registry, `${repo}/manifests/v1`), 404, "no app manifest pushed");
        assert.equal(await head(env.registry, `${repo}/blobs/${OCI_EMPTY_DIGEST}`), 404, "no blob pushed");
      });
    }

    await t.step("a tag that does not resolve, in the second service", async () => {
      // Every image is resolved before the first blob is pushed.
      const project = await scratchDir("broken-publish-");
      const missing = `${env.registry}/berth-test/app-b:no-such-tag`;
      await Deno.writeTextFile(
        `${project}/docker-compose.yml`,
        `services:\n  web:\n    image: ${good}\n${SERVICE_TAIL}  api:\n    image: ${missing}\n${SERVICE_TAIL}`,
      );
      const repo = "broken-compose/unresolved/shop";
      const result = await runBerth(["publish", project, `${env.registry}/${repo}:v1`]);
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(oneLine(result.stderr), /^berth: .*app-b:no-such-tag: not found in registry/);
      assert.equal(await head(env.registry, `${repo}/manifests/v1`), 404);
      assert.equal(await head(env.registry, `${repo}/blobs/${OCI_EMPTY_DIGEST}`), 404);
    });
  },
});

Deno.test({
  name:
    "pull of an app whose bundle holds a broken compose file fails naming file and service; no index entry",
  ...withServices,
  async fn(t) {
    const env = testEnv()!;
    const pinned = `${env.registry}/berth-test/app-a@${env.images.appA.digest}`;
    const absent = `${env.registry}/berth-test/app-a@sha256:${"0".repeat(64)}`;
    const cases: { name: string; entries: TarEntry[]; message: RegExp }[] = [
      {
        name: "a service without image",
        entries: [
          {
            name: "docker-compose.yml",
            type: "file",
            data: encoder.encode(
              `services:\n  web:\n    image: ${pinned}\n${SERVICE_TAIL}  api:\n${SERVICE_TAIL}`,
            ),
          },
        ],
        message: /: docker-compose\.yml: services\.api\.image: missing: every service needs an image$/,
      },
      {
        name: "image: 42",
        entries: [
          {
            name: "docker-compose.yml",
            type: "file",
            data: encoder.encode(`services:\n  web:\n    image: 42\n`),
          },
        ],
        message: /: docker-compose\.yml: services\.web\.image: expected a string, got a number$/,
      },
      {
        name: "an image not pinned by digest",
        entries: [
          {
            name: "docker-compose.yml",
            type: "file",
            data: encoder.encode(`services:\n  web:\n    image: ${env.images.appA.ref}\n`),
          },
        ],
        message: /: docker-compose\.yml: services\.web\.image: ".*app-a:1" is not pinned: /,
      },
      {
        name: "invalid YAML",
        entries: [
          { name: "docker-compose.yml", type: "file", data: encoder.encode("services:\n  web: [unclosed\n") },
        ],
        message: /: docker-compose\.yml: .* at line \d+, column \d+$/,
      },
      {
        name: "no docker-compose.yml",
        entries: [{
          name: "compose.yaml",
          type: "file",
          data: encoder.encode(`services:\n  web:\n    image: x\n`),
        }],
        message: /: bundle sha256:[0-9a-f]{64} has no docker-compose\.yml$/,
      },
      {
        name: "a pinned image the registry does not have",
        entries: [
          {
            name: "docker-compose.yml",
            type: "file",
            data: encoder.encode(`services:\n  web:\n    image: ${absent}\n`),
          },
        ],
        message: new RegExp(`sha256:${"0".repeat(64)}.*not found`),
      },
    ];
    const store = `${await scratchDir("broken-pull-")}/store`;
    const pusher = new RegistryPusher();
    try {
      for (const [index, each] of cases.entries()) {
        await t.step(each.name, async () => {
          const ref = `${env.registry}/broken-compose/pull${index}/shop:v1`;
          await pushApp(pusher, ref, each.entries);
          const result = await runBerth(["--store", store, "pull", ref]);
          assert.equal(result.code, 1, result.stdout + result.stderr);
          const line = errorLine(result.stderr);
          assert.match(line, each.message);
          if (index < 5) assert.ok(line.includes(ref), `the line names the app: ${line}`);
          assert.ok(!(await storedRefs(store)).includes(ref), "no index entry for the app");
        });
      }
      const listed = JSON.parse((await runBerth(["--store", store, "--json", "ls"])).stdout);
      assert.deepEqual(listed.apps, [], "the store holds no app");
      const fsck = await runBerth(["--store", store, "fsck"]);
      assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
    } finally {
      await pusher.close();
    }
  },
});

Deno.test({
  name:
    "run, stop and rm of an unknown app, and install of what is not a fetched app, fail with one clear line",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const dir = await scratchDir("app-cli-");
    const store = `${dir}/store`;
    // Nothing here changes the engine: every command fails before it would.
    const berth = (...args: string[]) =>
      runBerth(["--store", store, "--compose-root", `${dir}/apps`, "--docker-host", env.dockerHost, ...args]);
    assert.equal((await berth("pull", env.images.appOci.ref)).code, 0);

    for (const command of ["run", "stop", "rm"]) {
      const result = await berth(command, "nosuchapp");
      assert.equal(result.code, 1, `${command}: ${result.stderr}`);
      assert.equal(
        oneLine(result.stderr),
        "berth: app nosuchapp is not installed (no such app); install it with 'berth install <ref>'",
      );
    }
    // A reference names its app: the last path component.
    const byRef = await berth("run", `${env.registry}/factory/nosuchapp:v1`);
    assert.equal(byRef.code, 1);
    assert.match(oneLine(byRef.stderr), /^berth: app nosuchapp is not installed/);

    const usage = await berth("run");
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /run takes one app name/);

    const notFetched = await berth("install", `${env.registry}/factory/nosuchapp:v1`);
    assert.equal(notFetched.code, 1);
    assert.match(
      oneLine(notFetched.stderr),
      /^berth: .*\/factory\/nosuchapp:v1 is not in store .*; fetch it first with 'berth pull .*nosuchapp:v1'$/,
    );

    // A plain OCI image: refused as what it is, naming it.
    const image = await berth("install", env.images.appOci.ref);
    assert.equal(image.code, 1);
    const line = oneLine(image.stderr);
    assert.ok(line.startsWith(`berth: ${env.images.appOci.ref}`), line);
    assert.match(line, /not a compose app/);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(`${dir}/apps`)).catch(() => []), []);
  },
});

Deno.test({
  name: "install of a plain image says it is " +
    "not a compose app",
  ...withServices,
  async fn() {
    // Demonstrates unclear wording in src/app/lifecycle.ts installApp (parseAppManifest's media type check
    // comes first): for a Docker v2 image or manifest list berth says 'mediaType "application/vnd.docker.
    // distribution.manifest.v2+json"; a compose app is an application/vnd.oci.image.manifest.v1+json',
    // which never says that the reference is an image rather than an app. Fails until it does.
    const env = testEnv()!;
    const dir = await scratchDir("app-cli-image-");
    const berth = deviceBerth(dir, env.dockerHost);
    for (const ref of [env.images.appA.ref, env.images.multi.ref]) {
      assert.equal((await berth("pull", ref)).code, 0);
      const result = await berth("install", ref);
      assert.equal(result.code, 1);
      const line = oneLine(result.stderr);
      assert.ok(line.startsWith(`berth: ${ref}`), line);
      assert.match(line, /not a compose app/, `the line says what is wrong: ${line}`);
    }
  },
});
