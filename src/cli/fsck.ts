/** `berth fsck [--repair]`: verify every blob and reference; exit 1 when anything is missing or corrupt. */
import { Store } from "../store/store.ts";
import { fsck } from "../store/fsck.ts";
import { type Context, formatBytes, noteMissingStore } from "./context.ts";

/** `berth fsck [--repair]`: exit 0 when the store (or the empty store a missing one stands for) is sound. */
export async function fsckCommand(context: Context): Promise<number> {
  // Checked before opening for writing, which would create an empty store: a missing one is checked as the
  // empty store it stands for, with nothing to repair.
  const reader = await Store.open(context.storePath, { write: false, command: "fsck" });
  if (!reader.exists) noteMissingStore(context);
  const repair = reader.exists && context.args.options.repair === true;
  const store = repair
    ? await Store.open(context.storePath, { write: true, command: "fsck --repair" })
    : reader;
  try {
    const report = await fsck(store, repair);
    const damaged = report.problems.length > 0 || report.corruptBlobs.length > 0 ||
      report.strayEntries.length > 0;
    if (context.json) {
      context.emit({ ok: !damaged, ...report });
    } else {
      context.say(`${report.refs} references, ${report.blobs} blobs (${formatBytes(report.bytes)}) checked`);
      for (const digest of report.corruptBlobs) {
        context.say(`corrupt blob ${digest}${repair ? " (removed)" : ""}`);
      }
      for (const problem of report.problems) {
        context.say(
          `${problem.ref || "(no reference)"}: ${problem.problem} ${problem.digest}: ${problem.detail}`,
        );
      }
      for (const path of report.strayEntries) {
        context.say(`not a blob: ${path}${repair ? " (removed)" : ""}`);
      }
      for (const name of report.staleIngests) {
        context.say(`stale ingest ${name}${repair ? " (removed)" : ""}`);
      }
      for (const path of report.tempFiles) {
        context.say(`leftover temporary file ${path}${repair ? " (removed)" : ""}`);
      }
      if (damaged) {
        context.say(
          repair
            ? "Store repaired: pull the affected references again to fetch what is missing."
            : "Store damaged: run 'berth fsck --repair', then pull the affected references again.",
        );
      } else context.say("Store OK");
    }
    if (damaged) {
      context.note(
        `fsck: ${
          report.problems.length + report.corruptBlobs.length + report.strayEntries.length
        } problems in store ${store.root}`,
      );
    }
    return damaged ? 1 : 0;
  } finally {
    store.close();
  }
}
