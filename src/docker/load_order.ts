/**
 * Which image loads may run, and when. dockerd takes a load request in two phases: it stores the whole
 * archive it is sent in a temporary directory (the upload), and only once the request body has ended does it
 * apply the layers (the apply), each in a process of its own. Both are CPU work, berth's side of an upload
 * too (it inflates gzip layers on its one thread), so one load uploads at a time while others apply.
 *
 * A layer that two concurrent requests both carry is unpacked twice (the engine only finds the twin when it
 * registers the second), so each missing layer chain is sent by one load only. A load whose missing chains
 * another running load is sending does not wait for it to end: it uploads its own layers at once, leaves
 * those chains out, and ends its request only after that other load has succeeded (LoadOrder says which
 * loads it waits for; the engine skips listed layers whose chains it holds). So the images on a shared base
 * upload while the base applies. An image waits for a queued load that sends part of its base to start
 * first; of the others, an image that is the base of another goes first, then the one with the most to
 * send.
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
  /** Each chain being sent, and the running load sending it. */
  #sending = new Map<string, OrderedLoad<T>>();
  /** Running loads, each with the chains it sends itself. */
  #marked = new Map<OrderedLoad<T>, string[]>();
  /** Running loads, each with the running loads whose chains it leaves out and waits for. */
  #after = new Map<OrderedLoad<T>, OrderedLoad<T>[]>();
  /** Running loads still uploading. */
  #uploading = new Set<OrderedLoad<T>>();

  /**
   * `known`: the chains the engine holds (grown as loads succeed); at most `parallel` loads at once, of
   * which at most `uploads` are uploading.
   */
  constructor(readonly known: Set<string>, readonly parallel: number, readonly uploads = parallel) {}

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
   * The queued image that should start now, if there is room: taken off the queue and counted as running
   * and uploading; the chains it sends itself are marked as being sent.
   */
  next(): OrderedLoad<T> | undefined {
    if (this.#marked.size >= this.parallel || this.#uploading.size >= this.uploads) return undefined;
    // Not an image whose base another waiting load would send (it would send that base itself); of the
    // others, one that is the base of another waiting one first (the images on it then upload while it
    // applies), then the largest: the longest load should not be the one that starts last.
    let at = -1;
    let best = -1;
    const sends = this.#waiting.map((load) => this.#ownChains(load));
    const isBaseOf = (base: number, load: number) =>
      base !== load && sends[base].length > 0 &&
      this.#waiting[base].chains.length < this.#waiting[load].chains.length &&
      sends[base].every((chain) => this.#waiting[load].chains.includes(chain));
    this.#waiting.forEach((load, index) => {
      if (this.#waiting.some((_, other) => isBaseOf(other, index))) return;
      const isBase = this.#waiting.some((_, other) => isBaseOf(index, other));
      const score = (isBase ? Number.MAX_SAFE_INTEGER / 2 : 0) + this.#bytesToSend(load, sends[index]);
      if (score > best) [at, best] = [index, score];
    });
    if (at < 0) return undefined;
    const [load] = this.#waiting.splice(at, 1);
    const own = sends[at];
    const after = new Set<OrderedLoad<T>>();
    for (const chain of this.missing(load)) {
      const sender = this.#sending.get(chain);
      if (sender) after.add(sender);
    }
    for (const chain of own) this.#sending.set(chain, load);
    this.#marked.set(load, own);
    this.#after.set(load, [...after]);
    this.#uploading.add(load);
    return load;
  }

  /** The chains a running `load` sends itself; the other chains it lists are the engine's or on their way. */
  sends(load: OrderedLoad<T>): string[] {
    return this.#marked.get(load) ?? [];
  }

  /** The running loads (when `load` started) whose chains `load` leaves out: its request ends after theirs. */
  after(load: OrderedLoad<T>): OrderedLoad<T>[] {
    return this.#after.get(load) ?? [];
  }

  /** A running load has handed the engine all it sends (the engine applies once its request ends). */
  uploaded(load: OrderedLoad<T>): void {
    this.#uploading.delete(load);
  }

  /** The chains `load` would send itself: missing from the engine and not being sent by another load. */
  #ownChains(load: OrderedLoad<T>): string[] {
    return this.missing(load).filter((chain) => !this.#sending.has(chain));
  }

  /** What `load` would send: the sizes of the layers of `sends`. */
  #bytesToSend(load: OrderedLoad<T>, sends: string[]): number {
    return load.chains.reduce(
      (sum, chain, position) => sends.includes(chain) ? sum + (load.sizes?.[position] ?? 1) : sum,
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
    this.#after.delete(load);
    this.#uploading.delete(load);
    if (succeeded) { for (const chain of load.chains) this.known.add(chain); }
  }
}
