/**
 * Installing an app while it is fetched (`install --pull`, and the agent's updates): each image is loaded
 * into the engine as soon as the pull has committed and recorded it, while the other blobs still download,
 * as `docker pull` overlaps download and extraction. Nothing an install checks is skipped, and nothing is
 * recorded earlier than in a plain install:
 * - the install's first half (room in the compose root, the bundle against its index, `.env`) runs as soon
 *   as the pull's pre-flight accepted the whole plan — the app's own blobs are stored by then — and before
 *   any image is loaded, so a refused bundle leaves the engine as it was;
 * - images are loaded in the order the pull completes them, a few at once (ImageLoader: a shared base
 *   layer is sent once), without a flush each;
 * - once the pull has recorded everything, the engine is flushed once, and the install's second half
 *   swaps the project in and records the version, as installApp does.
 */
import { findStoredImage } from "../store/images.ts";
import { ImageLoader, type LoadResult } from "../docker/load.ts";
import type { PullEvent, PullPlan } from "../fetch/pull.ts";
import { BerthError } from "../util/errors.ts";
import {
  abandonInstall,
  type Device,
  finishInstall,
  type InstallResult,
  type PinnedImage,
  type StagedInstall,
  stageInstall,
} from "./lifecycle.ts";

/** What the pull of the app must call: the pipeline watches it through these. */
export interface PullHooks {
  /** Every event of the pull. */
  onEvent: (event: PullEvent) => void;
  /** Awaited in the pull's pre-flight, after the whole plan was accepted (not an app's partial plan). */
  planAccepted: (plan: PullPlan) => Promise<void>;
}

/** Steps a caller records as the pipeline reaches them (the agent's update record). */
export interface PipelineSteps {
  /** Awaited before the first image is loaded. */
  beforeFirstLoad?: () => Promise<void>;
  /** Awaited once the pull has stored and recorded everything, before the install's second half. */
  fetched?: () => Promise<void>;
}

/**
 * Runs `pullApp` (the pull of one app reference, which must call the hooks) and installs the app as it
 * arrives. A failed pull or load removes the staged project; images already loaded stay in the engine,
 * under tags of their own digests, for the next attempt.
 */
export async function installWhilePulling(
  device: Device,
  pullApp: (hooks: PullHooks) => Promise<void>,
  steps: PipelineSteps = {},
): Promise<InstallResult> {
  const pipeline = new Pipeline(device, steps);
  try {
    await pullApp(pipeline.hooks);
  } catch (error) {
    await pipeline.abandon();
    throw error;
  }
  return await pipeline.finish();
}

/** One install --pull: the staged install, and the loads started as images arrive. */
class Pipeline {
  #half?: { staged: StagedInstall } | { done: InstallResult };
  /** References the pull has recorded, whose images may be loaded. */
  #recorded = new Set<string>();
  #scheduled = new Set<string>();
  /** The app's images in the order they are loaded (smallest first), and the next one to schedule. */
  #inOrder: PinnedImage[] = [];
  #next = 0;
  #loader: ImageLoader;
  /** The caller's step before the first load, once asked for. */
  #firstLoad?: Promise<void>;
  /** Every load started, to wait for (and take failures from) at the end. */
  #loads: Promise<unknown>[] = [];

  constructor(readonly device: Device, readonly steps: PipelineSteps) {
    this.#loader = new ImageLoader(device.store, device.engine, { onProgress: device.onProgress });
  }

  readonly hooks: PullHooks = {
    onEvent: (event) => {
      if (event.type !== "ref-done") return;
      this.#recorded.add(event.name);
      this.#scheduleReady();
    },
    planAccepted: async (plan) => {
      if (plan.partial || this.#half) return;
      if (plan.refs.length !== 1) {
        throw new BerthError("invalid_input", "an install while pulling takes exactly one app reference");
      }
      const [app] = plan.refs;
      this.#half = await stageInstall(this.device, { ref: app.name, manifestDigest: app.manifestDigest });
      // Smallest first, as the pull fetches them: of images sharing a base, the one that is little more
      // than the base is loaded first, alone, and the others after it side by side — not the base and a
      // large layer in one load while the others wait for the base.
      const bytes = new Map(
        app.images.map((image) => [image.name, image.layers.reduce((sum, layer) => sum + layer.size, 0)]),
      );
      this.#inOrder = [...(this.#staged()?.images ?? [])]
        .sort((a, b) => (bytes.get(a.ref) ?? 0) - (bytes.get(b.ref) ?? 0));
      this.#scheduleReady();
    },
  };

  /** Schedules the recorded images in size order, as far as the next one to load is recorded. */
  #scheduleReady(): void {
    while (this.#next < this.#inOrder.length && this.#recorded.has(this.#inOrder[this.#next].ref)) {
      this.#schedule(this.#inOrder[this.#next++]);
    }
  }

  #staged(): StagedInstall | undefined {
    return this.#half && "staged" in this.#half ? this.#half.staged : undefined;
  }

  /** Starts loading one image (after the caller's first-load step); failures are taken at the end. */
  #schedule(image: PinnedImage): void {
    if (this.#scheduled.has(image.tag)) return;
    this.#scheduled.add(image.tag);
    this.#firstLoad ??= this.steps.beforeFirstLoad?.() ?? Promise.resolve();
    const loading = this.#firstLoad
      .then(() => findStoredImage(this.device.store, image.ref))
      .then((stored) => this.#loader.load({ image: stored, tag: image.tag }));
    loading.catch(() => {});
    this.#loads.push(loading);
  }

  /** After a failed pull: lets running loads end, then removes the staged project. */
  async abandon(): Promise<void> {
    await Promise.allSettled(this.#loads);
    await this.#loader.finish().catch(() => {});
    const staged = this.#staged();
    if (staged) await abandonInstall(staged);
  }

  /**
   * After the pull: the caller's `fetched` step, then the loads awaited and the engine flushed once, then
   * the install's second half (which finds the images in the engine and only records).
   */
  async finish(): Promise<InstallResult> {
    const half = this.#half;
    if (!half) {
      // The pull always plans before it stores anything: a pull that did not is a bug.
      throw new Error("the pull ended without a plan: nothing to install");
    }
    if ("done" in half) return half.done;
    let early: LoadResult;
    try {
      await this.steps.fetched?.();
      const failed = (await Promise.allSettled(this.#loads)).find((result) => result.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
      early = await this.#loader.finish();
    } catch (error) {
      await abandonInstall(half.staged);
      throw error;
    }
    const result = await finishInstall(this.device, half.staged);
    return {
      ...result,
      imagesLoaded: result.imagesLoaded + early.images.filter((image) => !image.alreadyPresent).length,
      layersSent: result.layersSent + early.layersSent,
      bytesSent: result.bytesSent + early.bytesSent,
    };
  }
}
