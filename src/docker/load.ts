/**
 * Stored image → engine, with no network and no temporary archive: skip the image when the engine has its
 * ID (= the config digest), send only the layers whose chains the engine lacks, read the load's answer for
 * errors, flush the engine's filesystem, and check the image is there under the expected ID.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { statIfExists } from "../util/fs.ts";
import type { Store } from "../store/store.ts";
import { readManifest, type StoredImage } from "../store/images.ts";
import { chainIds, dockerArchive } from "./archive.ts";
import type { Engine } from "./engine.ts";

export interface LoadResult {
  ref: string;
  imageId: string;
  /** The engine had the image already: nothing was sent. */
  alreadyPresent: boolean;
  layers: number;
  layersSent: number;
  /** Archive bytes streamed to the engine. */
  bytesSent: number;
}

/** Chain IDs of every layer stack the engine holds, read from its images' RootFS. */
export async function engineChains(engine: Engine): Promise<Set<string>> {
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
  const { code, stderr } = await new Deno.Command("sync", { args: ["-f", DockerRootDir], stderr: "piped" })
    .output();
  if (code !== 0) {
    throw new BerthError(
      "engine_error",
      `sync -f ${DockerRootDir} failed: ${new TextDecoder().decode(stderr).trim()}`,
    );
  }
}

/**
 * Loads one stored image into the engine, tagged `tag` ("repo:tag"). `chains` is what the engine holds
 * (from `engineChains`); it is updated with what this load adds, so several loads share one look-up.
 */
export async function loadStoredImage(
  store: Store,
  engine: Engine,
  image: StoredImage,
  tag: string,
  chains: Set<string>,
): Promise<LoadResult> {
  const { manifest } = await readManifest(store, image);
  const configDigest = manifest.config.digest;
  const existing = await engine.inspectImage(configDigest);
  if (existing) {
    if (!existing.RepoTags?.includes(tag)) await tagImage(engine, configDigest, tag);
    return {
      ref: image.ref,
      imageId: configDigest,
      alreadyPresent: true,
      layers: manifest.layers.length,
      layersSent: 0,
      bytesSent: 0,
    };
  }
  const config = await store.readBlob(configDigest);
  let diffIds: string[];
  try {
    diffIds = JSON.parse(new TextDecoder().decode(config)).rootfs.diff_ids;
    if (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length) throw new Error("count");
  } catch {
    throw new BerthError(
      "invalid_input",
      `${image.ref}: config ${configDigest} has no rootfs.diff_ids matching its ${manifest.layers.length} layers`,
    );
  }
  const imageChains = chainIds(diffIds);
  const attempt = async (skipKnown: boolean) => {
    let bytesSent = 0;
    const layers = manifest.layers.map((layer, position) => ({
      path: store.blobPath(layer.digest),
      digest: layer.digest,
      size: layer.size,
      send: !(skipKnown && chains.has(imageChains[position])),
    }));
    await engine.loadImage(
      dockerArchive({
        config,
        configDigest,
        repoTags: [tag],
        layers,
        onBytes: (bytes) => (bytesSent += bytes),
      }),
      image.ref,
    );
    return {
      bytesSent,
      layersSent: new Set(layers.filter((layer) => layer.send).map((layer) => layer.digest)).size,
    };
  };
  let sent: { bytesSent: number; layersSent: number };
  try {
    sent = await attempt(true);
  } catch (error) {
    // The engine may have dropped a layer since we looked: send everything once before giving up.
    if (!(error instanceof BerthError) || error.reason !== "engine_error") throw error;
    try {
      sent = await attempt(false);
    } catch (second) {
      throw new BerthError("engine_error", errorMessage(second), { cause: second });
    }
  }
  await syncEngine(engine);
  const loaded = await engine.inspectImage(configDigest);
  if (!loaded) {
    throw new BerthError(
      "engine_error",
      `docker engine accepted ${image.ref} but has no image ${configDigest} afterwards`,
    );
  }
  for (const chain of imageChains) chains.add(chain);
  return {
    ref: image.ref,
    imageId: configDigest,
    alreadyPresent: false,
    layers: manifest.layers.length,
    ...sent,
  };
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
