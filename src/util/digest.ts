/**
 * Digests: parsing and incremental SHA-256. node:crypto's createHash streams at about 2 GB/s, far faster
 * than crypto.subtle, which cannot hash incrementally at all.
 */
import { createHash, type Hash } from "node:crypto";
import { BerthError } from "./errors.ts";

const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;
const ANY_DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** Checks that `digest` is a well-formed sha256 digest and returns it; `what` names it in the error. */
export function parseDigest(digest: unknown, what: string): string {
  if (typeof digest === "string" && SHA256_DIGEST.test(digest)) return digest;
  if (typeof digest === "string" && ANY_DIGEST.test(digest)) {
    throw new BerthError(
      "unsupported",
      `${what}: digest algorithm of "${digest}" is not supported (only sha256)`,
    );
  }
  throw new BerthError("invalid_input", `${what}: "${String(digest)}" is not a valid sha256 digest`);
}

/** The hex part of a sha256 digest. */
export function digestHex(digest: string): string {
  return digest.slice("sha256:".length);
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
