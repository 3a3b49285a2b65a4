/** A fixed in-memory StatusSource for the status endpoint's tests: one app mid-fetch, one running. */
import type { Counters, Status } from "../../src/agent/status_schema.ts";
import type { StatusSource } from "../../src/status/server.ts";

const digest = (hex: string) => `sha256:${hex.repeat(64 / hex.length)}`;

/** "shop" at 42% of its v2 (an update), "sensor" running; realistic enough for the example in docs/status.md. */
export function sampleStatus(): Status {
  return {
    schemaVersion: 1,
    agent: {
      version: "0.1.0",
      startedAt: "2025-03-01T08:00:00.000Z",
      state: "reconciling",
      pollIntervalSeconds: 300,
      lastReconcileAt: "2025-03-01T09:55:00.000Z",
    },
    engine: { reachable: true, version: "20.10.24", apiVersion: "1.41" },
    store: {
      path: "/var/lib/berth/store",
      bytesUsed: 187_432_960,
      blobs: 41,
      reclaimableBytes: 12_582_912,
      freeBytes: 3_221_225_472,
    },
    registryHosts: [
      { host: "10.0.0.5:8471", registry: "registry.example", mirror: true, bytesServed: 1024, errors: 0 },
      {
        host: "registry.example",
        registry: "registry.example",
        mirror: false,
        bytesServed: 0,
        errors: 2,
        backoffUntil: "2026-01-01T00:00:30.000Z",
        lastError: "cannot reach registry registry.example",
      },
    ],
    canRestoreOffline: true,
    apps: [
      {
        name: "shop",
        ref: "registry.example.com/factory/shop:stable",
        desiredDigest: digest("b2"),
        currentDigest: digest("a1"),
        previousDigests: [],
        state: "updating",
        progress: {
          bytesTotal: 100_000_000,
          bytesDone: 42_500_000,
          blobsTotal: 12,
          blobsDone: 7,
          bytesPerSecond: 1_153_433,
          startedAt: "2025-03-01T09:59:20.000Z",
          lastProgressAt: "2025-03-01T09:59:58.000Z",
        },
        blobs: [
          { digest: digest("c3"), size: 31_457_280, bytesDone: 9_437_184, state: "downloading" },
        ],
        services: [
          { name: "web", container: "shop-web-1", state: "running", restartCount: 0, health: "healthy" },
          { name: "db", container: "shop-db-1", state: "running", restartCount: 2 },
        ],
        updatedAt: "2025-03-01T09:59:58.000Z",
      },
      {
        name: "sensor",
        ref: "registry.example.com/factory/sensor:1.4",
        desiredDigest: digest("d4"),
        currentDigest: digest("d4"),
        previousDigests: [digest("e5")],
        state: "running",
        blobs: [],
        services: [{ name: "reader", container: "sensor-reader-1", state: "running", restartCount: 0 }],
        updatedAt: "2025-03-01T08:01:10.000Z",
      },
    ],
    lastError: {
      app: "shop",
      code: "registry_unreachable",
      message: "registry.example.com: connection timed out; retrying in 30 s",
      at: "2025-03-01T09:40:00.000Z",
    },
  };
}

export function sampleCounters(): Counters {
  return {
    bytesFetched: 229_932_960,
    blobsFetched: 48,
    errorsByReason: { registry_unreachable: 3, stalled: 1 },
    reconciles: 24,
    durations: { fetch: { sum: 183.2, count: 3 }, install: { sum: 21.5, count: 2 } },
  };
}

/** A source whose answers the test can change between requests. */
export class FixedSource implements StatusSource {
  status: Status;
  healthy: { ok: boolean; reason?: string } = { ok: true };
  counts: Counters;

  constructor(status = sampleStatus(), counts = sampleCounters()) {
    this.status = status;
    this.counts = counts;
  }
  snapshot(): Status {
    return this.status;
  }
  health(): { ok: boolean; reason?: string } {
    return this.healthy;
  }
  counters(): Counters {
    return this.counts;
  }
}
