/**
 * What the agent must remember across crashes and reboots, beside the app records (`apps.json`): which
 * apps it manages (so an app dropped from the config is removed, while apps installed by hand are left
 * alone), the version it is moving each app to, and versions that failed to start (so a broken release is
 * not re-installed at every poll). Kept in the store, replaced atomically (`agent.json`).
 */
import { BerthError } from "../util/errors.ts";
import { readFileIfExists, writeFileAtomic } from "../util/fs.ts";
import type { Store } from "../store/store.ts";
import type { StatusReason } from "../status/schema.ts";

const STATE_FILE = "agent.json";

export interface ManagedApp {
  /** The reference from the config (usually a tag). */
  ref: string;
  /** The version the tag pointed to when last polled, while it is not yet running. */
  desiredDigest?: string;
  /** A version that was installed and failed to come up; retried only when the tag moves. */
  failedDigest?: string;
  failedReason?: StatusReason;
}

export interface AgentState {
  version: 1;
  apps: Record<string, ManagedApp>;
}

const path = (store: Store) => `${store.root}/${STATE_FILE}`;

export async function readAgentState(store: Store): Promise<AgentState> {
  const bytes = await readFileIfExists(path(store));
  if (!bytes) return { version: 1, apps: {} };
  try {
    const state = JSON.parse(new TextDecoder().decode(bytes)) as AgentState;
    if (state.version !== 1 || typeof state.apps !== "object" || state.apps === null) {
      throw new Error("unknown shape");
    }
    return state;
  } catch (error) {
    throw new BerthError(
      "store_invalid",
      `${path(store)} is damaged (${(error as Error).message}); remove it and the agent starts afresh`,
    );
  }
}

export async function writeAgentState(store: Store, state: AgentState): Promise<void> {
  await writeFileAtomic(path(store), JSON.stringify(state, null, 2) + "\n");
}
