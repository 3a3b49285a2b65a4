/**
 * Basic authentication against a real docker-registry (`auth.htpasswd`, bcrypt), over TLS as a registry
 * with a login is deployed: credentials come from berth's credentials file or docker's config.json
 * ($DOCKER_CONFIG), and a missing or wrong login fails with one line that never contains the password.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { htpasswdLine } from "../harness/htpasswd.ts";
import { makeCa } from "../harness/pki.ts";
import { copyImage } from "../harness/push.ts";
import {
  assertNoSecrets,
  certsDir,
  credentialsFile,
  failureLine,
  startSecureRegistry,
} from "../harness/secure_registry.ts";

const USER = "alice";
const PASSWORD = "pw-basic-7f3c9e";
const WRONG = "pw-wrong-41d2aa";

Deno.test({
  name: "basic auth: credentials from --credentials or $DOCKER_CONFIG; none or wrong fail without leaking",
  ...withServices,
  fn: async (t) => {
    const dir = await scratchDir("basic-auth-");
    const ca = await makeCa(`${dir}/pki`);
    await Deno.writeTextFile(`${dir}/htpasswd`, (await htpasswdLine(USER, PASSWORD)) + "\n");
    const registry = await startSecureRegistry(`${dir}/registry`, {
      tls: { server: await ca.server("registry"), ca },
      auth: { htpasswd: { realm: "berth-test", path: `${dir}/htpasswd` } },
    });
    try {
      await copyImage(
        testEnv()!.images.appA.ref,
        { ...registry, authorization: `Basic ${btoa(`${USER}:${PASSWORD}`)}` },
        "berth-test/app",
        "a",
      );
      const ref = `${registry.host}/berth-test/app:a`;
      const certs = await certsDir(`${dir}/certs`, registry.host, { ca });
      await Deno.mkdir(`${dir}/empty-docker-config`);
      // No run sees the machine's ~/.docker/config.json or /etc/berth/credentials.json.
      const noDockerConfig = { DOCKER_CONFIG: `${dir}/empty-docker-config` };
      const missing = `${dir}/no-credentials.json`;
      const secrets = [PASSWORD, WRONG, `${USER}:${PASSWORD}`, `${USER}:${WRONG}`];
      const pull = (store: string, credentials: string, env = noDockerConfig) =>
        runBerth([
          "--store",
          `${dir}/${store}`,
          "--certs-dir",
          certs,
          "--credentials",
          credentials,
          "pull",
          ref,
        ], env);

      await t.step("without credentials the pull fails and says a login is needed", async () => {
        const result = await pull("store-anonymous", missing);
        const line = failureLine(result);
        assert.ok(line.includes(registry.host), line);
        assert.match(line, /login|credentials|denied|unauthori[sz]ed/i);
        assertNoSecrets(result, secrets);
      });

      await t.step("with berth's credentials file the pull succeeds", async () => {
        const file = await credentialsFile(`${dir}/credentials.json`, registry.host, USER, PASSWORD);
        const result = await pull("store-file", file);
        assert.equal(result.code, 0, result.stderr);
        assertNoSecrets(result, secrets);
        const fsck = await runBerth(["--store", `${dir}/store-file`, "fsck"]);
        assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
      });

      await t.step("with docker's config.json in $DOCKER_CONFIG the pull succeeds", async () => {
        await Deno.mkdir(`${dir}/docker-config`);
        await credentialsFile(`${dir}/docker-config/config.json`, registry.host, USER, PASSWORD);
        const result = await pull("store-docker", missing, { DOCKER_CONFIG: `${dir}/docker-config` });
        assert.equal(result.code, 0, result.stderr);
        assertNoSecrets(result, secrets);
      });

      await t.step("a wrong password fails as denied, without the password", async () => {
        const file = await credentialsFile(`${dir}/wrong.json`, registry.host, USER, WRONG);
        const result = await pull("store-wrong", file);
        const line = failureLine(result);
        assert.ok(line.includes(registry.host), line);
        assert.match(line, /denied|refused|unauthori[sz]ed/i);
        assertNoSecrets(result, secrets);
      });
    } finally {
      await registry.stop();
    }
  },
});
