/**
 * Stored image → engine, with no network and no temporary archive: skip the image when the engine has its
 * ID (= the config digest), send only the layers whose chains the engine lacks, read the load's answer for
 * errors, flush the engine's filesystem, and check the image is there under the expected ID.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { statIfExists } from "../util/fs.ts";
import { childCommand } from "../util/child_env.ts";
import type { Store } from "../store/store.ts";
import { readManifest, type StoredImage } from "../store/images.ts";
import { type ArchiveImage, type ArchiveLayer, chainIds, dockerArchive, gzipStatedSize } from "./archive.ts";
import type { Engine } from "./engine.ts";
import { LoadOrder, type OrderedLoad } from "./load_order.ts";
import { type PlatformFields, STAND_IN_LABEL, standInConfig, stepEnds } from "./load_steps.ts";

/** One image of a load: the stored reference and the engine's ID for it (the config digest). */
export interface LoadedImage {
  ref: string;
  imageId: string;
  /** The engine had the image already: nothing was sent for it. */
  alreadyPresent: boolean;
}

/** What loadStoredImages did; the engine's filesystem was flushed before it returned. */
export interface LoadResult {
  images: LoadedImage[];
  /** Distinct layer files streamed to the engine. */
  layersSent: number;
  /** Archive bytes streamed to the engine. */
  bytesSent: number;
}

/** A stored image and the tag ("repo:tag") it gets in the engine. */
export interface LoadRequest {
  image: StoredImage;
  tag: string;
}

/** Chain IDs of every layer stack the engine holds, read from its images' RootFS. */
async function engineChains(engine: Engine): Promise<Set<string>> {
  const chains = new Set<string>();
  for (const summary of await engine.listImages()) {
    const image = await engine.inspectImage(summary.Id);
    for (const chain of chainIds(image?.RootFS?.Layers ?? [])) chains.add(chain);
  }
  return chains;
}

/**
 * Makes the engine's writes durable before berth records an image as installed: syncfs of the data root
 * (`sync -f`). Skipped when the data root is not visible here (a remote engine).
 */
export async function syncEngine(engine: Engine): Promise<void> {
  const { DockerRootDir } = await engine.info();
  if (!DockerRootDir || !(await statIfExists(DockerRootDir))) return;
  const { code, stderr } = await childCommand("sync", { args: ["-f", DockerRootDir], stderr: "piped" })
    .output();
  if (code !== 0) {
    throw new BerthError(
      "engine_error",
      `sync -f ${DockerRootDir} failed: ${new TextDecoder().decode(stderr).trim()}`,
    );
  }
}

/** A gzip layer is inflated by berth when it unpacks to at least this many times its size. */
const WORTH_INFLATING = 1.2;

/** Load requests running at once, and of them uploading (measured on 2 cores: see docs/performance.md). */
const LOAD_PARALLEL = 3;
const LOAD_UPLOADS = 1;

/** How loads run: the liveness hook. */
export interface LoadOptions {
  /** Called as bytes are streamed to the engine. */
  onProgress?: () => void;
}

/**
 * Loads stored images into the engine: one load request per image, or per step of an image with large
 * layers (load_steps.ts); several at once, one uploading (LoadOrder: a layer chain is sent by one of them;
 * an image on a base another is sending uploads its own layers and ends its request after that one). Images
 * the engine has (by ID) are only tagged; layers whose chains it holds, or another load sends, are listed
 * but not sent; if the engine refuses such an archive, or the load bringing its base fails, the image is
 * sent whole once more before giving up. Images may be added while others load (install --pull does, as
 * they arrive); `finish` waits for all of them.
 */
export class ImageLoader {
  #known?: Promise<Set<string>>;
  #order?: LoadOrder<Pending>;
  #loads: Promise<LoadedImage>[] = [];
  #layersSent = 0;
  #bytesSent = 0;
  #sentAny = false;
  /** Each running load's send, which the loads leaving its chains out wait for. */
  #ended = new Map<OrderedLoad<Pending>, Promise<void>>();
  /** loadAll calls still queueing their images. */
  #held = 0;

  constructor(readonly store: Store, readonly engine: Engine, readonly options: LoadOptions = {}) {}

  /** Loads one image (once the images it waits for are in); resolves when the engine has it. */
  load(request: LoadRequest): Promise<LoadedImage> {
    const loading = this.#load(request);
    this.#loads.push(loading);
    return loading;
  }

  /**
   * Loads several images, queued together: which goes first is LoadOrder's choice among all of them (an
   * image that is the base of others first), not whichever's preparation happened to end first.
   */
  loadAll(requests: LoadRequest[]): Promise<LoadedImage>[] {
    this.#held++;
    const queued: Promise<void>[] = [];
    const loadings = requests.map((request) => {
      let done!: () => void;
      queued.push(new Promise<void>((resolve) => (done = resolve)));
      const loading = this.#load(request, done);
      this.#loads.push(loading);
      return loading;
    });
    Promise.all(queued).then(() => {
      this.#held--;
      this.#pump();
    });
    return loadings;
  }

  async #load(request: LoadRequest, queued: () => void = () => {}): Promise<LoadedImage> {
    let prepared: { image: LoadedImage; toSend?: ToSend } | undefined;
    try {
      prepared = await this.#prepare(request);
    } finally {
      if (!prepared?.toSend) queued();
    }
    const { image, toSend } = prepared;
    if (!toSend) return image;
    const order = this.#order!;
    const steps = loadSteps(toSend, order.known).map((step) =>
      new Promise<void>((resolve, reject) => {
        const sizes = step.archive.layers.map((layer) => layer.uncompressedSize ?? layer.size);
        order.add({ item: { toSend: step, resolve, reject }, chains: step.chains, sizes });
      })
    );
    queued();
    this.#pump();
    // The image is in once its top step is: a failed step below it makes the top one go whole.
    for (const below of steps.slice(0, -1)) below.catch(() => {});
    await steps.at(-1);
    return image;
  }

  /** What loading one image takes: nothing when the engine has it (it is only tagged), else its archive. */
  async #prepare(request: LoadRequest): Promise<{ image: LoadedImage; toSend?: ToSend }> {
    const { image, tag } = request;
    this.#known ??= engineChains(this.engine);
    const known = await this.#known;
    this.#order ??= new LoadOrder<Pending>(known, LOAD_PARALLEL, LOAD_UPLOADS);
    const { manifest } = await readManifest(this.store, image);
    const configDigest = manifest.config.digest;
    const existing = await this.engine.inspectImage(configDigest);
    if (existing) {
      if (!existing.RepoTags?.includes(tag)) await tagImage(this.engine, configDigest, tag);
      return { image: { ref: image.ref, imageId: configDigest, alreadyPresent: true } };
    }
    const toSend = await archiveImage(this.store, request, manifest);
    return { image: { ref: image.ref, imageId: configDigest, alreadyPresent: false }, toSend };
  }

  /** Starts every queued load that may start now (none while loadAll is still queueing). */
  #pump(): void {
    const order = this.#order;
    if (this.#held > 0 || !order) return;
    for (let next = order.next(); next; next = order.next()) {
      const started = next;
      const sending = this.#send(started, order);
      // Set before the next load starts: a load that leaves this one's chains out waits for it.
      this.#ended.set(started, sending);
      sending.then(
        () => {
          order.done(started, true);
          started.item.resolve();
        },
        (error) => {
          order.done(started, false);
          started.item.reject(error);
        },
      ).finally(() => {
        this.#ended.delete(started);
        this.#pump();
      });
    }
  }

  /**
   * Sends one image: the chains LoadOrder gave it, its request ended once the loads bringing the others
   * have succeeded. A refusal of an archive with layers left out, or a failed load it built on, is
   * answered by sending it whole, as stored, once.
   */
  async #send(started: OrderedLoad<Pending>, order: LoadOrder<Pending>): Promise<void> {
    this.#sentAny = true;
    const item = started.item.toSend;
    const before = Promise.all(order.after(started).map((load) => this.#ended.get(load)));
    before.catch(() => {}); // awaited at the archive's end; a failure there is handled as the stream's
    let sent: { bytesSent: number; layersSent: number };
    try {
      sent = await sendArchive(this.engine, item, new Set(order.sends(started)), {
        onProgress: this.options.onProgress,
        beforeEnd: async () => {
          order.uploaded(started);
          this.#pump();
          await before.catch((error) => {
            throw new BaseNotLoaded(errorMessage(error));
          });
        },
      });
    } catch (error) {
      // The engine may have dropped a layer since we looked, the load bringing a base failed, or a layer
      // did not inflate (to the size its gzip trailer states): send everything, as stored, once before
      // giving up; the engine then judges the layers itself.
      const inflating = item.archive.layers.some((layer) => layer.uncompressedSize !== undefined);
      const retry = error instanceof ArchiveFailure
        ? inflating || error.cause instanceof BaseNotLoaded
        : error instanceof BerthError && error.reason === "engine_error";
      if (!retry) throw error;
      for (const layer of item.archive.layers) layer.uncompressedSize = undefined;
      try {
        sent = await sendArchive(this.engine, item, new Set(item.chains), {
          onProgress: this.options.onProgress,
        });
      } catch (second) {
        throw second instanceof BerthError
          ? second
          : new BerthError("engine_error", errorMessage(second), { cause: second });
      }
    } finally {
      order.uploaded(started);
    }
    this.#layersSent += sent.layersSent;
    this.#bytesSent += sent.bytesSent;
  }

  /**
   * Waits for every load and removes the stand-ins of stepped loads; throws the first failure once all have
   * ended. Then flushes the engine (once, if anything was sent) and checks that each image sent is there
   * under its ID.
   */
  async finish(): Promise<LoadResult> {
    const settled = await Promise.allSettled(this.#loads);
    const failed = settled.find((result): result is PromiseRejectedResult => result.status === "rejected");
    // Stand-ins go whatever happened, and those a killed load left with them. Not removed, they are only
    // untagged images: the next load tries again.
    await removeStandIns(this.engine).catch(() => {});
    if (failed) throw failed.reason;
    const images = settled.map((result) => (result as PromiseFulfilledResult<LoadedImage>).value);
    if (this.#sentAny) await syncEngine(this.engine);
    for (const image of images.filter((one) => !one.alreadyPresent)) {
      if (!(await this.engine.inspectImage(image.imageId))) {
        throw new BerthError(
          "engine_error",
          `docker engine accepted ${image.ref} but has no image ${image.imageId} afterwards`,
        );
      }
    }
    return { images, layersSent: this.#layersSent, bytesSent: this.#bytesSent };
  }
}

/** A queued load: what to send, and how to say it ended. */
interface Pending {
  toSend: ToSend;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Loads stored images into the engine (ImageLoader) and flushes the engine's filesystem before it returns,
 * so a caller may record the images as installed.
 */
export async function loadStoredImages(
  store: Store,
  engine: Engine,
  requests: LoadRequest[],
  options: LoadOptions = {},
): Promise<LoadResult> {
  const loader = new ImageLoader(store, engine, options);
  for (const loading of loader.loadAll(requests)) loading.catch(() => {});
  return await loader.finish();
}

/** One image to send: its archive entry and the chain ID of each of its layers. */
interface ToSend {
  request: LoadRequest;
  archive: ArchiveImage;
  chains: string[];
  /** The image config as parsed once: its platform and diff IDs, for the stand-ins of its steps. */
  parsedConfig: PlatformFields & { rootfs: { diff_ids: string[] } };
}

/** An image's archive entry, its layers streamed from the store; its config must list their diff IDs. */
async function archiveImage(
  store: Store,
  request: LoadRequest,
  manifest: { config: { digest: string }; layers: { digest: string; size: number }[] },
): Promise<ToSend> {
  const configDigest = manifest.config.digest;
  const config = await store.readBlob(configDigest);
  let parsed: ToSend["parsedConfig"];
  let diffIds: string[];
  try {
    parsed = JSON.parse(new TextDecoder().decode(config));
    diffIds = parsed.rootfs.diff_ids;
    if (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length) throw new Error("count");
  } catch {
    throw new BerthError(
      "invalid_input",
      `${request.image.ref}: config ${configDigest} has no rootfs.diff_ids matching its ${manifest.layers.length} layers`,
    );
  }
  const layers: ArchiveLayer[] = [];
  for (const layer of manifest.layers) {
    const open = () => store.openBlob(layer.digest);
    const stated = await gzipStatedSize(open, layer.size);
    // A layer gzip barely shrank (random or already compressed data) is sent as stored: the engine's
    // inflate of stored blocks is a copy, and inflating it here would only add a pass over its bytes.
    const uncompressedSize = stated !== undefined && stated >= layer.size * WORTH_INFLATING
      ? stated
      : undefined;
    layers.push({ open, digest: layer.digest, size: layer.size, send: true, uncompressedSize });
  }
  return {
    request,
    archive: { config, configDigest, repoTags: [request.tag], layers },
    chains: chainIds(diffIds),
    parsedConfig: parsed,
  };
}

/**
 * An image's archive cut into steps (load_steps.ts), each a load of its own: the steps below the top carry a
 * stand-in config and no tag. Layers whose chains the engine holds count nothing towards a step.
 */
function loadSteps(toSend: ToSend, known: Set<string>): ToSend[] {
  const { archive, chains, request, parsedConfig } = toSend;
  const sizes = archive.layers.map((layer, position) =>
    known.has(chains[position]) ? 0 : layer.uncompressedSize ?? layer.size
  );
  const ends = stepEnds(sizes);
  if (ends.length === 1) return [toSend];
  return ends.map((end) => {
    const layers = archive.layers.slice(0, end).map((layer) => ({ ...layer }));
    const top = end === archive.layers.length;
    const standIn = top ? undefined : standInConfig(parsedConfig, parsedConfig.rootfs.diff_ids.slice(0, end));
    return {
      request,
      archive: {
        config: standIn?.config ?? archive.config,
        configDigest: standIn?.digest ?? archive.configDigest,
        repoTags: top ? archive.repoTags : [],
        layers,
      },
      chains: chains.slice(0, end),
      parsedConfig,
    };
  });
}

/** Removes the stand-in images of stepped loads, this one's and any a killed load left behind. */
async function removeStandIns(engine: Engine): Promise<void> {
  for (const image of await engine.listImages({ label: [STAND_IN_LABEL] })) {
    await engine.removeImage(image.Id);
  }
}

/** How sendArchive streams: the liveness hook, and what to await before the archive ends. */
interface SendOptions {
  onProgress?: () => void;
  beforeEnd?: () => Promise<void>;
}

/**
 * Sends one docker-archive of `item` to the engine, with the layers of the chains in `sends`; the others
 * are listed but left out. Returns the bytes and the distinct layers sent.
 */
async function sendArchive(
  engine: Engine,
  item: ToSend,
  sends: Set<string>,
  options: SendOptions = {},
): Promise<{ bytesSent: number; layersSent: number }> {
  item.archive.layers.forEach((layer, position) => (layer.send = sends.has(item.chains[position])));
  let bytesSent = 0;
  let streamFailure: { error: unknown } | undefined;
  const what = item.request.image.ref;
  try {
    await engine.loadImage(
      dockerArchive([item.archive], {
        onBytes: (bytes) => {
          bytesSent += bytes;
          options.onProgress?.();
        },
        failure: (error) => (streamFailure = { error }),
        beforeEnd: options.beforeEnd,
      }),
      what,
    );
  } catch (error) {
    // Our side of the stream failed (a layer that cannot be read or inflated, a base not loaded), not the
    // engine.
    if (streamFailure) throw new ArchiveFailure(what, streamFailure.error);
    throw error;
  }
  const sent = new Set(item.archive.layers.filter((layer) => layer.send).map((layer) => layer.digest));
  return { bytesSent, layersSent: sent.size };
}

/** The load bringing a base an image's request left out failed: the image is sent whole instead. */
class BaseNotLoaded extends Error {}

/** A load cut short because berth could not produce the archive (a layer not readable or not inflatable). */
class ArchiveFailure extends BerthError {
  constructor(what: string, cause: unknown) {
    super("store_invalid", `sending ${what} to the engine failed in the store: ${errorMessage(cause)}`, {
      cause,
    });
  }
}

async function tagImage(engine: Engine, id: string, tag: string): Promise<void> {
  const colon = tag.lastIndexOf(":");
  const query = new URLSearchParams({ repo: tag.slice(0, colon), tag: tag.slice(colon + 1) });
  const response = await engine.request(`/images/${encodeURIComponent(id)}/tag?${query}`, {
    method: "POST",
    what: `tag ${tag}`,
  });
  await response.body?.cancel();
}
