/**
 * cosign signatures made by the real cosign, stored in the real test registry, read back over plain HTTP and
 * judged by berth's policy; `cosign verify` judges each case too. Two key pairs; the image signed in one
 * repository, copied with skopeo (digests kept) to another; a signature copied under another digest's tag.
 */
import assert from "node:assert/strict";
import { BerthError } from "../../src/util/errors.ts";
import { parseReference } from "../../src/oci/reference.ts";
import { loadPolicy } from "../../src/trust/policy.ts";
import {
  type CosignSignature,
  evaluatePolicy,
  parseSignatureManifest,
  signatureOf,
  signatureTag,
} from "../../src/trust/cosign.ts";
import { scratchDir, testEnv, withServices } from "../harness/env.ts";
import { harnessCacheDir, run } from "../harness/services.ts";
import { ensureCosign } from "../harness/cosign.ts";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

/** The signatures under `repo`'s `.sig` tag for `digest`, or undefined when there is none (404). */
async function fetchSignatures(
  registry: string,
  repo: string,
  digest: string,
): Promise<CosignSignature[] | undefined> {
  const base = `http://${registry}/v2/${repo}`;
  const response = await fetch(`${base}/manifests/${signatureTag(digest)}`, {
    headers: { Accept: OCI_MANIFEST },
  });
  const bytes = await response.bytes();
  if (response.status === 404) return undefined;
  assert.equal(response.status, 200, `GET ${repo}:${signatureTag(digest)}`);
  const signatures: CosignSignature[] = [];
  for (const layer of parseSignatureManifest(bytes, `${repo}:${signatureTag(digest)}`)) {
    const blob = await fetch(`${base}/blobs/${layer.digest}`);
    signatures.push(signatureOf(layer, await blob.bytes(), `${repo} ${layer.digest}`));
  }
  return signatures;
}

/** skopeo copy between plain-HTTP repositories of the test registry, digests kept. */
async function copy(from: string, to: string): Promise<void> {
  await run([
    "skopeo",
    "copy",
    "--preserve-digests",
    "--src-tls-verify=false",
    "--dest-tls-verify=false",
    `docker://${from}`,
    `docker://${to}`,
  ]);
}

Deno.test(
  "cosign signatures: berth's verdicts on real cosign signatures, and cosign verify's",
  withServices,
  async () => {
    const env = testEnv()!;
    const registry = env.registry;
    const dir = await scratchDir("trust-cosign-");
    const cosign = await ensureCosign(harnessCacheDir());
    // cosign keeps nothing of the machine's: its home and docker config are the test's own.
    const cosignEnv = { COSIGN_PASSWORD: "", HOME: dir, DOCKER_CONFIG: `${dir}/docker` };
    await Deno.mkdir(`${dir}/docker`);
    await Deno.writeTextFile(`${dir}/docker/config.json`, "{}");
    for (const name of ["one", "two"]) {
      await Deno.mkdir(`${dir}/${name}`);
      await run([cosign, "generate-key-pair"], { cwd: `${dir}/${name}`, env: cosignEnv });
    }
    const repoA = `trust-${crypto.randomUUID().slice(0, 8)}/a`;
    const repoB = repoA.replace(/a$/, "b");
    const signed = env.images.appA.digest;
    const unsigned = env.images.appB.digest;
    await copy(env.images.appA.ref, `${registry}/${repoA}:1`);
    await copy(env.images.appB.ref, `${registry}/${repoA}:2`);
    await copy(env.images.appA.ref, `${registry}/${repoB}:1`);
    await copy(env.images.appC.ref, `${registry}/${repoA}:3`);
    await run([
      cosign,
      "sign",
      "--key",
      `${dir}/one/cosign.key`,
      "--tlog-upload=false",
      "--allow-http-registry",
      "--allow-insecure-registry",
      "-y",
      `${registry}/${repoA}@${signed}`,
    ], { env: cosignEnv });
    // The same signature manifest under another digest's tag, and in repository B for the same digest.
    await copy(
      `${registry}/${repoA}:${signatureTag(signed)}`,
      `${registry}/${repoA}:${signatureTag(unsigned)}`,
    );
    await copy(
      `${registry}/${repoA}:${signatureTag(signed)}`,
      `${registry}/${repoB}:${signatureTag(signed)}`,
    );

    const policyFor = async (key: "one" | "two", signedIdentity?: unknown) => {
      const file = `${dir}/policy-${crypto.randomUUID()}.json`;
      const requirement = { type: "sigstoreSigned", keyPath: `${dir}/${key}/cosign.pub`, signedIdentity };
      await Deno.writeTextFile(
        file,
        JSON.stringify({
          default: [{ type: "reject" }],
          transports: { docker: { [registry]: [requirement] } },
        }),
      );
      return await loadPolicy(file);
    };
    /** berth's verdict: "accepted" or the reason, with the message kept for the checks below. */
    const berth = async (repo: string, digest: string, key: "one" | "two", signedIdentity?: unknown) => {
      const signatures = await fetchSignatures(registry, repo, digest);
      try {
        evaluatePolicy(
          await policyFor(key, signedIdentity),
          parseReference(`${registry}/${repo}@${digest}`),
          digest,
          signatures,
        );
        return { verdict: "accepted", message: "" };
      } catch (error) {
        if (!(error instanceof BerthError)) throw error;
        return { verdict: error.reason, message: error.message };
      }
    };
    const cosignVerify = async (repo: string, digest: string, key: "one" | "two") => {
      try {
        await run([
          cosign,
          "verify",
          "--key",
          `${dir}/${key}/cosign.pub`,
          "--insecure-ignore-tlog",
          "--allow-http-registry",
          `${registry}/${repo}@${digest}`,
        ], { env: cosignEnv });
        return "accepted";
      } catch {
        return "rejected";
      }
    };
    const matchRepository = { type: "matchRepository" };

    // The right key, the image's own repository.
    assert.deepEqual(await berth(repoA, signed, "one", matchRepository), {
      verdict: "accepted",
      message: "",
    });
    assert.equal(
      (await berth(repoA, signed, "one")).verdict,
      "accepted",
      "matchRepoDigestOrExact, by digest",
    );
    assert.equal(await cosignVerify(repoA, signed, "one"), "accepted");

    // The other key.
    const otherKey = await berth(repoA, signed, "two", matchRepository);
    assert.equal(otherKey.verdict, "signature_invalid");
    assert.match(
      otherKey.message,
      /no signature verifies with the key \(key .*\/two\/cosign\.pub, policy .*\)$/,
    );
    assert.equal(await cosignVerify(repoA, signed, "two"), "rejected");

    // A good signature copied under another digest's tag.
    const otherDigest = await berth(repoA, unsigned, "one", matchRepository);
    assert.equal(otherDigest.verdict, "signature_invalid");
    assert.ok(
      otherDigest.message.includes(`signed for another digest, ${signed}, not ${unsigned}`),
      otherDigest.message,
    );
    assert.equal(await cosignVerify(repoA, unsigned, "one"), "rejected");

    // Signed in A, installed from B: the identity is the policy's to check.
    for (const identity of [matchRepository, { type: "matchRepoDigestOrExact" }, undefined]) {
      const moved = await berth(repoB, signed, "one", identity);
      assert.equal(moved.verdict, "signature_identity_mismatch", JSON.stringify(identity));
      assert.ok(moved.message.includes(`signed as "${registry}/${repoA}"`), moved.message);
    }
    const exactRepository = { type: "exactRepository", dockerRepository: `${registry}/${repoA}` };
    assert.equal((await berth(repoB, signed, "one", exactRepository)).verdict, "accepted");
    // cosign verify checks the key and the digest, not the repository the signature names.
    assert.equal(await cosignVerify(repoB, signed, "one"), "accepted");

    // No signature at all, and a scope that rejects.
    assert.equal(
      (await berth(repoA, env.images.appC.digest, "one", matchRepository)).verdict,
      "signature_missing",
    );
    assert.equal(await cosignVerify(repoA, env.images.appC.digest, "one"), "rejected");
    const rejecting = await loadPolicy(
      await (async () => {
        const file = `${dir}/reject.json`;
        await Deno.writeTextFile(file, JSON.stringify({ default: [{ type: "reject" }] }));
        return file;
      })(),
    );
    assert.throws(
      () => evaluatePolicy(rejecting, parseReference(`${registry}/${repoA}@${signed}`), signed, []),
      (error: BerthError) =>
        error.reason === "policy_rejected" && error.message.includes(`policy ${dir}/reject.json`),
    );
  },
);
