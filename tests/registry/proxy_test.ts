/**
 * Proxies from the environment, against a real TLS docker-registry: with HTTPS_PROXY set berth's TLS
 * connections go through the proxy as CONNECT tunnels, also with the custom HTTP client that a certs dir
 * with a CA makes berth use; NO_PROXY exempts a host. Deno 2.9 applies proxies to loopback hosts too (it
 * has no implicit loopback exemption), which is what makes this testable on 127.0.0.1.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { startConnectProxy } from "../harness/connect_proxy.ts";
import { makeCa } from "../harness/pki.ts";
import { copyImage } from "../harness/push.ts";
import { certsDir, failureLine, startSecureRegistry } from "../harness/secure_registry.ts";

/** Proxy variables as a test wants them: everything the machine may have set is blanked first. */
function proxyEnv(dir: string, vars: { https?: string; noProxy?: string }): Record<string, string> {
  const env: Record<string, string> = { DOCKER_CONFIG: `${dir}/docker-config` };
  for (const name of ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"]) {
    env[name] = env[name.toLowerCase()] = "";
  }
  if (vars.https) env.HTTPS_PROXY = env.https_proxy = vars.https;
  if (vars.noProxy) env.NO_PROXY = env.no_proxy = vars.noProxy;
  return env;
}

Deno.test({
  name: "HTTPS_PROXY: TLS pulls tunnel through the proxy, NO_PROXY exempts, a refusing proxy fails clearly",
  ...withServices,
  fn: async (t) => {
    const dir = await scratchDir("proxy-");
    await Deno.mkdir(`${dir}/docker-config`);
    const ca = await makeCa(`${dir}/pki`);
    const registry = await startSecureRegistry(`${dir}/registry`, {
      tls: { server: await ca.server("registry"), ca },
    });
    const proxy = startConnectProxy();
    const refusing = startConnectProxy({ refuse: true });
    try {
      await copyImage(testEnv()!.images.appA.ref, registry, "berth-test/app", "a");
      const ref = `${registry.host}/berth-test/app:a`;
      // A CA file in the certs dir makes berth use its own Deno.createHttpClient({caCerts}).
      const certs = await certsDir(`${dir}/certs`, registry.host, { ca });
      const pull = (store: string, env: Record<string, string>, certsDirectory = certs) =>
        runBerth(["--store", `${dir}/${store}`, "--certs-dir", certsDirectory, "pull", ref], env);

      await t.step("with HTTPS_PROXY and no NO_PROXY every connection is a CONNECT tunnel", async () => {
        const result = await pull("store-proxied", proxyEnv(dir, { https: proxy.url }));
        assert.equal(result.code, 0, result.stderr);
        assert.ok(proxy.requests.length >= 1, "the proxy saw no CONNECT");
        assert.deepEqual(new Set(proxy.requests), new Set([registry.host]));
        const fsck = await runBerth(["--store", `${dir}/store-proxied`, "fsck"]);
        assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
      });

      await t.step("NO_PROXY=127.0.0.1 goes direct", async () => {
        proxy.requests.length = 0;
        const result = await pull("store-direct", proxyEnv(dir, { https: proxy.url, noProxy: "127.0.0.1" }));
        assert.equal(result.code, 0, result.stderr);
        assert.deepEqual(proxy.requests, []);
      });

      await t.step("Deno's default client (no certs-dir files) uses the proxy as well", async () => {
        proxy.requests.length = 0;
        // Without the CA the pull fails; what matters here is that the TLS attempt went to the proxy.
        const result = await pull("store-default", proxyEnv(dir, { https: proxy.url }), `${dir}/empty-certs`);
        assert.equal(result.code, 1, result.stderr);
        assert.ok(proxy.requests.includes(registry.host), JSON.stringify(proxy.requests));
      });

      await t.step("a proxy that refuses the CONNECT: exit 1, one line naming the registry", async () => {
        const result = await pull("store-refused", proxyEnv(dir, { https: refusing.url }));
        const line = failureLine(result);
        assert.deepEqual(refusing.requests.slice(0, 1), [registry.host]);
        assert.ok(line.includes(registry.host), line);
        // The proxy's refusal is what went wrong, not an answer from a plain-HTTP retry that bypassed it.
        assert.match(line, /proxy|tunnel|CONNECT|403/i);
      });
    } finally {
      await refusing.close();
      await proxy.close();
      await registry.stop();
    }
  },
});
