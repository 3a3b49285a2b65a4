/**
 * A download rate limit for metered links: one token bucket shared by every blob a pull downloads at once,
 * so `parallel` does not multiply it. Reads wait before the next chunk is taken from the socket, and TCP
 * flow control then slows the sender.
 */
import { sleep } from "../util/async.ts";

/** At most this much may go through in one burst after an idle spell. */
const BURST_SECONDS = 0.25;

/** A token bucket in bytes per second, shared by a pull's downloads; idling earns at most a 0.25 s burst. */
export class RateLimiter {
  readonly #bytesPerSecond: number;
  /** When the bytes taken so far will have been "paid for" at the limit (ms since the epoch). */
  #paidUntil = 0;

  constructor(bytesPerSecond: number) {
    this.#bytesPerSecond = bytesPerSecond;
  }

  /** Accounts for `bytes` just received and waits as long as the limit asks. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const now = Date.now();
    this.#paidUntil = Math.max(this.#paidUntil, now - BURST_SECONDS * 1000) +
      (bytes / this.#bytesPerSecond) * 1000;
    const wait = this.#paidUntil - now;
    if (wait > 0) await sleep(wait, signal);
  }
}
