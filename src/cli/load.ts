/** `berth load IMAGE_REF...`: stored images into the docker engine; never touches the network. */
import { UsageError } from "../util/errors.ts";
import { parseReference } from "../oci/reference.ts";
import { Store } from "../store/store.ts";
import { findStoredImage } from "../store/images.ts";
import { Engine } from "../docker/engine.ts";
import { loadStoredImages } from "../docker/load.ts";
import { type Context, formatBytes } from "./context.ts";

/** The tag a loaded image gets: the reference's tag, or `sha256-<hex>` for a digest reference. */
export function localTag(input: string): string {
  const ref = parseReference(input);
  const tag = ref.tag ?? `sha256-${ref.digest!.slice("sha256:".length)}`;
  return `${ref.registry}/${ref.repository}:${tag}`;
}

/** `berth load REF...`: stored images into the engine, streamed from the store, no network. */
export async function loadCommand(context: Context): Promise<number> {
  if (context.args.positional.length === 0) throw new UsageError("load needs at least one image reference");
  const store = await Store.open(context.storePath, { write: false, command: "load" });
  const images = [];
  for (const input of context.args.positional) images.push(await findStoredImage(store, input));
  const engine = await Engine.connect(context.dockerHost);
  try {
    const result = await loadStoredImages(
      store,
      engine,
      images.map((image, position) => ({ image, tag: localTag(context.args.positional[position]) })),
    );
    if (context.json) context.emit(result);
    for (const image of result.images) {
      context.say(
        image.alreadyPresent
          ? `${image.ref}: the engine already has image ${image.imageId}`
          : `Loaded ${image.ref} as image ${image.imageId}`,
      );
    }
    context.say(`${result.layersSent} layers sent to the engine (${formatBytes(result.bytesSent)})`);
    return 0;
  } finally {
    engine.close();
  }
}
