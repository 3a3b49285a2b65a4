import assert from "node:assert/strict";
import { formatReference, isLoopbackHost, parseReference } from "../../src/oci/reference.ts";
import { BerthError } from "../../src/util/errors.ts";

const DIGEST = "sha256:" + "a".repeat(64);

Deno.test("references normalise as docker does", () => {
  const cases: [string, string][] = [
    ["nginx", "docker.io/library/nginx:latest"],
    ["nginx:1.25", "docker.io/library/nginx:1.25"],
    ["user/app", "docker.io/user/app:latest"],
    ["index.docker.io/library/nginx", "docker.io/library/nginx:latest"],
    ["localhost/app", "localhost/app:latest"],
    ["localhost:5000/a/b:tag", "localhost:5000/a/b:tag"],
    ["127.0.0.1:5000/factory/shop:v2", "127.0.0.1:5000/factory/shop:v2"],
    ["registry.example.com/x/y/z", "registry.example.com/x/y/z:latest"],
    [`ghcr.io/a/b@${DIGEST}`, `ghcr.io/a/b@${DIGEST}`],
    [`ghcr.io/a/b:t@${DIGEST}`, `ghcr.io/a/b:t@${DIGEST}`],
    ["[::1]:5000/a:b", "[::1]:5000/a:b"],
    ["a__b/c-d.e_f:v1.0-rc_1", "docker.io/a__b/c-d.e_f:v1.0-rc_1"],
  ];
  for (const [input, expected] of cases) {
    assert.equal(formatReference(parseReference(input)), expected, input);
  }
});

Deno.test("malformed references are refused with the input quoted", () => {
  for (
    const input of [
      "",
      " nginx",
      "Nginx",
      "host:5000/UPPER/x",
      "nginx:",
      "nginx:bad tag",
      "nginx@sha256:abc",
      `nginx@sha256:${"A".repeat(64)}`,
      "a//b",
      "-a/b",
      ":tag",
      "host:5000/",
      `x/${"a".repeat(300)}`,
    ]
  ) {
    assert.throws(
      () => parseReference(input),
      (error: unknown) =>
        error instanceof BerthError && error.reason === "invalid_reference" &&
        error.message.includes(`"${input}"`),
      `expected ${JSON.stringify(input)} to be refused`,
    );
  }
});

Deno.test("loopback hosts are recognised for plain HTTP", () => {
  assert.equal(isLoopbackHost("127.0.0.1:5000"), true);
  assert.equal(isLoopbackHost("localhost"), true);
  assert.equal(isLoopbackHost("[::1]:443"), true);
  assert.equal(isLoopbackHost("registry.example.com"), false);
  assert.equal(isLoopbackHost("10.0.0.1:5000"), false);
});
