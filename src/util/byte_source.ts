/**
 * Exact byte counts out of a stream of arbitrarily sized chunks, for parsers of streamed formats. A stream
 * that ends part-way through what was asked for is an error naming the input, never a short read.
 */
import { BerthError, errorMessage } from "./errors.ts";

/** Pulls exact byte counts out of a stream of arbitrarily sized chunks. */
export class ByteSource {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #chunk: Uint8Array = new Uint8Array(0);
  #offset = 0;
  #ended = false;
  #what: string;

  /** Reads `stream`; `what` names it in errors ("app bundle sha256:…"). */
  constructor(stream: ReadableStream<Uint8Array>, what: string) {
    this.#reader = stream.getReader();
    this.#what = what;
  }

  /** Makes at least one byte available; false at the end of the stream. */
  async #fill(): Promise<boolean> {
    while (this.#offset >= this.#chunk.length) {
      if (this.#ended) return false;
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await this.#reader.read();
      } catch (error) {
        if (error instanceof BerthError) throw error; // from a transform upstream, already worded
        throw new BerthError("invalid_input", `${this.#what}: cannot be read: ${errorMessage(error)}`, {
          cause: error,
        });
      }
      if (result.done) {
        this.#ended = true;
        return false;
      }
      this.#chunk = result.value;
      this.#offset = 0;
    }
    return true;
  }

  /** The error for a stream that ends early, `where` saying inside what. */
  truncated(where: string): BerthError {
    return new BerthError("invalid_input", `${this.#what}: truncated ${where}`);
  }

  /** Exactly `length` bytes; undefined when the stream ends before the first; an error part-way. */
  async readExact(length: number, where: string): Promise<Uint8Array | undefined> {
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      if (!await this.#fill()) {
        if (filled === 0) return undefined;
        throw this.truncated(where);
      }
      const take = Math.min(length - filled, this.#chunk.length - this.#offset);
      out.set(this.#chunk.subarray(this.#offset, this.#offset + take), filled);
      this.#offset += take;
      filled += take;
    }
    return out;
  }

  /** The next 1..max bytes, without copying; an error if the stream has ended. */
  async next(max: number, where: string): Promise<Uint8Array> {
    if (!await this.#fill()) throw this.truncated(where);
    const take = Math.min(max, this.#chunk.length - this.#offset);
    const out = this.#chunk.subarray(this.#offset, this.#offset + take);
    this.#offset += take;
    return out;
  }

  /** Reads and drops exactly `length` bytes; an error if the stream ends first. */
  async skip(length: number, where: string): Promise<void> {
    while (length > 0) length -= (await this.next(length, where)).length;
  }

  /** Reads to the end of the stream; an error past `limit` bytes, saying they follow `after`. */
  async drain(limit: number, after: string): Promise<void> {
    let seen = 0;
    while (await this.#fill()) {
      seen += this.#chunk.length - this.#offset;
      this.#offset = this.#chunk.length;
      if (seen > limit) {
        throw new BerthError(
          "invalid_input",
          `${this.#what}: more than ${limit} bytes follow ${after}`,
        );
      }
    }
  }

  /** Cancels the stream (what is unread is dropped) and lets go of it. */
  async close(): Promise<void> {
    try {
      await this.#reader.cancel();
    } catch {
      // the stream already failed; its error was reported
    }
    this.#reader.releaseLock();
  }
}
