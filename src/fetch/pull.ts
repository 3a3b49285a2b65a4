/**
 * `pull`: reference → manifest (chosen for the platform) → config and layers, into the store.
 *
 * Order matters for crash safety: blobs first (each verified and committed on its own), then manifests,
 * and last the `index.json` entry. So a reference appears in the store only when everything it needs is
 * there; a crash anywhere leaves committed blobs (kept, never fetched again) and resumable ingests.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { EMPTY_SHA256, sha256Of } from "../oci/digest.ts";
import type { Manifest, RegistryClient } from "../registry/client.ts";
import { backoffDelay, sleep } from "../util/async.ts";
import { isIndexType, OCI_INDEX, OCI_MANIFEST } from "../oci/mediatypes.ts";
import { choosePlatform, formatPlatform, normalizePlatform, type Platform } from "../oci/platform.ts";
import { formatReference, parseReference, type Reference } from "../oci/reference.ts";
import { APP_JSON_MEDIA_TYPE, type AppManifest, isAppManifest, parseAppManifest } from "../app/bundle.ts";
// Compose parsing (app/stored.ts: yaml, zod) is imported only when an app is pulled: it costs start-up time.
import { appName } from "../app/name.ts";
import type { Store } from "../store/store.ts";
import { resumableBytes } from "../store/ingest.ts";
import type { Descriptor, ImageManifest } from "../oci/descriptor.ts";
import {
  APP_NAME,
  MANIFEST_DIGEST,
  PLATFORM,
  PULLED_AT,
  PULLED_FOR_APP,
  REF_NAME,
  SOURCE_DIGEST,
  SOURCE_MEDIA_TYPE,
} from "../store/annotations.ts";
import { RateLimiter } from "./rate.ts";
import { type BlobLimits, checkBlobSize, DEFAULT_BLOB_LIMITS } from "./limits.ts";
import { checkChildType, parseImageManifest, parseIndex } from "../oci/manifest.ts";

/** What one reference resolved to, before any blob is fetched. */
export interface ResolvedImage {
  ref: Reference;
  name: string;
  /** What the registry served for the reference: an index or the manifest itself. */
  source: Manifest;
  /** The image manifest chosen for the platform (equals `source` when no index). */
  manifest: Manifest;
  parsed: ImageManifest;
  /** The platform from the index entry; for a lone manifest, read from its config after download. */
  platform?: Platform;
  /** Config and layers (and, for an app, its bundle index). */
  blobs: Descriptor[];
  /** Set when the manifest is a compose app rather than a container image. */
  app?: AppManifest;
}

export type PullEvent =
  | {
    type: "planned";
    name: string;
    digest: string;
    bytesTotal: number;
    bytesDone: number;
    blobsTotal: number;
    blobsDone: number;
    blobs: PlannedBlob[];
  }
  | { type: "resolved"; name: string; digest: string; platform?: string; blobs: number; bytesTotal: number }
  | { type: "blob-start"; digest: string; size: number; offset: number }
  | { type: "blob-progress"; digest: string; bytesDone: number; size: number }
  | { type: "blob-retry"; digest: string; offset: number; error: string }
  | { type: "blob-done"; digest: string; size: number; bytesFetched: number; alreadyStored: boolean }
  | { type: "ref-done"; name: string; digest: string; platform?: string };

export interface PullOptions {
  platform: Platform;
  /** Blobs downloaded at once. */
  parallel: number;
  onEvent?: (event: PullEvent) => void;
  signal?: AbortSignal;
  /** Download limit in bytes per second for the whole pull (every blob together); absent: none. */
  rateLimit?: number;
  /**
   * The storage pre-flight: called before any blob of a plan is downloaded; throwing stops the pull there.
   * For a compose app it is called twice: first with `partial` set, for the app's own blobs (bundle, bundle
   * index, layers meta) by their declared sizes, which must be fetched to learn the images it pins; then
   * with the whole plan, before any layer.
   */
  preflight?: (plan: PullPlan) => Promise<void>;
  /** Caps on blobs read whole (default DEFAULT_BLOB_LIMITS). */
  limits?: BlobLimits;
}

export interface PullResult {
  name: string;
  digest: string;
  manifestDigest: string;
  platform?: string;
  blobs: number;
  bytesTotal: number;
  bytesFetched: number;
  /** For an app: its name, and the images its compose file pins (pulled with it). */
  app?: string;
  images?: PullResult[];
}

/** Fetches and checks the manifest chain of one reference; touches nothing on disk. */
export async function resolveImage(
  client: RegistryClient,
  ref: Reference,
  platform: Platform,
  signal?: AbortSignal,
  limits: BlobLimits = DEFAULT_BLOB_LIMITS,
): Promise<ResolvedImage> {
  const name = formatReference(ref);
  const source = await client.getManifest(ref, signal);
  let manifest = source;
  let chosenPlatform: Platform | undefined;
  if (isIndexType(source.mediaType)) {
    const index = parseIndex(source.bytes, name);
    const entry = choosePlatform(index.manifests, platform, name);
    checkChildType(entry, name);
    chosenPlatform = entry.platform
      ? normalizePlatform({
        os: entry.platform.os,
        architecture: entry.platform.architecture,
        variant: entry.platform.variant,
      })
      : undefined;
    manifest = await client.getManifest({ ...ref, tag: undefined, digest: entry.digest }, signal);
    if (manifest.bytes.length !== entry.size) {
      throw new BerthError(
        "verification_failed",
        `${name}: manifest ${entry.digest} is ${manifest.bytes.length} bytes, the index says ${entry.size}`,
      );
    }
  }
  const what = `${name} manifest ${manifest.digest}`;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(manifest.bytes));
  } catch {
    throw new BerthError("invalid_input", `${what}: not JSON`);
  }
  if (isAppManifest(json)) {
    const app = parseAppManifest(manifest.bytes, what);
    // Only what the format defines is fetched: the bundle, its index and the layers meta (v1).
    checkBlobSize(app.bundle, "bundle", limits, `${what} bundle`);
    const blobs = [app.bundle];
    if (app.bundleIndex) {
      checkBlobSize(app.bundleIndex, "bundleIndex", limits, `${what} bundle index`);
      blobs.push({ mediaType: APP_JSON_MEDIA_TYPE, ...app.bundleIndex });
    }
    if (app.layersMeta) {
      checkBlobSize(app.layersMeta, "layersMeta", limits, `${what} layers meta`);
      blobs.push(app.layersMeta);
    }
    // The config is the 2-byte empty descriptor; apps published before late 2024 name a zero-byte image
    // config without a size, which is not needed.
    if (app.manifest.config.digest !== EMPTY_SHA256) {
      checkBlobSize(app.manifest.config, "imageConfig", limits, `${what} config`);
      blobs.unshift(app.manifest.config);
    }
    return { ref, name, source, manifest, parsed: app.manifest, blobs, app };
  }
  const parsed = parseImageManifest(manifest.bytes, what);
  checkBlobSize(parsed.config, "imageConfig", limits, `${what} config`);
  return {
    ref,
    name,
    source,
    manifest,
    parsed,
    platform: chosenPlatform,
    blobs: [parsed.config, ...parsed.layers],
  };
}

/** Runs async jobs with at most `limit` in flight. */
class Pool {
  #active = 0;
  #waiting: (() => void)[] = [];
  constructor(readonly limit: number) {}
  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.#active >= this.limit) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#active++;
    try {
      return await job();
    } finally {
      this.#active--;
      this.#waiting.shift()?.();
    }
  }
}

/**
 * Downloads one blob into the store, resuming its ingest: a dropped or stalled transfer continues with a
 * Range request from the byte reached. Consecutive failures without progress are bounded by the client's
 * attempt count, and the time without a byte by its deadline. A verification failure of a resumed download
 * is retried once from byte 0 (the kept prefix may be what was wrong); a second one is final and names the
 * digest.
 */
async function downloadBlob(
  client: RegistryClient,
  store: Store,
  ref: Reference,
  descriptor: Descriptor,
  options: PullOptions,
  limiter?: RateLimiter,
): Promise<number> {
  const { digest, size } = descriptor;
  let bytesFetched = 0;
  let verificationRetried = false;
  for (;;) {
    const writer = await store.ingest(digest, size);
    options.onEvent?.({ type: "blob-start", digest, size, offset: writer.offset });
    let failures = 0;
    let progressAt = Date.now();
    try {
      while (writer.offset < size) {
        const before = writer.offset;
        try {
          const body = await client.openBlob(ref, digest, size, writer.offset, options.signal);
          for await (const chunk of body) {
            await writer.write(chunk);
            bytesFetched += chunk.length;
            progressAt = Date.now();
            await limiter?.take(chunk.length, options.signal);
            options.onEvent?.({ type: "blob-progress", digest, bytesDone: writer.offset, size });
          }
          if (writer.offset < size) {
            throw new BerthError(
              "registry_unreachable",
              `blob ${digest}: body ended at byte ${writer.offset}`,
              {
                transient: true,
              },
            );
          }
        } catch (error) {
          if (options.signal?.aborted) throw options.signal.reason;
          if (!(error instanceof BerthError) || !error.transient) throw error;
          failures = writer.offset > before ? 1 : failures + 1;
          if (failures >= client.options.attempts) throw error;
          if (Date.now() - progressAt >= client.options.deadlineMs) {
            throw new BerthError(
              "registry_unreachable",
              `${error.message} (no data for ${Math.round((Date.now() - progressAt) / 1000)} s, giving up)`,
              { cause: error, transient: true },
            );
          }
          options.onEvent?.({ type: "blob-retry", digest, offset: writer.offset, error: error.message });
          await writer.checkpoint();
          await sleep(backoffDelay(failures, client.options), options.signal);
        }
      }
    } catch (error) {
      await writer.close().catch(() => {});
      throw error;
    }
    try {
      await writer.commit();
      return bytesFetched;
    } catch (error) {
      if (error instanceof BerthError && error.reason === "verification_failed" && !verificationRetried) {
        verificationRetried = true;
        options.onEvent?.({ type: "blob-retry", digest, offset: 0, error: error.message });
        continue;
      }
      throw error;
    }
  }
}

/** Reads os/architecture/variant from a stored image config, when it has them. */
async function platformFromConfig(store: Store, config: Descriptor): Promise<Platform | undefined> {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(await store.readBlob(config.digest)));
    if (typeof parsed?.os === "string" && typeof parsed?.architecture === "string") {
      return normalizePlatform({ os: parsed.os, architecture: parsed.architecture, variant: parsed.variant });
    }
  } catch {
    // artifacts (compose apps) have an empty config: no platform
  }
  return undefined;
}

/**
 * The descriptor that `index.json` names for an image. skopeo 1.9 only follows OCI media types from
 * index.json, so a Docker v2 manifest is reached through a one-entry OCI index wrapping it unchanged.
 */
function wrapperFor(
  image: ResolvedImage,
  platform?: Platform,
): { descriptor: Descriptor; bytes?: Uint8Array } {
  const manifestDescriptor: Descriptor = {
    mediaType: image.manifest.mediaType,
    digest: image.manifest.digest,
    size: image.manifest.bytes.length,
    ...(platform ? { platform } : {}),
  };
  if (image.manifest.mediaType === OCI_MANIFEST) return { descriptor: manifestDescriptor };
  const bytes = new TextEncoder().encode(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [manifestDescriptor] }),
  );
  return {
    descriptor: {
      mediaType: OCI_INDEX,
      digest: sha256Of(bytes),
      size: bytes.length,
      ...(platform ? { platform } : {}),
    },
    bytes,
  };
}

/** What nested pulls (an app's images) share with the pull that started them. */
interface PullSession {
  pool: Pool;
  downloads: Map<string, Promise<number>>;
  index: { update: Promise<void> };
  /** Set for the images an app pins: the app's name, recorded on their entries (PULLED_FOR_APP). */
  forApp?: string;
}

/** A top-level reference once resolved, with (for an app) the images its compose file pins. */
interface PlannedImage {
  image: ResolvedImage;
  nested: ResolvedImage[];
}

/** One blob of a plan: how much of it the store already holds. */
export interface PlannedBlob {
  digest: string;
  size: number;
  /** The whole size when stored; what a partial download holds; else 0. */
  bytesDone: number;
}

/** One reference of a plan: every blob and manifest of that version for the platform. */
export interface PlannedRef {
  name: string;
  digest: string;
  /** Blobs (bundle, configs, layers …) and manifests; fixed once known. */
  bytesTotal: number;
  /** Stored blobs and manifests count in full, partial downloads by what they hold. */
  bytesDone: number;
  blobs: PlannedBlob[];
  /** The container images (the reference itself, or those an app pins): what the engine will unpack. */
  images: { name: string; configDigest: string; layers: Descriptor[] }[];
  /** An app's layers meta (`layers-meta` v1), when it has one: unpacked sizes per layer and arch. */
  layersMetaDigest?: string;
}

/** What a pull will fetch, known before any layer is downloaded (the storage pre-flight reads it). */
export interface PullPlan {
  refs: PlannedRef[];
  /** Every distinct blob of every reference. */
  blobs: Map<string, PlannedBlob>;
  /** Manifest bytes still to be written. */
  manifestBytes: number;
  /** Set on an app's first plan: only its own blobs, before the images it pins are known. */
  partial?: true;
}

const manifestBytesOf = (image: ResolvedImage) =>
  image.manifest.bytes.length + (image.source === image.manifest ? 0 : image.source.bytes.length);

/** The plan of resolved references: per blob, stored or how far along. */
async function buildPlan(store: Store, planned: PlannedImage[]): Promise<PullPlan> {
  const blobs = new Map<string, PlannedBlob>();
  const blobOf = async (descriptor: Descriptor): Promise<PlannedBlob> => {
    let blob = blobs.get(descriptor.digest);
    if (!blob) {
      const bytesDone = await store.has(descriptor.digest)
        ? descriptor.size
        : await resumableBytes(store.ingestDir, descriptor.digest, descriptor.size).catch(() => 0);
      blob = { digest: descriptor.digest, size: descriptor.size, bytesDone };
      blobs.set(descriptor.digest, blob);
    }
    return blob;
  };
  const refs: PlannedRef[] = [];
  let manifestBytes = 0;
  for (const { image, nested } of planned) {
    const all = [image, ...nested];
    const own = new Map<string, PlannedBlob>();
    for (const member of all) {
      for (const descriptor of member.blobs) own.set(descriptor.digest, await blobOf(descriptor));
    }
    const manifests = all.reduce((sum, member) => sum + manifestBytesOf(member), 0);
    manifestBytes += manifests;
    const ownBlobs = [...own.values()];
    refs.push({
      name: image.name,
      digest: image.source.digest,
      bytesTotal: manifests + ownBlobs.reduce((sum, blob) => sum + blob.size, 0),
      bytesDone: manifests + ownBlobs.reduce((sum, blob) => sum + blob.bytesDone, 0),
      blobs: ownBlobs,
      images: all.filter((member) => !member.app).map((member) => ({
        name: member.name,
        configDigest: member.parsed.config.digest,
        layers: member.parsed.layers,
      })),
      ...(image.app?.layersMeta ? { layersMetaDigest: image.app.layersMeta.digest } : {}),
    });
  }
  return { refs, blobs, manifestBytes };
}

/** Throws the first failure of settled results (or one naming how many failed); else their values. */
function settled<T>(results: PromiseSettledResult<T>[]): T[] {
  const failures = results.filter((result): result is PromiseRejectedResult => result.status === "rejected");
  if (failures.length > 0) {
    const first = failures[0].reason;
    if (failures.length === 1) throw first;
    throw new BerthError(
      first instanceof BerthError ? first.reason : "registry_error",
      `${failures.length} of ${results.length} references failed; first: ${errorMessage(first)}`,
      { cause: first },
    );
  }
  return results.map((result) => (result as PromiseFulfilledResult<T>).value);
}

/**
 * Pulls references into the store, in two phases. Plan: every reference is resolved (for an app, its
 * small blobs — config, bundle, bundle index, layers meta — are fetched to read which images it pins, and
 * those are resolved too), so bad input fails before any layer is written and the whole size is known;
 * `preflight` then sees the plan and may refuse it. Fetch: every blob not yet stored is downloaded
 * (`parallel` at once, each once even when shared), and each reference is recorded as soon as its content
 * is complete.
 */
export async function pull(
  client: RegistryClient,
  store: Store,
  refs: Reference[],
  options: PullOptions,
): Promise<PullResult[]> {
  const session: PullSession = {
    pool: new Pool(Math.max(1, options.parallel)),
    downloads: new Map(),
    index: { update: Promise.resolve() },
  };
  const { pool, downloads } = session;
  const limiter = options.rateLimit ? new RateLimiter(options.rateLimit) : undefined;
  const fetchOnce = (image: ResolvedImage, descriptor: Descriptor): Promise<number> => {
    let download = downloads.get(descriptor.digest);
    if (!download) {
      download = pool.run(async () => {
        if (await store.has(descriptor.digest)) {
          options.onEvent?.({
            type: "blob-done",
            digest: descriptor.digest,
            size: descriptor.size,
            bytesFetched: 0,
            alreadyStored: true,
          });
          return 0;
        }
        const fetched = await downloadBlob(client, store, image.ref, descriptor, options, limiter);
        options.onEvent?.({
          type: "blob-done",
          digest: descriptor.digest,
          size: descriptor.size,
          bytesFetched: fetched,
          alreadyStored: false,
        });
        return fetched;
      });
      downloads.set(descriptor.digest, download);
    }
    return download;
  };

  // Plan.
  const limits = options.limits ?? DEFAULT_BLOB_LIMITS;
  const resolve = (ref: Reference) => resolveImage(client, ref, options.platform, options.signal, limits);
  const images: ResolvedImage[] = [];
  for (const ref of refs) images.push(await resolve(ref));
  // An app's own blobs must be fetched to learn which images it pins: they are judged first, by the sizes
  // the manifest declares, so nothing is written unless it fits.
  const apps = images.filter((image) => image.app).map((image) => ({ image, nested: [] }));
  if (apps.length > 0) await options.preflight?.({ ...(await buildPlan(store, apps)), partial: true });
  const planned: PlannedImage[] = [];
  for (const image of images) {
    const nested: ResolvedImage[] = [];
    if (image.app) {
      settled(await Promise.allSettled(image.blobs.map((blob) => fetchOnce(image, blob))));
      const { appImageRefs, readBundleCompose } = await import("../app/stored.ts");
      const compose = await readBundleCompose(store, image.app.bundle, image.name);
      for (const pinned of appImageRefs(compose)) nested.push(await resolve(parseReference(pinned)));
    }
    planned.push({ image, nested });
  }
  const plan = await buildPlan(store, planned);
  for (const ref of plan.refs) {
    options.onEvent?.({
      type: "planned",
      name: ref.name,
      digest: ref.digest,
      bytesTotal: ref.bytesTotal,
      bytesDone: ref.bytesDone,
      blobsTotal: ref.blobs.length,
      blobsDone: ref.blobs.filter((blob) => blob.bytesDone === blob.size).length,
      blobs: ref.blobs,
    });
  }
  await options.preflight?.(plan);

  // Fetch. index.json is rewritten once per finished reference; one rewrite at a time.
  const complete = async (
    image: ResolvedImage,
    nested: ResolvedImage[],
    forApp?: string,
  ): Promise<PullResult> => {
    let bytesTotal = image.blobs.reduce((sum, blob) => sum + blob.size, 0) + manifestBytesOf(image);
    options.onEvent?.({
      type: "resolved",
      name: image.name,
      digest: image.source.digest,
      platform: image.platform ? formatPlatform(image.platform) : undefined,
      blobs: image.blobs.length,
      bytesTotal,
    });
    const fetched = await Promise.all(image.blobs.map((blob) => fetchOnce(image, blob)));
    // A blob shared by two references counts for the first only; the sum is still what crossed the wire.
    let bytesFetched = fetched.reduce((sum, bytes) => sum + bytes, 0);
    let pinned: PullResult[] | undefined;
    if (image.app) {
      // An app is complete only with every image its compose file pins: those are recorded before the
      // app's own reference.
      const name = appName(image.ref);
      pinned = settled(await Promise.allSettled(nested.map((member) => complete(member, [], name))));
      bytesTotal += pinned.reduce((sum, result) => sum + result.bytesTotal, 0);
      bytesFetched += pinned.reduce((sum, result) => sum + result.bytesFetched, 0);
    }
    const platform = image.app
      ? undefined
      : image.platform ?? await platformFromConfig(store, image.parsed.config);
    await store.putBlob(image.manifest.digest, image.manifest.bytes);
    if (image.source !== image.manifest) await store.putBlob(image.source.digest, image.source.bytes);
    const wrapper = wrapperFor(image, platform);
    if (wrapper.bytes) await store.putBlob(wrapper.descriptor.digest, wrapper.bytes);
    const entry: Descriptor = {
      ...wrapper.descriptor,
      annotations: {
        [REF_NAME]: image.name,
        [SOURCE_DIGEST]: image.source.digest,
        [SOURCE_MEDIA_TYPE]: image.source.mediaType,
        [MANIFEST_DIGEST]: image.manifest.digest,
        ...(platform ? { [PLATFORM]: formatPlatform(platform) } : {}),
        ...(image.app ? { [APP_NAME]: appName(image.ref) } : {}),
        ...(forApp ? { [PULLED_FOR_APP]: forApp } : {}),
        [PULLED_AT]: new Date().toISOString(),
      },
    };
    const update = session.index.update.then(async () => {
      const index = await store.readIndex();
      index.manifests = index.manifests.filter((existing) => existing.annotations?.[REF_NAME] !== image.name);
      index.manifests.push(entry);
      index.manifests.sort((a, b) =>
        (a.annotations?.[REF_NAME] ?? "").localeCompare(b.annotations?.[REF_NAME] ?? "")
      );
      await store.writeIndex(index);
    });
    session.index.update = update.catch(() => {});
    await update;
    options.onEvent?.({
      type: "ref-done",
      name: image.name,
      digest: image.source.digest,
      platform: platform ? formatPlatform(platform) : undefined,
    });
    return {
      name: image.name,
      digest: image.source.digest,
      manifestDigest: image.manifest.digest,
      platform: platform ? formatPlatform(platform) : undefined,
      blobs: image.blobs.length,
      bytesTotal,
      bytesFetched,
      ...(pinned ? { app: appName(image.ref), images: pinned } : {}),
    };
  };
  const results = await Promise.allSettled(planned.map(({ image, nested }) => complete(image, nested)));
  // Let downloads of other references finish or checkpoint before reporting, so nothing runs on after us.
  await Promise.allSettled(downloads.values());
  return settled(results);
}
