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
import { type ArchiveImage, chainIds, dockerArchive } from "./archive.ts";
import type { Engine } from "./engine.ts";

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

/**
 * Loads stored images into the engine in one archive. Images the engine has (by ID) are only tagged;
 * layers whose chains it holds are listed but not sent; if the engine refuses such an archive, everything is
 * sent once more before giving up. The engine's filesystem is flushed before this returns, so a caller may
 * record the images as installed.
 */
export async function loadStoredImages(
  store: Store,
  engine: Engine,
  requests: LoadRequest[],
  onProgress?: () => void,
): Promise<LoadResult> {
  const chains = await engineChains(engine);
  const images: LoadedImage[] = [];
  const toSend: ToSend[] = [];
  for (const request of requests) {
    const { image, tag } = request;
    const { manifest } = await readManifest(store, image);
    const configDigest = manifest.config.digest;
    const existing = await engine.inspectImage(configDigest);
    images.push({ ref: image.ref, imageId: configDigest, alreadyPresent: Boolean(existing) });
    if (existing) {
      if (!existing.RepoTags?.includes(tag)) await tagImage(engine, configDigest, tag);
      continue;
    }
    toSend.push(await archiveImage(store, request, manifest));
  }
  if (toSend.length === 0) return { images, layersSent: 0, bytesSent: 0 };
  let sent: { bytesSent: number; layersSent: number };
  try {
    sent = await sendArchive(engine, toSend, chains, onProgress);
  } catch (error) {
    // The engine may have dropped a layer since we looked: send everything once before giving up.
    if (!(error instanceof BerthError) || error.reason !== "engine_error") throw error;
    try {
      sent = await sendArchive(engine, toSend, new Set(), onProgress);
    } catch (second) {
      throw new BerthError("engine_error", errorMessage(second), { cause: second });
    }
  }
  await syncEngine(engine);
  for (const item of toSend) {
    if (!(await engine.inspectImage(item.archive.configDigest))) {
      throw new BerthError(
        "engine_error",
        `docker engine accepted ${item.request.image.ref} but has no image ${item.archive.configDigest} afterwards`,
      );
    }
  }
  return { images, ...sent };
}

/** One image to send: its archive entry and the chain ID of each of its layers. */
interface ToSend {
  request: LoadRequest;
  archive: ArchiveImage;
  chains: string[];
}

/** An image's archive entry, its layers streamed from the store; its config must list their diff IDs. */
async function archiveImage(
  store: Store,
  request: LoadRequest,
  manifest: { config: { digest: string }; layers: { digest: string; size: number }[] },
): Promise<ToSend> {
  const configDigest = manifest.config.digest;
  const config = await store.readBlob(configDigest);
  let diffIds: string[];
  try {
    diffIds = JSON.parse(new TextDecoder().decode(config)).rootfs.diff_ids;
    if (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length) throw new Error("count");
  } catch {
    throw new BerthError(
      "invalid_input",
      `${request.image.ref}: config ${configDigest} has no rootfs.diff_ids matching its ${manifest.layers.length} layers`,
    );
  }
  const layers = manifest.layers.map((layer) => ({
    open: () => store.openBlob(layer.digest),
    digest: layer.digest,
    size: layer.size,
    send: true,
  }));
  return {
    request,
    archive: { config, configDigest, repoTags: [request.tag], layers },
    chains: chainIds(diffIds),
  };
}

/**
 * Sends one docker-archive of `toSend` to the engine; layers whose chain is in `known` are listed but not
 * sent. Returns the bytes and the distinct layers sent.
 */
async function sendArchive(
  engine: Engine,
  toSend: ToSend[],
  known: Set<string> = new Set(),
  onProgress?: () => void,
): Promise<{ bytesSent: number; layersSent: number }> {
  for (const item of toSend) {
    item.archive.layers.forEach((layer, position) => (layer.send = !known.has(item.chains[position])));
  }
  let bytesSent = 0;
  await engine.loadImage(
    dockerArchive(toSend.map((item) => item.archive), (bytes) => {
      bytesSent += bytes;
      onProgress?.();
    }),
    toSend.map((item) => item.request.image.ref).join(", "),
  );
  const sent = new Set(
    toSend.flatMap((item) => item.archive.layers.filter((layer) => layer.send).map((layer) => layer.digest)),
  );
  return { bytesSent, layersSent: sent.size };
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
