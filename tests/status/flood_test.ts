/**
 * The real `berth agent` (a separate process, with the binary's permissions) under a flood of slow
 * clients, with the open-file limit services commonly get: it stays alive, keeps answering a fresh
 * client's /healthz within 5 s, and closes slow clients. No apps and no reachable engine: /healthz may say
 * 503, what counts is that it answers. Also SIGHUP applying the status settings in the real agent.
 */
import assert from "node:assert/strict";
import { scratchDir } from "../harness/env.ts";
import { HEADER_TIMEOUT_MS, MAX_CONNECTIONS } from "../../src/status/http.ts";
import { RawConnection, request } from "./raw_http.ts";
import { raiseOwnLimit, startAgent } from "./agent_process.ts";

/** The limit the agent runs under: the common default for a service. */
const NOFILE = 1024;
/** The answer time the issue requires of a fresh client during a flood. */
const ANSWER_WITHIN_MS = 5_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Probe {
  /** Milliseconds from the flood's start to the probe's. */
  at: number;
  /** Milliseconds to the answer, or to giving up. */
  took: number;
  /** The status, or why there was none. */
  outcome: number | string;
}

/** A fresh client's GET /healthz (a new connection each time), every 100 ms until `until`. */
async function probe(port: number, floodStart: number, until: number): Promise<Probe[]> {
  const probes: Probe[] = [];
  while (Date.now() < until) {
    const started = Date.now();
    const outcome = await Promise.race([
      request(port, "/healthz").then(
        (response) => response?.status ?? "closed without an answer",
        (error) => `${error}`,
      ),
      sleep(ANSWER_WITHIN_MS * 2).then(() => "no answer"),
    ]);
    probes.push({ at: started - floodStart, took: Date.now() - started, outcome });
    await sleep(100);
  }
  return probes;
}

/**
 * What the issue asks: after the flood's first 5 s every fresh client is answered within 5 s. Before that
 * a client can lose its connection to the cap when a burst of hundreds arrives before its request (the
 * oldest waiting connection is closed); those are counted, not asserted.
 */
function checkProbes(probes: Probe[]): string {
  const late = probes.filter((probe) => probe.at >= ANSWER_WITHIN_MS);
  assert.ok(late.length >= 10, `only ${late.length} probes after the first 5 s`);
  const failed = late.filter((probe) =>
    (probe.outcome !== 200 && probe.outcome !== 503) || probe.took >= ANSWER_WITHIN_MS
  );
  assert.deepEqual(failed, [], "fresh /healthz clients not answered within 5 s");
  const early = probes.filter((probe) => probe.at < ANSWER_WITHIN_MS);
  const earlyAnswered = early.filter((probe) => typeof probe.outcome === "number");
  const took = (list: Probe[]) => list.map((probe) => probe.took);
  return `/healthz probes: in the first 5 s ${earlyAnswered.length} of ${early.length} answered ` +
    `(max ${max(took(earlyAnswered))} ms), after them ${late.length} of ${late.length} ` +
    `(median ${median(took(late))} ms, max ${max(took(late))} ms)`;
}

/** Opens `count` connections, `concurrency` at a time; every other one sends half a request head. */
async function openSlowClients(
  port: number,
  count: number,
  concurrency = 50,
): Promise<{ clients: RawConnection[]; refused: number }> {
  const clients: RawConnection[] = [];
  let refused = 0;
  for (let start = 0; start < count; start += concurrency) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(concurrency, count - start) }, async (_, i) => {
        const client = await RawConnection.open(port).catch(() => undefined);
        if (!client) refused++;
        else if ((start + i) % 2 === 0) {
          await client.send("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n").catch(() => {});
        }
        return client;
      }),
    );
    clients.push(...batch.filter((client) => client !== undefined));
  }
  return { clients, refused };
}

const max = (values: number[]) => Math.max(...values);
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

Deno.test("the agent under 1,100 slow clients and a 1024 open-file limit stays alive and answers a fresh /healthz within 5 s", async () => {
  await raiseOwnLimit(4000);
  const dir = await scratchDir("status-flood-");
  const agent = await startAgent(dir, NOFILE);
  try {
    let peakFiles = 0;
    const sampling = setInterval(() => peakFiles = Math.max(peakFiles, agent.openFiles()), 50);
    const started = Date.now();
    // during the flood and well after it
    const probing = probe(agent.port, started, started + 2 * ANSWER_WITHIN_MS);
    const { clients, refused } = await openSlowClients(agent.port, 1_100);
    const opened = Date.now() - started;
    const closed = await Promise.all(clients.map((client) => client.closedWithin(HEADER_TIMEOUT_MS + 3_000)));
    const probes = await probing;
    clearInterval(sampling);
    assert.ok(agent.alive(), `the agent died:\n${agent.log()}`);
    assert.equal(refused, 0, "connections refused while the agent runs");
    const summary = checkProbes(probes);
    console.log(
      `1,100 slow clients opened in ${opened} ms; ${summary}; the agent's open files at most ${peakFiles} ` +
        `of ${NOFILE}`,
    );
    assert.equal(closed.filter((done) => !done).length, 0, "every slow client was closed by the agent");
    assert.ok(peakFiles < NOFILE, `${peakFiles} open files`);
    assert.match(agent.log(), new RegExp(`connections, the cap \\(${MAX_CONNECTIONS}\\): closed the oldest`));
    assert.doesNotMatch(agent.log(), /Too many open files|Uncaught/);
    assert.equal((await request(agent.port, "/healthz"))?.status !== undefined, true);
  } finally {
    await agent.stop();
  }
});

Deno.test("3,000 slow clients are closed, those the cap left open after the 5 s header timeout", async () => {
  await raiseOwnLimit(4000);
  const dir = await scratchDir("status-slow-");
  const agent = await startAgent(dir, NOFILE);
  try {
    const started = Date.now();
    const probing = probe(agent.port, started, started + 2 * ANSWER_WITHIN_MS);
    const { clients, refused } = await openSlowClients(agent.port, 3_000, 100);
    const openedAt = Date.now();
    const closedAfter = await Promise.all(clients.map(async (client) => {
      const closed = await client.closedWithin(HEADER_TIMEOUT_MS + 5_000);
      return closed ? Date.now() - openedAt : Infinity;
    }));
    const probes = await probing;
    const byTimeout = closedAfter.filter((ms) => ms >= HEADER_TIMEOUT_MS - 1_000);
    assert.ok(agent.alive(), `the agent died:\n${agent.log()}`);
    assert.equal(refused, 0, "connections refused while the agent runs");
    console.log(
      `3,000 slow clients opened in ${openedAt - started} ms, all closed within ${max(closedAfter)} ms of ` +
        `the last one opening: ${byTimeout.length} by the header timeout, the others at the cap; ` +
        checkProbes(probes),
    );
    assert.ok(max(closedAfter) <= HEADER_TIMEOUT_MS + 3_000, `a slow client stayed ${max(closedAfter)} ms`);
    assert.ok(
      byTimeout.length > 0 && byTimeout.length <= MAX_CONNECTIONS,
      `${byTimeout.length} closed by the timeout`,
    );
  } finally {
    await agent.stop();
  }
});

Deno.test("out of open files (a limit below the connection cap), accept errors are survived and /healthz still answered", async () => {
  await raiseOwnLimit(1000);
  const dir = await scratchDir("status-emfile-");
  // The agent needs a few dozen descriptors of its own; the rest is far fewer than MAX_CONNECTIONS.
  const nofile = 128;
  const agent = await startAgent(dir, nofile);
  try {
    const started = Date.now();
    const probing = probe(agent.port, started, started + 2 * ANSWER_WITHIN_MS);
    const { clients, refused } = await openSlowClients(agent.port, 600);
    const closed = await Promise.all(clients.map((client) => client.closedWithin(HEADER_TIMEOUT_MS + 5_000)));
    const probes = await probing;
    assert.ok(agent.alive(), `the agent died:\n${agent.log()}`);
    assert.equal(refused, 0, "connections refused while the agent runs");
    console.log(`600 slow clients against ${nofile} open files: ${checkProbes(probes)}`);
    assert.match(agent.log(), /cannot accept a connection \(Too many open files.*\); closed the oldest/);
    assert.equal(closed.filter((done) => !done).length, 0, "every slow client was closed by the agent");
  } finally {
    await agent.stop();
  }
});
