/**
 * `pull`: reference → manifest (chosen for the platform) → config and layers, into the store.
 *
 * Order matters for crash safety: blobs first (each verified and committed on its own), then manifests,
 * and last the `index.json` entry. So a reference appears in the store only when everything it needs is
 * there; a crash anywhere leaves committed blobs (kept, never fetched again) and resumable ingests.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { Pool } from "../util/async.ts";
import { sha256Of } from "../oci/digest.ts";
import type { RegistryClient } from "../registry/client.ts";
import { OCI_INDEX, OCI_MANIFEST } from "../oci/mediatypes.ts";
import { formatPlatform, normalizePlatform, type Platform } from "../oci/platform.ts";
import { parseReference, type Reference } from "../oci/reference.ts";
import { recordEntries } from "../store/images.ts";
import type { Store } from "../store/store.ts";
import type { Descriptor } from "../oci/descriptor.ts";
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
import type { BlobLimits } from "./limits.ts";
import { type ArtifactReader, type ResolvedImage, resolveImage } from "./resolve.ts";
import { downloadBlob, type DownloadEvent } from "./download.ts";
import { fetchSignature, recordSignatures } from "./signatures.ts";
import type { Policy } from "../trust/policy.ts";
import { buildPlan, manifestBytesOf, type PlannedBlob, type PlannedImage, type PullPlan } from "./plan.ts";

export type { PlannedBlob, PlannedRef, PullPlan } from "./plan.ts";

/** References resolved at once (manifest requests in flight). */
const RESOLVE_PARALLEL = 8;

/** What a pull reports as it goes: the plan, then per blob and per reference. */
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
  | DownloadEvent
  | { type: "blob-done"; digest: string; size: number; bytesFetched: number; alreadyStored: boolean }
  | { type: "ref-done"; name: string; digest: string; platform?: string };

/** How to pull: platform, parallelism, limits, hooks. */
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
  /** Caps on blobs read whole, by declared size. */
  limits: BlobLimits;
  /** The signature policy (containers-policy.json): each reference is judged before its blobs are fetched. */
  policy?: Policy;
  /**
   * The reference the policy judges the (one) reference as: the agent pulls a tag's version by digest and
   * asks for the tag's scope and identity.
   */
  identity?: Reference;
  /**
   * Recognises manifests that pin other references (compose apps: the app layer passes its reader).
   * Without one, only container images are fetched.
   */
  readArtifact?: ArtifactReader;
}

/** What a pull stored for one reference. */
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
 * Pulls references into the store, in two phases. Plan: every reference is resolved (for an artifact
 * such as a compose app, its own small blobs are fetched to read which references it pins, and those are
 * resolved too), so bad input fails before any layer is written and the whole size is known; `preflight`
 * then sees the plan and may refuse it. Fetch: every blob not yet stored is downloaded (`parallel` at once,
 * each once even when shared), and each reference is recorded as soon as its content is complete.
 */
export async function pull(
  client: RegistryClient,
  store: Store,
  refs: Reference[],
  options: PullOptions,
): Promise<PullResult[]> {
  const run = new PullRun(client, store, options);
  const planned = await run.plan(refs);
  const results = await Promise.allSettled(planned.map(({ image, nested }) => run.complete(image, nested)));
  // Let downloads of other references finish or checkpoint before reporting, so nothing runs on after us.
  await run.settle();
  return settled(results);
}

/** One pull: the downloads it shares between references, and its two phases. */
class PullRun {
  #downloads = new Map<string, Promise<number>>();
  #pool: Pool;
  /** Manifests resolved at once: a round trip each, so a few in flight hide the latency. */
  #resolvePool = new Pool(RESOLVE_PARALLEL);
  #limiter?: RateLimiter;
  #limits: BlobLimits;

  constructor(readonly client: RegistryClient, readonly store: Store, readonly options: PullOptions) {
    this.#pool = new Pool(Math.max(1, options.parallel));
    this.#limiter = options.rateLimit ? new RateLimiter(options.rateLimit) : undefined;
    this.#limits = options.limits;
  }

  /** Resolves every reference and what artifacts pin, announces the plan and lets the pre-flight judge it. */
  async plan(refs: Reference[]): Promise<PlannedImage[]> {
    // Concurrently: each is a round trip or two that would otherwise wait for the one before.
    const images = settled(await Promise.allSettled(refs.map((ref) => this.#resolve(ref))));
    // Signatures are judged before any blob of what they sign is fetched.
    const { policy, identity, signal } = this.options;
    if (policy) {
      const judged = images.map((image) =>
        fetchSignature(this.client, this.store, policy, identity ?? image.ref, image.source.digest, signal)
      );
      const signatures = settled(await Promise.allSettled(judged));
      // Recorded at once (an install may begin before the pull ends, and judges the stored signature);
      // prune drops a signature whose version never got recorded.
      await recordSignatures(this.store, signatures.filter((signature) => signature !== undefined));
    }
    // An artifact's own blobs must be fetched to learn what it pins: they are judged first, by the sizes
    // the manifest declares, so nothing is written unless it fits.
    const artifacts = images.filter((image) => image.artifact).map((image) => ({ image, nested: [] }));
    if (artifacts.length > 0) {
      await this.options.preflight?.({ ...(await buildPlan(this.store, artifacts)), partial: true });
    }
    const nested = settled(await Promise.allSettled(images.map((image) => this.#pinned(image))));
    const planned: PlannedImage[] = images.map((image, at) => ({ image, nested: nested[at] }));
    const plan = await buildPlan(this.store, planned);
    for (const ref of plan.refs) {
      this.options.onEvent?.({
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
    await this.options.preflight?.(plan);
    return planned;
  }

  #resolve(ref: Reference): Promise<ResolvedImage> {
    return this.#resolvePool.run(() => this.#resolveNow(ref));
  }

  #resolveNow(ref: Reference): Promise<ResolvedImage> {
    return resolveImage(this.client, ref, {
      platform: this.options.platform,
      limits: this.#limits,
      readArtifact: this.options.readArtifact,
      signal: this.options.signal,
      store: this.store,
    });
  }

  /** The references an artifact pins, resolved (its own blobs are fetched to read them); none for images. */
  async #pinned(image: ResolvedImage): Promise<ResolvedImage[]> {
    if (!image.artifact) return [];
    settled(await Promise.allSettled(image.blobs.map((blob) => this.#fetchOnce(image, blob))));
    // Stored now, not only when the reference is recorded: an install that runs beside the pull reads it
    // (installWhilePulling). Until the index names it, it is one more unreferenced blob.
    await this.store.putBlob(image.manifest.digest, image.manifest.bytes);
    const pins = await image.artifact.pins(this.store);
    return settled(await Promise.allSettled(pins.map((pinned) => this.#resolve(parseReference(pinned)))));
  }

  /** Downloads a blob unless stored, once per pull however many references share it. */
  #fetchOnce(image: ResolvedImage, descriptor: Descriptor): Promise<number> {
    let download = this.#downloads.get(descriptor.digest);
    if (!download) {
      download = this.#pool.run(async () => {
        const storedSize = await this.store.blobSize(descriptor.digest);
        const alreadyStored = storedSize !== undefined;
        // The digest matches, so the content is right, but a manifest that misstates its size is wrong:
        // refused as it would be had the blob been downloaded.
        if (alreadyStored && storedSize !== descriptor.size) {
          throw new BerthError(
            "verification_failed",
            `${image.name}: the manifest declares ${descriptor.size} bytes for blob ${descriptor.digest}, which is stored with ${storedSize}`,
          );
        }
        const bytesFetched = alreadyStored ? 0 : await downloadBlob(
          this.client,
          this.store,
          image.ref,
          descriptor,
          { ...this.options, limiter: this.#limiter },
        );
        const { digest, size } = descriptor;
        this.options.onEvent?.({ type: "blob-done", digest, size, bytesFetched, alreadyStored });
        return bytesFetched;
      });
      this.#downloads.set(descriptor.digest, download);
    }
    return download;
  }

  /**
   * Fetches what one reference lacks and records it; an artifact is complete only with every reference
   * it pins, and those are recorded before the artifact's own entry.
   */
  async complete(image: ResolvedImage, nested: ResolvedImage[], forApp?: string): Promise<PullResult> {
    let bytesTotal = image.blobs.reduce((sum, blob) => sum + blob.size, 0) + manifestBytesOf(image);
    this.options.onEvent?.({
      type: "resolved",
      name: image.name,
      digest: image.source.digest,
      platform: image.platform ? formatPlatform(image.platform) : undefined,
      blobs: image.blobs.length,
      bytesTotal,
    });
    const fetched = await Promise.all(image.blobs.map((blob) => this.#fetchOnce(image, blob)));
    // A blob shared by two references counts for the first only; the sum is still what crossed the wire.
    let bytesFetched = fetched.reduce((sum, bytes) => sum + bytes, 0);
    let pinned: PullResult[] | undefined;
    const { artifact } = image;
    if (artifact) {
      // Started smallest first, so their blobs are queued first: an install that loads images as they
      // arrive (install --pull) gets one early — often the shared base alone — while the larger download.
      const blobBytes = (member: ResolvedImage) => member.blobs.reduce((sum, blob) => sum + blob.size, 0);
      const started = new Map<ResolvedImage, Promise<PullResult>>();
      for (const member of [...nested].sort((a, b) => blobBytes(a) - blobBytes(b))) {
        started.set(member, this.complete(member, [], artifact.appName));
      }
      const results = await Promise.allSettled(nested.map((member) => started.get(member)!));
      pinned = settled(results);
      bytesTotal += pinned.reduce((sum, result) => sum + result.bytesTotal, 0);
      bytesFetched += pinned.reduce((sum, result) => sum + result.bytesFetched, 0);
    }
    const platform = artifact
      ? undefined
      : image.platform ?? await platformFromConfig(this.store, image.parsed.config);
    await this.#record(image, platform, forApp);
    const platformText = platform ? formatPlatform(platform) : undefined;
    this.options.onEvent?.({
      type: "ref-done",
      name: image.name,
      digest: image.source.digest,
      platform: platformText,
    });
    return {
      name: image.name,
      digest: image.source.digest,
      manifestDigest: image.manifest.digest,
      platform: platformText,
      blobs: image.blobs.length,
      bytesTotal,
      bytesFetched,
      ...(pinned && artifact ? { app: artifact.appName, images: pinned } : {}),
    };
  }

  /** Writes the reference's manifests, then its index.json entry (replacing one of the same name). */
  async #record(image: ResolvedImage, platform: Platform | undefined, forApp?: string): Promise<void> {
    await this.store.putBlob(image.manifest.digest, image.manifest.bytes);
    if (image.source !== image.manifest) await this.store.putBlob(image.source.digest, image.source.bytes);
    const wrapper = wrapperFor(image, platform);
    if (wrapper.bytes) await this.store.putBlob(wrapper.descriptor.digest, wrapper.bytes);
    const entry: Descriptor = {
      ...wrapper.descriptor,
      annotations: {
        [REF_NAME]: image.name,
        [SOURCE_DIGEST]: image.source.digest,
        [SOURCE_MEDIA_TYPE]: image.source.mediaType,
        [MANIFEST_DIGEST]: image.manifest.digest,
        ...(platform ? { [PLATFORM]: formatPlatform(platform) } : {}),
        ...(image.artifact ? { [APP_NAME]: image.artifact.appName } : {}),
        ...(forApp ? { [PULLED_FOR_APP]: forApp } : {}),
        [PULLED_AT]: new Date().toISOString(),
      },
    };
    await recordEntries(this.store, [entry]);
  }

  /** Waits for every download this pull started, whatever their outcome. */
  async settle(): Promise<void> {
    await Promise.allSettled(this.#downloads.values());
  }
}
