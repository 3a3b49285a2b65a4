/**
 * Reading response bodies from a registry, which is hostile until checked: every read has a stall timeout
 * and every body read whole has a size cap. Excess is never read: the body is cancelled, which closes the
 * connection, so a registry that sends hundreds of megabytes costs berth no more than the cap.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { outsideText } from "../util/text.ts";

/** Milliseconds without a body byte after which a read is abandoned (the default of `stallTimeoutMs`). */
export const DEFAULT_STALL_TIMEOUT_MS = 20_000;
/**
 * Bytes of an error body read: the spec's `{"errors":[{"code","message","detail"}]}` fits in far less; the
 * rest of a larger body is not read (only the first code and message are shown).
 */
export const MAX_ERROR_BODY_BYTES = 16 * 1024;

/**
 * Ties a body's reader to `signal`: an abort cancels the reader at once, so a pending `read()` settles
 * (done) and the connection is closed. Returns the function that unties them.
 *
 * fetch's own signal is not enough once the headers are in: Deno (2.x) forwards an abort to the body only
 * through the Request object's internal signal, which the caller's signal holds weakly. When the Request is
 * unreachable (fetch returned) and a garbage collection ran, the abort never reaches the body and the read
 * runs to the end. Whether that collection happens depends on the heap, so an abort used to work or not
 * depending on which modules were loaded.
 */
function cancelOnAbort(reader: ReadableStreamDefaultReader<Uint8Array>, signal: AbortSignal): () => void {
  const onAbort = () => reader.cancel(signal.reason).catch(() => {});
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

function stallError(what: string, stallMs: number): BerthError {
  return new BerthError("registry_unreachable", `${what}: no data for ${stallMs / 1000} s`, {
    transient: true,
  });
}

/** The time bounds and the name readAtMost needs for one body; the size bound is its `cap`. */
export interface ReadLimits {
  /** Names the body in errors: "manifest host/a/b:1", "token response of host". */
  what: string;
  /** Milliseconds without a byte before the read fails (transient registry_unreachable). */
  stallMs: number;
  /** An abort ends the read at once and surfaces as its reason. */
  signal?: AbortSignal;
}

/**
 * Reads at most `cap` bytes of `body` — the one way berth reads a registry body whole. More than `cap` is
 * not read: the body is cancelled and `truncated` is set (the caller refuses the body or keeps the
 * prefix). A stall or a dropped connection fails with a transient registry_unreachable naming `what`.
 */
export async function readAtMost(
  body: ReadableStream<Uint8Array> | null,
  cap: number,
  limits: ReadLimits,
): Promise<{ bytes: Uint8Array; truncated: boolean }> {
  const { what, stallMs, signal } = limits;
  if (!body) return { bytes: new Uint8Array(0), truncated: false };
  const reader = body.getReader();
  const untie = signal ? cancelOnAbort(reader, signal) : () => {};
  let stalled = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = true;
      reader.cancel().catch(() => {});
    }, stallMs);
  };
  const chunks: Uint8Array[] = [];
  let total = 0;
  let truncated = false;
  try {
    arm();
    for (;;) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (stalled) throw stallError(what, stallMs);
        throw new BerthError(
          "registry_unreachable",
          `${what}: transfer interrupted (${errorMessage(error)})`,
          {
            cause: error,
            transient: true,
          },
        );
      }
      // A cancelled reader reports done: that is the abort or the stall, not the end of the body.
      if (signal?.aborted) throw signal.reason;
      if (stalled) throw stallError(what, stallMs);
      if (result.done) break;
      arm();
      const room = cap - total;
      if (result.value.length > room) {
        chunks.push(result.value.slice(0, room));
        total = cap;
        truncated = true;
        await reader.cancel().catch(() => {});
        break;
      }
      chunks.push(result.value);
      total += result.value.length;
    }
  } finally {
    clearTimeout(timer);
    untie();
    reader.releaseLock();
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return { bytes, truncated };
}

/** What a registry said when it refused something: its first error code, and one short phrase. */
export interface RegistryErrorBody {
  /** The distribution spec's error code ("NAME_UNKNOWN", "DENIED", …), when the body had one. */
  code?: string;
  /** "CODE: message", or "HTTP <status>" for a body that is not the registry's JSON; safe to print. */
  text: string;
}

/**
 * Reads (and so consumes) the registry's JSON error body ({errors: [{code, message}]}): its first
 * `MAX_ERROR_BODY_BYTES` at most, cleaned of control characters. A body that stalls, drops or is not the
 * registry's JSON gives "HTTP <status>": the status says enough.
 */
export async function readRegistryError(
  response: Response,
  stallMs = DEFAULT_STALL_TIMEOUT_MS,
  signal?: AbortSignal,
): Promise<RegistryErrorBody> {
  const fallback = { text: `HTTP ${response.status}` };
  let bytes: Uint8Array;
  try {
    ({ bytes } = await readAtMost(response.body, MAX_ERROR_BODY_BYTES, {
      what: `error body (HTTP ${response.status})`,
      stallMs,
      signal,
    }));
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    if (error instanceof BerthError && error.reason === "registry_unreachable") return fallback;
    throw error;
  }
  try {
    const parsed = JSON.parse(new TextDecoder().decode(bytes)) as {
      errors?: { code?: unknown; message?: unknown }[];
    };
    const first = parsed.errors?.[0];
    const code = typeof first?.code === "string" ? outsideText(first.code, 64) : undefined;
    const message = typeof first?.message === "string" ? outsideText(first.message) : undefined;
    if (code || message) return { code, text: [code, message].filter(Boolean).join(": ") };
  } catch {
    // not JSON (or cut at the cap): the status line says enough
  }
  return fallback;
}

/** How often the stall watchdog looks at a transfer. */
const WATCHDOG_MS = 1_000;

/**
 * Yields a body's chunks: drops the first `skip` bytes, and aborts the request when no byte arrives for
 * `stallMs`. Read errors become transient BerthErrors so the caller resumes; an abort (the caller's, or
 * the stall watchdog's) ends the read at once and surfaces as the abort's reason. For blobs, which are
 * streamed to the store rather than held: their size is the store's to enforce.
 */
export async function* watchBody(
  body: ReadableStream<Uint8Array>,
  abort: AbortController,
  release: () => void,
  skip: number,
  stallMs: number,
  what: string,
): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  const untie = cancelOnAbort(reader, abort.signal);
  let lastByteAt = Date.now();
  // One timer per transfer, not one per chunk: chunks arrive thousands of times a second.
  const watchdog = setInterval(() => {
    if (Date.now() - lastByteAt < stallMs) return;
    abort.abort(stallError(what, stallMs));
  }, Math.min(stallMs, WATCHDOG_MS));
  let toSkip = skip;
  try {
    for (;;) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        if (abort.signal.aborted) throw abort.signal.reason;
        throw new BerthError(
          "registry_unreachable",
          `${what}: transfer interrupted (${errorMessage(error)})`,
          {
            cause: error,
            transient: true,
          },
        );
      }
      // A cancelled reader reports done: that is the abort, not the end of the body.
      if (abort.signal.aborted) throw abort.signal.reason;
      if (result.done) return;
      lastByteAt = Date.now();
      const chunk = result.value;
      if (toSkip >= chunk.length) {
        toSkip -= chunk.length;
        continue;
      }
      yield toSkip > 0 ? chunk.subarray(toSkip) : chunk;
      toSkip = 0;
    }
  } finally {
    clearInterval(watchdog);
    release();
    // A consumer that stops early leaves the body open: cancelling it closes the connection for sure.
    abort.abort();
    untie();
    reader.releaseLock();
  }
}
