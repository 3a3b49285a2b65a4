/**
 * `publish` drops each service's `build`, as composeapp's publish does (a device never builds): the
 * published compose file has none, and its config hash is the one of the service without it — the project
 * with `build:` publishes as the very same app as the project without it.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { publishedCompose } from "../harness/projects.ts";
import { COMPOSE_FILE } from "../../src/app/bundle_format.ts";
import { parseComposeFile } from "../../src/app/compose_file.ts";
import { CONFIG_HASH_LABEL, configHash } from "../../src/app/config_hash.ts";

/** A project whose one service runs the base image; `build` lines go right after its image. */
async function project(image: string, build: string): Promise<string> {
  const dir = await scratchDir("build-project-");
  await Deno.writeTextFile(
    `${dir}/${COMPOSE_FILE}`,
    [
      "services:",
      "  web:",
      `    image: ${image}`,
      build,
      `    command: ["/bin/busybox", "sleep", "600"]`,
      "    network_mode: none",
      "",
    ].filter((line) => line !== "").join("\n"),
  );
  return dir;
}

Deno.test({
  name: "publish drops build; the config hash is the service's without it, as composeapp computes it",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const image = env.images.base.ref;
    const plain = await runBerth([
      "--json",
      "publish",
      await project(image, ""),
      `${env.registry}/build-drop/shop:plain`,
    ]);
    assert.equal(plain.code, 0, plain.stderr);
    for (
      const [tag, build] of [
        ["short", "    build: ./web"],
        ["long", "    build:\n      context: ./web\n      dockerfile: Dockerfile.arm"],
      ]
    ) {
      const published = await runBerth([
        "--json",
        "publish",
        await project(image, build),
        `${env.registry}/build-drop/shop:${tag}`,
      ]);
      assert.equal(published.code, 0, published.stderr);
      const text = await publishedCompose(env.registry, "build-drop/shop", tag);
      assert.doesNotMatch(text, /build/, text);
      const web = parseComposeFile(new TextEncoder().encode(text), COMPOSE_FILE).services[0];
      assert.equal(web.config.build, undefined);
      const labels = web.config.labels as Record<string, string>;
      assert.equal(labels[CONFIG_HASH_LABEL], configHash(web), "the label is the hash of what was published");
      assert.equal(
        JSON.parse(published.stdout).digest,
        JSON.parse(plain.stdout).digest,
        "the same app as the project without build",
      );
    }
  },
});
