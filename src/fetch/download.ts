/**
 * Downloading one blob into the store: resumable, retried, rate-limited, verified by the store's commit.
 */
import { BerthError } from "../util/errors.ts";
import { backoffDelay, sleep } from "../util/async.ts";
import type { RegistryClient } from "../registry/client.ts";
import type { Reference } from "../oci/reference.ts";
import type { Descriptor } from "../oci/descriptor.ts";
import type { Store } from "../store/store.ts";
import type { RateLimiter } from "./rate.ts";

/** What a download reports as it goes. */
export type DownloadEvent =
  | { type: "blob-start"; digest: string; size: number; offset: number }
  | { type: "blob-progress"; digest: string; bytesDone: number; size: number }
  | { type: "blob-retry"; digest: string; offset: number; error: string };

/** A download's listener, abort signal and shared rate limiter. */
export interface DownloadOptions {
  onEvent?: (event: DownloadEvent) => void;
  signal?: AbortSignal;
  limiter?: RateLimiter;
}

/**
 * Downloads one blob into the store, resuming its ingest: a dropped or stalled transfer continues with a
 * Range request from the byte reached. Consecutive failures without progress are bounded by the client's
 * attempt count, and the time without a byte by its deadline. With mirrors (hosts.toml), a host that fails
 * mid-blob is put in back-off and the next one continues from the byte reached: the bytes are the same
 * whichever host serves them. A verification failure is retried from byte 0 (the kept prefix may be what was
 * wrong), once, or up to three times when mirrors served it, each time with the hosts that served the bad
 * bytes in back-off; the last one is final and names the digest.
 */
export async function downloadBlob(
  client: RegistryClient,
  store: Store,
  ref: Reference,
  descriptor: Descriptor,
  options: DownloadOptions,
): Promise<number> {
  const { limiter } = options;
  const { digest, size } = descriptor;
  let bytesFetched = 0;
  let verificationRetries = 0;
  for (;;) {
    // The hosts whose bytes are in this ingest, to blame if they do not verify.
    const servedBy = new Set<string>();
    const writer = await store.ingest(digest, size);
    options.onEvent?.({ type: "blob-start", digest, size, offset: writer.offset });
    let failures = 0;
    let progressAt = Date.now();
    try {
      while (writer.offset < size) {
        const before = writer.offset;
        try {
          const body = await client.openBlob(ref, digest, size, writer.offset, options.signal);
          servedBy.add(body.host);
          for await (const chunk of body) {
            await writer.write(chunk);
            bytesFetched += chunk.length;
            progressAt = Date.now();
            await limiter?.take(chunk.length, options.signal);
            options.onEvent?.({ type: "blob-progress", digest, bytesDone: writer.offset, size });
          }
          if (writer.offset < size) {
            throw new BerthError(
              "registry_unreachable",
              `blob ${digest}: body ended at byte ${writer.offset}`,
              {
                transient: true,
              },
            );
          }
        } catch (error) {
          if (options.signal?.aborted) throw options.signal.reason;
          if (!(error instanceof BerthError) || !error.transient) throw error;
          failures = writer.offset > before ? 1 : failures + 1;
          if (failures >= client.options.attempts) throw error;
          if (Date.now() - progressAt >= client.options.deadlineMs) {
            throw new BerthError(
              "registry_unreachable",
              `${error.message} (no data for ${Math.round((Date.now() - progressAt) / 1000)} s, giving up)`,
              { cause: error, transient: true },
            );
          }
          options.onEvent?.({ type: "blob-retry", digest, offset: writer.offset, error: error.message });
          await writer.checkpoint();
          await sleep(backoffDelay(failures, client.options), options.signal);
        }
      }
    } catch (error) {
      await writer.close().catch(() => {});
      throw error;
    }
    try {
      await writer.commit();
      return bytesFetched;
    } catch (error) {
      const mirrored = [...servedBy].some((host) => host !== ref.registry);
      if (
        error instanceof BerthError && error.reason === "verification_failed" &&
        verificationRetries < (mirrored ? 3 : 1)
      ) {
        verificationRetries++;
        if (mirrored) client.blame(servedBy, error.message);
        options.onEvent?.({ type: "blob-retry", digest, offset: 0, error: error.message });
        continue;
      }
      throw error;
    }
  }
}
