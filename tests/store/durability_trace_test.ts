/**
 * Crash safety as the kernel sees it: berth pulls an image and an app into a fresh store and installs the
 * app, each under `strace -f`, and the trace must show every file fsynced before it is renamed into place,
 * every staged project fsynced before it is swapped in, and every directory fsynced after a rename or mkdir
 * in it (checkDurability states the rules).
 */
import assert from "node:assert/strict";
import { CHILD_ENV, RUN_ARGS, runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { writeProject } from "../harness/projects.ts";
import {
  agentStepWork,
  assertStraceWorks,
  checkAgentSteps,
  checkDurability,
  parseStrace,
  type RenameSeen,
  TRACED_CALLS,
} from "./durability_trace.ts";

/** Runs berth as on a device under `dir`, under strace; returns the trace. Fails on a non-zero exit. */
async function tracedBerth(dir: string, label: string, args: string[]): Promise<string> {
  const trace = `${dir}/${label}.strace`;
  const output = await new Deno.Command("strace", {
    args: [
      "-f",
      "-y",
      "-qq",
      "-o",
      trace,
      "-e",
      `trace=${TRACED_CALLS.join(",")}`,
      Deno.execPath(),
      ...RUN_ARGS,
      "--store",
      `${dir}/store`,
      "--compose-root",
      `${dir}/apps`,
      "--docker-host",
      testEnv()!.dockerHost,
      ...args,
    ],
    env: { ...CHILD_ENV },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, `berth ${args.join(" ")} under strace: ${stderr}`);
  return await Deno.readTextFile(trace);
}

/** A rename's target with digests and random parts replaced, so that the list reads as a shape. */
function shape(rename: RenameSeen, dir: string): string {
  const short = (path: string) =>
    path.slice(dir.length).replace(/[0-9a-f]{64}/g, "<hex>").replace(/\.[0-9a-f]{8}(\.|$)/g, ".<id>$1")
      .replace(/-[0-9a-f]{8}(\/|$)/g, "-<id>$1");
  return `${short(rename.from)} -> ${short(rename.to)}${rename.directory ? " (directory)" : ""}`;
}

/** Checks one traced command's log; fails listing every violation with its trace lines. */
function assertDurable(log: string, dir: string, label: string): string[] {
  const report = checkDurability(log, dir);
  const problems = report.violations.map((violation) =>
    `${violation.problem}\n${violation.lines.map((line) => `    ${line}`).join("\n")}`
  );
  assert.deepEqual(
    problems,
    [],
    `${label}: ${problems.length} ordering violation(s):\n${problems.join("\n")}`,
  );
  return [...new Set(report.renames.map((rename) => shape(rename, dir)))];
}

/** writeFileAtomic of /d/store/NAME as Deno's thread pool runs it: each call on a fresh dup of the fd. */
const atomicWrite = (name: string, pid = 11) => [
  `${pid} openat(AT_FDCWD</w>, "/d/store/${name}.ab12cd34.berth-tmp", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0644) = 21</d/store/${name}.ab12cd34.berth-tmp>`,
  `${pid} write(22</d/store/${name}.ab12cd34.berth-tmp>, "{}", 2) = 2`,
  `${pid} fsync(23</d/store/${name}.ab12cd34.berth-tmp> <unfinished ...>`,
  `10 close(22</d/store/${name}.ab12cd34.berth-tmp>) = 0`,
  `${pid} <... fsync resumed>)              = 0`,
  `${pid} rename("/d/store/${name}.ab12cd34.berth-tmp", "/d/store/${name}") = 0`,
  `${pid} openat(AT_FDCWD</w>, "/d/store", O_RDONLY|O_CLOEXEC) = 21</d/store>`,
  `${pid} fsync(24</d/store>) = 0`,
];

/** A blob's commit: the verified data file fsynced and renamed into blobs/sha256, and (maybe) that fsynced. */
const blobCommit = (syncDir: boolean) => [
  `12 write(27</d/store/ingest/ab/data>, "\\37\\213", 2) = 2`,
  `12 fsync(28</d/store/ingest/ab/data>) = 0`,
  `12 rename("/d/store/ingest/ab/data", "/d/store/blobs/sha256/ab") = 0`,
  ...(syncDir ? [`12 fsync(29</d/store/blobs/sha256>) = 0`] : []),
];

/** A project staged in /d/apps/.shop.new-1, with conf/app.conf, swapped in as /d/apps/shop. */
const projectSwap = (syncConf: boolean) => [
  `13 mkdir("/d/apps/.shop.new-1", 0700) = 0`,
  `13 mkdirat(AT_FDCWD</w>, "/d/apps/.shop.new-1/conf", 0755) = 0`,
  `13 openat(AT_FDCWD</w>, "/d/apps/.shop.new-1/conf/app.conf", O_WRONLY|O_CREAT|O_EXCL, 0644) = 23</d/apps/.shop.new-1/conf/app.conf>`,
  `14 write(24</d/apps/.shop.new-1/conf/app.conf>, "greeting", 8) = 8`,
  ...(syncConf ? [`14 fsync(25</d/apps/.shop.new-1/conf/app.conf>) = 0`] : []),
  `14 fsync(25</d/apps/.shop.new-1/conf>) = 0`,
  `14 fsync(25</d/apps/.shop.new-1>) = 0`,
  `13 rename("/d/apps/.shop.new-1", "/d/apps/shop") = 0`,
  `13 fsync(26</d/apps>) = 0`,
];

Deno.test("parseStrace joins a call split by another thread's and keeps where it started and returned", () => {
  const calls = parseStrace(atomicWrite("index.json").join("\n") + "\n11 +++ exited with 0 +++\n");
  const fsync = calls.find((call) => call.name === "fsync")!;
  assert.deepEqual([fsync.start, fsync.end, fsync.ok, fsync.result], [3, 5, true, "0"]);
  assert.deepEqual(fsync.args, ["23</d/store/index.json.ab12cd34.berth-tmp>"]);
  assert.deepEqual(calls.map((call) => call.name), [
    "openat",
    "write",
    "fsync",
    "close",
    "rename",
    "openat",
    "fsync",
  ]);
});

Deno.test("checkDurability: atomic writes, a blob commit and a project swap done right pass", () => {
  const log = [
    ...blobCommit(true),
    ...atomicWrite("index.json"),
    ...projectSwap(true),
    ...atomicWrite("apps.json"),
  ];
  const report = checkDurability(log.join("\n"), "/d");
  assert.deepEqual(report.violations, []);
  assert.deepEqual(report.renames.map((rename) => [rename.to, rename.directory]), [
    ["/d/store/blobs/sha256/ab", false],
    ["/d/store/index.json", false],
    ["/d/apps/shop", true],
    ["/d/store/apps.json", false],
  ]);
});

Deno.test("checkDurability: an fsync still running at the rename, a late directory fsync, an unsynced file", () => {
  // The temp file's fsync returns only after the rename began: nothing orders the two.
  const [open, write, fsyncStart, close, fsyncEnd, rename, ...dirSync] = atomicWrite("index.json");
  const log = [
    ...blobCommit(false),
    ...[open, write, fsyncStart, close, rename, fsyncEnd, ...dirSync],
    `12 fsync(29</d/store/blobs/sha256>) = 0`,
    ...projectSwap(false),
  ];
  const problems = checkDurability(log.join("\n"), "/d").violations.map((violation) => violation.problem);
  assert.deepEqual(problems, [
    "/d/store/index.json.ab12cd34.berth-tmp was not fsynced between its last change and the rename of " +
    "/d/store/index.json.ab12cd34.berth-tmp to /d/store/index.json",
    "/d/apps/.shop.new-1/conf/app.conf was not fsynced between its last change and the rename of " +
    "/d/apps/.shop.new-1 to /d/apps/shop",
    "/d/store/blobs/sha256 was not fsynced after rename of /d/store/blobs/sha256/ab and before the record " +
    "/d/store/index.json was renamed into place",
  ]);
});

Deno.test({
  name:
    "pull and install: every rename is preceded by the fsync of what it renames and followed by its directory's",
  ...withServices,
  async fn() {
    await assertStraceWorks();
    const env = testEnv()!;
    const project = await scratchDir("durability-project-");
    await writeProject(project, { web: env.images.appA.ref }, { conf: true });
    const app = `${env.registry}/durability/shop:1`;
    const published = await runBerth(["publish", project, app]);
    assert.equal(published.code, 0, published.stderr);

    const dir = await scratchDir("durability-");
    const steps: [string, string[]][] = [
      ["pull-image", ["pull", env.images.appOci.ref]],
      ["pull-app", ["pull", app]],
      ["install", ["install", app]],
    ];
    const seen: string[] = [];
    for (const [label, args] of steps) {
      const log = await tracedBerth(dir, label, args);
      // A trace without berth's own renames would pass vacuously.
      assert.ok(parseStrace(log).some((call) => call.name.startsWith("rename") && call.text.includes(dir)));
      const renames = assertDurable(log, dir, label);
      seen.push(`${label}:`, ...renames.map((rename) => `  ${rename}`));
    }
    console.log(`renames checked:\n${seen.join("\n")}`);
    const all = seen.join("\n");
    for (
      const expected of ["/store/index.json", "/store/blobs/sha256/<hex>", "/store/apps.json", "/apps/shop"]
    ) {
      assert.ok(all.includes(` -> ${expected}`), `no rename to ${expected} in the traces:\n${all}`);
    }
  },
});

/** The agent recording `step` of app shop in /d/store/agent.json; the last line fsyncs /d/store. */
const stateWrite = (step: string, id: string) => {
  const temp = `/d/store/agent.json.${id}.berth-tmp`;
  const content = JSON.stringify(
    JSON.stringify({ version: 1, apps: { shop: { ref: "r", update: { step } } } }),
  );
  return [
    `11 openat(AT_FDCWD</w>, "${temp}", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0644) = 21<${temp}>`,
    `11 write(22<${temp}>, ${content}, 60) = 60`,
    `12 fsync(23<${temp}>) = 0`,
    `11 rename("${temp}", "/d/store/agent.json") = 0`,
    `12 fsync(24</d/store>) = 0`,
  ];
};
const composeUpLine =
  `15 execve("/usr/bin/docker-compose", ["/usr/bin/docker-compose", "-f", "/d/apps/shop/docker-compose.yml", "-p", "shop", "up", "-d"], 0x1 /* 3 vars */) = 0`;
const swapLine = `13 rename("/d/apps/.shop.new-1", "/d/apps/shop") = 0`;

Deno.test("checkAgentSteps: each step durable before the next and before its work passes", () => {
  const log = [
    ...stateWrite("installing", "00000001"),
    `13 rename("/d/apps/shop", "/d/apps/.shop.old-1") = 0`,
    swapLine,
    ...stateWrite("installed", "00000002"),
    ...stateWrite("starting", "00000003"),
    composeUpLine,
    ...stateWrite("verifying", "00000004"),
  ];
  const report = checkAgentSteps(log.join("\n"), "/d/store/agent.json", agentStepWork("/d/apps"));
  assert.deepEqual(report.violations, []);
  assert.deepEqual(report.writes.map((write) => write.steps), [
    { shop: "installing" },
    { shop: "installed" },
    { shop: "starting" },
    { shop: "verifying" },
  ]);
  assert.deepEqual(report.work.map((call) => call.name), ["rename", "execve"]);
});

Deno.test("checkAgentSteps: compose up before the step is durable, or in the wrong step, and overlapping writes", () => {
  const starting = stateWrite("starting", "00000003");
  const problems = (log: string[]) =>
    checkAgentSteps(log.join("\n"), "/d/store/agent.json", agentStepWork("/d/apps")).violations.map((
      violation,
    ) => violation.problem);
  // The directory's fsync returns only after compose started.
  assert.deepEqual(problems([...starting.slice(0, -1), composeUpLine, starting.at(-1)!]), [
    "execve began before the record of shop's step starting was durable (/d/store fsynced after its rename)",
  ]);
  // Compose runs while agent.json still says `installed`; the project is swapped in before `installing`.
  assert.deepEqual(problems([swapLine, ...stateWrite("installed", "00000002"), composeUpLine]), [
    "rename began with shop's step unknown as last recorded, not installing or rolling-back",
    "execve began with shop's step installed as last recorded, not starting or rolling-back",
  ]);
  // The next step's write began before the previous one's directory fsync returned.
  const verifying = stateWrite("verifying", "00000004");
  assert.deepEqual(
    problems([...starting.slice(0, -1), verifying[0], starting.at(-1)!, ...verifying.slice(1)]),
    [
      "/d/store was not fsynced after the rename of /d/store/agent.json and before its next write began",
    ],
  );
});
