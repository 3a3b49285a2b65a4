/**
 * Signatures under a policy (containers-policy.json): fetched with a reference's manifest and judged before
 * any other blob of it, and judged again from the store alone (install, restore, the agent's start-up
 * audit). A verified signature is kept as the registry holds it: the cosign `.sig` manifest and its blobs,
 * with an index.json entry named by its cosign tag that says which digest it signs (SIGNATURE_OF) — so prune
 * keeps it as long as that version, `berth serve` serves it to neighbours and export carries it.
 */
import { BerthError, POLICY_REASONS } from "../util/errors.ts";
import { sha256Of } from "../oci/digest.ts";
import { parseImageManifest } from "../oci/manifest.ts";
import { formatReference, type Reference } from "../oci/reference.ts";
import type { Manifest, RegistryClient } from "../registry/client.ts";
import type { Store } from "../store/store.ts";
import { recordEntries, storedImages } from "../store/images.ts";
import {
  MANIFEST_DIGEST,
  PULLED_AT,
  REF_NAME,
  SIGNATURE_OF,
  SOURCE_DIGEST,
  SOURCE_MEDIA_TYPE,
} from "../store/annotations.ts";
import type { Descriptor } from "../oci/descriptor.ts";
import {
  type CosignSignature,
  evaluatePolicy,
  MAX_PAYLOAD_BYTES,
  needsSignatures,
  parseSignatureManifest,
  signatureOf,
  signatureTag,
} from "../trust/cosign.ts";
import type { Policy } from "../trust/policy.ts";

/** A verified signature, ready to be stored beside what it signs. */
export interface VerifiedSignature {
  /** The index.json name: "registry/repository:sha256-<hex>.sig". */
  name: string;
  /** The `.sig` manifest as served. */
  manifest: Manifest;
  /** Its config and layers (the payloads), each checked against its digest. */
  blobs: { digest: string; bytes: Uint8Array }[];
  /** The digest it signs. */
  signs: string;
}

/**
 * A refusal's one line ends with its machine reason, as the error's last line must name it (the reference
 * and the key are in the message already).
 */
async function namingReason<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (!(error instanceof BerthError) || !POLICY_REASONS.includes(error.reason)) throw error;
    throw new BerthError(error.reason, `${error.message} [${error.reason}]`, { cause: error });
  }
}

/** Where a `.sig` manifest's blobs are read from: the registry or the store. */
type BlobReader = (digest: string, size: number) => Promise<Uint8Array>;

/** The reference of the signatures of `digest` in `ref`'s repository (cosign's tag). */
function signatureRef(ref: Reference, digest: string): Reference {
  return { registry: ref.registry, repository: ref.repository, tag: signatureTag(digest) };
}

/**
 * Judges the `.sig` manifest `manifest` (undefined: none) of `digest` under the policy, reading its blobs with
 * `read`; returns what to store. The config is read too, so that the stored manifest is whole.
 */
async function judge(
  policy: Policy,
  ref: Reference,
  digest: string,
  manifest: Manifest | undefined,
  read: BlobReader,
): Promise<VerifiedSignature | undefined> {
  if (!manifest) {
    evaluatePolicy(policy, ref, digest, undefined);
    return undefined;
  }
  const sigRef = signatureRef(ref, digest);
  const what = `signature ${formatReference(sigRef)} (${manifest.digest})`;
  const layers = parseSignatureManifest(manifest.bytes, what);
  let parsed;
  try {
    parsed = parseImageManifest(manifest.bytes, what);
  } catch (error) {
    throw new BerthError("signature_invalid", (error as Error).message);
  }
  const blobs: { digest: string; bytes: Uint8Array }[] = [];
  for (const descriptor of [parsed.config, ...parsed.layers]) {
    if (descriptor.size > MAX_PAYLOAD_BYTES) {
      throw new BerthError(
        "signature_invalid",
        `${what}: blob ${descriptor.digest} is over ${MAX_PAYLOAD_BYTES} bytes`,
      );
    }
    const bytes = await read(descriptor.digest, descriptor.size);
    if (bytes.length !== descriptor.size || sha256Of(bytes) !== descriptor.digest) {
      throw new BerthError(
        "signature_invalid",
        `${what}: blob ${descriptor.digest} does not match its digest or size`,
      );
    }
    blobs.push({ digest: descriptor.digest, bytes });
  }
  const byDigest = new Map(blobs.map((blob) => [blob.digest, blob.bytes]));
  const signatures: CosignSignature[] = layers.map((layer) =>
    signatureOf(layer, byDigest.get(layer.digest)!, what)
  );
  evaluatePolicy(policy, ref, digest, signatures);
  return { name: formatReference(sigRef), manifest, blobs, signs: digest };
}

/** Reads a small blob whole from the registry; more than `size` bytes is refused. */
async function readSmall(
  client: RegistryClient,
  ref: Reference,
  digest: string,
  size: number,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const bytes = new Uint8Array(size);
  let length = 0;
  for await (const chunk of await client.openBlob(ref, digest, size, 0, signal)) {
    if (length + chunk.length > size) {
      throw new BerthError(
        "signature_invalid",
        `${formatReference(ref)}: blob ${digest} is over its ${size} bytes`,
      );
    }
    bytes.set(chunk, length);
    length += chunk.length;
  }
  return bytes.subarray(0, length);
}

/**
 * The policy's verdict on `ref` (the reference as asked for: its scope and identity) whose manifest is
 * `digest`, with signatures from the store when it already holds verified ones, else from the registry —
 * before any blob of the reference is fetched. Throws policy_rejected, signature_missing, signature_invalid or
 * signature_identity_mismatch; returns the signature to store, or undefined when the policy wants none.
 */
export function fetchSignature(
  client: RegistryClient,
  store: Store,
  policy: Policy,
  ref: Reference,
  digest: string,
  signal?: AbortSignal,
): Promise<VerifiedSignature | undefined> {
  return namingReason(async () => {
    if (!needsSignatures(policy, ref)) return judge(policy, ref, digest, undefined, () => Promise.reject());
    // A stored signature that does not pass is fetched again: the registry's may.
    const stored = await storedSignature(store, policy, ref, digest).catch(() => undefined);
    if (stored) return stored;
    const sigRef = signatureRef(ref, digest);
    let manifest: Manifest | undefined;
    try {
      manifest = await client.getManifest(sigRef, signal);
    } catch (error) {
      if (!(error instanceof BerthError && error.reason === "not_found")) throw error;
    }
    return judge(
      policy,
      ref,
      digest,
      manifest,
      (blob, size) => readSmall(client, sigRef, blob, size, signal),
    );
  });
}

/** The stored, verified signature of `digest`, or undefined when the store has none (the policy judges). */
async function storedSignature(
  store: Store,
  policy: Policy,
  ref: Reference,
  digest: string,
  pending: Descriptor[] = [],
): Promise<VerifiedSignature | undefined> {
  const name = formatReference(signatureRef(ref, digest));
  const entry = pending.find((candidate) => candidate.annotations?.[REF_NAME] === name) ??
    (await storedImages(store)).find((image) => image.ref === name)?.entry;
  if (!entry) return undefined;
  const bytes = await store.readBlob(entry.digest);
  if (sha256Of(bytes) !== entry.digest) {
    throw new BerthError("signature_invalid", `${name}: the stored signature manifest was altered`);
  }
  const manifest = { bytes, digest: entry.digest, mediaType: entry.mediaType };
  return await judge(policy, ref, digest, manifest, (blob) => store.readBlob(blob));
}

/**
 * The policy's verdict on a stored version, from the store alone (install, restore, the agent's audit): the
 * version's manifest must hash to `digest` and its stored signature pass the policy. No policy: no check.
 * `pending`: index entries about to be recorded (an import), searched before the store's.
 */
export async function verifyStored(
  store: Store,
  policy: Policy | undefined,
  ref: Reference,
  digest: string,
  pending: Descriptor[] = [],
): Promise<void> {
  if (!policy) return;
  await namingReason(async () => {
    if (sha256Of(await store.readBlob(digest)) !== digest) {
      throw new BerthError(
        "store_invalid",
        `${formatReference(ref)}: the stored manifest ${digest} was altered (run 'berth fsck')`,
      );
    }
    const stored = needsSignatures(policy, ref)
      ? await storedSignature(store, policy, ref, digest, pending)
      : undefined;
    if (!stored) evaluatePolicy(policy, ref, digest, undefined);
  });
}

/**
 * Stores verified signatures (their blobs, then their manifests) and records their index.json entries, each
 * replacing one of the same name. Recorded before what they sign may be: prune drops a signature whose
 * version never got recorded.
 */
export async function recordSignatures(store: Store, signatures: VerifiedSignature[]): Promise<void> {
  if (signatures.length === 0) return;
  const entries: Descriptor[] = [];
  for (const { manifest, blobs, name, signs } of signatures) {
    for (const blob of blobs) await store.putBlob(blob.digest, blob.bytes);
    await store.putBlob(manifest.digest, manifest.bytes);
    entries.push({
      mediaType: manifest.mediaType,
      digest: manifest.digest,
      size: manifest.bytes.length,
      annotations: {
        [REF_NAME]: name,
        [SOURCE_DIGEST]: manifest.digest,
        [SOURCE_MEDIA_TYPE]: manifest.mediaType,
        [MANIFEST_DIGEST]: manifest.digest,
        [SIGNATURE_OF]: signs,
        [PULLED_AT]: new Date().toISOString(),
      },
    });
  }
  await recordEntries(store, entries);
}

/**
 * Under a policy, the version installed (`digest`, of the tag `ref`) must have its signature in the store,
 * for restore to judge it offline: one installed before the policy existed gets its signature fetched,
 * judged and kept now. Nothing happens when the store holds a passing one, or the policy wants none.
 */
export async function ensureSignature(
  client: RegistryClient,
  store: Store,
  policy: Policy | undefined,
  ref: Reference,
  digest: string,
  signal?: AbortSignal,
): Promise<void> {
  if (!policy || !needsSignatures(policy, ref)) return;
  if (await storedSignature(store, policy, ref, digest).catch(() => undefined)) return;
  const signature = await fetchSignature(client, store, policy, ref, digest, signal);
  if (signature) await recordSignatures(store, [signature]);
}
