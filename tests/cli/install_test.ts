/**
 * `berth install` takes an app by name, as run, stop and rm do, when one version of it is fetched; with
 * several (or none) it says which versions are fetched and how to name one.
 */
import assert from "node:assert/strict";
import { deviceBerth, runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { writeProject } from "../harness/projects.ts";

Deno.test({
  name: "install by name: the one fetched version; several fetched: refused, naming each",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { appA, appB } = env.images;
    const versions: string[] = [];
    for (const [tag, api] of [["v1", appA.ref], ["v2", appB.ref]]) {
      const project = await scratchDir(`install-by-name-${tag}-`);
      await writeProject(project, { web: appA.ref, api });
      const ref = `${env.registry}/install-by-name/shop:${tag}`;
      const published = await runBerth(["publish", project, ref]);
      assert.equal(published.code, 0, published.stderr);
      versions.push(ref);
    }
    const [v1, v2] = versions;
    const dir = await scratchDir("install-by-name-");
    const berth = deviceBerth(dir, env.dockerHost);
    const pulled = await berth("pull", v1);
    assert.equal(pulled.code, 0, pulled.stderr);

    const installed = await berth("install", "shop");
    assert.equal(installed.code, 0, installed.stderr);
    assert.match(installed.stdout, /^Installed app shop sha256:[0-9a-f]{64}: \d images loaded/);
    const listed = JSON.parse((await berth("--json", "ls")).stdout);
    assert.equal(listed.apps[0].installedRef, v1);

    const notFetched = await berth("install", `${env.registry}/install-by-name/shop:v3`);
    assert.equal(notFetched.code, 1);
    assert.equal(
      notFetched.stderr.trim(),
      `berth: app ${env.registry}/install-by-name/shop:v3 is not in store ${dir}/store (fetched: ${v1}); ` +
        `fetch it first with 'berth pull ${env.registry}/install-by-name/shop:v3'`,
    );

    assert.equal((await berth("pull", v2)).code, 0);
    const ambiguous = await berth("install", "shop");
    assert.equal(ambiguous.code, 1, ambiguous.stderr);
    assert.equal(
      ambiguous.stderr.trim(),
      `berth: app shop has 2 versions in store ${dir}/store: ${v1}, ${v2}; name one, e.g. 'berth install ${v2}'`,
    );
    const byRef = await berth("install", v2);
    assert.equal(byRef.code, 0, byRef.stderr);
    assert.equal(JSON.parse((await berth("--json", "ls")).stdout).apps[0].installedRef, v2);

    const unknown = await berth("install", "cart");
    assert.equal(unknown.code, 1);
    assert.match(
      unknown.stderr.trim(),
      /^berth: app cart is not in store .* 'berth pull REGISTRY\/REPOSITORY\/cart:TAG'$/,
    );
  },
});
