/**
 * Which image loads may run at once. dockerd applies each layer of a load in a process of its own, so
 * several load requests overlap that work; but a layer that two concurrent requests both carry is unpacked
 * twice (the engine only finds the twin when it registers the second). So a layer chain is sent by one
 * request at a time: an image whose missing chains another request is sending waits until that one ends,
 * and then sends only what is still missing — shared bases go first, once. Of the loads that may start,
 * an image that is the base of another goes first, then the one with the most to send.
 */

/** An image waiting to be loaded: the chain ID of each of its layers, base first, and their sizes. */
export interface OrderedLoad<T> {
  item: T;
  chains: string[];
  /** Each layer's size in bytes (as sent); absent: all alike. Of the loads that may start, the largest goes first. */
  sizes?: number[];
}

/** Picks the loads that may start, given the chains the engine holds and those being sent. */
export class LoadOrder<T> {
  #waiting: OrderedLoad<T>[] = [];
  #sending = new Set<string>();
  /** Running loads, each with the chains it marked as being sent. */
  #marked = new Map<OrderedLoad<T>, string[]>();

  /** `known`: the chains the engine holds (grown as loads succeed); at most `parallel` loads at once. */
  constructor(readonly known: Set<string>, readonly parallel: number) {}

  /** Queues an image, behind those queued before it. */
  add(load: OrderedLoad<T>): void {
    this.#waiting.push(load);
  }

  /** Loads running now. */
  get running(): number {
    return this.#marked.size;
  }

  /** Images still queued. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * The first queued image that may start now (a free slot, and none of its missing chains being sent),
   * taken off the queue and counted as running; its missing chains are marked as being sent.
   */
  next(): OrderedLoad<T> | undefined {
    if (this.#marked.size >= this.parallel) return undefined;
    // An image that is the base of another waiting one first (alone, so that the images on it then go side
    // by side), then the largest: the longest load should not be the one that starts last.
    let at = -1;
    let best = -1;
    this.#waiting.forEach((load, index) => {
      const missing = this.missing(load);
      if (!missing.every((chain) => !this.#sending.has(chain))) return;
      const isBase = missing.length > 0 &&
        this.#waiting.some((other) =>
          other !== load && missing.every((chain) => other.chains.includes(chain))
        );
      const score = (isBase ? Number.MAX_SAFE_INTEGER / 2 : 0) + this.#bytesToSend(load);
      if (score > best) [at, best] = [index, score];
    });
    if (at < 0) return undefined;
    const [load] = this.#waiting.splice(at, 1);
    const marked = this.missing(load);
    for (const chain of marked) this.#sending.add(chain);
    this.#marked.set(load, marked);
    return load;
  }

  /** What `load` would send: the sizes of its layers whose chains the engine does not hold. */
  #bytesToSend(load: OrderedLoad<T>): number {
    return load.chains.reduce(
      (sum, chain, position) => this.known.has(chain) ? sum : sum + (load.sizes?.[position] ?? 1),
      0,
    );
  }

  /** The chains of `load` the engine does not hold yet. */
  missing(load: OrderedLoad<T>): string[] {
    return load.chains.filter((chain) => !this.known.has(chain));
  }

  /** A started load ended: its chains are the engine's when it succeeded, and free to send again if not. */
  done(load: OrderedLoad<T>, succeeded: boolean): void {
    for (const chain of this.#marked.get(load) ?? []) this.#sending.delete(chain);
    this.#marked.delete(load);
    if (succeeded) { for (const chain of load.chains) this.known.add(chain); }
  }
}
