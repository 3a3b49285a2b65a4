/**
 * Pushing to a registry, for `berth publish`: blobs (asked for first, mounted from another repository of the
 * same registry when one is named, else uploaded in one PUT) and manifests. It is built on the client's one
 * request path, so retries, authentication, TLS, proxies and redirects behave exactly as for a pull; what
 * differs is the token scope (pull and push on the target repository) and which requests may be repeated.
 *
 * An upload is a session: `POST …/blobs/uploads/` opens it and the `PUT <Location>?digest=…` closes it
 * with the bytes. A failed PUT leaves the session in a state the client cannot know, so an upload is never
 * retried by repeating the PUT: it starts again from a new POST (after asking whether the blob landed
 * after all). A manifest PUT names its content completely and is simply repeated.
 */
import { outsideText } from "../util/text.ts";
import { BerthError } from "../util/errors.ts";
import { parseDigest, sha256Of } from "../oci/digest.ts";
import { repositoryScope } from "./auth.ts";
import { RegistryClient } from "./client.ts";
import { MAX_MANIFEST_BYTES } from "../oci/manifest.ts";
import { readRegistryError, type RegistryErrorBody } from "./body.ts";
import type { RegistryRequest } from "./options.ts";
import { backoffDelay, sleep } from "../util/async.ts";
import { isIndexType, isManifestType } from "../oci/mediatypes.ts";
import { formatReference, type Reference } from "../oci/reference.ts";

/** What `pushBlob` did: nothing (the repository had it), a mount from another repository, or an upload. */
export type BlobPushResult = "exists" | "mounted" | "uploaded";

/** pushBlob's optional mount source and abort signal; without `from` it checks for the blob, then uploads. */
export interface PushBlobOptions {
  /**
   * Another repository of the same registry that may hold the blob (the image a service is built on).
   * The registry is asked to mount it from there, which copies nothing; when it cannot, berth uploads.
   */
  from?: string;
  signal?: AbortSignal;
}

/**
 * The slowest upload that is still waited for: an upload's body is sent before the answer's headers, so
 * the header timeout is stretched by the time the bytes take at this rate.
 */
const MIN_UPLOAD_BYTES_PER_SECOND = 64 * 1024;

/** An exchange whose body has been read: the error body for a failure, nothing otherwise. */
interface Answer {
  response: Response;
  error: RegistryErrorBody;
}

/** `host/repo`, how push errors name the place they were pushing to. */
function repositoryName(ref: Reference): string {
  return `${ref.registry}/${ref.repository}`;
}

/**
 * Turns a refusal into the one line a user sees, by the distribution spec's error codes: what was refused,
 * where, what the registry said, and where there is one, the way out.
 */
function pushFailure(ref: Reference, what: string, answer: Answer, size?: number): BerthError {
  const { status } = answer.response;
  const { code, text } = answer.error;
  const said = code ? `HTTP ${status} ${text}` : text;
  const registry = `registry ${ref.registry}`;
  if (status === 401 || status === 403 || code === "DENIED" || code === "UNAUTHORIZED") {
    return new BerthError(
      "auth_failed",
      `${registry} denied ${what} (${said}): push access to ${ref.repository} is missing`,
    );
  }
  if (status === 413) {
    return new BerthError(
      "registry_error",
      `${registry} refused ${what} as too large${size === undefined ? "" : ` (${size} bytes)`} (${said})`,
    );
  }
  if (code === "NAME_UNKNOWN") {
    return new BerthError(
      "not_found",
      `${registry} has no repository ${ref.repository} and did not create it for ${what} (${said}); ` +
        `create it in the registry first`,
    );
  }
  if (code === "MANIFEST_BLOB_UNKNOWN" || code === "BLOB_UNKNOWN") {
    return new BerthError(
      "not_found",
      `${registry} refused ${what}: it refers to a blob that ${
        repositoryName(ref)
      } does not hold (${said}); ` +
        `push the blobs first`,
    );
  }
  if (code === "BLOB_UPLOAD_UNKNOWN" || code === "BLOB_UPLOAD_INVALID") {
    // The session expired or broke: a new one may well succeed.
    return new BerthError("registry_error", `${registry} lost the session of ${what} (${said})`, {
      transient: true,
    });
  }
  if (code === "DIGEST_INVALID" || code === "SIZE_INVALID") {
    return new BerthError("verification_failed", `${registry} says ${what} does not match (${said})`);
  }
  if (status === 405 || code === "UNSUPPORTED") {
    return new BerthError(
      "unsupported",
      `${registry} does not accept ${what} (${said}); it may be read-only or a pull-through cache`,
    );
  }
  if (code === "MANIFEST_INVALID" || code === "NAME_INVALID" || code === "TAG_INVALID") {
    return new BerthError("invalid_input", `${registry} refused ${what} (${said})`);
  }
  return new BerthError("registry_error", `${registry} answered ${what} with ${said}`);
}

/** A finished upload and a stored manifest are answered 201 Created, and nothing else. */
function expectCreated(ref: Reference, what: string, answer: Answer, size: number): void {
  const { status } = answer.response;
  if (status === 201) return;
  if (status >= 400) throw pushFailure(ref, what, answer, size);
  throw new BerthError(
    "registry_error",
    `registry ${ref.registry} answered ${what} with HTTP ${status} instead of 201 Created`,
  );
}

/** Adds `digest=` to an upload Location, keeping whatever query the registry put there byte for byte. */
export function withDigest(location: URL, digest: string): URL {
  const url = new URL(location);
  const param = `digest=${encodeURIComponent(digest)}`;
  url.search = url.search.length > 1 ? `${url.search}&${param}` : `?${param}`;
  return url;
}

/**
 * A registry client that can also push. It is a RegistryClient (pulls, `resolveDigest`) and shares its
 * connections, credentials and token cache, so one instance serves a whole `publish`.
 */
export class RegistryPusher extends RegistryClient {
  /** Sends one request and reads the (small) body: an error body is parsed, any other one discarded. */
  async #exchange(ref: Reference, request: RegistryRequest): Promise<Answer> {
    const { response, abort, release } = await this.request(ref, request);
    try {
      if (response.status >= 400) return { response, error: await readRegistryError(response) };
      await response.body?.cancel();
      return { response, error: { text: `HTTP ${response.status}` } };
    } finally {
      release();
      abort.abort();
    }
  }

  /**
   * The size of the blob `digest` in `ref`'s repository, or undefined when the repository does not hold it.
   * Asked with the push scope: it is the first request of a push, and one token then serves all of it.
   */
  async blobExists(ref: Reference, digest: string, signal?: AbortSignal): Promise<number | undefined> {
    const what = `blob ${digest} in ${repositoryName(ref)}`;
    parseDigest(digest, what);
    const answer = await this.#exchange(ref, {
      method: "HEAD",
      target: `/v2/${ref.repository}/blobs/${digest}`,
      scopes: [repositoryScope(ref.repository, "pull,push")],
      what: `check of ${what}`,
      signal,
    });
    const { response } = answer;
    if (response.status === 404) return undefined;
    if (response.status !== 200) throw pushFailure(ref, `check of ${what}`, answer);
    const size = Number(response.headers.get("content-length") ?? NaN);
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new BerthError(
        "registry_error",
        `registry ${ref.registry} answered the check of ${what} without a valid Content-Length`,
      );
    }
    return size;
  }

  /**
   * Puts `bytes` into `ref`'s repository as blob `digest`, unless it is already there. With `from`, the
   * registry is first asked to mount the blob from that repository. An upload is POST, then one monolithic
   * PUT; a failed upload starts again from a new POST, up to `attempts` times.
   */
  async pushBlob(
    ref: Reference,
    digest: string,
    bytes: Uint8Array,
    options: PushBlobOptions = {},
  ): Promise<BlobPushResult> {
    const { signal } = options;
    const what = `upload of blob ${digest} to ${repositoryName(ref)}`;
    parseDigest(digest, what);
    const actual = sha256Of(bytes);
    if (actual !== digest) {
      throw new BerthError(
        "invalid_input",
        `${what}: the ${bytes.length} bytes given hash to ${actual}, not to ${digest}`,
      );
    }
    if (await this.#holds(ref, digest, bytes.length, signal)) return "exists";

    let location: URL | undefined;
    if (options.from !== undefined && options.from !== ref.repository) {
      const mount = await this.#mount(ref, digest, options.from, signal);
      if (mount === "mounted") return "mounted";
      location = mount;
    }
    const attempts = this.options.attempts;
    let lastError: BerthError | undefined;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) await sleep(backoffDelay(attempt - 1, this.options), signal);
      try {
        // A PUT whose answer was lost may have stored the blob all the same.
        if (attempt > 1 && await this.#holds(ref, digest, bytes.length, signal)) return "uploaded";
        location ??= await this.#startUpload(ref, what, signal);
        await this.#finishUpload(ref, location, digest, bytes, what, signal);
        return "uploaded";
      } catch (error) {
        location = undefined;
        if (signal?.aborted) throw signal.reason;
        if (!(error instanceof BerthError) || !error.transient) throw error;
        lastError = error;
      }
    }
    throw new BerthError(
      lastError!.reason,
      `${lastError!.message} (gave up after ${attempts} upload${attempts === 1 ? "" : "s"})`,
      { cause: lastError, transient: true },
    );
  }

  /** Whether the repository holds the blob; a copy of another size means the registry is broken. */
  async #holds(ref: Reference, digest: string, size: number, signal?: AbortSignal): Promise<boolean> {
    const held = await this.blobExists(ref, digest, signal);
    if (held === undefined) return false;
    if (held !== size) {
      throw new BerthError(
        "verification_failed",
        `registry ${ref.registry} holds blob ${digest} in ${ref.repository} with ${held} bytes, ` +
          `but the blob has ${size}`,
      );
    }
    return true;
  }

  /**
   * Asks for a cross-repository mount. "mounted" when the registry did it (201); the Location of the upload
   * session it opened instead (202); undefined when the mount was refused in any other way, so that a plain
   * upload follows and reports whatever is really wrong.
   */
  async #mount(
    ref: Reference,
    digest: string,
    from: string,
    signal?: AbortSignal,
  ): Promise<"mounted" | URL | undefined> {
    const what = `mount of blob ${digest} from ${from} to ${repositoryName(ref)}`;
    const query = `mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`;
    let answer: Answer;
    try {
      answer = await this.#exchange(ref, {
        method: "POST",
        target: `/v2/${ref.repository}/blobs/uploads/?${query}`,
        // Reading the source is part of the mount: one token covers both repositories.
        scopes: [repositoryScope(ref.repository, "pull,push"), repositoryScope(from)],
        what,
        attempts: 1,
        signal,
      });
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      // No read access to `from`, or a hiccup: the upload does not need the mount.
      if (error instanceof BerthError && (error.transient || error.reason === "auth_failed")) {
        return undefined;
      }
      throw error;
    }
    const { response } = answer;
    if (response.status === 201) {
      this.#checkDigestHeader(ref, response, digest, what);
      return "mounted";
    }
    if (response.status === 202) return this.#uploadLocation(ref, response, what);
    return undefined;
  }

  /** Opens an upload session; its Location, absolute. */
  async #startUpload(ref: Reference, what: string, signal?: AbortSignal): Promise<URL> {
    const answer = await this.#exchange(ref, {
      method: "POST",
      target: `/v2/${ref.repository}/blobs/uploads/`,
      scopes: [repositoryScope(ref.repository, "pull,push")],
      what,
      // Retried by pushBlob, which also asks first whether the blob arrived after all.
      attempts: 1,
      signal,
    });
    if (answer.response.status !== 202) throw pushFailure(ref, what, answer);
    return this.#uploadLocation(ref, answer.response, what);
  }

  /** The Location of an upload session, resolved against the request (registries send it either way). */
  #uploadLocation(ref: Reference, response: Response, what: string): URL {
    const location = response.headers.get("location");
    if (!location) {
      throw new BerthError(
        "registry_error",
        `registry ${ref.registry} opened ${what} without a Location to upload to`,
      );
    }
    try {
      return new URL(location, response.url);
    } catch {
      throw new BerthError(
        "registry_error",
        `registry ${ref.registry} opened ${what} with an invalid Location "${outsideText(location, 200)}"`,
      );
    }
  }

  /** Sends the whole blob in one PUT to the session's Location, which closes the session. */
  async #finishUpload(
    ref: Reference,
    location: URL,
    digest: string,
    bytes: Uint8Array,
    what: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const answer = await this.#exchange(ref, {
      method: "PUT",
      target: withDigest(location, digest).href,
      headers: new Headers({ "Content-Type": "application/octet-stream" }),
      body: bytes,
      scopes: [repositoryScope(ref.repository, "pull,push")],
      what,
      attempts: 1,
      timeoutMs: this.options.requestTimeoutMs + (bytes.length / MIN_UPLOAD_BYTES_PER_SECOND) * 1000,
      signal,
    });
    expectCreated(ref, what, answer, bytes.length);
    this.#checkDigestHeader(ref, answer.response, digest, what);
  }

  /** The registry's Docker-Content-Digest, when it sends one, must be the digest pushed. */
  #checkDigestHeader(ref: Reference, response: Response, digest: string, what: string): void {
    const served = response.headers.get("docker-content-digest");
    if (served !== null && served !== digest) {
      throw new BerthError(
        "verification_failed",
        `registry ${ref.registry} stored ${served} for ${what}`,
      );
    }
  }

  /**
   * PUTs a manifest (or index) under `ref`'s tag, or under its digest when it has none; returns the digest,
   * sha256 of `bytes`, which the registry must confirm. The bytes are checked first as berth checks what it
   * pulls: valid JSON, one of the four manifest types, a `mediaType` field (if any) equal to `mediaType`, at
   * most 4 MiB, and equal to `ref`'s digest when it has one. The blobs it names must have been pushed.
   */
  async pushManifest(
    ref: Reference,
    bytes: Uint8Array,
    mediaType: string,
    signal?: AbortSignal,
  ): Promise<string> {
    const name = formatReference(ref);
    const digest = sha256Of(bytes);
    const what = `push of manifest ${digest} as ${name}`;
    if (bytes.length > MAX_MANIFEST_BYTES) {
      throw new BerthError(
        "unsupported",
        `${what}: manifest is ${bytes.length} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`,
      );
    }
    if (ref.digest && ref.digest !== digest) {
      throw new BerthError("invalid_input", `${what}: the bytes hash to ${digest}, not to ${ref.digest}`);
    }
    if (!isIndexType(mediaType) && !isManifestType(mediaType)) {
      throw new BerthError(
        "unsupported",
        `${what}: media type "${mediaType}" is not an OCI or Docker v2 manifest or index`,
      );
    }
    let body: { mediaType?: unknown };
    try {
      body = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      throw new BerthError("invalid_input", `${what}: manifest is not valid JSON`);
    }
    if (typeof body?.mediaType === "string" && body.mediaType !== mediaType) {
      throw new BerthError(
        "invalid_input",
        `${what}: manifest says mediaType ${body.mediaType} but is pushed as ${mediaType}`,
      );
    }
    // A tag is what publish names; `name:tag@digest` pushes the tag and checks the digest above.
    const answer = await this.#exchange(ref, {
      method: "PUT",
      target: `/v2/${ref.repository}/manifests/${ref.tag ?? digest}`,
      headers: new Headers({ "Content-Type": mediaType }),
      body: bytes,
      scopes: [repositoryScope(ref.repository, "pull,push")],
      what,
      signal,
    });
    expectCreated(ref, what, answer, bytes.length);
    this.#checkDigestHeader(ref, answer.response, digest, what);
    return digest;
  }
}
