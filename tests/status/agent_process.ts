/**
 * The real `berth agent` as a separate process (with the binary's permissions) for the status endpoint's
 * tests: no apps and no reachable engine, which it tolerates (then /healthz says 503 after a while).
 */
import assert from "node:assert/strict";
import { spawnBerth } from "../harness/env.ts";
import { freePort, run } from "../harness/services.ts";
import { request } from "./raw_http.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface Agent {
  process: Deno.ChildProcess;
  port: number;
  configPath: string;
  log(): string;
  /** Whether the process still runs. */
  alive(): boolean;
  /** Open descriptors now (from /proc). */
  openFiles(): number;
  stop(): Promise<void>;
}

export async function writeAgentConfig(dir: string, status: string): Promise<string> {
  const path = `${dir}/config.yml`;
  await Deno.writeTextFile(
    path,
    [
      `store: ${dir}/store`,
      `composeRoot: ${dir}/apps`,
      `docker: { host: "unix://${dir}/no-engine.sock" }`,
      `compose: docker-compose`,
      `apps: []`,
      `pollInterval: 2s`,
      `status: ${status}`,
      `logLevel: debug`,
      "",
    ].join("\n"),
  );
  return path;
}

/** Starts the agent, limits its open files to `nofile` if given, and waits for its status endpoint. */
export async function startAgent(dir: string, nofile?: number, port = freePort()): Promise<Agent> {
  const configPath = await writeAgentConfig(dir, `{ listen: "127.0.0.1:${port}" }`);
  const process = spawnBerth(["--config", configPath, "agent"]);
  if (nofile !== undefined) {
    await run(["prlimit", "--pid", String(process.pid), `--nofile=${nofile}:${nofile}`]);
    const limits = await Deno.readTextFile(`/proc/${process.pid}/limits`);
    assert.match(limits, new RegExp(`^Max open files\\s+${nofile}\\s+${nofile}\\s`, "m"));
  }
  let text = "";
  let exited = false;
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of process.stderr) text += decoder.decode(chunk, { stream: true });
  })();
  process.status.then(() => exited = true);
  const agent: Agent = {
    process,
    port,
    configPath,
    log: () => text,
    alive: () => !exited,
    openFiles: () => {
      try {
        return [...Deno.readDirSync(`/proc/${process.pid}/fd`)].length;
      } catch {
        return 0; // exited: the test says so
      }
    },
    async stop() {
      if (!exited) process.kill("SIGTERM");
      await process.status;
      await reading;
    },
  };
  const deadline = Date.now() + 30_000;
  while (!(await request(port, "/healthz").catch(() => undefined))) {
    assert.ok(agent.alive() && Date.now() < deadline, `the agent did not answer:\n${text}`);
    await sleep(100);
  }
  return agent;
}

/** This process needs a descriptor per slow client: its soft limit goes up to its hard one. */
export async function raiseOwnLimit(needed: number): Promise<void> {
  const hard =
    (await run(["prlimit", "--pid", String(Deno.pid), "--nofile", "--output=HARD", "--noheadings"]))
      .trim();
  assert.ok(
    hard === "unlimited" || Number(hard) >= needed,
    `this test needs ${needed} open files; the hard limit is ${hard}`,
  );
  await run(["prlimit", "--pid", String(Deno.pid), `--nofile=${hard}:${hard}`]);
}
