/**
 * The reverse direction of Foundries compatibility: an app berth publishes passes a checker written from
 * composeapp's reader rules (tests/harness/composectl_reader.ts, which reads the registry over HTTP and not
 * through berth's parsers), and its published compose file loads in compose v2 (`docker compose config`) to
 * the same project as the original, but for the pinned images and the config-hash labels. A tampered bundle
 * index is caught, so the checker is not vacuous. Real registry; compose v2 from the harness.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { writeProject } from "../harness/projects.ts";
import { ensureComposeV2, harnessCacheDir } from "../harness/services.ts";
import { checkComposectlApp, goServices, recomputeConfigHash } from "../harness/composectl_reader.ts";

const HASH_LABEL = "io.compose-spec.config-hash";

// A service and the hash yaml.v3 v3.0.1 and sha256 give it (the vector of tests/app/compose_test.ts, which
// yaml.v3 itself produced): octal, YAML 1.1 words, a date, a float, merge keys and natural key order.
const WEB_PINNED = `registry.example.com/shop/web@sha256:${"a".repeat(64)}`;
const HASH_VECTOR = `x-base: &base
  restart: unless-stopped
services:
  web:
    <<: *base
    image: ${WEB_PINNED}
    command: ["sleep", "30"]
    ports: ["8080:80", 22:22]
    environment:
      MODE: 0755
      SWITCH: on
      WHEN: 2001-12-14
    labels: {b: 1, a: yes, ${HASH_LABEL}: "left out"}
    healthcheck:
      test: |
        wget -q localhost
      interval: 1e3
    x-key10: a
    x-key9: b
`;

Deno.test("recomputeConfigHash: yaml.v3's hash of a service, its own label left out", async () => {
  const web = goServices(HASH_VECTOR)!.get("web") as Map<string, never>;
  assert.equal(
    await recomputeConfigHash(web),
    "e4778c4ecde3b7a5f1a083efde48e9e0157d7b2cc65b3b5a17857eef7970cccc",
  );
});

/** `docker compose config --format json` of the project in `dir`, with `dir` itself written as "<dir>". */
async function composeConfig(dir: string): Promise<Record<string, unknown>> {
  const { dockerConfigDir } = await ensureComposeV2(harnessCacheDir());
  const output = await new Deno.Command("docker", {
    args: [
      "-H",
      testEnv()!.dockerHost,
      "compose",
      "-p",
      "shop",
      "--project-directory",
      dir,
      "-f",
      `${dir}/docker-compose.yml`,
      "config",
      "--format",
      "json",
    ],
    env: { DOCKER_CONFIG: dockerConfigDir },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  return JSON.parse(text.replaceAll(dir, "<dir>"));
}

async function pushBlob(base: string, bytes: Uint8Array): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  const digest = "sha256:" + Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("");
  const start = await fetch(`${base}/blobs/uploads/`, { method: "POST" });
  await start.body?.cancel();
  const location = new URL(start.headers.get("location")!, base);
  location.searchParams.set("digest", digest);
  const put = await fetch(location, { method: "PUT", body: bytes as Uint8Array<ArrayBuffer> });
  await put.body?.cancel();
  assert.equal(put.status, 201);
  return digest;
}

Deno.test({
  name: "a berth-published app passes composeapp's reader rules and loads in compose v2 as the original does",
  ...withServices,
  fn: async () => {
    const env = testEnv()!;
    const { appA, multi } = env.images;
    const project = await scratchDir("revcheck-");
    await writeProject(project, { web: appA.ref, worker: multi.ref }, { conf: true, label: "blue" });
    const published = await runBerth(["--json", "publish", project, `${env.registry}/revcheck/shop:v1`]);
    assert.equal(published.code, 0, published.stderr);
    const { digest } = JSON.parse(published.stdout);

    const report = await checkComposectlApp(env.registry, `revcheck/shop@${digest}`);
    assert.deepEqual(report.problems, []);
    assert.equal(report.digest, digest);
    assert.deepEqual([...report.files.keys()].sort(), ["conf/app.conf", "docker-compose.yml"]);

    // The published compose file, with the bundle's other files, against the original in compose v2.
    const extracted = await scratchDir("revcheck-bundle-");
    for (const [name, bytes] of report.files) {
      await Deno.mkdir(`${extracted}/${name}`.replace(/\/[^/]*$/, ""), { recursive: true });
      await Deno.writeFile(`${extracted}/${name}`, bytes);
    }
    const original = await composeConfig(project);
    const fromBundle = await composeConfig(extracted);
    const originalServices = original.services as Record<string, { volumes?: unknown[] }>;
    assert.deepEqual(Object.keys(originalServices).sort(), ["web", "worker"]);
    assert.equal(originalServices.web.volumes?.length, 1, "the conf mount is part of what is compared");
    const services = fromBundle.services as Record<string, Record<string, unknown>>;
    const pins = { web: appA, worker: multi };
    for (const [name, image] of Object.entries(pins)) {
      const service = services[name];
      assert.equal(service.image, `${image.ref.replace(/:1$/, "")}@${image.digest}`, `service ${name}`);
      service.image = image.ref;
      const labels = service.labels as Record<string, string>;
      assert.match(labels[HASH_LABEL], /^[0-9a-f]{64}$/);
      delete labels[HASH_LABEL];
    }
    assert.deepEqual(fromBundle, original);

    // Negative: the same bundle under an index that misstates one file's digest.
    const base = `http://${env.registry}/v2/revcheck/shop`;
    const manifest = await (await fetch(`${base}/manifests/${digest}`, {
      headers: { Accept: "application/vnd.oci.image.manifest.v1+json" },
    })).json();
    const bundleLayer = manifest.layers[0];
    const indexDigest = bundleLayer.annotations["org.foundries.app.bundle.index.digest"];
    const index = await (await fetch(`${base}/blobs/${indexDigest}`)).json();
    index["conf/app.conf"] = index["docker-compose.yml"];
    const tampered = new TextEncoder().encode(JSON.stringify(index));
    bundleLayer.annotations["org.foundries.app.bundle.index.digest"] = await pushBlob(base, tampered);
    bundleLayer.annotations["org.foundries.app.bundle.index.size"] = String(tampered.length);
    const put = await fetch(`${base}/manifests/tampered`, {
      method: "PUT",
      headers: { "Content-Type": manifest.mediaType },
      body: JSON.stringify(manifest),
    });
    await put.body?.cancel();
    assert.equal(put.status, 201);
    const caught = await checkComposectlApp(env.registry, "revcheck/shop:tampered");
    assert.deepEqual(caught.problems, [
      `bundle index: conf/app.conf does not hash to ${index["conf/app.conf"]}`,
    ]);
  },
});
