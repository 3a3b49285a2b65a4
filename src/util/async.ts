/** Waiting: a sleep that an abort ends, the back-off between retries, and a pool of jobs. */

/**
 * Resolves after `ms`, or rejects with the signal's reason as soon as `signal` aborts (at once when it
 * already has).
 *
 *     await sleep(backoffDelay(attempt, options), signal);
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * The wait before retry `attempt` (1-based): doubling from `backoffMs` up to `maxBackoffMs`, with jitter
 * (half to all of it) so a fleet does not retry in lock step.
 */
export function backoffDelay(attempt: number, options: { backoffMs: number; maxBackoffMs: number }): number {
  const base = Math.min(options.maxBackoffMs, options.backoffMs * 2 ** (attempt - 1));
  return base / 2 + Math.random() * base / 2;
}

/** Runs async jobs with at most `limit` in flight; the rest wait their turn in order. */
export class Pool {
  #active = 0;
  #waiting: (() => void)[] = [];
  constructor(readonly limit: number) {}

  /** Runs `job` once fewer than `limit` jobs are running; settles as the job does. */
  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.#active >= this.limit) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#active++;
    try {
      return await job();
    } finally {
      this.#active--;
      this.#waiting.shift()?.();
    }
  }
}
