/**
 * publish and Foundries' devices: an image whose manifest type composectl's publish or aktualizr-lite would
 * not take (a single-platform OCI manifest) is a warning naming the service and the type, and with
 * `--compat foundries` a refusal before anything is pushed. Docker v2 manifests and manifest lists pass.
 * Real registry; the images were pushed by docker and skopeo.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { writeProject } from "../harness/projects.ts";
import { foundriesProblem } from "../../src/app/publish.ts";

Deno.test("foundriesProblem: Docker v2 manifests and lists pass; OCI manifests and indexes are named", () => {
  assert.equal(foundriesProblem("application/vnd.docker.distribution.manifest.v2+json"), undefined);
  assert.equal(foundriesProblem("application/vnd.docker.distribution.manifest.list.v2+json"), undefined);
  assert.match(
    foundriesProblem("application/vnd.oci.image.manifest.v1+json")!,
    /single-platform OCI.*composectl/,
  );
  assert.match(
    foundriesProblem("application/vnd.oci.image.index.v1+json")!,
    /OCI image index.*aktualizr-lite/,
  );
});

Deno.test({
  name:
    "publish warns about an OCI image Foundries' devices would not run, and --compat foundries refuses it",
  ...withServices,
  fn: async () => {
    const env = testEnv()!;
    const { appA, appOci, multi } = env.images;
    assert.equal(appOci.mediaType, "application/vnd.oci.image.manifest.v1+json", "the test image's type");
    const project = await scratchDir("compat-");
    await writeProject(project, { web: appA.ref, worker: appOci.ref, multi: multi.ref });
    const ref = `${env.registry}/compat/shop`;

    const warned = await runBerth(["--json", "publish", project, `${ref}:warned`]);
    assert.equal(warned.code, 0, warned.stderr);
    const warnings = warned.stderr.trim().split("\n").filter((line) => line.includes("warning"));
    assert.equal(warnings.length, 1, warned.stderr);
    assert.match(warnings[0], /service worker: image .*app-oci.* single-platform OCI image manifest/);
    assert.equal(JSON.parse(warned.stdout).compatibility.length, 1);

    const refused = await runBerth(["publish", "--compat", "foundries", project, `${ref}:refused`]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /would not run on Foundries' devices.*service worker/);
    assert.doesNotMatch(refused.stderr, /service (web|multi)/, "Docker v2 manifests and lists pass");
    // Nothing was pushed under the tag.
    const pushed = await fetch(`http://${env.registry}/v2/compat/shop/manifests/refused`, { method: "HEAD" });
    assert.equal(pushed.status, 404);

    const bad = await runBerth(["publish", "--compat", "balena", project, `${ref}:x`]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--compat: unknown value "balena"/);
  },
});
