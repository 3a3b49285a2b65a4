import assert from "node:assert/strict";
import { parseChallenge, TokenCache } from "../../src/registry/auth.ts";
import { findCredentials } from "../../src/registry/credentials.ts";
import { BerthError } from "../../src/util/errors.ts";

Deno.test("bearer and basic challenges are parsed", () => {
  assert.deepEqual(
    parseChallenge(
      'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull"',
    ),
    {
      scheme: "bearer",
      params: {
        realm: "https://auth.example.com/token",
        service: "registry.example.com",
        scope: "repository:a/b:pull",
      },
    },
  );
  assert.deepEqual(parseChallenge('Basic realm="x"'), { scheme: "basic", params: { realm: "x" } });
  assert.equal(parseChallenge("Negotiate abc"), undefined);
  assert.equal(parseChallenge(null), undefined);
});

Deno.test("tokens expire from the cache", async () => {
  const cache = new TokenCache();
  cache.set("r", "s", "Bearer t", 20);
  assert.equal(cache.get("r", "s"), "Bearer t");
  assert.equal(cache.get("r", "other"), undefined);
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(cache.get("r", "s"), undefined);
});

Deno.test("credentials come from berth's file first, then docker's config", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const berth = `${dir}/credentials.json`;
    const docker = `${dir}/config.json`;
    await Deno.writeTextFile(
      berth,
      JSON.stringify({ auths: { "reg.example.com": { auth: btoa("alice:s3cret") } } }),
    );
    await Deno.writeTextFile(
      docker,
      JSON.stringify({
        auths: {
          "https://index.docker.io/v1/": { auth: btoa("bob:pw:with:colons") },
          "reg.example.com": { auth: btoa("mallory:x") },
        },
      }),
    );
    assert.deepEqual(await findCredentials("reg.example.com", [berth, docker]), {
      username: "alice",
      password: "s3cret",
    });
    assert.deepEqual(await findCredentials("docker.io", [berth, docker]), {
      username: "bob",
      password: "pw:with:colons",
    });
    assert.equal(await findCredentials("other.example.com", [berth, docker]), undefined);
    assert.equal(await findCredentials("reg.example.com", [`${dir}/missing.json`]), undefined);
    await Deno.writeTextFile(berth, "{not json");
    await assert.rejects(
      () => findCredentials("reg.example.com", [berth]),
      (error: unknown) =>
        error instanceof BerthError && error.message.includes(berth) && !error.message.includes("s3cret"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
