/**
 * Digests: the one place that decides what a digest is, and incremental SHA-256.
 *
 * A digest from outside (a registry, a bundle, a file in the store) is checked where it enters
 * (`parseDigest`), and again in `digestHex`, the one function whose result becomes a file name: as
 * containerd's `blobPath` validates before it joins, a digest that slipped past a door still cannot name a
 * path outside the store. Only sha256 is accepted: exactly `sha256:` and 64 lowercase hex digits.
 *
 * node:crypto's createHash streams at about 2 GB/s, far faster than crypto.subtle, which cannot hash
 * incrementally at all.
 */
import { createHash, type Hash } from "node:crypto";
import { BerthError } from "../util/errors.ts";
import { quoted, QUOTED_CHARACTERS } from "../util/text.ts";

const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;
/** The OCI digest grammar (algorithm ":" encoded), to tell "another algorithm" from "not a digest". */
const ANY_DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** The digest of no bytes at all (the config of compose apps published before Oct 2024). */
export const EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** Whether `value` is a well-formed sha256 digest. */
export function isDigest(value: unknown): value is string {
  return typeof value === "string" && SHA256_DIGEST.test(value);
}

/**
 * Checks that `digest` is a well-formed sha256 digest and returns it; `what` names it in the error
 * ("app:1 manifest layers[2].digest"). Another algorithm is `unsupported`; anything else `invalid_input`.
 */
export function parseDigest(digest: unknown, what: string): string {
  if (isDigest(digest)) return digest;
  if (
    typeof digest === "string" && ANY_DIGEST.test(digest) && !digest.startsWith("sha256:") &&
    digest.length <= QUOTED_CHARACTERS
  ) {
    throw new BerthError(
      "unsupported",
      `${what}: digest algorithm of ${quoted(digest)} is not supported (only sha256)`,
    );
  }
  throw new BerthError(
    "invalid_input",
    `${what}: ${quoted(digest)} is not a valid digest (expected sha256: and 64 lowercase hex digits)`,
  );
}

/**
 * The hex part of a sha256 digest: what becomes a file name under `blobs/sha256/` and `ingest/`. Refuses
 * anything that is not a valid digest, so no caller can build a path from one.
 */
export function digestHex(digest: string): string {
  return parseDigest(digest, "digest").slice("sha256:".length);
}

/** An incremental SHA-256 that yields an OCI digest string. */
export class Sha256 {
  #hash: Hash = createHash("sha256");
  update(chunk: Uint8Array): this {
    this.#hash.update(chunk);
    return this;
  }
  digest(): string {
    return "sha256:" + this.#hash.digest("hex");
  }
}

/** The OCI digest of a byte string. */
export function sha256Of(bytes: Uint8Array): string {
  return new Sha256().update(bytes).digest();
}

/** The OCI digest of a file's contents, read in a stream (symlinks followed). */
export async function hashFile(path: string): Promise<string> {
  const file = await Deno.open(path, { read: true }); // its readable closes it at the end
  const hash = new Sha256();
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest();
}
