/**
 * What each registry host (a mirror, or a registry itself) has done for this process: bytes served, errors,
 * and a back-off after a failure, so that a mirror that just failed is not asked first again and again.
 */

/** First back-off after a failure; doubles with every failure in a row. */
export const HOST_BACKOFF_MS = 30_000;
/** The back-off never exceeds this. */
export const HOST_MAX_BACKOFF_MS = 10 * 60_000;

/** One host's figures, as /status and /metrics show them. */
export interface HostFigures {
  /** "mirror.lan:5000". */
  host: string;
  /** The registry it was asked for: a mirror serves another registry's content. */
  registry: string;
  /** Whether hosts.toml lists it as a mirror (a `[host]` entry) rather than the registry's server. */
  mirror: boolean;
  /** Blob and manifest body bytes it delivered. */
  bytesServed: number;
  /** Requests and transfers that failed on it (each made berth move on or retry). */
  errors: number;
  /** Until when (ms since the epoch) it is skipped while another host can serve; absent when not. */
  backoffUntil?: number;
  /** Its last failure, cleaned for display. */
  lastError?: string;
}

interface HostState extends HostFigures {
  failuresInRow: number;
  /** When it last failed (ms since the epoch). */
  failedAt?: number;
}

/** The figures of every host asked so far, and which hosts are in back-off. */
export class HostHealth {
  #hosts = new Map<string, HostState>();

  #state(host: string, registry: string, mirror: boolean): HostState {
    let state = this.#hosts.get(host);
    if (!state) {
      state = { host, registry, mirror, bytesServed: 0, errors: 0, failuresInRow: 0 };
      this.#hosts.set(host, state);
    }
    return state;
  }

  /** Counts `bytes` delivered by `host`. */
  served(host: string, registry: string, mirror: boolean, bytes: number): void {
    this.#state(host, registry, mirror).bytesServed += bytes;
  }

  /**
   * A request on `host`, begun at `startedAt`, succeeded: its back-off ends — unless the host failed since
   * that request began (another transfer, cut meanwhile, is the newer news).
   */
  succeeded(host: string, registry: string, mirror: boolean, startedAt: number): void {
    const state = this.#state(host, registry, mirror);
    if (state.failedAt !== undefined && state.failedAt >= startedAt) return;
    state.failuresInRow = 0;
    state.backoffUntil = undefined;
  }

  /** A request or transfer on `host` failed: it is skipped for a while, longer after each failure in a row. */
  failed(host: string, registry: string, mirror: boolean, message: string, now = Date.now()): void {
    const state = this.#state(host, registry, mirror);
    state.errors++;
    state.failuresInRow++;
    state.failedAt = now;
    state.lastError = message.slice(0, 300);
    state.backoffUntil = now +
      Math.min(HOST_BACKOFF_MS * 2 ** (state.failuresInRow - 1), HOST_MAX_BACKOFF_MS);
  }

  /** A host already asked served bytes that did not verify: a failure as any other. */
  blame(host: string, message: string): void {
    const state = this.#hosts.get(host);
    if (state) this.failed(host, state.registry, state.mirror, message);
  }

  /** Whether `host` is in back-off at `now`. */
  inBackoff(host: string, now = Date.now()): boolean {
    const until = this.#hosts.get(host)?.backoffUntil;
    return until !== undefined && until > now;
  }

  /** Every host's figures, in the order they were first asked; back-off shown only while it lasts. */
  figures(now = Date.now()): HostFigures[] {
    return [...this.#hosts.values()].map(({ failuresInRow: _, failedAt: __, ...figures }) => ({
      ...figures,
      backoffUntil: figures.backoffUntil !== undefined && figures.backoffUntil > now
        ? figures.backoffUntil
        : undefined,
    }));
  }
}
