/**
 * What the agent must remember across crashes and reboots, beside the app records (`apps.json`): which
 * apps it manages (so an app dropped from the config is removed, while apps installed by hand are left
 * alone), the version it is moving each app to, and versions that failed to start (so a broken release is
 * not re-installed at every poll). Kept in the store, replaced atomically (`agent.json`).
 */
import { BerthError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { readNoFollow } from "../store/nofollow.ts";
import { parseDigest } from "../oci/digest.ts";
import { parseReference } from "../oci/reference.ts";
import type { Store } from "../store/store.ts";
import { type StatusReason, UPDATE_OUTCOMES, UPDATE_STEPS, type UpdateStep } from "./status_schema.ts";

const STATE_FILE = "agent.json";

/** An app's update in progress (or the last one, once it ended), as agent.json keeps it. */
export interface UpdateRecord {
  /** The version being installed. */
  digest: string;
  step: UpdateStep;
  /** When the step began (ISO 8601, UTC). */
  since: string;
  /** The installed version the update started from: what a roll-back goes back to. */
  previous?: { ref: string; digest: string; previous: string[] };
  /** How it ended, once it did. */
  outcome?: typeof UPDATE_OUTCOMES[number];
  /** The version of the unfinished update this one replaced (the tag moved on meanwhile). */
  supersedes?: string;
  /** When the last blob of the version was in the store (its images load while it downloads). */
  fetchedAt?: string;
}

/** One configured app as the agent remembers it across restarts; readAgentState checks ref and digests. */
export interface ManagedApp {
  /** The reference from the config (usually a tag). */
  ref: string;
  /** The version the tag pointed to when last polled, while it is not yet running. */
  desiredDigest?: string;
  /** A version that was installed and failed to come up; retried only when the tag moves. */
  failedDigest?: string;
  /** Why failedDigest did not come up, reported while the tag still names it. */
  failedReason?: StatusReason;
  /** The update in progress, or the last one: where a restarted agent takes it up. */
  update?: UpdateRecord;
}

/** agent.json: the managed apps by name; an app installed by hand is never here, so never removed. */
export interface AgentState {
  version: 1;
  apps: Record<string, ManagedApp>;
}

const path = (store: Store) => `${store.root}/${STATE_FILE}`;

/** agent.json as last written, empty when absent; a damaged file is a store_invalid error naming it. */
export async function readAgentState(store: Store): Promise<AgentState> {
  const bytes = await readNoFollow(path(store));
  if (!bytes) return { version: 1, apps: {} };
  try {
    const state = JSON.parse(new TextDecoder().decode(bytes)) as AgentState;
    if (state?.version !== 1 || typeof state.apps !== "object" || state.apps === null) {
      throw new Error("unknown shape");
    }
    for (const [name, managed] of Object.entries(state.apps)) checkManaged(name, managed);
    return state;
  } catch (error) {
    throw new BerthError(
      "store_invalid",
      `${path(store)} is damaged (${(error as Error).message}); remove it and the agent starts afresh`,
    );
  }
}

/** Each entry's reference and digests are checked as read: they become registry requests and blob paths. */
function checkManaged(name: string, managed: ManagedApp): void {
  const where = `apps[${JSON.stringify(name)}]`;
  if (typeof managed !== "object" || managed === null) throw new Error(`${where} is not an object`);
  if (typeof managed.ref !== "string") throw new Error(`${where}.ref is not a reference`);
  parseReference(managed.ref);
  if (managed.desiredDigest !== undefined) parseDigest(managed.desiredDigest, `${where}.desiredDigest`);
  if (managed.failedDigest !== undefined) parseDigest(managed.failedDigest, `${where}.failedDigest`);
  if (managed.update !== undefined) checkUpdate(managed.update, `${where}.update`);
}

/** An update record's digests and references become blob paths and installs: each is checked as read. */
function checkUpdate(update: UpdateRecord, where: string): void {
  if (typeof update !== "object" || update === null) throw new Error(`${where} is not an object`);
  parseDigest(update.digest, `${where}.digest`);
  if (!(UPDATE_STEPS as readonly string[]).includes(update.step)) throw new Error(`${where}.step is unknown`);
  // Served in the status document, where it must be a time.
  if (typeof update.since !== "string" || Number.isNaN(Date.parse(update.since))) {
    throw new Error(`${where}.since is not a time`);
  }
  if (update.outcome !== undefined && !(UPDATE_OUTCOMES as readonly string[]).includes(update.outcome)) {
    throw new Error(`${where}.outcome is unknown`);
  }
  if (update.supersedes !== undefined) parseDigest(update.supersedes, `${where}.supersedes`);
  if (update.fetchedAt !== undefined && Number.isNaN(Date.parse(String(update.fetchedAt)))) {
    throw new Error(`${where}.fetchedAt is not a time`);
  }
  if (update.previous !== undefined) {
    parseReference(update.previous.ref);
    parseDigest(update.previous.digest, `${where}.previous.digest`);
    if (!Array.isArray(update.previous.previous)) throw new Error(`${where}.previous.previous is not a list`);
    update.previous.previous.forEach((digest, i) => parseDigest(digest, `${where}.previous.previous[${i}]`));
  }
}

/** Changes one app's entry of agent.json (undefined removes it), durably, before the caller goes on. */
export async function saveManaged(
  store: Store,
  name: string,
  managed: ManagedApp | undefined,
): Promise<void> {
  const state = await readAgentState(store);
  if (managed) state.apps[name] = managed;
  else delete state.apps[name];
  await writeAgentState(store, state);
}

/** Replaces agent.json atomically and durably: after a crash it holds the old state or the new. */
export async function writeAgentState(store: Store, state: AgentState): Promise<void> {
  await writeFileAtomic(path(store), JSON.stringify(state, null, 2) + "\n");
}
