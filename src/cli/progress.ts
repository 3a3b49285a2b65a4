/**
 * The live progress line of `berth pull` on a terminal: bytes done of the total, percent, speed, blobs
 * done of the total, redrawn in place on stderr. `PullProgress` (counting) and `formatProgressLine`
 * (drawing) are pure, with the clock passed in, so tests check them without a terminal; `TerminalProgress`
 * is the thin part that writes.
 */
import type { PullEvent } from "../fetch/pull.ts";
import { formatBytes } from "./context.ts";

/** Speed is measured over this much recent time: long enough to be steady, short enough to follow a stall. */
export const SPEED_WINDOW_MS = 5_000;
/** Redraws at most this often (and at least this often while waiting, so a stall shows as the speed falls). */
export const REDRAW_MS = 200;
const BAR_WIDTH = 20;
/** One speed sample per this much time is enough: chunk events come thousands of times a second. */
const SAMPLE_MS = 50;

/** What the progress line shows. */
export interface ProgressSnapshot {
  bytesDone: number;
  bytesTotal: number;
  blobsDone: number;
  blobsTotal: number;
  /** Bytes received per second over the last `SPEED_WINDOW_MS` (stored blobs do not count). */
  bytesPerSecond: number;
  /** Every reference resolved so far is recorded. */
  finished: boolean;
}

/**
 * Counts a pull from its events. Once the pull is planned (`planned` events, before any layer is fetched)
 * the totals are exact and fixed: every distinct blob once, manifests included, stored blobs and partial
 * downloads counted as done. Without a plan (events from older callers), totals come from `resolved`
 * events and grow as references resolve; once every reference is recorded the line shows them as done.
 */
export class PullProgress {
  /** From `planned` events: each distinct blob's size, and the manifests' bytes (done from the start). */
  #plan?: { blobs: Map<string, number>; manifestBytes: number };
  #refs = new Map<string, { bytesTotal: number; blobs: number; recorded: boolean }>();
  /** Bytes held of each blob seen: its offset while in flight, its size once done. */
  #blobs = new Map<string, { bytesHeld: number; done: boolean }>();
  /** (time, bytes received so far) pairs within the speed window, oldest first. */
  #samples: { atMs: number; bytesReceived: number }[] = [];
  #bytesReceived = 0;

  update(event: PullEvent, nowMs: number): void {
    switch (event.type) {
      case "planned": {
        const plan = this.#plan ??= { blobs: new Map(), manifestBytes: 0 };
        plan.manifestBytes += event.bytesTotal - event.blobs.reduce((sum, blob) => sum + blob.size, 0);
        for (const blob of event.blobs) {
          plan.blobs.set(blob.digest, blob.size);
          const held = this.#blobs.get(blob.digest)?.bytesHeld ?? 0;
          if (blob.bytesDone > held) {
            this.#blobs.set(blob.digest, { bytesHeld: blob.bytesDone, done: blob.bytesDone === blob.size });
          }
        }
        break;
      }
      case "resolved":
        this.#refs.set(event.name, { bytesTotal: event.bytesTotal, blobs: event.blobs, recorded: false });
        break;
      case "blob-start":
        this.#blobs.set(event.digest, { bytesHeld: event.offset, done: false });
        break;
      case "blob-progress": {
        const blob = this.#blobs.get(event.digest) ?? { bytesHeld: 0, done: false };
        this.#bytesReceived += Math.max(0, event.bytesDone - blob.bytesHeld);
        blob.bytesHeld = event.bytesDone;
        this.#blobs.set(event.digest, blob);
        break;
      }
      case "blob-retry": {
        // A retry from an earlier byte (a failed verification starts again at 0) gives bytes back.
        const blob = this.#blobs.get(event.digest);
        if (blob) blob.bytesHeld = event.offset;
        break;
      }
      case "blob-done":
        this.#blobs.set(event.digest, { bytesHeld: event.size, done: true });
        break;
      case "ref-done": {
        const ref = this.#refs.get(event.name);
        if (ref) ref.recorded = true;
        break;
      }
    }
    const newest = this.#samples.at(-1);
    if (!newest || nowMs - newest.atMs >= SAMPLE_MS) {
      this.#samples.push({ atMs: nowMs, bytesReceived: this.#bytesReceived });
      this.#trim(nowMs);
    }
  }

  #speed(nowMs: number): number {
    const oldest = this.#samples[0];
    const elapsedMs = oldest ? nowMs - oldest.atMs : 0;
    return oldest && elapsedMs > 0 ? (this.#bytesReceived - oldest.bytesReceived) * 1000 / elapsedMs : 0;
  }

  #plannedSnapshot(
    plan: { blobs: Map<string, number>; manifestBytes: number },
    nowMs: number,
  ): ProgressSnapshot {
    let bytesDone = plan.manifestBytes;
    let bytesTotal = plan.manifestBytes;
    let blobsDone = 0;
    for (const [digest, size] of plan.blobs) {
      const held = Math.min(this.#blobs.get(digest)?.bytesHeld ?? 0, size);
      bytesTotal += size;
      bytesDone += held;
      if (held === size) blobsDone++;
    }
    const refs = [...this.#refs.values()];
    return {
      bytesDone,
      bytesTotal,
      blobsDone,
      blobsTotal: plan.blobs.size,
      bytesPerSecond: this.#speed(nowMs),
      finished: refs.length > 0 && refs.every((ref) => ref.recorded),
    };
  }

  /** Drops samples older than the window, keeping one at or before its start to measure from. */
  #trim(nowMs: number): void {
    while (this.#samples.length > 1 && this.#samples[1].atMs <= nowMs - SPEED_WINDOW_MS) {
      this.#samples.shift();
    }
  }

  snapshot(nowMs: number): ProgressSnapshot {
    this.#trim(nowMs);
    if (this.#plan) return this.#plannedSnapshot(this.#plan, nowMs);
    const refs = [...this.#refs.values()];
    const bytesTotal = refs.reduce((sum, ref) => sum + ref.bytesTotal, 0);
    const blobsTotal = refs.reduce((sum, ref) => sum + ref.blobs, 0);
    const finished = refs.length > 0 && refs.every((ref) => ref.recorded);
    const blobs = [...this.#blobs.values()];
    const bytesHeld = blobs.reduce((sum, blob) => sum + blob.bytesHeld, 0);
    const blobsDone = blobs.filter((blob) => blob.done).length;
    const bytesPerSecond = this.#speed(nowMs);
    return {
      bytesDone: finished ? bytesTotal : Math.min(bytesHeld, bytesTotal),
      bytesTotal,
      blobsDone: finished ? blobsTotal : Math.min(blobsDone, blobsTotal),
      blobsTotal,
      bytesPerSecond,
      finished,
    };
  }
}

/** "1:05", "1:02:03": for the estimate of time left. */
export function formatDuration(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = String(total % 60).padStart(2, "0");
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}

/**
 * One progress line, never wider than `columns - 1` (a line that wraps cannot be redrawn in place):
 * `[#######.............]  12.0 MiB / 41.0 MiB   29%  4.0 MiB/s  ETA 0:07  blobs 2/4`. On a narrow
 * terminal the estimate goes first, then the bar; what still does not fit is cut.
 */
export function formatProgressLine(snapshot: ProgressSnapshot, columns: number): string {
  const { bytesDone, bytesTotal } = snapshot;
  const fraction = bytesTotal > 0 ? Math.min(1, bytesDone / bytesTotal) : snapshot.finished ? 1 : 0;
  const filled = Math.floor(fraction * BAR_WIDTH);
  const bar = `[${"#".repeat(filled)}${".".repeat(BAR_WIDTH - filled)}]`;
  const left = bytesTotal - bytesDone;
  const eta = !snapshot.finished && left > 0 && snapshot.bytesPerSecond > 0
    ? `ETA ${formatDuration(left / snapshot.bytesPerSecond)}`
    : undefined;
  const line = (parts: { bar: boolean; eta: boolean }) =>
    [
      ...(parts.bar ? [bar] : []),
      `${formatBytes(bytesDone)} / ${formatBytes(bytesTotal)}`,
      // Floor, so 100% means done and not "almost".
      `${Math.floor(fraction * 100)}%`.padStart(4),
      `${formatBytes(Math.round(snapshot.bytesPerSecond))}/s`,
      ...(parts.eta && eta ? [eta] : []),
      `blobs ${snapshot.blobsDone}/${snapshot.blobsTotal}`,
    ].join("  ");
  const candidates = [
    line({ bar: true, eta: true }),
    line({ bar: true, eta: false }),
    line({ bar: false, eta: true }),
    line({ bar: false, eta: false }),
  ];
  return candidates.find((candidate) => candidate.length < columns) ??
    candidates[3].slice(0, Math.max(0, columns - 1));
}

/** Carriage return, the line, then erase to its end (ECMA-48 EL): the old line disappears, even if longer. */
const ERASE_LINE = "\r\x1b[K";

/**
 * Draws a `PullProgress` on a terminal: the line is redrawn in place at most every `REDRAW_MS`, and at
 * least that often while nothing happens (the speed falls during a stall). Other lines (`note`) are
 * written above it.
 */
export class TerminalProgress {
  readonly progress = new PullProgress();
  #write: (text: string) => void;
  #columns: () => number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #lastDrawMs = 0;
  #drawn = false;

  constructor(write: (text: string) => void, columns: () => number) {
    this.#write = write;
    this.#columns = columns;
    const timer = setInterval(() => this.#draw(), REDRAW_MS);
    // The redraw timer must never keep berth alive by itself.
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  update(event: PullEvent): void {
    const nowMs = Date.now();
    this.progress.update(event, nowMs);
    if (this.#timer !== undefined && nowMs - this.#lastDrawMs >= REDRAW_MS) this.#draw();
  }

  /** Writes `line` above the progress line. */
  note(line: string): void {
    this.#write(`${this.#drawn ? ERASE_LINE : ""}${line}\n`);
    this.#drawn = false;
    if (this.#timer !== undefined) this.#draw();
  }

  /**
   * Draws the last state and moves below it; the line stays as the record of what was done. Later calls
   * do nothing, and nothing is drawn after it.
   */
  finish(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.progress.snapshot(Date.now()).blobsTotal > 0) {
      this.#draw();
      this.#write("\n");
    }
    this.#drawn = false;
  }

  #draw(): void {
    const nowMs = Date.now();
    const snapshot = this.progress.snapshot(nowMs);
    if (snapshot.blobsTotal === 0) return;
    this.#lastDrawMs = nowMs;
    this.#write(ERASE_LINE + formatProgressLine(snapshot, this.#columns()));
    this.#drawn = true;
  }
}
