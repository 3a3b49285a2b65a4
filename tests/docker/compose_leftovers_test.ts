/** Which processes count as compose calls of berth's on a compose root (pure: argv in, project out). */
import assert from "node:assert/strict";
import { leftoverProject } from "../../src/docker/compose_leftovers.ts";

const call = (dir: string, ...rest: string[]) => [
  "/usr/bin/docker",
  "compose",
  "-f",
  `${dir}/compose.yml`,
  "--project-directory",
  dir,
  "-p",
  "shop",
  ...rest,
];

Deno.test("a compose call on a project directly under the root names that project", () => {
  assert.equal(leftoverProject(call("/var/lib/berth/apps/shop", "up", "-d"), "/var/lib/berth/apps"), "shop");
  // The plugin the docker CLI runs for `docker compose` carries the same arguments.
  const plugin = ["/usr/libexec/docker/cli-plugins/docker-compose", ...call("/r/apps/shop").slice(1)];
  assert.equal(leftoverProject(plugin, "/r/apps/"), "shop");
});

Deno.test("anything else is not a leftover of berth's", () => {
  const root = "/var/lib/berth/apps";
  assert.equal(leftoverProject(["sleep", "600"], root), undefined);
  assert.equal(leftoverProject(call("/var/lib/berth/apps-old/shop"), root), undefined, "a sibling root");
  assert.equal(leftoverProject(call("/var/lib/berth/apps/shop/sub"), root), undefined, "deeper");
  assert.equal(leftoverProject(call("/var/lib/berth/apps/"), root), undefined, "the root itself");
  assert.equal(leftoverProject(["docker-compose", "--project-directory"], root), undefined, "no value");
});
