/**
 * The registry client: manifests (verified against their digest, size-capped) and blob streams that start
 * at any byte offset, on the request path of connection.ts.
 */
import { BerthError } from "../util/errors.ts";
import { sha256Of } from "../oci/digest.ts";
import { outsideText } from "../util/text.ts";
import { backoffDelay, sleep } from "../util/async.ts";
import { bareMediaType, isIndexType, isManifestType, MANIFEST_TYPES } from "../oci/mediatypes.ts";
import { formatReference, manifestSelector, type Reference } from "../oci/reference.ts";
import { MAX_MANIFEST_BYTES } from "../oci/manifest.ts";
import { readAtMost, watchBody } from "./body.ts";
import { RegistryConnection } from "./connection.ts";

/** A manifest or index as served: its bytes, their digest, and its media type. */
export interface Manifest {
  bytes: Uint8Array;
  digest: string;
  mediaType: string;
}

/** Reads manifests and blobs from registries. */
export class RegistryClient extends RegistryConnection {
  /**
   * The digest, media type and size a tag (or digest) points to, without downloading it when the registry
   * says: a HEAD with the same Accept list as a pull, so the answer is what a pull would get. A registry
   * that gives no Docker-Content-Digest on HEAD (some do not) is asked with a GET and the body hashed.
   */
  async resolveDigest(
    ref: Reference,
    signal?: AbortSignal,
  ): Promise<{ digest: string; mediaType: string; size: number }> {
    const name = formatReference(ref);
    const { response, abort, release } = await this.request(ref, {
      method: "HEAD",
      target: `/v2/${ref.repository}/manifests/${manifestSelector(ref)}`,
      headers: new Headers({ Accept: MANIFEST_TYPES.join(", ") }),
      what: `manifest ${name}`,
      signal,
    });
    let head: { digest: string; mediaType: string; size: number } | undefined;
    try {
      await response.body?.cancel();
      if (response.status === 404) {
        throw new BerthError("not_found", `${name}: not found in registry ${ref.registry}`);
      }
      if (!response.ok) {
        throw new BerthError(
          "registry_error",
          `${name}: registry ${ref.registry} answered HTTP ${response.status}`,
        );
      }
      const digest = response.headers.get("docker-content-digest") ?? "";
      const mediaType = bareMediaType(response.headers.get("content-type"));
      const size = Number(response.headers.get("content-length") ?? NaN);
      if (
        /^sha256:[a-f0-9]{64}$/.test(digest) && (isIndexType(mediaType) || isManifestType(mediaType)) &&
        Number.isSafeInteger(size) && size > 0 && size <= MAX_MANIFEST_BYTES
      ) {
        head = { digest, mediaType, size };
      }
    } finally {
      release();
      abort.abort();
    }
    if (!head) {
      // getManifest hashes the body itself and refuses what berth could not pull.
      const manifest = await this.getManifest(ref, signal);
      return { digest: manifest.digest, mediaType: manifest.mediaType, size: manifest.bytes.length };
    }
    if (ref.digest && ref.digest !== head.digest) {
      throw new BerthError(
        "verification_failed",
        `${name}: registry says the manifest's digest is ${head.digest}, not ${ref.digest}`,
      );
    }
    return head;
  }

  /**
   * Fetches a manifest or index by tag or digest. The body is hashed here: it must match a digest
   * reference, and the registry's Docker-Content-Digest when given. Its `mediaType` must agree with the
   * Content-Type, and it must be one of the four supported types and at most 4 MiB.
   */
  async getManifest(ref: Reference, signal?: AbortSignal): Promise<Manifest> {
    // Headers and body together within the deadline: the request's own bound ends with its headers.
    const deadline = this.deadline(`manifest ${formatReference(ref)}`, ref.registry, signal);
    try {
      // A body that stalls or drops is asked for again, as a failed request is; the deadline bounds both.
      let failure: BerthError | undefined;
      for (let attempt = 1; attempt <= this.options.attempts; attempt++) {
        if (attempt > 1) await sleep(backoffDelay(attempt - 1, this.options), deadline.signal);
        const result = await this.#getManifest(ref, deadline.signal);
        if (!(result instanceof BerthError)) return result;
        failure = result;
      }
      throw failure;
    } finally {
      deadline.done();
    }
  }

  /** One GET of a manifest; a transient failure to read its body is returned, to be tried again. */
  async #getManifest(ref: Reference, signal: AbortSignal): Promise<Manifest | BerthError> {
    const selector = manifestSelector(ref);
    const name = formatReference(ref);
    const { response, abort, release } = await this.request(ref, {
      target: `/v2/${ref.repository}/manifests/${selector}`,
      headers: new Headers({ Accept: MANIFEST_TYPES.join(", ") }),
      what: `manifest ${name}`,
      signal,
    });
    try {
      if (response.status === 404) {
        const detail = await this.errorText(response, abort.signal);
        throw new BerthError("not_found", `${name}: not found in registry ${ref.registry} (${detail})`);
      }
      if (!response.ok) {
        const detail = await this.errorText(response, abort.signal);
        throw new BerthError("registry_error", `${name}: registry ${ref.registry} answered ${detail}`);
      }
      const length = Number(response.headers.get("content-length") ?? "0");
      if (length > MAX_MANIFEST_BYTES) {
        await response.body?.cancel();
        throw new BerthError(
          "unsupported",
          `${name}: manifest is ${length} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`,
        );
      }
      // Content-Length may lie or be absent: the cap holds whatever arrives.
      let read: { bytes: Uint8Array; truncated: boolean };
      try {
        read = await readAtMost(response.body, MAX_MANIFEST_BYTES, {
          what: `manifest ${name}`,
          stallMs: this.options.stallTimeoutMs,
          signal: abort.signal,
        });
      } catch (error) {
        if (signal.aborted || !(error instanceof BerthError) || !error.transient) throw error;
        return error;
      }
      const { bytes, truncated } = read;
      if (truncated) {
        throw new BerthError("unsupported", `${name}: manifest is over the ${MAX_MANIFEST_BYTES}-byte limit`);
      }
      return checkManifestBody(ref, bytes, response.headers);
    } finally {
      release();
      abort.abort();
    }
  }

  /**
   * Opens a blob's bytes from `offset` to its end. Asks with `Range: bytes=offset-(size-1)` and checks the
   * 206's Content-Range; a registry that ignores Range (200) has the first `offset` bytes skipped here.
   * The stream errors with a transient BerthError when the body stalls for `stallTimeoutMs`.
   */
  async openBlob(
    ref: Reference,
    digest: string,
    size: number,
    offset: number,
    signal?: AbortSignal,
  ): Promise<AsyncIterable<Uint8Array>> {
    const headers = new Headers();
    if (offset > 0) headers.set("Range", `bytes=${offset}-${size - 1}`);
    const what = `blob ${digest} of ${formatReference(ref)}`;
    const { response, abort, release } = await this.request(ref, {
      target: `/v2/${ref.repository}/blobs/${digest}`,
      headers,
      what,
      signal,
    });
    try {
      return await this.#blobBody(response, abort, release, { offset, size, what, ref });
    } catch (error) {
      release();
      abort.abort();
      throw error;
    }
  }

  async #blobBody(
    response: Response,
    abort: AbortController,
    release: () => void,
    { offset, size, what, ref }: { offset: number; size: number; what: string; ref: Reference },
  ): Promise<AsyncIterable<Uint8Array>> {
    let skip = 0;
    if (response.status === 404) {
      const detail = await this.errorText(response, abort.signal);
      throw new BerthError("not_found", `${what}: not found in ${ref.registry} (${detail})`);
    }
    if (response.status === 206) {
      // Exactly the range asked for: another start would splice wrong bytes in, another end or total
      // means the registry serves something else than the blob of `size` bytes.
      const header = response.headers.get("content-range") ?? "";
      const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header);
      if (
        !range || Number(range[1]) !== offset || Number(range[2]) !== size - 1 ||
        (range[3] !== "*" && Number(range[3]) !== size)
      ) {
        await response.body?.cancel();
        throw new BerthError(
          "registry_error",
          `${what}: asked for bytes ${offset}-${size - 1} of ${size}, registry answered Content-Range "${
            outsideText(header, 80)
          }"`,
          { transient: true },
        );
      }
    } else if (response.status === 200) {
      skip = offset;
    } else {
      const detail = await this.errorText(response, abort.signal);
      throw new BerthError("registry_error", `${what}: registry ${ref.registry} answered ${detail}`);
    }
    if (!response.body) {
      throw new BerthError("registry_error", `${what}: empty response body`, { transient: true });
    }
    return watchBody(response.body, abort, release, skip, this.options.stallTimeoutMs, what);
  }
}

/**
 * Checks a manifest body against what the reference and the registry say: its digest (the reference's,
 * and Docker-Content-Digest when given), its mediaType against Content-Type, and that it is one of the
 * four supported types.
 */
function checkManifestBody(ref: Reference, bytes: Uint8Array, headers: Headers): Manifest {
  const name = formatReference(ref);
  const digest = sha256Of(bytes);
  if (ref.digest && ref.digest !== digest) {
    throw new BerthError(
      "verification_failed",
      `${name}: registry served a manifest whose digest is ${digest}, not ${ref.digest}`,
    );
  }
  const served = headers.get("docker-content-digest");
  if (served?.startsWith("sha256:") && served !== digest) {
    throw new BerthError(
      "verification_failed",
      `${name}: manifest body hashes to ${digest} but the registry says ${outsideText(served, 80)}`,
    );
  }
  const contentType = bareMediaType(headers.get("content-type"));
  let parsed: { mediaType?: unknown; schemaVersion?: unknown };
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new BerthError("unsupported", `${name}: manifest ${digest} is not valid JSON`);
  }
  const bodyType = typeof parsed?.mediaType === "string" ? parsed.mediaType : undefined;
  if (bodyType && contentType && bodyType !== contentType) {
    throw new BerthError(
      "verification_failed",
      `${name}: manifest says mediaType ${outsideText(bodyType, 100)} but was served as ${
        outsideText(contentType, 100)
      }`,
    );
  }
  const mediaType = bodyType ?? contentType;
  if (!isIndexType(mediaType) && !isManifestType(mediaType)) {
    throw new BerthError(
      "unsupported",
      `${name}: unsupported manifest media type "${
        outsideText(mediaType, 100) || "(none)"
      }" (berth reads OCI and Docker v2 ` +
        `manifests and indexes)`,
    );
  }
  return { bytes, digest, mediaType };
}
