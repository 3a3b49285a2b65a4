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

Deno.test("tokens expire from the cache at their lifetime, not a millisecond later", () => {
  let now = 1_000_000;
  const cache = new TokenCache({ now: () => now });
  cache.set("r", "s", "Bearer t", 300_000);
  assert.equal(cache.get("r", "s"), "Bearer t");
  assert.equal(cache.get("r", "other"), undefined);
  now += 299_999;
  assert.equal(cache.get("r", "s"), "Bearer t", "still valid a millisecond before the end");
  now += 1;
  assert.equal(cache.get("r", "s"), undefined, "gone at the end of its lifetime");
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
