/**
 * publish interpolates `${VAR}` in images and labels with the publisher's environment, as composectl's
 * publish does: the image is pinned from the interpolated reference, the published labels carry the
 * values, everything else stays as written, the config hash is the one of the service as written (as
 * composectl computes it), and the output names the variables used but never their values. Real registry.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { publishedCompose } from "../harness/projects.ts";
import { COMPOSE_FILE } from "../../src/app/bundle_format.ts";
import { parseComposeFile } from "../../src/app/compose_file.ts";
import { CONFIG_HASH_LABEL, configHash } from "../../src/app/config_hash.ts";

/** The project as written: one service whose image and labels name variables. */
const COMPOSE = [
  "services:",
  "  web:",
  "    image: ${REGISTRY}/berth-test/app-a:${TAG}",
  `    command: ["/bin/busybox", "sleep", "600"]`,
  "    network_mode: none",
  "    environment:",
  "      KEPT: ${VERSION}",
  "    labels:",
  '      org.example.version: "v${VERSION}"',
  "      org.example.channel: ${CHANNEL:-stable}",
  "      org.example.owner: ${OWNER}",
  "      org.example.price: $$5",
  "",
].join("\n");

Deno.test({
  name: "publish interpolates images and labels with the publisher's variables and lists the names used",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const project = await scratchDir("interp-");
    await Deno.writeTextFile(`${project}/${COMPOSE_FILE}`, COMPOSE);
    const variables = { REGISTRY: env.registry, TAG: "1", VERSION: "secret-version-9" };
    const repository = "interp/shop";

    const json = await runBerth(
      ["--json", "publish", project, `${env.registry}/${repository}:json`],
      variables,
    );
    assert.equal(json.code, 0, json.stderr);
    const result = JSON.parse(json.stdout);
    assert.deepEqual(result.variables, ["CHANNEL", "OWNER", "REGISTRY", "TAG", "VERSION"]);
    assert.deepEqual(result.unsetVariables, ["OWNER"]);
    assert.equal(result.images[0].image, env.images.appA.ref);
    assert.match(json.stderr, /warning: variable OWNER is not set; an empty string was used/);

    const text = await publishedCompose(env.registry, repository, "json");
    const web = parseComposeFile(new TextEncoder().encode(text), COMPOSE_FILE).services[0];
    const pinned = `${env.registry}/berth-test/app-a@${env.images.appA.digest}`;
    assert.equal(web.image, pinned);
    const labels = web.config.labels as Record<string, string>;
    assert.equal(labels["org.example.version"], "vsecret-version-9");
    assert.equal(labels["org.example.channel"], "stable");
    assert.equal(labels["org.example.owner"], "");
    assert.equal(labels["org.example.price"], "$5");
    // Only image and labels: the rest is left for the device's compose to interpolate.
    assert.deepEqual(web.config.environment, { KEPT: "${VERSION}" });
    // composectl hashes the service with its image pinned and its labels as written.
    const written = parseComposeFile(
      new TextEncoder().encode(COMPOSE.replace(/image: .*/, `image: ${pinned}`)),
      COMPOSE_FILE,
    );
    assert.equal(labels[CONFIG_HASH_LABEL], configHash(written.services[0]));

    // Text output: the names, never the values.
    const plain = await runBerth(["publish", project, `${env.registry}/${repository}:text`], variables);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /variables: CHANNEL, OWNER, REGISTRY, TAG, VERSION/);
    for (const output of [json.stdout, json.stderr, plain.stdout, plain.stderr]) {
      assert.doesNotMatch(output, /secret-version-9/);
    }

    // A required variable that is missing refuses the publish, naming the field; nothing is pushed.
    await Deno.writeTextFile(
      `${project}/${COMPOSE_FILE}`,
      COMPOSE.replace("${OWNER}", "${OWNER:?who owns it}"),
    );
    const refused = await runBerth(["publish", project, `${env.registry}/${repository}:refused`], variables);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(
      refused.stderr,
      /services\.web\.labels\["org\.example\.owner"\]: required variable OWNER is missing a value: who owns it/,
    );
    const pushed = await fetch(`http://${env.registry}/v2/${repository}/manifests/refused`, {
      method: "HEAD",
    });
    assert.equal(pushed.status, 404);
    await pushed.body?.cancel();
  },
});
