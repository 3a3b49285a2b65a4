/** Where an image's load is cut into steps, and the stand-in config of a step below the top (pure). */
import assert from "node:assert/strict";
import { STAND_IN_LABEL, standInConfig, STEP_MIN_BYTES, stepEnds } from "../../src/docker/load_steps.ts";
import { sha256Of } from "../../src/oci/digest.ts";

const MiB = 1024 * 1024;

Deno.test("load steps: a step ends after a large layer, small and known layers ride with the next", () => {
  assert.equal(STEP_MIN_BYTES, 16 * MiB);
  assert.deepEqual(stepEnds([]), [0]);
  assert.deepEqual(stepEnds([2 * MiB, 4 * MiB]), [2], "a small image is one request");
  assert.deepEqual(stepEnds([2 * MiB, 100 * MiB, 100 * MiB, 60 * MiB]), [2, 3, 4]);
  assert.deepEqual(stepEnds([100 * MiB]), [1], "the top layer never ends a step of its own");
  assert.deepEqual(stepEnds([0, 0, 30 * MiB, 1 * MiB]), [3, 4], "known layers count nothing");
  assert.deepEqual(stepEnds([8 * MiB, 8 * MiB, 1, 20 * MiB]), [2, 4]);
});

Deno.test("load steps: a stand-in keeps the image's platform and the step's layers, with its label", () => {
  const diffIds = [`sha256:${"a".repeat(64)}`, `sha256:${"b".repeat(64)}`];
  const { config, digest } = standInConfig({ architecture: "arm", os: "linux", variant: "v7" }, diffIds);
  assert.equal(digest, sha256Of(config));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(config)), {
    architecture: "arm",
    os: "linux",
    variant: "v7",
    config: { Labels: { [STAND_IN_LABEL]: "1" } },
    rootfs: { type: "layers", diff_ids: diffIds },
  });
  const again = standInConfig({ architecture: "arm", os: "linux", variant: "v7" }, diffIds);
  assert.equal(again.digest, digest, "the same step of the same image is the same stand-in");
});
