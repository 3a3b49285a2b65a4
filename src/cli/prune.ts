/** `berth prune [--keep N]`: remove app versions beyond `keep`, the images only they used, and loose content. */
import { UsageError } from "../util/errors.ts";
import type { PruneResult } from "../app/prune.ts";
import { noteMissingStore } from "./context.ts";
import { Store } from "../store/store.ts";
import { Engine } from "../docker/engine.ts";
import { pruneStore } from "../app/prune.ts";
import { DEFAULT_KEEP } from "../config/defaults.ts";
import { type Context, formatBytes } from "./context.ts";

/** `berth prune`: removes what no kept app version needs; a missing store has nothing to remove. */
export async function pruneCommand(context: Context): Promise<number> {
  if (context.args.positional.length > 0) {
    throw new UsageError(`prune takes no arguments, got "${context.args.positional[0]}"`);
  }
  const keepText = context.args.options.keep;
  const keep = typeof keepText === "string" ? Number(keepText) : context.config.keep ?? DEFAULT_KEEP;
  if (typeof keepText === "string" && (!/^\d{1,4}$/.test(keepText) || !Number.isSafeInteger(keep))) {
    throw new UsageError(`--keep: "${keepText}" is not a whole number of versions (0 or more)`);
  }
  // Checked before opening for writing, which would create an empty store: a missing one has nothing to prune.
  if (!(await Store.open(context.storePath, { write: false, command: "prune" })).exists) {
    noteMissingStore(context);
    const dryRun = context.args.options["dry-run"] === true;
    const nothing: PruneResult = {
      refsRemoved: [],
      blobsRemoved: 0,
      bytesFreed: 0,
      ingestsRemoved: 0,
      tempFilesRemoved: 0,
      imagesRemoved: [],
      imagesInUse: [],
      warnings: [],
      dryRun,
    };
    if (context.json) context.emit(nothing);
    context.say(`${dryRun ? "Would prune" : "Pruned"}: nothing (the store is empty)`);
    return 0;
  }
  // The engine first: when it cannot be reached, prune fails before the store is touched.
  const engine = await Engine.connect(context.dockerHost);
  let store: Store | undefined;
  try {
    store = await Store.open(context.storePath, { write: true, command: "prune" });
    const dryRun = context.args.options["dry-run"] === true;
    const result = await pruneStore(store, engine, { keep, dryRun });
    if (context.json) context.emit(result);
    const removed = dryRun ? "Would remove" : "Removed";
    for (const ref of result.refsRemoved) context.say(`${removed} ${ref}`);
    for (const tag of result.imagesRemoved) context.say(`${removed} image ${tag} from the engine`);
    for (const tag of result.imagesInUse) {
      context.say(`Kept image ${tag}: a container uses it (the next prune tries again)`);
    }
    for (const warning of result.warnings) context.note(`warning: ${warning}`);
    context.say(
      `${dryRun ? "Would prune" : "Pruned"} (keeping ${keep} earlier version${
        keep === 1 ? "" : "s"
      } of each app): ` +
        `${result.blobsRemoved} blobs, ${result.ingestsRemoved} partial downloads, ` +
        `${formatBytes(result.bytesFreed)}${dryRun ? "" : " freed"}`,
    );
    return 0;
  } finally {
    store?.close();
    engine.close();
  }
}
