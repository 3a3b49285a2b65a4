/** Broken compose projects are refused by publish with one line naming the file, service and field. */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";

Deno.test({
  name: "publish refuses broken compose files, naming file, service and field, and pushes nothing",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const cases: [string, RegExp][] = [
      ['services:\n  web:\n    command: ["true"]\n', /docker-compose\.yml: services\.web\.image: /],
      ["services:\n  web:\n    image: 42\n", /docker-compose\.yml: services\.web\.image: expected a string/],
      ["services:\n  web: [unclosed\n", /docker-compose\.yml: /],
    ];
    for (const [index, [text, pattern]] of cases.entries()) {
      const project = await scratchDir("broken-");
      await Deno.writeTextFile(`${project}/docker-compose.yml`, text);
      const ref = `${env.registry}/factory/broken${index}:v1`;
      const result = await runBerth(["publish", project, ref]);
      assert.equal(result.code, 1, result.stdout + result.stderr);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0], pattern);
      const response = await fetch(`http://${env.registry}/v2/factory/broken${index}/manifests/v1`, {
        method: "HEAD",
        headers: { Accept: "application/vnd.oci.image.manifest.v1+json" },
      });
      await response.body?.cancel();
      assert.equal(response.status, 404, "nothing was pushed");
    }
  },
});

Deno.test({
  name: "run of an unknown app, with no engine to reach, fails with one line",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const dir = await scratchDir("bad-app-cli-");
    const device = [
      "--store",
      `${dir}/store`,
      "--compose-root",
      `${dir}/apps`,
      "--docker-host",
      "unix:///nonexistent.sock",
    ];
    assert.equal((await runBerth([...device, "pull", env.images.base.ref])).code, 0);
    const run = await runBerth([...device, "run", "nosuchapp"]);
    assert.equal(run.code, 1);
    assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
  },
});
