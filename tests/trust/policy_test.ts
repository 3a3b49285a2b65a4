/**
 * The policy file (containers-policy.json(5)) as berth reads it: scopes and their precedence, every
 * signedIdentity, and what is refused by name at load. Pure: keys are made here, key files in a scratch dir.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync, sign } from "node:crypto";
import { BerthError } from "../../src/util/errors.ts";
import { parseReference } from "../../src/oci/reference.ts";
import {
  loadPolicy,
  parsePolicy,
  type Policy,
  requirementsFor,
  type SigstoreSigned,
} from "../../src/trust/policy.ts";
import { evaluatePolicy, identityMatches, needsSignatures, signatureTag } from "../../src/trust/cosign.ts";
import { scratchDir } from "../harness/env.ts";

const FILE = "/etc/berth/policy.json";
const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const PEM = publicKey.export({ type: "spki", format: "pem" }).toString();
const KEY_DATA = btoa(PEM);
const DIGEST = `sha256:${"a".repeat(64)}`;
const OTHER_DIGEST = `sha256:${"b".repeat(64)}`;

function policy(document: unknown): Policy {
  return parsePolicy(JSON.stringify(document), FILE);
}

function refused(document: unknown, pattern: RegExp): void {
  assert.throws(() => policy(document), (error: unknown) => {
    assert.ok(error instanceof BerthError, String(error));
    assert.equal(error.reason, "invalid_input");
    assert.ok(error.message.startsWith(`${FILE}: `), error.message);
    assert.match(error.message, pattern);
    return true;
  });
}

const accept = [{ type: "insecureAcceptAnything" }];
const reject = [{ type: "reject" }];
const signed = (signedIdentity?: unknown) => [{ type: "sigstoreSigned", keyData: KEY_DATA, signedIdentity }];

Deno.test("scopes: the most specific wins, from the exact reference down to the host, wildcards, '' and default", () => {
  const p = policy({
    default: reject,
    transports: {
      docker: {
        "": [{ type: "insecureAcceptAnything" }],
        "registry.example.com": accept,
        "registry.example.com/fleet": signed(),
        "registry.example.com/fleet/app": reject,
        "registry.example.com/fleet/app:1": accept,
        [`registry.example.com/fleet/app@${DIGEST}`]: signed({ type: "matchRepository" }),
        "*.example.com": reject,
        "*.sub.example.com": accept,
        "127.0.0.1:5000/a": signed(),
        "docker.io/library/busybox": reject,
      },
      atomic: { "whatever": [{ type: "signedBy", keyType: "GPGKeys", keyPath: "/nonexistent" }] },
    },
  });
  const scope = (ref: string) => requirementsFor(p, parseReference(ref)).scope;
  assert.equal(scope(`registry.example.com/fleet/app@${DIGEST}`), `registry.example.com/fleet/app@${DIGEST}`);
  assert.equal(
    scope(`registry.example.com/fleet/app:1@${DIGEST}`),
    `registry.example.com/fleet/app@${DIGEST}`,
  );
  assert.equal(scope(`registry.example.com/fleet/app:1@${OTHER_DIGEST}`), "registry.example.com/fleet/app:1");
  assert.equal(scope("registry.example.com/fleet/app:1"), "registry.example.com/fleet/app:1");
  assert.equal(scope("registry.example.com/fleet/app:2"), "registry.example.com/fleet/app");
  assert.equal(scope("registry.example.com/fleet/other/deep:1"), "registry.example.com/fleet");
  assert.equal(scope("registry.example.com/elsewhere:1"), "registry.example.com");
  assert.equal(scope("mirror.example.com/x:1"), "*.example.com");
  assert.equal(scope("a.b.sub.example.com:8443/x:1"), "*.sub.example.com");
  assert.equal(scope("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000/a");
  assert.equal(scope("127.0.0.1:5001/a/b:1"), "");
  assert.equal(scope("busybox"), "docker.io/library/busybox");
  assert.equal(requirementsFor(policy({ default: reject }), parseReference("busybox")).scope, "default");
  assert.deepEqual(requirementsFor(p, parseReference("registry.example.com/x:1")).requirements, accept);
});

Deno.test("requirements: all must pass; reject wins; needsSignatures only where a signature is checked", () => {
  const p = policy({
    default: accept,
    transports: {
      docker: {
        "h.example/both": [...accept, ...reject],
        "h.example/signed": [...accept, ...signed()],
        "h.example/signed-rejected": [...signed(), ...reject],
      },
    },
  });
  const ref = (text: string) => parseReference(text);
  assert.deepEqual(evaluatePolicy(p, ref("h.example/other:1"), DIGEST, undefined), {
    scope: "default",
    keys: [],
  });
  assert.throws(
    () => evaluatePolicy(p, ref("h.example/both:1"), DIGEST, undefined),
    (error: BerthError) =>
      error.reason === "policy_rejected" &&
      error.message === `h.example/both:1: rejected by transports.docker "h.example/both" (policy ${FILE})`,
  );
  assert.throws(
    () => evaluatePolicy(p, ref(`h.example/signed@${DIGEST}`), DIGEST, undefined),
    (error: BerthError) =>
      error.reason === "signature_missing" && error.message.includes(signatureTag(DIGEST)) &&
      error.message.endsWith(`(key keyData in ${FILE}, policy ${FILE})`),
  );
  assert.equal(needsSignatures(p, ref("h.example/other:1")), false);
  assert.equal(needsSignatures(p, ref("h.example/signed:1")), true);
  assert.equal(needsSignatures(p, ref("h.example/signed-rejected:1")), false);
});

Deno.test("signatures: a payload signed here verifies; another digest and another identity are told apart", () => {
  const p = policy({ default: signed({ type: "matchRepository" }) });
  const ref = parseReference(`h.example/fleet/app@${DIGEST}`);
  const payloadFor = (digest: string, identity: string) =>
    new TextEncoder().encode(JSON.stringify({
      critical: {
        identity: { "docker-reference": identity },
        image: { "docker-manifest-digest": digest },
        type: "cosign container image signature",
      },
      optional: null,
    }));
  const signature = (payload: Uint8Array) =>
    btoa(String.fromCharCode(...sign("sha256", payload, privateKey)));
  const good = payloadFor(DIGEST, "h.example/fleet/app");
  const otherDigest = payloadFor(OTHER_DIGEST, "h.example/fleet/app");
  const otherRepo = payloadFor(DIGEST, "h.example/fleet/other");
  const reason = (signatures: { payload: Uint8Array; signature: string }[]) => {
    try {
      evaluatePolicy(p, ref, DIGEST, signatures);
      return "accepted";
    } catch (error) {
      return `${(error as BerthError).reason}: ${(error as BerthError).message}`;
    }
  };
  assert.equal(reason([{ payload: good, signature: signature(good) }]), "accepted");
  assert.match(
    reason([{ payload: good, signature: signature(otherRepo) }]),
    /^signature_invalid: .*no signature verifies/,
  );
  for (const bad of ["not base64!", "a", "abc", ""]) {
    assert.match(reason([{ payload: good, signature: bad }]), /^signature_invalid/);
  }
  assert.match(
    reason([{ payload: otherDigest, signature: signature(otherDigest) }]),
    new RegExp(`^signature_invalid: .*another digest, ${OTHER_DIGEST}`),
  );
  // The most telling failure of several: the identity, then another digest, then a bad signature.
  assert.match(
    reason([
      { payload: good, signature: signature(otherRepo) },
      { payload: otherRepo, signature: signature(otherRepo) },
      { payload: otherDigest, signature: signature(otherDigest) },
    ]),
    /^signature_identity_mismatch: h\.example\/fleet\/app@sha256:a+: signed as "h\.example\/fleet\/other"/,
  );
  // Any one good signature is enough.
  assert.equal(
    reason([{ payload: otherDigest, signature: signature(otherDigest) }, {
      payload: good,
      signature: signature(good),
    }]),
    "accepted",
  );
});

Deno.test("signedIdentity: each type against tag and digest references and cosign's repository-only identity", () => {
  const requirement = (signedIdentity: unknown) =>
    policy({ default: signed(signedIdentity) }).default[0] as SigstoreSigned;
  const matches = (identity: unknown, ref: string, signedAs: string) =>
    identityMatches(requirement(identity), parseReference(ref), signedAs);
  const byDigest = `h.example/ns/app@${DIGEST}`;
  // matchRepoDigestOrExact, the default: a digest reference needs the repository, a tag the exact reference.
  for (const identity of [undefined, { type: "matchRepoDigestOrExact" }]) {
    assert.equal(matches(identity, byDigest, "h.example/ns/app"), true);
    assert.equal(matches(identity, byDigest, "h.example/ns/other"), false);
    assert.equal(matches(identity, "h.example/ns/app:1", "h.example/ns/app"), false);
    assert.equal(matches(identity, "h.example/ns/app:latest", "h.example/ns/app"), false);
    assert.equal(matches(identity, "h.example/ns/app:1", "h.example/ns/app:1"), true);
    assert.equal(matches(identity, "h.example/ns/app:1", "h.example/ns/app:2"), false);
  }
  assert.equal(matches({ type: "matchExact" }, "h.example/ns/app:1", "h.example/ns/app:1"), true);
  assert.equal(matches({ type: "matchExact" }, "h.example/ns/app:latest", "h.example/ns/app"), false);
  assert.equal(matches({ type: "matchExact" }, byDigest, "h.example/ns/app"), false);
  assert.equal(matches({ type: "matchExact" }, byDigest, byDigest), true);
  assert.equal(matches({ type: "matchRepository" }, "h.example/ns/app:1", "h.example/ns/app"), true);
  assert.equal(matches({ type: "matchRepository" }, byDigest, "h.example/ns/app:9"), true);
  assert.equal(matches({ type: "matchRepository" }, byDigest, "h.example/ns/other"), false);
  assert.equal(matches({ type: "matchRepository" }, "busybox:1", "docker.io/library/busybox"), true);
  const exactRepository = { type: "exactRepository", dockerRepository: "upstream.example/vendor/app" };
  assert.equal(matches(exactRepository, "mirror.example/app:1", "upstream.example/vendor/app"), true);
  assert.equal(matches(exactRepository, "mirror.example/app:1", "mirror.example/app"), false);
  assert.equal(
    matches(
      { type: "exactRepository", dockerRepository: "busybox" },
      "x.example/b:1",
      "docker.io/library/busybox",
    ),
    true,
  );
  assert.equal(matches({ type: "matchRepository" }, byDigest, "not a reference"), false);
});

Deno.test("refused at load, by name: unsupported types, fields and identities, and malformed files", () => {
  const sigstore = (extra: Record<string, unknown>) => ({
    default: [{ type: "sigstoreSigned", keyData: KEY_DATA, ...extra }],
  });
  refused({}, /no "default" requirements/);
  refused({ default: [] }, /default: an empty list/);
  refused({ default: accept, extra: 1 }, /top level: unknown field "extra"/);
  refused(
    { default: [{ type: "signedBy", keyType: "GPGKeys", keyPath: "/k" }] },
    /"signedBy": GPG simple signing is not supported/,
  );
  refused({ default: [{ type: "acceptEverything" }] }, /unknown requirement type "acceptEverything"/);
  refused({ default: [{ type: "reject", keyPath: "/k" }] }, /\(reject\): unknown field "keyPath"/);
  refused(sigstore({ fulcio: { caPath: "/ca" } }), /field "fulcio" is not supported/);
  refused(sigstore({ rekorPublicKeyPath: "/rekor.pub" }), /field "rekorPublicKeyPath" is not supported/);
  refused(sigstore({ keyPaths: ["/a", "/b"] }), /field "keyPaths" is not supported/);
  refused(sigstore({ pki: {} }), /field "pki" is not supported/);
  refused(sigstore({ keyType: "x" }), /unknown field "keyType"/);
  refused(sigstore({ keyPath: "/k" }), /exactly one of keyPath and keyData/);
  refused({ default: [{ type: "sigstoreSigned" }] }, /exactly one of keyPath and keyData/);
  refused(
    { default: [{ type: "sigstoreSigned", keyPath: "keys/cosign.pub" }] },
    /keyPath "keys\/cosign.pub" is not an absolute path/,
  );
  refused(
    { default: [{ type: "sigstoreSigned", keyPath: "/nonexistent/cosign.pub" }] },
    /keyPath \/nonexistent\/cosign.pub: /,
  );
  for (const keyData of ["%%%", "a", "", 7]) {
    refused({ default: [{ type: "sigstoreSigned", keyData }] }, /keyData is not base64/);
  }
  refused({ default: [{ type: "sigstoreSigned", keyData: btoa("hello") }] }, /not a PEM public key/);
  refused(
    sigstore({ signedIdentity: { type: "exactReference", dockerReference: "h.example/a:1" } }),
    /identity type "exactReference" is not supported/,
  );
  refused(
    sigstore({ signedIdentity: { type: "remapIdentity", prefix: "a", signedPrefix: "b" } }),
    /"remapIdentity" is not supported/,
  );
  refused(
    sigstore({ signedIdentity: { type: "matchRepository", dockerRepository: "x" } }),
    /unknown field "dockerRepository"/,
  );
  refused(
    sigstore({ signedIdentity: { type: "exactRepository", dockerRepository: "h.example/a:1" } }),
    /names a tag or digest/,
  );
  refused(sigstore({ signedIdentity: { type: "exactRepository" } }), /dockerRepository: not a string/);
  const scope = (name: string) => ({ default: accept, transports: { docker: { [name]: accept } } });
  refused(scope("busybox"), /scope "busybox": does not start with a registry host/);
  refused(scope("library/busybox"), /does not start with a registry host/);
  refused(
    scope("docker.io/busybox:latest"),
    /fully expanded form, which is "docker.io\/library\/busybox:latest"/,
  );
  refused(scope("index.docker.io/library/busybox"), /write the registry as docker.io/);
  refused(scope("h.example/Upper"), /lower-case/);
  refused(
    { default: accept, transports: { docker: { "h.example": [] } } },
    /transports.docker\["h.example"\]: an empty list/,
  );
  assert.throws(
    () => parsePolicy("{", FILE),
    (error: BerthError) => error.reason === "invalid_input" && error.message.startsWith(`${FILE}: not JSON`),
  );
  const twice =
    `{"default": [{"type": "reject"}], "transports": {"docker": {"h.example/a": [{"type": "reject"}],
    "h.example/a": [{"type": "insecureAcceptAnything"}]}}}`;
  assert.throws(() => parsePolicy(twice, FILE), /field "h.example\/a" appears twice in one object/);
  const escaped =
    `{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {"h.example/\\"a": [{"type": "reject"}], "h.example/\\u0022a": []}}}`;
  assert.throws(() => parsePolicy(escaped, FILE), /appears twice/);
  // Equal keys in different objects are not repeats.
  assert.equal(parsePolicy(`{"default": [{"type": "reject"}, {"type": "reject"}]}`, FILE).default.length, 2);
  // Other transports are berth's to skip, whatever they hold.
  assert.equal(
    policy({ default: accept, transports: { "docker-daemon": { "": [{ type: "signedBy" }] } } }).docker.size,
    0,
  );
});

Deno.test("loadPolicy: keyPath read at load, a size cap, a missing file named", async () => {
  const dir = await scratchDir("trust-policy-");
  const keyPath = `${dir}/cosign.pub`;
  await Deno.writeTextFile(keyPath, PEM);
  const file = `${dir}/policy.json`;
  await Deno.writeTextFile(file, JSON.stringify({ default: [{ type: "sigstoreSigned", keyPath }] }));
  const loaded = await loadPolicy(file);
  const requirement = loaded.default[0] as SigstoreSigned;
  assert.equal(requirement.keySource, keyPath);
  assert.equal(requirement.policyFile, file);
  assert.deepEqual(requirement.signedIdentity, { type: "matchRepoDigestOrExact" });
  await Deno.writeTextFile(file, " ".repeat(1024 * 1024 + 1));
  await assert.rejects(loadPolicy(file), /larger than 1048576 bytes/);
  await assert.rejects(
    loadPolicy(`${dir}/missing.json`),
    (error: BerthError) =>
      error.reason === "invalid_input" &&
      error.message.startsWith(`${dir}/missing.json: cannot read the policy`),
  );
});
