/**
 * TLS against a real docker-registry: berth verifies the registry's certificate against the CAs in its
 * certs dir (docker's `<dir>/<host:port>/ca.crt` layout) and presents a client certificate from there
 * (`client.cert` + `client.key`) when the registry demands one. A registry it cannot verify, or that
 * refuses it, must fail the pull with one line that says so, never be used unverified.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { makeCa } from "../harness/pki.ts";
import { copyImage } from "../harness/push.ts";
import {
  certsDir,
  failureLine,
  type SecureRegistry,
  startSecureRegistry,
} from "../harness/secure_registry.ts";

/** The number of references in a store's index.json (0 when the store was never written). */
async function storedRefs(store: string): Promise<number> {
  try {
    return JSON.parse(await Deno.readTextFile(`${store}/index.json`)).manifests.length;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return 0;
    throw error;
  }
}

/** Runs `fn` with a registry that is stopped afterwards whatever happens. */
async function withRegistry(registry: SecureRegistry, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } finally {
    await registry.stop();
  }
}

// Every run gets an empty DOCKER_CONFIG and a missing credentials file, so the machine's own files never
// take part.
async function isolatedEnv(dir: string): Promise<Record<string, string>> {
  await Deno.mkdir(`${dir}/docker-config`, { recursive: true });
  return { DOCKER_CONFIG: `${dir}/docker-config`, BERTH_CREDENTIALS: `${dir}/no-credentials.json` };
}

Deno.test({
  name: "a TLS registry is verified: unknown CA fails with one clear line, its CA in --certs-dir works",
  ...withServices,
  fn: async (t) => {
    const dir = await scratchDir("tls-");
    const ca = await makeCa(`${dir}/pki`);
    const registry = await startSecureRegistry(`${dir}/registry`, {
      tls: { server: await ca.server("registry"), ca },
    });
    await withRegistry(registry, async () => {
      await copyImage(testEnv()!.images.base.ref, registry, "berth-test/base", "1");
      const ref = `${registry.host}/berth-test/base:1`;
      const env = await isolatedEnv(dir);

      await t.step("without the CA: exit 1, one line saying the certificate is not trusted", async () => {
        const store = `${dir}/store-untrusted`;
        const result = await runBerth(
          ["--store", store, "--certs-dir", `${dir}/empty-certs`, "pull", ref],
          env,
        );
        const line = failureLine(result);
        assert.equal(await storedRefs(store), 0);
        assert.ok(line.includes(registry.host), line);
        // What is wrong is the certificate, not what a plain-HTTP retry against the TLS port produced
        // ("answered HTTP 400").
        assert.match(line, /certificate|TLS/i);
      });

      await t.step("with <certs dir>/<host:port>/ca.crt: the pull succeeds and fsck is clean", async () => {
        const certs = await certsDir(`${dir}/certs`, registry.host, { ca });
        const store = `${dir}/store`;
        const pulled = await runBerth(["--store", store, "--certs-dir", certs, "pull", ref], env);
        assert.equal(pulled.code, 0, pulled.stderr);
        assert.equal(await storedRefs(store), 1);
        const fsck = await runBerth(["--store", store, "fsck"], env);
        assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
      });
    });
  },
});

Deno.test({
  name: "mutual TLS: berth presents client.cert + client.key from the certs dir, and fails clearly without",
  ...withServices,
  fn: async (t) => {
    const dir = await scratchDir("mtls-");
    const ca = await makeCa(`${dir}/pki`);
    const setup = await ca.client("setup");
    const registry = await startSecureRegistry(
      `${dir}/registry`,
      { tls: { server: await ca.server("registry"), ca, clientCa: ca } },
      setup,
    );
    await withRegistry(registry, async () => {
      await copyImage(testEnv()!.images.base.ref, registry, "berth-test/base", "1");
      const ref = `${registry.host}/berth-test/base:1`;
      const env = await isolatedEnv(dir);

      await t.step("without a client certificate: exit 1, one line saying TLS failed", async () => {
        const caOnly = await certsDir(`${dir}/certs-ca-only`, registry.host, { ca });
        const store = `${dir}/store-refused`;
        const result = await runBerth(["--store", store, "--certs-dir", caOnly, "pull", ref], env);
        const line = failureLine(result);
        assert.equal(await storedRefs(store), 0);
        assert.ok(line.includes(registry.host), line);
        assert.match(line, /certificate|TLS/i);
      });

      await t.step("client.cert without client.key: a configuration error naming the file", async () => {
        const half = await certsDir(`${dir}/certs-half`, registry.host, { ca });
        await Deno.copyFile(setup.cert, `${half}/${registry.host}/client.cert`);
        const result = await runBerth(
          ["--store", `${dir}/store-half`, "--certs-dir", half, "pull", ref],
          env,
        );
        assert.match(failureLine(result), /client\.cert.*client\.key/);
      });

      await t.step("with client.cert + client.key: the pull succeeds and fsck is clean", async () => {
        const full = await certsDir(`${dir}/certs`, registry.host, { ca, client: await ca.client("device") });
        const store = `${dir}/store`;
        const pulled = await runBerth(["--store", store, "--certs-dir", full, "pull", ref], env);
        assert.equal(pulled.code, 0, pulled.stderr);
        const fsck = await runBerth(["--store", store, "fsck"], env);
        assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
      });
    });
  },
});
