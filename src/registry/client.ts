/**
 * The registry client: manifests (verified against their digest, size-capped) and blob streams that start
 * at any byte offset, on the request path of connection.ts.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { sha256Of } from "../oci/digest.ts";
import { outsideText } from "../util/text.ts";
import { backoffDelay, sleep } from "../util/async.ts";
import { bareMediaType, isIndexType, isManifestType, MANIFEST_TYPES } from "../oci/mediatypes.ts";
import { formatReference, manifestSelector, type Reference } from "../oci/reference.ts";
import { MAX_MANIFEST_BYTES } from "../oci/manifest.ts";
import { readAtMost, watchBody } from "./body.ts";
import { RegistryConnection } from "./connection.ts";
import { type HostCapability, loadRegistryHosts, type RegistryHost } from "./hosts.ts";
import { HostHealth } from "./host_health.ts";

/** A manifest or index as served: its bytes, their digest, and its media type. */
export interface Manifest {
  bytes: Uint8Array;
  digest: string;
  mediaType: string;
}

/** A blob's bytes as one host serves them, and which host that is. */
export interface BlobBody extends AsyncIterable<Uint8Array> {
  /** The host the bytes come from: a mirror's, or the registry's own. */
  host: string;
}

/** One way to a reference's content: a mirror hosts.toml lists, or the registry's server. */
interface HostRoute {
  /** The reference with `registry` set to the host the requests go to. */
  ref: Reference;
  /** The API root, "/v2" unless hosts.toml overrides the path. */
  root: string;
  /** "?ns=<registry>" for a mirror (containerd sends it, and `berth serve` reads it), else "". */
  query: string;
  mirror: boolean;
  /** The last host to try: it gets every attempt; the others one each, so that failing over is quick. */
  last: boolean;
}

/**
 * Reads manifests and blobs from registries, through the mirrors a hosts.toml lists: a host that fails, or
 * fails mid-blob, hands over to the next one, which continues the blob from the byte reached.
 */
export class RegistryClient extends RegistryConnection {
  /** Bytes served, errors and back-off of every host asked. */
  readonly hosts = new HostHealth();
  #hostLists = new Map<string, Promise<RegistryHost[] | undefined>>();

  /**
   * The hosts to ask for `ref`'s registry that have `need`, in hosts.toml's order with hosts in back-off
   * moved last; just the registry when no hosts.toml applies.
   */
  async #routes(ref: Reference, need: HostCapability): Promise<HostRoute[]> {
    let list = this.#hostLists.get(ref.registry);
    if (!list) {
      list = loadRegistryHosts(ref.registry, this.options.certsDirs);
      this.#hostLists.set(ref.registry, list);
      list.catch(() => this.#hostLists.delete(ref.registry));
    }
    const hosts = await list;
    if (!hosts) return [{ ref, root: "/v2", query: "", mirror: false, last: true }];
    const able = hosts.filter((host) => host.capabilities.has(need));
    if (able.length === 0) {
      throw new BerthError(
        "invalid_input",
        `${hosts[0].file}: no host of ${ref.registry} has the "${need}" capability`,
      );
    }
    for (const host of able) this.useHost(host);
    const ordered = [
      ...able.filter((host) => !this.hosts.inBackoff(host.host)),
      ...able.filter((host) => this.hosts.inBackoff(host.host)),
    ];
    return ordered.map((host, index) => ({
      ref: { ...ref, registry: host.host },
      root: host.path,
      query: host.mirror ? `?ns=${encodeURIComponent(ref.registry)}` : "",
      mirror: host.mirror,
      last: index === ordered.length - 1,
    }));
  }

  /** Runs `attempt` on each host in turn until one succeeds; the last host's failure is the one thrown. */
  async #acrossHosts<T>(
    ref: Reference,
    need: HostCapability,
    signal: AbortSignal | undefined,
    attempt: (route: HostRoute) => Promise<T>,
  ): Promise<T> {
    const routes = await this.#routes(ref, need);
    for (const route of routes) {
      const startedAt = Date.now();
      try {
        const result = await attempt(route);
        this.hosts.succeeded(route.ref.registry, ref.registry, route.mirror, startedAt);
        return result;
      } catch (error) {
        if (signal?.aborted) throw error;
        this.hosts.failed(route.ref.registry, ref.registry, route.mirror, errorMessage(error));
        if (route.last) throw error;
      }
    }
    throw new Error("unreachable: the last route throws");
  }

  /** Reads the hosts.toml files again at the next request (a reload): the hosts' figures are kept. */
  forgetHosts(): void {
    this.#hostLists.clear();
  }

  /**
   * Puts the hosts that served a blob whose bytes did not verify in back-off, so that it is fetched again
   * from another host.
   */
  blame(hosts: Iterable<string>, message: string): void {
    for (const host of hosts) this.hosts.blame(host, message);
  }

  /**
   * The digest, media type and size a tag (or digest) points to, without downloading it when the registry
   * says: a HEAD with the same Accept list as a pull, so the answer is what a pull would get. A registry
   * that gives no Docker-Content-Digest on HEAD (some do not) is asked with a GET and the body hashed.
   */
  resolveDigest(
    ref: Reference,
    signal?: AbortSignal,
  ): Promise<{ digest: string; mediaType: string; size: number }> {
    // A tag only on hosts that may resolve one (containerd's rule); a digest anywhere it can be pulled.
    return this.#acrossHosts(
      ref,
      ref.digest ? "pull" : "resolve",
      signal,
      (route) => this.#resolveDigestAt(ref, route, signal),
    );
  }

  async #resolveDigestAt(
    ref: Reference,
    route: HostRoute,
    signal?: AbortSignal,
  ): Promise<{ digest: string; mediaType: string; size: number }> {
    const name = formatReference(ref);
    const { response, abort, release } = await this.request(route.ref, {
      method: "HEAD",
      target: `${route.root}/${ref.repository}/manifests/${manifestSelector(ref)}${route.query}`,
      headers: new Headers({ Accept: MANIFEST_TYPES.join(", ") }),
      what: `manifest ${name}`,
      attempts: route.last ? undefined : 1,
      signal,
    });
    let head: { digest: string; mediaType: string; size: number } | undefined;
    try {
      await response.body?.cancel();
      if (response.status === 404) {
        throw new BerthError("not_found", `${name}: not found in registry ${route.ref.registry}`);
      }
      if (!response.ok) {
        throw new BerthError(
          "registry_error",
          `${name}: registry ${route.ref.registry} answered HTTP ${response.status}`,
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
      // The GET hashes the body itself and refuses what berth could not pull.
      const manifest = await this.#manifestFrom(ref, route, signal);
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
  getManifest(ref: Reference, signal?: AbortSignal): Promise<Manifest> {
    return this.#acrossHosts(
      ref,
      ref.digest ? "pull" : "resolve",
      signal,
      (route) => this.#manifestFrom(ref, route, signal),
    );
  }

  /** The manifest from one host, asked again (on the last host) when its body stalls or drops. */
  async #manifestFrom(ref: Reference, route: HostRoute, signal?: AbortSignal): Promise<Manifest> {
    // Headers and body together within the deadline: the request's own bound ends with its headers.
    const deadline = this.deadline(`manifest ${formatReference(ref)}`, route.ref.registry, signal);
    try {
      // A body that stalls or drops is asked for again, as a failed request is; the deadline bounds both.
      let failure: BerthError | undefined;
      const attempts = route.last ? this.options.attempts : 1;
      for (let attempt = 1; attempt <= attempts; attempt++) {
        if (attempt > 1) await sleep(backoffDelay(attempt - 1, this.options), deadline.signal);
        const result = await this.#getManifest(ref, route, deadline.signal);
        if (!(result instanceof BerthError)) return result;
        failure = result;
      }
      throw failure;
    } finally {
      deadline.done();
    }
  }

  /** One GET of a manifest; a transient failure to read its body is returned, to be tried again. */
  async #getManifest(ref: Reference, route: HostRoute, signal: AbortSignal): Promise<Manifest | BerthError> {
    const selector = manifestSelector(ref);
    const name = formatReference(ref);
    const host = route.ref.registry;
    const { response, abort, release } = await this.request(route.ref, {
      target: `${route.root}/${ref.repository}/manifests/${selector}${route.query}`,
      headers: new Headers({ Accept: MANIFEST_TYPES.join(", ") }),
      what: `manifest ${name}`,
      attempts: route.last ? undefined : 1,
      signal,
    });
    try {
      if (response.status === 404) {
        const detail = await this.errorText(response, abort.signal);
        throw new BerthError("not_found", `${name}: not found in registry ${host} (${detail})`);
      }
      if (!response.ok) {
        const detail = await this.errorText(response, abort.signal);
        throw new BerthError("registry_error", `${name}: registry ${host} answered ${detail}`);
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
      this.hosts.served(host, ref.registry, route.mirror, bytes.length);
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
  ): Promise<BlobBody> {
    const opened = await this.#acrossHosts(ref, "pull", signal, async (route) => {
      const headers = new Headers();
      if (offset > 0) headers.set("Range", `bytes=${offset}-${size - 1}`);
      const what = `blob ${digest} of ${formatReference(ref)}`;
      const { response, abort, release } = await this.request(route.ref, {
        target: `${route.root}/${ref.repository}/blobs/${digest}${route.query}`,
        headers,
        what,
        attempts: route.last ? undefined : 1,
        signal,
      });
      try {
        const body = await this.#blobBody(response, abort, release, { offset, size, what, ref: route.ref });
        return { body, route };
      } catch (error) {
        release();
        abort.abort();
        throw error;
      }
    });
    return this.#counted(opened.body, opened.route, ref.registry);
  }

  /** A host's blob body, counted as it is read; a body that fails puts its host in back-off. */
  #counted(body: AsyncIterable<Uint8Array>, route: HostRoute, registry: string): BlobBody {
    const hosts = this.hosts;
    const host = route.ref.registry;
    return {
      host,
      async *[Symbol.asyncIterator]() {
        try {
          for await (const chunk of body) {
            hosts.served(host, registry, route.mirror, chunk.length);
            yield chunk;
          }
        } catch (error) {
          hosts.failed(host, registry, route.mirror, errorMessage(error));
          throw error;
        }
      },
    };
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
