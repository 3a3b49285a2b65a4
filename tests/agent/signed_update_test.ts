/**
 * The agent under a signature policy, with signatures made by real cosign: a signed version installs; an
 * unsigned new version is refused after its manifest and signature lookup alone — the running version stays,
 * /status names the refused digest and the reason, and it is not asked for again — until it is signed and
 * the agent reloaded (SIGHUP), when it installs.
 */
import assert from "node:assert/strict";
import { scratchDir, withServices } from "../harness/env.ts";
import { cosignSigner } from "../harness/cosign.ts";
import { run } from "../harness/services.ts";
import { inScene, publish, status, waitFor, writeConfig } from "./agent_harness.ts";
import type { Device } from "./agent_harness.ts";

Deno.test({
  name: "agent: an unsigned update is refused before any blob, the running version stays, SIGHUP tries again",
  ...withServices,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start }) => {
      const dir = await scratchDir("agent-signed-");
      const signer = await cosignSigner(dir, ["fleet"]);
      const sign = (digest: string) => signer.sign(`${proxy.host}/fleet/signed@${digest}`, "fleet");
      const policy = await writePolicy(dir, `${proxy.host}/fleet`, signer.publicKey("fleet"));
      const tag = `${proxy.host}/fleet/signed:stable`;
      const v1 = await publish(tag, { web: via(env.images.appA.ref) });
      await sign(v1.digest);
      await writeConfig(device, [tag], [`registries: { policy: ${policy} }`]);
      const agent = start();
      const app = async () => (await status(device))?.apps.find((candidate) => candidate.name === "signed");
      await waitFor(
        "v1 running",
        async () => (await app())?.currentDigest === v1.digest,
        90_000,
        200,
        agent.log,
      );

      // v2, unsigned: refused; v1 runs on.
      const v2 = await publish(tag, { web: via(env.images.appB.ref) });
      proxy.resetStats();
      const refused = await waitFor(
        "v2 refused",
        async () => {
          const shop = await app();
          return shop?.state === "failed" && shop.reason?.code === "signature_missing" ? shop : undefined;
        },
        60_000,
        200,
        agent.log,
      );
      assert.equal(refused.currentDigest, v1.digest);
      assert.equal(refused.desiredDigest, v2.digest);
      assert.equal(refused.update?.outcome, "refused");
      assert.match(refused.reason!.message, /cosign\.pub/);
      const fetched = proxy.stats.requests.filter((request) => request.path.includes("/blobs/"));
      assert.ok(
        !fetched.some((request) =>
          env.images.appB.layers.some((layer) => request.path.includes(layer.digest))
        ),
        `no layer of v2 fetched: ${JSON.stringify(fetched)}`,
      );
      const ps = await run([
        "docker",
        "-H",
        device.dockerd.host,
        "ps",
        "-q",
        "--filter",
        "label=com.docker.compose.project=signed",
      ]);
      assert.notEqual(ps.trim(), "", "v1 still runs");

      // Not asked for again while the tag names it: two more polls, no signature lookup.
      proxy.resetStats();
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      assert.ok(
        !proxy.stats.requests.some((request) => request.path.includes(".sig")),
        JSON.stringify(proxy.stats.requests),
      );

      // Signed now, and a reload: v2 installs.
      await sign(v2.digest);
      agent.process.kill("SIGHUP");
      await waitFor(
        "v2 running",
        async () => {
          const shop = await app();
          return shop?.state === "running" && shop.currentDigest === v2.digest;
        },
        90_000,
        200,
        agent.log,
      );
    }),
});

Deno.test({
  name: "agent: a policy added to a running device keeps the installed version's signature, for restore",
  ...withServices,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start }) => {
      const dir = await scratchDir("agent-signed-later-");
      const signer = await cosignSigner(dir, ["fleet"]);
      const tag = `${proxy.host}/fleet/later:stable`;
      const v1 = await publish(tag, { web: via(env.images.appA.ref) });
      await signer.sign(`${proxy.host}/fleet/later@${v1.digest}`, "fleet");
      await writeConfig(device, [tag]);
      const agent = start();
      const app = async () => (await status(device))?.apps.find((candidate) => candidate.name === "later");
      await waitFor("v1 running", async () => (await app())?.state === "running", 90_000, 200, agent.log);
      assert.equal(await signatureEntries(device), 0, "no policy, no signature kept");

      const policy = await writePolicy(dir, `${proxy.host}/fleet`, signer.publicKey("fleet"));
      await writeConfig(device, [tag], [`registries: { policy: ${policy} }`]);
      agent.process.kill("SIGHUP");
      await waitFor(
        "the signature kept",
        async () => await signatureEntries(device) === 1,
        60_000,
        200,
        agent.log,
      );
      assert.equal((await app())?.state, "running");
    }),
});

/** A policy under `dir`: `scope` needs a cosign signature with `publicKey` (matchRepository); the rest passes. */
async function writePolicy(dir: string, scope: string, publicKey: string): Promise<string> {
  const requirement = {
    type: "sigstoreSigned",
    keyPath: publicKey,
    signedIdentity: { type: "matchRepository" },
  };
  const policy = {
    default: [{ type: "insecureAcceptAnything" }],
    transports: { docker: { [scope]: [requirement] } },
  };
  await Deno.writeTextFile(`${dir}/policy.json`, JSON.stringify(policy));
  return `${dir}/policy.json`;
}

/** How many signature entries the device's store records. */
async function signatureEntries(device: Device): Promise<number> {
  const index = JSON.parse(await Deno.readTextFile(`${device.store}/index.json`));
  return index.manifests.filter((entry: { annotations?: Record<string, string> }) =>
    entry.annotations?.["io.berth.signatureOf"]
  ).length;
}
