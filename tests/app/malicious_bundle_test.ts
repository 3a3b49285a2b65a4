/**
 * Malicious app bundles are refused by `berth install` with one line naming the entry, and nothing is
 * written outside the compose root's project area: path traversal, absolute paths, symlinks leading out
 * (directly, absolutely, or through another symlink) with a file written through them, hard links, devices,
 * fifos and oversized files (over limits.bundle, set to 1 MiB in the config here). The apps are crafted here and pushed in-process with RegistryPusher; their
 * compose file is valid and pins a real image, so `berth pull` takes them like any app, and only the
 * install sees the bundle's other entries. A sentinel directory next to the compose root is where an
 * escaping entry would land: it must stay empty. A benign app built the same way installs, which shows
 * the refusals come from the entries and not from the crafting.
 */
import assert from "node:assert/strict";
import { run, startDockerd } from "../harness/services.ts";
import { runBerth, scratchDir, snapshotTree, testEnv, withServices } from "../harness/env.ts";
import { RegistryPusher } from "../../src/registry/push.ts";
import { COMPOSE_FILE } from "../../src/app/bundle_format.ts";
import type { TarEntry } from "../../src/app/tar_write.ts";
import { assertNothingInstalled, file, pushApp } from "./crafted.ts";

const encoder = new TextEncoder();

/** A valid compose file pinning app-a by digest, as publish writes it. */
function composeFile(pinned: string): Uint8Array {
  return encoder.encode(
    [
      "services:",
      "  web:",
      `    image: ${pinned}`,
      `    command: ["/bin/busybox", "sleep", "600"]`,
      "    network_mode: none",
      "    stop_grace_period: 1s",
      `    volumes: ["./conf:/conf:ro"]`,
      "",
    ].join("\n"),
  );
}

/** Entries names are matched literally in the message: escape them for a RegExp. */
const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

interface Case {
  name: string;
  /** Entries after the compose file and conf/app.conf. */
  entries: TarEntry[];
  /** The entry the error must name, and what it must say. */
  entry: string;
  problem: RegExp;
}

Deno.test({
  name: "install refuses malicious bundles with one line naming the entry; nothing lands outside the project",
  ...withServices,
  async fn(t) {
    const env = testEnv()!;
    const pinned = `${env.registry}/berth-test/app-a@${env.images.appA.digest}`;
    const dir = await scratchDir("evil-device-");
    const store = `${dir}/store`;
    const composeRoot = `${dir}/apps`;
    const sentinel = `${dir}/sentinel`;
    await Deno.mkdir(sentinel);
    const dockerd = await startDockerd(`${await scratchDir("evil-engine-")}/engine`);
    const maxFile = 1024 * 1024;
    const config = `${await scratchDir("evil-config-")}/config.yml`;
    await Deno.writeTextFile(config, `limits:\n  bundle: ${maxFile}\n`);
    const berth = (...args: string[]) =>
      runBerth([
        "--config",
        config,
        "--store",
        store,
        "--compose-root",
        composeRoot,
        "--docker-host",
        dockerd.host,
        ...args,
      ]);
    const docker = (...args: string[]) => run(["docker", "-H", dockerd.host, ...args]);
    const list = async (path: string) =>
      (await Array.fromAsync(Deno.readDir(path))).map((e) => e.name).sort();
    const cases: Case[] = [
      {
        name: "path traversal",
        entries: [file("../evil")],
        entry: "../evil",
        problem: /the path has a "\.\." component/,
      },
      {
        name: "path traversal into the sentinel",
        entries: [file("../../sentinel/evil")],
        entry: "../../sentinel/evil",
        problem: /the path has a "\.\." component/,
      },
      {
        name: "traversal hidden in the middle of a path",
        entries: [file("conf/../../../sentinel/evil")],
        entry: "conf/../../../sentinel/evil",
        problem: /the path has a "\.\." component/,
      },
      {
        name: "absolute path",
        entries: [file(`${sentinel}/absolute`)],
        entry: `${sentinel}/absolute`,
        problem: /absolute path/,
      },
      {
        name: "symlink leading out, then a file through it",
        entries: [{ name: "link", type: "symlink", linkname: "../../sentinel" }, file("link/file")],
        entry: "link",
        problem: /symlink to "\.\.\/\.\.\/sentinel" points outside the destination/,
      },
      {
        name: "absolute symlink, then a file through it",
        entries: [{ name: "link", type: "symlink", linkname: sentinel }, file("link/file")],
        entry: "link",
        problem: /points outside the destination \(absolute\)/,
      },
      {
        name: "symlink leading out through another symlink, then a file through it",
        entries: [
          { name: "d/", type: "dir" },
          { name: "d/up", type: "symlink", linkname: ".." },
          { name: "x", type: "symlink", linkname: "d/up/.." },
          file("x/sentinel/evil"),
        ],
        entry: "x",
        problem: /leads outside the destination through other symlinks/,
      },
      {
        name: "a file written through an inside symlink",
        entries: [
          { name: "conf-link", type: "symlink", linkname: "conf" },
          file("conf-link/app.conf", "evil\n"),
        ],
        entry: "conf-link/app.conf",
        problem: /goes through the symlink "conf-link"; nothing is written through a symlink/,
      },
      {
        name: "hard link",
        entries: [{ name: "hard", type: "hardlink", linkname: "../../sentinel/target" }],
        entry: "hard",
        problem: /a hard link/,
      },
      {
        name: "char device",
        entries: [{ name: "null", type: "char", devmajor: 1, devminor: 3, mode: 0o666 }],
        entry: "null",
        problem: /a char device; bundles may hold only files, directories and symlinks/,
      },
      {
        name: "block device",
        entries: [{ name: "disk", type: "block", devmajor: 7, devminor: 0, mode: 0o660 }],
        entry: "disk",
        problem: /a block device/,
      },
      {
        name: "fifo",
        entries: [{ name: "pipe", type: "fifo", mode: 0o644 }],
        entry: "pipe",
        problem: /a fifo/,
      },
      {
        name: "oversized file",
        entries: [{ name: "huge.bin", type: "file", data: new Uint8Array(maxFile + 1) }],
        entry: "huge.bin",
        problem: new RegExp(
          `${maxFile + 1} bytes, over the limit of ${maxFile} \\(limits\\.bundle in the config file\\)`,
        ),
      },
    ];
    const pusher = new RegistryPusher();
    try {
      for (const [index, each] of cases.entries()) {
        await t.step(each.name, async () => {
          const ref = `${env.registry}/evil-bundles/case${index}/shop:v1`;
          await pushApp(pusher, ref, [
            { name: COMPOSE_FILE, type: "file", data: composeFile(pinned) },
            { name: "conf/", type: "dir" },
            file("conf/app.conf", "greeting = hello\n"),
            ...each.entries,
          ]);
          const pulled = await berth("pull", ref);
          assert.equal(pulled.code, 0, pulled.stderr);

          const installed = await berth("install", ref);
          assert.equal(installed.code, 1, installed.stdout + installed.stderr);
          const lines = installed.stderr.trim().split("\n");
          assert.equal(lines.length, 1, installed.stderr);
          assert.match(
            lines[0],
            new RegExp(`^berth: ${literal(ref)} bundle: entry "${literal(each.entry)}": `),
          );
          assert.match(lines[0], each.problem);

          assert.deepEqual(await list(sentinel), [], "nothing landed in the sentinel directory");
          assert.deepEqual(await list(dir), ["apps", "sentinel", "store"], "nothing landed next to them");
          assert.deepEqual(await list(composeRoot), [], "no project and no staging leftovers");
          const listed = JSON.parse((await berth("--json", "ls")).stdout);
          const shop = listed.apps.find((app: { name: string }) => app.name === "shop");
          assert.equal(shop.installed, false);
          assert.ok(shop.fetched.includes(ref));
          await assertNothingInstalled(store, docker);
        });
      }

      await t.step(
        "the same crafting without a bad entry installs; a bad update leaves it as it is",
        async () => {
          const ref = `${env.registry}/evil-bundles/benign/shop:v1`;
          await pushApp(pusher, ref, [
            { name: COMPOSE_FILE, type: "file", data: composeFile(pinned) },
            { name: "conf/", type: "dir" },
            file("conf/app.conf", "greeting = hello\n"),
            { name: "conf-link", type: "symlink", linkname: "conf" },
          ]);
          assert.equal((await berth("pull", ref)).code, 0);
          const installed = await berth("--json", "install", ref);
          assert.equal(installed.code, 0, installed.stderr);
          const digest = JSON.parse(installed.stdout).digest;
          const project = await snapshotTree(`${composeRoot}/shop`);

          const evil = `${env.registry}/evil-bundles/case0/shop:v1`;
          const refused = await berth("install", evil);
          assert.equal(refused.code, 1);
          assert.match(refused.stderr.trim(), /entry "\.\.\/evil": /);
          assert.deepEqual(await list(composeRoot), ["shop"], "no staging leftovers");
          assert.deepEqual(
            await snapshotTree(`${composeRoot}/shop`),
            project,
            "the installed project is untouched",
          );
          assert.deepEqual(await list(sentinel), []);
          const listed = JSON.parse((await berth("--json", "ls")).stdout);
          const shop = listed.apps.find((app: { name: string }) => app.name === "shop");
          assert.equal(shop.installedRef, ref, "the record still names the installed version");
          assert.equal(JSON.parse((await berth("--json", "install", ref)).stdout).digest, digest);
        },
      );
    } finally {
      await pusher.close();
      await dockerd.stop();
    }
  },
});
