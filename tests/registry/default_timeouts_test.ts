/**
 * The registry bounds' defaults hold their promise: with no timeouts configured, a registry whose bodies
 * always stall makes `berth pull` give up within two minutes. It waits out the real defaults (about 90 s,
 * idle), so the test runner starts this file beside the rest of the suite.
 */
import assert from "node:assert/strict";
import { assertRefused, hostile, manifestPath, pull } from "./hostile_cases.ts";

hostile(
  "with the default timeouts, a registry whose bodies always stall makes berth pull give up within two minutes",
  async (registry, image) => {
    registry.route(
      "*",
      /^\/v2\/.+/,
      (request) =>
        new Response(request.method === "HEAD" ? null : registry.stallingBody("{"), {
          headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json", "Content-Length": "900" },
        }),
    );
    const result = await pull(image.ref);
    console.log(`    gave up after ${result.seconds.toFixed(1)} s`);
    await assertRefused(result, image.ref, /did not deliver manifest|no data/);
    assert.ok(result.seconds < 120, `took ${result.seconds} s`);
    assert.ok(registry.count("GET", manifestPath(image)) >= 2, "a stalled manifest body is asked for again");
  },
);
