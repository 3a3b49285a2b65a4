/**
 * cosign signatures as cosign stores them in a registry, and the policy's verdict on an image.
 *
 * For a manifest `sha256:<hex>`, cosign pushes an image manifest tagged `sha256-<hex>.sig` to the same
 * repository; each of its layers is a simple-signing payload (JSON naming the signed manifest digest and
 * repository) with the base64 signature over the payload in an annotation.
 *
 * The signature check is node:crypto's `verify`: it reads cosign's ASN.1 DER ECDSA signatures as they are
 * (WebCrypto wants them converted to IEEE P1363 first), and RSA (PKCS#1 v1.5) and Ed25519 keys as cosign
 * uses them, with no dependency. `@sigstore/verify` verifies Sigstore bundles (Fulcio certificates, Rekor
 * entries), which berth refuses in the policy anyway; for a key and a payload it would add nothing but code.
 */
import { verify } from "node:crypto";
import { BerthError } from "../util/errors.ts";
import { quoted } from "../util/text.ts";
import { digestHex, parseDigest, sha256Of } from "../oci/digest.ts";
import { parseImageManifest } from "../oci/manifest.ts";
import { formatReference, parseReference, type Reference } from "../oci/reference.ts";
import { decodeBase64, hasTagOrDigest, type Policy, requirementsFor, type SigstoreSigned } from "./policy.ts";

/** The media type of a cosign signature layer (the simple-signing payload). */
export const SIGNATURE_LAYER_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json";
/** The layer annotation that holds the base64 signature over the payload. */
export const SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature";
/** The payload type cosign writes and containers/image accepts for sigstore signatures. */
const PAYLOAD_TYPE = "cosign container image signature";
/** Signatures read from one `.sig` manifest: real images carry one or a few. */
export const MAX_SIGNATURES = 16;
/** A payload is a few hundred bytes (plus optional annotations). */
export const MAX_PAYLOAD_BYTES = 64 * 1024;

/** One signature: the payload blob's bytes and the base64 signature from its layer's annotation. */
export interface CosignSignature {
  payload: Uint8Array;
  signature: string;
}

/** A signature layer of a `.sig` manifest: the payload blob to fetch, and its signature. */
export interface SignatureLayer {
  digest: string;
  size: number;
  signature: string;
}

/** The tag cosign stores the signatures of `digest` under: "sha256-<hex>.sig". */
export function signatureTag(digest: string): string {
  return `sha256-${digestHex(digest)}.sig`;
}

function invalid(message: string): BerthError {
  return new BerthError("signature_invalid", message);
}

/**
 * The signature layers of a cosign `.sig` manifest (`what` names it in errors); layers of other media types
 * are skipped. A malformed manifest, more than MAX_SIGNATURES signatures or a payload over
 * MAX_PAYLOAD_BYTES is "signature_invalid".
 */
export function parseSignatureManifest(bytes: Uint8Array, what: string): SignatureLayer[] {
  let layers;
  try {
    layers = parseImageManifest(bytes, what).layers;
  } catch (error) {
    if (error instanceof BerthError) throw invalid(error.message);
    throw error;
  }
  const found: SignatureLayer[] = [];
  for (const [position, layer] of layers.entries()) {
    if (layer.mediaType !== SIGNATURE_LAYER_TYPE) continue;
    const where = `${what} layers[${position}]`;
    if (found.length === MAX_SIGNATURES) throw invalid(`${what}: more than ${MAX_SIGNATURES} signatures`);
    if (layer.size > MAX_PAYLOAD_BYTES) {
      throw invalid(`${where}: payload of ${layer.size} bytes (at most ${MAX_PAYLOAD_BYTES})`);
    }
    const signature = layer.annotations?.[SIGNATURE_ANNOTATION];
    if (signature === undefined) throw invalid(`${where}: no ${SIGNATURE_ANNOTATION} annotation`);
    found.push({ digest: layer.digest, size: layer.size, signature });
  }
  return found;
}

/** Checks a fetched payload blob against its layer (digest and size) and pairs it with its signature. */
export function signatureOf(layer: SignatureLayer, payload: Uint8Array, what: string): CosignSignature {
  if (payload.length !== layer.size || sha256Of(payload) !== layer.digest) {
    throw invalid(`${what}: the payload blob ${layer.digest} does not match its digest or size`);
  }
  return { payload, signature: layer.signature };
}

/** How telling a failed signature is: the best one found names the failure. */
const RANK = { signature_invalid: 0, other_digest: 1, signature_identity_mismatch: 2 } as const;

interface Failure {
  rank: number;
  error: BerthError;
}

/** What a payload says, once its signature verified; malformed content throws "signature_invalid". */
function readPayload(payload: Uint8Array): { digest: string; identity: string } {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch {
    throw invalid("the signed payload is not JSON");
  }
  const critical = (json as { critical?: Record<string, unknown> } | null)?.critical;
  const type = critical?.type;
  if (type !== PAYLOAD_TYPE) {
    throw invalid(`the signed payload's type is ${quoted(type)}, not "${PAYLOAD_TYPE}"`);
  }
  const image = critical?.image as Record<string, unknown> | undefined;
  const identity = (critical?.identity as Record<string, unknown> | undefined)?.["docker-reference"];
  if (typeof identity !== "string") throw invalid("the signed payload names no docker-reference");
  const digest = parseDigest(
    image?.["docker-manifest-digest"],
    "the signed payload's docker-manifest-digest",
  );
  return { digest, identity };
}

/**
 * Whether a signature's identity (`docker-reference` as cosign wrote it: a repository, or a reference with
 * tag or digest) satisfies `signedIdentity` for `ref`, as containers-policy.json(5) defines each type. A
 * reference with a digest is a digest reference (berth pulls by the digest); a signature without a tag or
 * digest never matches a tag exactly.
 */
export function identityMatches(requirement: SigstoreSigned, ref: Reference, signedAs: string): boolean {
  let signed: Reference;
  try {
    signed = parseReference(signedAs);
  } catch {
    return false;
  }
  const signedName = `${signed.registry}/${signed.repository}`;
  const name = `${ref.registry}/${ref.repository}`;
  const exact = () =>
    hasTagOrDigest(signedAs) &&
    formatReference(signed) === formatReference(ref.digest ? { ...ref, tag: undefined } : ref);
  switch (requirement.signedIdentity.type) {
    case "matchExact":
      return exact();
    case "matchRepoDigestOrExact":
      return ref.digest ? signedName === name : exact();
    case "matchRepository":
      return signedName === name;
    case "exactRepository":
      return signedName === requirement.signedIdentity.dockerRepository;
  }
}

/** `(key …, policy …)`: how every verdict's message ends. */
function keyNote(requirement: SigstoreSigned): string {
  return `(key ${requirement.keySource}, policy ${requirement.policyFile})`;
}

/** Checks one signature; undefined when it satisfies the requirement, else why not and how telling that is. */
function checkSignature(
  requirement: SigstoreSigned,
  ref: Reference,
  manifestDigest: string,
  { payload, signature }: CosignSignature,
): Failure | undefined {
  const subject = formatReference(ref);
  const note = keyNote(requirement);
  const raw = decodeBase64(signature);
  let verified = false;
  try {
    const algorithm = requirement.key.asymmetricKeyType === "ed25519" ? null : "sha256";
    verified = raw !== undefined && verify(algorithm, payload, requirement.key, raw);
  } catch {
    // A signature node:crypto cannot even parse does not verify.
  }
  if (!verified) {
    return {
      rank: RANK.signature_invalid,
      error: invalid(`${subject}: no signature verifies with the key ${note}`),
    };
  }
  let content;
  try {
    content = readPayload(payload);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { rank: RANK.signature_invalid, error: invalid(`${subject}: ${message} ${note}`) };
  }
  if (content.digest !== manifestDigest) {
    return {
      rank: RANK.other_digest,
      error: invalid(
        `${subject}: the signature was signed for another digest, ${content.digest}, not ${manifestDigest} ${note}`,
      ),
    };
  }
  if (!identityMatches(requirement, ref, content.identity)) {
    return {
      rank: RANK.signature_identity_mismatch,
      error: new BerthError(
        "signature_identity_mismatch",
        `${subject}: signed as ${
          quoted(content.identity)
        }, which signedIdentity ${requirement.signedIdentity.type} does not accept for this reference ${note}`,
      ),
    };
  }
  return undefined;
}

/**
 * Passes when ANY of `signatures` verifies with the requirement's key, names `manifestDigest` and satisfies
 * its signedIdentity for `ref`; else throws the most telling failure: "signature_identity_mismatch" (a
 * valid signature of this digest for another identity), else "signature_invalid" (signed for another
 * digest, or nothing verifies with the key). An empty list is "signature_missing".
 */
export function verifySignatures(
  requirement: SigstoreSigned,
  ref: Reference,
  manifestDigest: string,
  signatures: readonly CosignSignature[],
): void {
  if (signatures.length === 0) throw missing(requirement, ref, manifestDigest);
  let best: Failure | undefined;
  for (const signature of signatures) {
    const failure = checkSignature(requirement, ref, manifestDigest, signature);
    if (failure === undefined) return;
    if (best === undefined || failure.rank > best.rank) best = failure;
  }
  throw best!.error;
}

function missing(requirement: SigstoreSigned, ref: Reference, manifestDigest: string): BerthError {
  return new BerthError(
    "signature_missing",
    `${formatReference(ref)}: no signature (${signatureTag(manifestDigest)}) where the policy requires one ${
      keyNote(requirement)
    }`,
  );
}

/** Whether the requirements for `ref` include a sigstoreSigned one (and no reject): fetch signatures only then. */
export function needsSignatures(policy: Policy, ref: Reference): boolean {
  const { requirements } = requirementsFor(policy, ref);
  return requirements.some((item) => item.type === "sigstoreSigned") &&
    !requirements.some((item) => item.type === "reject");
}

/** What the policy accepted an image on: the scope, and the keys whose signatures verified. */
export interface TrustVerdict {
  /** The scope that matched ("" for the docker transport's default, "default" for the global one). */
  scope: string;
  /** keySource of each sigstoreSigned requirement satisfied; empty when none applied. */
  keys: string[];
}

/**
 * Applies the policy to `ref`, whose manifest is `manifestDigest`, with the signatures found for it
 * (`undefined`: none found). All requirements of the matching scope must pass: "policy_rejected" for a
 * reject, "signature_missing" when a sigstoreSigned requirement applies and there are no signatures, else
 * as verifySignatures. Messages end with the key and the policy file.
 */
export function evaluatePolicy(
  policy: Policy,
  ref: Reference,
  manifestDigest: string,
  signatures: readonly CosignSignature[] | undefined,
): TrustVerdict {
  const { scope, requirements } = requirementsFor(policy, ref);
  if (requirements.some((item) => item.type === "reject")) {
    const where = scope === "default" ? "the default requirements" : `transports.docker ${quoted(scope)}`;
    throw new BerthError(
      "policy_rejected",
      `${formatReference(ref)}: rejected by ${where} (policy ${policy.file})`,
    );
  }
  const keys: string[] = [];
  for (const requirement of requirements) {
    if (requirement.type !== "sigstoreSigned") continue;
    verifySignatures(requirement, ref, manifestDigest, signatures ?? []);
    keys.push(requirement.keySource);
  }
  return { scope, keys };
}
