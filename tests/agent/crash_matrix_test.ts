/**
 * A crash matrix over an app's update (docs/agent.md, "Updates are transactions"): the agent is killed -9
 * at each step of the update, at seeded random moments inside the long steps, during the roll-back and
 * while it prunes, for a good new version and for three bad ones; then it is started again. Whatever the
 * kill point, the device must end on exactly one version: the good one complete, or the bad one recorded as
 * failed with the version before running again. Each cycle also checks the store with `berth fsck` and that
 * no blob was fetched twice. Real registry, the device's own dockerd, real compose.
 *
 * The default run is a seeded sample (five kill points: one per kind of version and one more; about a
 * minute); the whole matrix runs with BERTH_CRASH_MATRIX=full. The seed is printed; BERTH_TEST_SEED
 * replays a run's kill points.
 *
 * How the kill points are found: agent.json is watched (Deno.watchFs, and read every 10 ms besides) and the
 * agent killed as soon as it shows the wanted step for the new version. Steps that follow each other with
 * no work between (`fetched` → `installing`) often go by before a read: the kill then lands at the next
 * step, which the output says. Pruning logs nothing when it begins ("pruned" comes after the work): it
 * follows the outcome's write at once, so a kill during pruning is aimed at that write or at the prune's
 * first index.json write; the output says when the "pruned" line shows the prune had finished anyway.
 */
import assert from "node:assert/strict";
import { runBerth, withServices } from "../harness/env.ts";
import type { ProjectOptions } from "../harness/projects.ts";
import { type SeededRandom, seededRandom } from "../harness/seed.ts";
import {
  type Device,
  type FaultProxy,
  inScene,
  managed,
  publish,
  type RunningAgent,
  runningServices,
  storedBlobs,
  waitFor,
  waitForApp,
  writeConfig,
} from "./agent_harness.ts";
import type { ManagedApp } from "../../src/agent/state.ts";
import type { UpdateStep } from "../../src/agent/status_schema.ts";

/** The app under test: its name is its repository's last part. */
const APP = "crash-matrix";

/** A good new version, or one of three that never count as up. */
type Variant = "good" | "exits" | "unhealthy" | "crashLoop";

const VARIANTS: readonly Variant[] = ["good", "exits", "unhealthy", "crashLoop"];

/** How each variant's service `web` is written. */
const PROJECT_OPTIONS: Record<Variant, ProjectOptions> = {
  good: {},
  // Up for a second, then exit 1 with no restart policy: fails during the soak.
  exits: { exitsLate: "web" },
  // Runs, but its healthcheck never passes: fails when the start timeout runs out.
  unhealthy: { unhealthy: "web" },
  // Exits 1 every two seconds and is restarted: fails on the restart during the soak.
  crashLoop: { crashLoop: "web" },
};

/** Where a cycle kills the agent. */
type KillPoint =
  /** As soon as agent.json shows this step for the new version (or a later one, when it went by). */
  | { kind: "step"; step: UpdateStep }
  /** `delayMs` after agent.json first shows this step: a moment inside it, or a little past it. */
  | { kind: "random"; step: UpdateStep; delayMs: number }
  /** Once the first bytes of a blob of the new version are in its ingest: a download to resume. */
  | { kind: "download" }
  /**
   * In the prune that follows the outcome: as soon as agent.json shows the outcome (the prune's engine
   * step comes first), or at its first index.json write (the store's own steps: records, then blobs).
   */
  | { kind: "prune"; at: "outcome" | "index" };

interface Case {
  variant: Variant;
  at: KillPoint;
}

/** The steps of both paths in the order they can follow each other; `complete` ends the good path. */
const ORDER: readonly UpdateStep[] = [
  "fetching",
  "fetched",
  "installing",
  "installed",
  "starting",
  "verifying",
  "rolling-back",
  "rolled-back",
  "complete",
];

/** The steps up to verifying, common to both paths. */
const FORWARD_STEPS: readonly UpdateStep[] = ORDER.slice(0, 6);

/**
 * Roughly how long each long step lasts here (ms), by variant: random kill points fall within it. Fetching
 * is slowed by the proxy's throttle; `complete` and `rolled-back` stand for the prune that follows them.
 */
function stepMs(step: UpdateStep, variant: Variant): number {
  switch (step) {
    case "fetching":
      return 2_500;
    case "installing":
    case "starting":
      return 1_500;
    case "verifying":
      return { good: 4_000, exits: 2_000, unhealthy: 5_500, crashLoop: 4_000 }[variant];
    case "rolling-back":
      return 2_500;
    default:
      return 500;
  }
}

function longSteps(variant: Variant): UpdateStep[] {
  const common: UpdateStep[] = ["fetching", "installing", "starting", "verifying"];
  return variant === "good" ? [...common, "complete"] : [...common, "rolling-back", "rolled-back"];
}

function randomKill(variant: Variant, random: SeededRandom): KillPoint {
  const steps = longSteps(variant);
  const step = steps[random.below(steps.length)];
  return { kind: "random", step, delayMs: Math.round(random.next() * stepMs(step, variant)) };
}

/**
 * The whole matrix: every variant killed at each forward step, mid-download, during the roll-back (bad
 * ones), at both points of the prune, and at two random moments; in a seeded order.
 */
function fullMatrix(random: SeededRandom): Case[] {
  const cases: Case[] = [];
  for (const variant of VARIANTS) {
    for (const step of FORWARD_STEPS) cases.push({ variant, at: { kind: "step", step } });
    if (variant !== "good") cases.push({ variant, at: { kind: "step", step: "rolling-back" } });
    cases.push({ variant, at: { kind: "download" } });
    cases.push({ variant, at: { kind: "prune", at: "outcome" } }, {
      variant,
      at: { kind: "prune", at: "index" },
    });
    for (let i = 0; i < 2; i++) cases.push({ variant, at: randomKill(variant, random) });
  }
  return shuffle(cases, random);
}

/**
 * The default sample, about a minute: one case of the matrix per variant and one more of any, picked and
 * ordered by the seed.
 */
function sample(random: SeededRandom): Case[] {
  const full = fullMatrix(random);
  const picked = VARIANTS.map((variant) => {
    const own = full.filter((entry) => entry.variant === variant);
    return own[random.below(own.length)];
  });
  const rest = full.filter((entry) => !picked.includes(entry));
  return shuffle([...picked, rest[random.below(rest.length)]], random);
}

function shuffle<T>(items: T[], random: SeededRandom): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = random.below(i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function describeKill(at: KillPoint): string {
  if (at.kind === "step") return `at ${at.step}`;
  if (at.kind === "random") return `${at.delayMs} ms into ${at.step}`;
  if (at.kind === "download") return "mid-download";
  return at.at === "outcome" ? "as the prune begins" : "at the prune's index.json write";
}

/**
 * Calls `look` on every change in `dirs` (with the events so far) and every 10 ms besides, until it returns
 * a value; fails after `timeoutMs` saying `what`.
 */
async function watchUntil<T>(
  dirs: string[],
  what: string,
  look: (events: Deno.FsEvent[]) => Promise<T | undefined>,
  timeoutMs: number,
): Promise<T> {
  const watcher = Deno.watchFs(dirs, { recursive: false });
  const events: Deno.FsEvent[] = [];
  let wake = () => {};
  const pumping = (async () => {
    for await (const event of watcher) {
      events.push(event);
      wake();
    }
  })();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = await look(events);
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 10);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    watcher.close();
    await pumping;
  }
}

/** What a kill hit: the steps seen before it and the one agent.json shows after it. */
interface Kill {
  seen: UpdateStep[];
  killedIn: string;
  note?: string;
}

/** Waits for the kill point of `at` in the update to `digest`, then kills `agent` -9. */
async function killAt(device: Device, agent: RunningAgent, digest: string, at: KillPoint): Promise<Kill> {
  const seen: UpdateStep[] = [];
  const note = (step: UpdateStep) => {
    if (seen.at(-1) !== step) seen.push(step);
  };
  const indexPath = `${device.store}/index.json`;
  const ingestsBefore = await ingestBytes(device);
  const logFrom = agent.log().length;
  // Events after this one came after the last look that found no outcome.
  let beforeOutcome = 0;
  const look = async (events: Deno.FsEvent[]): Promise<string | undefined> => {
    const update = (await managed(device, APP))?.update;
    if (update?.digest !== digest) return undefined;
    note(update.step);
    if (at.kind === "download") {
      for (const [blob, bytes] of await ingestBytes(device)) {
        if (bytes > 0 && bytes !== ingestsBefore.get(blob)) return "bytes in an ingest";
      }
      return update.step !== "fetching" ? `no download seen, killed at ${update.step}` : undefined;
    }
    if (at.kind === "prune") {
      if (!update.outcome) {
        beforeOutcome = events.length;
        return undefined;
      }
      const late = `${Date.now() - Date.parse(update.since)} ms after the outcome's write`;
      if (at.at === "outcome") return `the outcome seen ${late}`;
      if (events.slice(beforeOutcome).some((event) => event.paths.includes(indexPath))) {
        return `index.json written, ${late}`;
      }
      return Date.now() - Date.parse(update.since) > 5_000 ? "no index.json write within 5 s" : undefined;
    }
    return ORDER.indexOf(update.step) >= ORDER.indexOf(at.step) ? update.step : undefined;
  };
  const reached = await watchUntil([device.store], `the kill point (${describeKill(at)})`, async (events) => {
    const found = await look(events);
    // Killed here and now (kill() signals at once): a prune is over within some 50 ms of the outcome.
    if (found !== undefined && at.kind !== "random") void agent.kill();
    return found;
  }, 90_000);
  if (at.kind === "random") await new Promise((resolve) => setTimeout(resolve, at.delayMs));
  await agent.kill();
  const after = (await managed(device, APP))?.update;
  if (after?.digest === digest) note(after.step);
  const killedIn = after?.digest === digest
    ? `${after.step}${after.outcome ? ` (${after.outcome})` : ""}`
    : "?";
  if (at.kind === "prune") {
    const pruned = / pruned$/m.test(agent.log().slice(logFrom));
    return { seen, killedIn, note: `${reached}${pruned ? "; the prune had finished all the same" : ""}` };
  }
  if (
    (at.kind === "step" && reached !== at.step) || (at.kind === "download" && !reached.startsWith("bytes"))
  ) {
    const missed = at.kind === "step" ? `${at.step} went by too fast: killed at ${reached}` : reached;
    return { seen, killedIn, note: missed };
  }
  return { seen, killedIn, ...(at.kind === "download" ? { note: reached } : {}) };
}

const BLOB_GET = /^\/v2\/.+\/blobs\/(sha256:[0-9a-f]{64})$/;

/** One blob GET the proxy saw: the digest, and the byte it asked from (0 without a Range header). */
interface BlobGet {
  digest: string;
  from: number;
  status: number;
}

/** The blob GETs among the proxy's requests `from` up to `to`. */
function blobGets(proxy: FaultProxy, from: number, to: number): BlobGet[] {
  const gets: BlobGet[] = [];
  for (const request of proxy.stats.requests.slice(from, to)) {
    const blob = request.method === "GET" ? BLOB_GET.exec(request.path) : null;
    if (!blob) continue;
    const start = /^bytes=(\d+)-/.exec(request.range ?? "");
    gets.push({ digest: blob[1], from: start ? Number(start[1]) : 0, status: request.status });
  }
  return gets;
}

/** The store's partial downloads: digest → bytes its ingest holds (all of them resume after a crash). */
async function ingestBytes(device: Device): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  try {
    for await (const entry of Deno.readDir(`${device.store}/ingest`)) {
      const data = await Deno.stat(`${device.store}/ingest/${entry.name}/data`).catch(() => undefined);
      if (data) found.set(`sha256:${entry.name}`, data.size);
    }
  } catch {
    // no ingests
  }
  return found;
}

/** What the store held when the agent was killed. */
interface AtKill {
  committed: Set<string>;
  ingests: Map<string, number>;
}

/**
 * Problems with the blob GETs of one cycle, `before` the kill and `after` it ([] when none). The proxy
 * records each request with its Range header, so "fetched twice" is checked request by request:
 * - a blob stored before the cycle is never asked for;
 * - in one agent run no blob is asked for twice (no faults are injected, so nothing needs a retry);
 * - after the kill, a blob committed by then is not asked for again, and one with a partial ingest of n
 *   bytes is asked for from byte n on (a resumed Range request), never from the start. A blob the killed
 *   run asked for but kept nothing of may be asked for whole again: none of its bytes reached the store.
 */
function fetchProblems(
  before: BlobGet[],
  after: BlobGet[],
  storedBefore: Set<string>,
  atKill: AtKill,
): string[] {
  const problems: string[] = [];
  for (const [run, gets] of [["before the kill", before], ["after the restart", after]] as const) {
    const counts = new Map<string, number>();
    for (const get of gets) counts.set(get.digest, (counts.get(get.digest) ?? 0) + 1);
    for (const [digest, count] of counts) {
      if (count > 1) problems.push(`${digest} asked for ${count} times ${run}`);
      if (storedBefore.has(digest)) {
        problems.push(`${digest} was stored before the cycle, yet asked for ${run}`);
      }
    }
  }
  for (const get of after) {
    if (storedBefore.has(get.digest)) continue;
    if (atKill.committed.has(get.digest)) {
      problems.push(
        `${get.digest} was committed before the kill, yet asked for again (from byte ${get.from})`,
      );
    }
    const kept = atKill.ingests.get(get.digest) ?? 0;
    if (kept > 0 && get.from !== kept) {
      problems.push(
        `${get.digest}: ${kept} bytes were kept at the kill, yet asked for from byte ${get.from}`,
      );
    }
  }
  return problems;
}

/** The digests index.json names (app versions and images the store keeps). */
async function indexDigests(device: Device): Promise<string[]> {
  const index = JSON.parse(await Deno.readTextFile(`${device.store}/index.json`)) as {
    manifests: { digest: string }[];
  };
  return index.manifests.map((entry) => entry.digest);
}

/** The last `lines` lines of `text`. */
function tail(text: string, lines = 60): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** One app image a version's `web` runs, through the proxy. */
interface Image {
  /** The repository name, as `docker ps` shows it in the image column. */
  name: string;
  ref: string;
}

/** The device under test and the version it runs between cycles. */
interface Lane {
  device: Device;
  proxy: FaultProxy;
  /** The app's tag, as configured. */
  ref: string;
  images: Image[];
  start(): RunningAgent;
  agent: RunningAgent;
  current: { digest: string; image: Image };
  seed: number;
}

/** Waits until `check` passes on agent.json and the status, or says what both showed last. */
async function settle(
  lane: Lane,
  what: string,
  check: (app: ManagedApp | undefined, state: string | undefined, current: string | undefined) => boolean,
): Promise<void> {
  let last = "";
  try {
    await waitForApp(
      lane.device,
      what,
      async (app) => {
        const stored = await managed(lane.device, APP);
        last = `status: state ${app.state}, current ${app.currentDigest}\nagent.json: ${
          JSON.stringify(stored)
        }`;
        return check(stored, app.state, app.currentDigest) || undefined;
      },
      lane.agent,
      60_000,
    );
  } catch {
    throw new Error(`never settled on ${what}; last seen:\n${last}`);
  }
}

/**
 * One cycle: publishes a new version of `entry.variant` (running the image the device does not run now),
 * kills the agent at `entry.at`, starts it again and checks where the device ended. Returns a line for the
 * test output.
 */
async function runCycle(lane: Lane, entry: Case, index: number): Promise<string> {
  const { device, proxy } = lane;
  const started = performance.now();
  const image = lane.images.find((candidate) => candidate.name !== lane.current.image.name)!;
  const storedBefore = await storedBlobs(device);
  const firstRequest = proxy.stats.requests.length;
  // The label makes every cycle's version new, even where variant and image repeat.
  const v2 = await publish(lane.ref, { web: image.ref }, {
    ...PROJECT_OPTIONS[entry.variant],
    label: `cycle ${index}: ${entry.variant}`,
  });
  const kill = await killAt(device, lane.agent, v2.digest, entry.at).catch(async (error) => {
    throw new Error(
      `cycle ${index}: ${entry.variant}: ${error.message} — replay with BERTH_TEST_SEED=${lane.seed}\n` +
        `agent.json: ${await Deno.readTextFile(`${device.store}/agent.json`).catch(() => "(none)")}\n` +
        `agent log (end):\n${tail(lane.agent.log())}`,
    );
  });
  // A request is recorded when its answer is sent: those the killed agent sent have landed by now.
  await new Promise((resolve) => setTimeout(resolve, 200));
  const killRequest = proxy.stats.requests.length;
  const atKill: AtKill = { committed: await storedBlobs(device), ingests: await ingestBytes(device) };
  const stateAtKill = await Deno.readTextFile(`${device.store}/agent.json`).catch(() => "(none)");
  const killedLog = lane.agent.log();
  lane.agent = lane.start();
  const good = entry.variant === "good";
  const expected = good ? { digest: v2.digest, image } : lane.current;
  try {
    await settle(
      lane,
      good ? "the new version complete" : "the new version failed, the one before running",
      (app, state, current) => {
        if (app?.update?.digest !== v2.digest) return false;
        if (good) return app.update.outcome === "complete" && state === "running" && current === v2.digest;
        return app.update.outcome === "rolled-back" && app.failedDigest === v2.digest && state === "failed" &&
          current === lane.current.digest;
      },
    );
    const web = (await runningServices(device, APP)).web;
    assert.ok(
      web?.includes(`/${expected.image.name}`),
      `web must run ${expected.image.name} (${good ? "the new" : "the previous"} version), runs ${
        web ?? "nothing"
      }`,
    );
    if (!good) {
      // docs/agent.md: a version that failed and was rolled back is not kept. The pass that rolled it back
      // forgets it; after a kill, the next pass over the failed tag does.
      await waitFor(
        "the failed version gone from the store's index.json",
        async () => !(await indexDigests(device)).includes(v2.digest),
        10_000,
        100,
      ).catch(() => {
        throw new Error(`the failed version ${v2.digest} is still in the store's index.json`);
      });
    }
    const fsck = await runBerth([...device.options, "fsck"]);
    assert.equal(fsck.code, 0, `berth fsck failed:\n${fsck.stdout}${fsck.stderr}`);
    const before = blobGets(proxy, firstRequest, killRequest);
    const after = blobGets(proxy, killRequest, proxy.stats.requests.length);
    const problems = fetchProblems(before, after, storedBefore, atKill);
    assert.deepEqual(problems, [], `a blob fetched twice:\n${problems.join("\n")}`);
    lane.current = expected;
    const resumed = after.filter((get) => get.from > 0).length;
    return `cycle ${index} ${entry.variant} killed ${describeKill(entry.at)}: in ${kill.killedIn} (seen ${
      kill.seen.join(" → ") || "nothing"
    })${kill.note ? ` [${kill.note}]` : ""} → ${
      good ? "complete" : "rolled back"
    }, fsck ok, blob GETs ${before.length}+${after.length} (${resumed} resumed) [${
      ((performance.now() - started) / 1000).toFixed(1)
    } s]`;
  } catch (error) {
    throw new Error(
      [
        `cycle ${index}: ${entry.variant} killed ${
          describeKill(entry.at)
        } failed — replay with BERTH_TEST_SEED=${lane.seed}`,
        `killed in ${kill.killedIn} (seen ${kill.seen.join(" → ")})${kill.note ? ` [${kill.note}]` : ""}`,
        error instanceof Error ? error.message : String(error),
        `agent.json at the kill: ${stateAtKill}`,
        `agent.json now: ${await Deno.readTextFile(`${device.store}/agent.json`).catch(() => "(none)")}`,
        `log of the killed agent (end):\n${tail(killedLog)}`,
        `log of the restarted agent (end):\n${tail(lane.agent.log())}`,
      ].join("\n"),
    );
  }
}

/** Blob bodies are slowed to this many bytes per second, so that fetching a version's image takes seconds. */
const THROTTLE = 4096;

Deno.test({
  name: "update crash matrix: killed -9 at any step, a restarted agent ends on exactly one version",
  ...withServices,
  fn: async () => {
    const full = Deno.env.get("BERTH_CRASH_MATRIX") === "full";
    const random = seededRandom("crash matrix");
    const cases = full ? fullMatrix(random) : sample(random);
    console.log(`crash matrix: ${full ? "the full matrix" : "a sample"}, ${cases.length} cycles`);
    const began = performance.now();
    await inScene(async ({ env, proxy, via, device, start }) => {
      const images = [
        { name: "app-a", ref: via(env.images.appA.ref) },
        { name: "app-b", ref: via(env.images.appB.ref) },
      ];
      const ref = `${proxy.host}/fleet/crash-matrix:stable`;
      const v1 = await publish(ref, { web: images[0].ref }, { label: "v1" });
      // keep: 0 — every settled update prunes the version it left behind (blobs and engine image), so a
      // kill during the prune always interrupts work, and the next version's image is never stored yet.
      await writeConfig(device, [ref], ["keep: 0"]);
      const config = await Deno.readTextFile(device.configPath);
      // An unhealthy version fails when the start timeout runs out: 5 s, not the harness's 20 s.
      await Deno.writeTextFile(device.configPath, config.replace("start: 20s", "start: 5s"));
      const agent = start();
      await waitForApp(
        device,
        "v1 running",
        (app) => app.state === "running" && app.currentDigest === v1.digest,
        agent,
      );
      proxy.setThrottle(THROTTLE);
      const lane: Lane = {
        device,
        proxy,
        ref,
        images,
        start,
        agent,
        current: { digest: v1.digest, image: images[0] },
        seed: random.seed,
      };
      for (const [index, entry] of cases.entries()) console.log(await runCycle(lane, entry, index + 1));
    });
    console.log(
      `crash matrix: ${cases.length} cycles in ${((performance.now() - began) / 1000).toFixed(1)} s`,
    );
  },
});
