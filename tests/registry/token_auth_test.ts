/**
 * Bearer token authentication against a real docker-registry (`auth.token`, verifying ES256 JWTs from a
 * token server the test runs): what berth asks the token server (service, scope, anonymous or Basic), that
 * it fetches one token per repository per run, and that failures are one line without secrets. Blob
 * redirects are in redirect_test.ts.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { makeSigningPair } from "../harness/pki.ts";
import { copyImage } from "../harness/push.ts";
import {
  assertNoSecrets,
  credentialsFile,
  failureLine,
  type SecureRegistry,
  startSecureRegistry,
} from "../harness/secure_registry.ts";
import {
  type Access,
  startTokenServer,
  type TokenServer,
  type TokenServerOptions,
} from "../harness/token_server.ts";

const USER = "alice";
const PASSWORD = "pw-token-5b81d0";
const WRONG = "pw-wrong-c09e3f";

/** A token server and a plain-HTTP loopback registry that trusts it, stopped after `fn`. */
async function withTokenRegistry(
  prefix: string,
  options: Omit<TokenServerOptions, "users">,
  fn: (env: { dir: string; tokens: TokenServer; registry: SecureRegistry }) => Promise<void>,
): Promise<void> {
  const dir = await scratchDir(prefix);
  const tokens = await startTokenServer(await makeSigningPair(`${dir}/pki`), {
    users: { [USER]: PASSWORD },
    ...options,
  });
  try {
    const registry = await startSecureRegistry(`${dir}/registry`, { auth: tokens.registryAuth() });
    try {
      await fn({ dir, tokens, registry });
    } finally {
      await registry.stop();
    }
  } finally {
    await tokens.close();
  }
}

/** Pushes `image` to `repo:tag` with a token minted for it (not through the token server's log). */
async function push(tokens: TokenServer, registry: SecureRegistry, image: string, repo: string, tag: string) {
  const access: Access[] = [{ type: "repository", name: repo, actions: ["pull", "push"] }];
  const authorization = `Bearer ${await tokens.mint(access)}`;
  return await copyImage(image, { ...registry, authorization }, repo, tag);
}

/** An empty $DOCKER_CONFIG, so the machine's docker login never takes part. */
async function isolatedEnv(dir: string): Promise<Record<string, string>> {
  await Deno.mkdir(`${dir}/docker-config`, { recursive: true });
  return { DOCKER_CONFIG: `${dir}/docker-config` };
}

Deno.test({
  name: "bearer: anonymous token requests name the service and scope, one token per repository per run",
  ...withServices,
  fn: () =>
    withTokenRegistry("token-anon-", { anonymousPull: true }, async ({ dir, tokens, registry }) => {
      const images = testEnv()!.images;
      await push(tokens, registry, images.appA.ref, "berth-test/app", "a");
      await push(tokens, registry, images.appB.ref, "berth-test/app", "b");
      await push(tokens, registry, images.base.ref, "berth-test/base", "1");
      const store = `${dir}/store`;
      const result = await runBerth([
        "--store",
        store,
        "--credentials",
        `${dir}/no-credentials.json`,
        "pull",
        `${registry.host}/berth-test/app:a`,
        `${registry.host}/berth-test/app:b`,
        `${registry.host}/berth-test/base:1`,
      ], await isolatedEnv(dir));
      assert.equal(result.code, 0, result.stderr);
      assertNoSecrets(result, tokens.tokens);

      // Two images of one repository share a token; the second repository needs its own. (References are
      // resolved concurrently: the two token requests may come in either order.)
      assert.deepEqual(
        tokens.requests.map(({ service, scopes, authorization, status }) => ({
          service,
          scopes,
          authorization,
          status,
        })).sort((a, b) => a.scopes.join().localeCompare(b.scopes.join())),
        [
          {
            service: tokens.service,
            scopes: ["repository:berth-test/app:pull"],
            authorization: "none",
            status: 200,
          },
          {
            service: tokens.service,
            scopes: ["repository:berth-test/base:pull"],
            authorization: "none",
            status: 200,
          },
        ],
      );
      const fsck = await runBerth(["--store", store, "fsck"]);
      assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
    }),
});

Deno.test({
  name: "bearer with a login: Basic goes to the token server; no or wrong credentials fail without leaking",
  ...withServices,
  fn: (t) =>
    withTokenRegistry("token-login-", { anonymousPull: false }, async ({ dir, tokens, registry }) => {
      await push(tokens, registry, testEnv()!.images.appC.ref, "berth-test/app", "c");
      const ref = `${registry.host}/berth-test/app:c`;
      const env = await isolatedEnv(dir);
      const secrets = () => [PASSWORD, WRONG, `${USER}:${PASSWORD}`, `${USER}:${WRONG}`, ...tokens.tokens];
      const pull = (store: string, credentials: string) =>
        runBerth(["--store", `${dir}/${store}`, "--credentials", credentials, "pull", ref], env);

      await t.step(
        "without credentials: an anonymous token, then one line saying access is denied",
        async () => {
          tokens.requests.length = 0;
          const result = await pull("store-anonymous", `${dir}/no-credentials.json`);
          const line = failureLine(result);
          assert.ok(line.includes(registry.host), line);
          assert.match(line, /denied|login|credentials|unauthori[sz]ed/i);
          assertNoSecrets(result, secrets());
          assert.deepEqual(tokens.requests.map((request) => request.authorization), ["none"]);
        },
      );

      await t.step("with credentials: one token request with Basic, the pull succeeds", async () => {
        tokens.requests.length = 0;
        const file = await credentialsFile(`${dir}/credentials.json`, registry.host, USER, PASSWORD);
        const result = await pull("store", file);
        assert.equal(result.code, 0, result.stderr);
        assertNoSecrets(result, secrets());
        assert.deepEqual(tokens.requests, [{
          service: tokens.service,
          scopes: ["repository:berth-test/app:pull"],
          account: null,
          authorization: "basic",
          user: USER,
          status: 200,
        }]);
        const fsck = await runBerth(["--store", `${dir}/store`, "fsck"]);
        assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
      });

      await t.step("with a wrong password: the token server's refusal is one line without it", async () => {
        tokens.requests.length = 0;
        const file = await credentialsFile(`${dir}/wrong.json`, registry.host, USER, WRONG);
        const result = await pull("store-wrong", file);
        const line = failureLine(result);
        assert.ok(line.includes(registry.host), line);
        assert.match(line, /refused|denied|credentials/i);
        assertNoSecrets(result, secrets());
        assert.deepEqual(tokens.requests.map((request) => request.status), [401]);
      });
    }),
});

Deno.test({
  name: "bearer: a token with a short expires_in is still used for the request it was fetched for",
  ...withServices,
  // The token spec asks servers for at least 60 s, but a client must not turn a short-lived token into a
  // denied pull: a token fetched for a request is valid for that request.
  fn: () =>
    withTokenRegistry(
      "token-short-",
      { anonymousPull: true, expiresIn: 3 },
      async ({ dir, tokens, registry }) => {
        await push(tokens, registry, testEnv()!.images.appA.ref, "berth-test/app", "a");
        const store = `${dir}/store`;
        const result = await runBerth(
          [
            "--store",
            store,
            "--credentials",
            `${dir}/no-credentials.json`,
            "pull",
            `${registry.host}/berth-test/app:a`,
          ],
          await isolatedEnv(dir),
        );
        assert.equal(result.code, 0, result.stderr);
        assert.ok(tokens.requests.length >= 1);
        const fsck = await runBerth(["--store", store, "fsck"]);
        assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
      },
    ),
});
