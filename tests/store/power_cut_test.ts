/**
 * Power cuts, not only kills: the store (and for install the compose root) lives on powercut_fs, a FUSE
 * filesystem that keeps unsynced data and directory changes in memory until fsync. During a pull or an
 * install the power is cut just before a seeded random change (create, rename, unlink, fsync, …; the count
 * is taken from an uncut run) and berth is killed with SIGKILL at once: what was not fsynced is lost as on a
 * disk. After a remount over what the disk kept, `berth fsck` must find no damage (missing or corrupt
 * blobs, stray entries); stale ingests and leftover temporary files, which fsck lists without failing and
 * `--repair` removes, are allowed. What a command that had exited 0 made durable must still be there. The
 * same command run again must complete and leave the store sound.
 */
import assert from "node:assert/strict";
import { CHILD_ENV, RUN_ARGS, runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { mountPowerCut, type PowerCutMount } from "../harness/powercut.ts";
import { writeProject } from "../harness/projects.ts";
import { seededRandom } from "../harness/seed.ts";
import { fsyncDir, writeFileAtomic } from "../../src/util/fs.ts";

/** Size of `path` in the backing directory, or undefined when the cut left no such entry. */
async function sizeOf(path: string): Promise<number | undefined> {
  return await Deno.lstat(path).then((info) => info.size, () => undefined);
}

Deno.test({
  name:
    "powercut_fs: a cut loses unsynced data and entries, keeps what fsync and a directory fsync made durable",
  ...withServices,
  async fn() {
    const backing = await scratchDir("powercut-unit-backing-");
    const mount = await mountPowerCut(backing, await scratchDir("powercut-unit-mnt-"));
    const at = mount.mountpoint;
    try {
      await writeFileAtomic(`${at}/state.json`, "version 1");
      await writeFileAtomic(`${at}/kept.txt`, "fsynced, renamed, directory fsynced");
      await Deno.writeTextFile(`${at}/unsynced.txt`, "never fsynced");
      await Deno.writeTextFile(`${at}/kept.txt`, " appended, never fsynced", { append: true });
      // Data fsynced, but not the directory: the entry itself is not durable (POSIX-strict).
      const orphan = await Deno.open(`${at}/orphan.txt`, { write: true, createNew: true });
      await orphan.write(new TextEncoder().encode("fsynced data"));
      await orphan.sync();
      orphan.close();
      await fsyncDir(at); // makes unsynced.txt's and orphan.txt's entries durable, not their unsynced data
      const late = await Deno.open(`${at}/late.txt`, { write: true, createNew: true });
      await late.write(new TextEncoder().encode("fsynced, directory not"));
      await late.sync();
      late.close();
      // writeFileAtomic without its directory fsync: the rename is lost, the old content comes back.
      const temp = `${at}/state.json.tmp`;
      const next = await Deno.open(temp, { write: true, createNew: true });
      await next.write(new TextEncoder().encode("version 2"));
      await next.sync();
      next.close();
      await Deno.rename(temp, `${at}/state.json`);
      await Deno.mkdir(`${at}/newdir/sub`, { recursive: true });
      // Running programs see everything until the cut.
      assert.equal(await Deno.readTextFile(`${at}/unsynced.txt`), "never fsynced");
      assert.equal(await Deno.readTextFile(`${at}/state.json`), "version 2");
      assert.equal((await Deno.stat(`${at}/kept.txt`)).size, 35 + 24);
      assert.equal(await Deno.readTextFile(`${backing}/kept.txt`), "fsynced, renamed, directory fsynced");

      await mount.cut();
      const names = [];
      for await (const entry of Deno.readDir(backing)) names.push(entry.name);
      assert.deepEqual(names.sort(), ["kept.txt", "orphan.txt", "state.json", "unsynced.txt"]);
      assert.equal(await Deno.readTextFile(`${backing}/kept.txt`), "fsynced, renamed, directory fsynced");
      assert.equal(await Deno.readTextFile(`${backing}/state.json`), "version 1");
      assert.equal(await sizeOf(`${backing}/unsynced.txt`), 0, "unsynced data is lost, its entry is durable");
      assert.equal(await Deno.readTextFile(`${backing}/orphan.txt`), "fsynced data");
      assert.equal(await sizeOf(`${backing}/late.txt`), undefined);
    } finally {
      await mount.unmount();
    }
  },
});

/** berth as on a device under `root`, started without waiting, its stderr kept. */
function startBerth(root: string, args: string[]): { child: Deno.ChildProcess; stderr: Promise<string> } {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...RUN_ARGS, ...deviceArgs(root), ...args],
    env: { ...CHILD_ENV },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  return { child, stderr: new Response(child.stderr).text() };
}

function deviceArgs(root: string): string[] {
  return [
    "--store",
    `${root}/store`,
    "--compose-root",
    `${root}/apps`,
    "--docker-host",
    testEnv()!.dockerHost,
  ];
}

const berthOn = (root: string, ...args: string[]) => runBerth([...deviceArgs(root), ...args]);

interface FsckJson {
  ok: boolean;
  problems: unknown[];
  corruptBlobs: string[];
  strayEntries: string[];
  staleIngests: string[];
  tempFiles: string[];
}

/** fsck must find no damage; returns what it lists that `--repair` would remove. */
async function assertNoDamage(root: string, when: string): Promise<string> {
  const result = await berthOn(root, "--json", "fsck");
  const report = JSON.parse(result.stdout || "{}") as FsckJson;
  assert.equal(result.code, 0, `${when}: fsck exit ${result.code}:\n${result.stdout}${result.stderr}`);
  assert.deepEqual([report.ok, report.problems, report.corruptBlobs, report.strayEntries], [
    true,
    [],
    [],
    [],
  ]);
  return `${report.staleIngests.length} stale ingest(s), ${report.tempFiles.length} temporary file(s)`;
}

/** What one cut saw. */
interface CutResult {
  line: string;
  /** The changes the filesystem saw while the command ran (all of them when it was not cut short). */
  changes: number;
}

/**
 * One cut: `setup` runs to completion on the filesystem, which is then unmounted cleanly (everything
 * written). It is mounted again to cut its power just before its `cutAt`-th change (0: after `args` ends)
 * while `args` runs; berth is killed with SIGKILL at once. After a remount over what the disk kept, fsck
 * must find no damage, `args` again must succeed, and fsck after it too; then `after` checks the rest.
 */
async function cutOnce(
  label: string,
  cutAt: number,
  setup: string[][],
  args: string[],
  checks: {
    /** Right after the cut, told whether berth had finished (with exit 0) before it. */
    afterCut?: (root: string, completed: boolean) => Promise<void>;
    /** After the re-run; what it returns goes into the log line. */
    afterRerun?: (root: string) => Promise<string>;
  } = {},
): Promise<CutResult> {
  const backing = await scratchDir("powercut-backing-");
  const root = await scratchDir("powercut-mnt-");
  let mount: PowerCutMount = await mountPowerCut(backing, root);
  let cutLog = "";
  try {
    for (const step of setup) {
      const done = await berthOn(root, ...step);
      assert.equal(done.code, 0, `${label} setup ${step.join(" ")}: ${done.stderr}`);
    }
    await mount.unmount();
    mount = await mountPowerCut(backing, root, cutAt);
    const { child, stderr } = startBerth(root, args);
    // Killed as soon as the power is gone: a device's processes die with it.
    const finished = await Promise.race([child.status.then(() => true), mount.whenCut.then(() => false)]);
    if (!finished) child.kill("SIGKILL");
    const status = await child.status;
    const said = await stderr;
    await mount.cut();
    cutLog = mount.log();
    const changes = mount.changes() ?? 0;
    const lost = /lost \d+ directory change\(s\), \d+ undone/.exec(cutLog)?.[0];
    mount = await mountPowerCut(backing, root);
    const leftovers = await assertNoDamage(root, `${label} after the cut`);
    await checks.afterCut?.(root, finished && status.code === 0);
    const again = await berthOn(root, ...args);
    assert.equal(again.code, 0, `${label}: ${args.join(" ")} after the cut: ${again.stderr}`);
    const leftoversAfter = await assertNoDamage(root, `${label} after the re-run`);
    const seen = await checks.afterRerun?.(root);
    const what = finished
      ? `berth had finished (exit ${status.code})`
      : `berth killed${said.trim() ? `, it said: ${lastLine(said)}` : ""}`;
    const where = finished ? `after all ${changes} changes` : `before change ${changes}`;
    return {
      line:
        `${label}: cut ${where}, ${what}; ${lost}; fsck after the cut: ${leftovers}, after the re-run: ${leftoversAfter}${
          seen ? `; ${seen}` : ""
        }`,
      changes,
    };
  } catch (error) {
    throw new Error(
      `${label}: ${error instanceof Error ? error.message : error}\nfilesystem log:\n${cutLog}`,
    );
  } finally {
    await mount.unmount();
  }
}

function lastLine(text: string): string {
  return text.trim().split("\n").pop() ?? "";
}

Deno.test({
  name: "pull on a filesystem whose power is cut at random moments: fsck finds no damage, the pull completes",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const random = seededRandom("power cut during pull");
    const project = await scratchDir("powercut-project-");
    await writeProject(project, { web: env.images.appA.ref, data: env.images.big.ref }, { conf: true });
    const app = `${env.registry}/powercut/shop:1`;
    const published = await runBerth(["publish", project, app]);
    assert.equal(published.code, 0, published.stderr);

    // How long the whole pull takes here, so that the cuts spread over all of it.
    // An update: the store already holds an image when the app arrives.
    const setup = [["pull", env.images.appOci.ref]];
    const checks = {
      // What a finished command made durable stays: the image pulled before, the app once pull exited 0.
      afterCut: async (root: string, completed: boolean) => {
        const listed = JSON.parse((await berthOn(root, "--json", "ls")).stdout);
        assert.ok(listed.images.some((image: { ref: string }) => image.ref === env.images.appOci.ref));
        if (completed) assert.deepEqual(listed.apps.map((each: { name: string }) => each.name), ["shop"]);
      },
    };
    const full = await cutOnce("uncut", 0, setup, ["pull", app], checks);
    const lines = [full.line];
    for (let i = 0; i < 5; i++) {
      const cutAt = 1 + random.below(full.changes);
      lines.push((await cutOnce(`cut ${i + 1}`, cutAt, setup, ["pull", app], checks)).line);
    }
    console.log(lines.join("\n"));
  },
});

/** Entries of a directory, sorted. */
async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

Deno.test({
  name:
    "install with the compose root on a filesystem whose power is cut: no half project, install completes",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const random = seededRandom("power cut during install");
    const project = await scratchDir("powercut-install-project-");
    await writeProject(project, { web: env.images.appA.ref, api: env.images.appB.ref }, { conf: true });
    const app = `${env.registry}/powercut/install:1`;
    const published = await runBerth(["publish", project, app]);
    assert.equal(published.code, 0, published.stderr);

    const setup = [["pull", app]];
    const installed = async (root: string) => {
      const listed = JSON.parse((await berthOn(root, "--json", "ls")).stdout);
      return listed.apps.find((each: { name: string }) => each.name === "install")?.installed === true;
    };
    const checks = {
      afterCut: async (root: string, completed: boolean) => {
        // The project is there whole or not at all; an install that exited 0 stays installed.
        const names = await entries(`${root}/apps`).catch((): string[] => []);
        if (names.includes("install")) {
          assert.ok((await entries(`${root}/apps/install`)).includes("docker-compose.yml"), names.join(" "));
        }
        if (completed) {
          assert.ok(names.includes("install"), `project lost after install exited 0: ${names.join(" ")}`);
          assert.ok(await installed(root), "the install record was lost after install exited 0");
        }
      },
      afterRerun: async (root: string) => {
        assert.ok(await installed(root));
        const names = await entries(`${root}/apps`);
        assert.ok(names.includes("install"), names.join(" "));
        const compose = await Deno.readTextFile(`${root}/apps/install/docker-compose.yml`);
        assert.match(compose, /pull_policy: never/);
        return `compose root: ${names.join(" ")}`;
      },
    };
    const full = await cutOnce("uncut", 0, setup, ["install", app], checks);
    const lines = [full.line];
    for (let i = 0; i < 4; i++) {
      const cutAt = 1 + random.below(full.changes);
      lines.push((await cutOnce(`cut ${i + 1}`, cutAt, setup, ["install", app], checks)).line);
    }
    console.log(lines.join("\n"));
  },
});
