/** `berth pull REF...`: fetch images into the store, verified and resumable. */
import { readAppArtifact } from "../app/artifact.ts";
import { BerthError, UsageError } from "../util/errors.ts";
import { parseReference, type Reference } from "../oci/reference.ts";
import { RegistryClient } from "../registry/client.ts";
import { BERTH_FILE, Store } from "../store/store.ts";
import { dirname, statIfExists } from "../util/fs.ts";
import { pull, type PullEvent, type PullResult } from "../fetch/pull.ts";
import type { PullHooks } from "../app/install_pull.ts";
import { type Context, contextPolicy, formatBytes, shortDigest } from "./context.ts";
import { TerminalProgress } from "./progress.ts";
import { refuseIfNoRoom } from "./check.ts";

/** `berth pull REF...`: every reference stored, or exit 1 with no store left where there was none. */
export async function pullCommand(context: Context): Promise<number> {
  if (context.args.positional.length === 0) throw new UsageError("pull needs at least one reference");
  // Every reference is checked before the store or the network is touched.
  const refs = context.args.positional.map(parseReference);
  const fresh = await beforeFirstPull(context.storePath);
  const store = await Store.open(context.storePath, { write: true, command: "pull" });
  let pulled = false;
  try {
    const results = await pullReporting(context, store, refs);
    if (context.json) context.emit({ pulled: results });
    else {
      for (const result of results) {
        context.say(
          `Pulled ${result.name} ${result.digest}${
            result.platform ? ` (${result.platform})` : ""
          }: ${result.blobs} blobs, ` +
            `${formatBytes(result.bytesTotal)}, ${formatBytes(result.bytesFetched)} downloaded`,
        );
      }
    }
    pulled = true;
    return 0;
  } finally {
    // Still under the lock, so no other writer can have put anything into it meanwhile.
    if (!pulled && fresh) await takeBack(store, fresh).catch(() => {});
    store.close();
  }
}

/**
 * Pulls `refs` into the open `store` as `berth pull` does: the pre-flight, progress on stderr (a live line
 * on a terminal), SIGINT and SIGTERM stopping it with partial downloads kept. `hooks` see every event and
 * the accepted plan (install --pull runs beside the pull through them).
 */
export async function pullReporting(
  context: Context,
  store: Store,
  refs: Reference[],
  hooks?: PullHooks,
): Promise<PullResult[]> {
  let warnedSkipped = false;
  const policy = await contextPolicy(context);
  const client = new RegistryClient(context.registry);
  const abort = new AbortController();
  const onSignal = () =>
    abort.abort(
      new BerthError("interrupted", "interrupted; partial downloads are kept and resume on the next pull"),
    );
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  // On a terminal a live line replaces the per-blob lines; logs and scripts get plain lines as before.
  const progress = !context.json && Deno.stderr.isTerminal()
    ? new TerminalProgress(writeStderr, terminalColumns)
    : undefined;
  try {
    return await pull(client, store, refs, {
      readArtifact: readAppArtifact,
      policy,
      platform: context.platform,
      parallel: context.parallel,
      rateLimit: context.config.rateLimit,
      signal: abort.signal,
      onEvent: (event) => {
        report(context, event, progress);
        hooks?.onEvent(event);
      },
      preflight: async (plan) => {
        const { storeSkipped } = await refuseIfNoRoom(context, store, plan);
        // An app is checked twice (its own blobs, then the whole plan): one warning is enough.
        if (storeSkipped && !warnedSkipped) {
          warnedSkipped = true;
          const line = `berth: warning: ${storeSkipped}`;
          if (progress) progress.note(line);
          else context.note(line);
        }
        if (!plan.partial) await hooks?.planAccepted(plan);
      },
      limits: context.config.limits,
    });
  } finally {
    progress?.finish();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await client.close();
  }
}

/** What a pull into a path that holds no store yet is about to add there. */
export interface FreshStore {
  /** Directories the store's creation makes, outermost first. */
  createdDirs: string[];
  /** The entries of the store directory beforehand, when it existed. */
  entriesBefore: Set<string>;
}

/** Undefined for an initialised store, which a pull keeps whatever happens. */
export async function beforeFirstPull(root: string): Promise<FreshStore | undefined> {
  if (await statIfExists(`${root}/${BERTH_FILE}`).catch(() => true)) return undefined;
  const createdDirs: string[] = [];
  for (let dir = root; !(await statIfExists(dir).catch(() => true)); dir = dirname(dir)) {
    createdDirs.unshift(dir);
    if (dirname(dir) === dir) break;
  }
  const entriesBefore = new Set<string>();
  if (createdDirs.length === 0) {
    for await (const entry of Deno.readDir(root)) entriesBefore.add(entry.name);
  }
  return { createdDirs, entriesBefore };
}

/**
 * A pull that failed before it stored anything leaves no store behind: a mistyped --store or an
 * unreachable registry must not turn a path into an empty store. Partial downloads are kept: they resume.
 */
export async function takeBack(store: Store, fresh: FreshStore): Promise<void> {
  const holdsSomething = (await store.readIndex()).manifests.length > 0 ||
    (await store.listIngests()).length > 0 || (await store.strayBlobEntries()).length > 0 ||
    !(await store.listBlobs().next()).done;
  if (holdsSomething) return;
  for await (const entry of Deno.readDir(store.root)) {
    if (!fresh.entriesBefore.has(entry.name)) {
      await Deno.remove(`${store.root}/${entry.name}`, { recursive: true });
    }
  }
  // Innermost first; a directory something else has meanwhile put a file into stays.
  for (const dir of fresh.createdDirs.toReversed()) await Deno.remove(dir);
}

const encoder = new TextEncoder();
const writeStderr = (text: string) => Deno.stderr.writeSync(encoder.encode(text));

/** The terminal's width; 80 when it does not say (a pty whose size was never set reports 0). */
function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}

function report(context: Context, event: PullEvent, progress?: TerminalProgress): void {
  if (context.json) return;
  progress?.update(event);
  const note = progress ? (line: string) => progress.note(line) : context.note;
  switch (event.type) {
    case "resolved":
      note(
        `Pulling ${event.name} ${event.digest}${event.platform ? ` (${event.platform})` : ""}: ` +
          `${event.blobs} blobs, ${formatBytes(event.bytesTotal)}`,
      );
      break;
    case "blob-start":
      if (event.offset > 0) {
        note(`  ${shortDigest(event.digest)} resuming at byte ${event.offset} of ${event.size}`);
      }
      break;
    case "blob-retry":
      note(`  ${shortDigest(event.digest)} retrying from byte ${event.offset}: ${event.error}`);
      break;
    case "blob-done":
      if (progress) break;
      note(
        `  ${shortDigest(event.digest)} ${
          event.alreadyStored
            ? "already stored"
            : `${formatBytes(event.size)} verified (${event.bytesFetched} bytes fetched)`
        }`,
      );
      break;
  }
}
