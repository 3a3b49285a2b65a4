/**
 * The config file through the real CLI: a broken file stops every command with one line before anything is
 * touched, and the store setting resolves flag > environment > file. Needs no registry or engine.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, snapshotTree } from "../harness/env.ts";
import { statIfExists } from "../../src/util/fs.ts";

const COMMANDS = [
  ["ls"],
  ["ls", "--json"],
  ["fsck"],
  ["fsck", "--repair"],
  ["pull", "127.0.0.1:9/berth-test/app:1"],
  ["load", "127.0.0.1:9/berth-test/app:1"],
  ["install", "127.0.0.1:9/berth-test/shop:1"],
  ["run", "shop"],
  ["stop", "shop"],
  ["rm", "shop"],
  ["restore"],
];

Deno.test("a broken config file: every command exits 1 with one line naming the file and the key, nothing touched", async () => {
  const dir = await scratchDir("config-cli-");
  try {
    const deadEngine = `unix://${dir}/no-docker.sock`;
    // A real store to prove untouched: a writing command creates it before it fails on the absent engine.
    const seeded = `${dir}/seeded-store`;
    await runBerth(["--store", seeded, "--docker-host", deadEngine, "stop", "shop"]);
    assert.ok(await statIfExists(`${seeded}/berth.json`), "the seeded store exists");
    const before = await snapshotTree(seeded);

    const file = `${dir}/config.yml`;
    const broken: [string, string][] = [
      [
        `store: ${dir}/file-store\ncomposeRoot: ${dir}/apps\npollInterval: 5 minutes\n`,
        `berth: ${file}: pollInterval: expected seconds or a duration like 30s, 5m, 1h, got "5 minutes"`,
      ],
      [
        `store: ${dir}/file-store\nstatus:\n  listen: 127.0.0.1:8470\n  tokn: x\n`,
        `berth: ${file}: status.tokn: unknown key (did you mean token?); expected one of: listen, token, hosts`,
      ],
      [
        `store: ${dir}/file-store\napps: [registry.example.com/shop:1, 42]\n`,
        `berth: ${file}: apps[1]: expected a reference like registry.example.com/repo:tag, got 42`,
      ],
      [
        `store: ${dir}/file-store\napps: [registry.example.com/shop:1\n`,
        `berth: ${file}: line 3, column 1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]`,
      ],
    ];
    const expectRefused = async (argv: string[], env: Record<string, string>, line: string) => {
      const result = await runBerth(["--docker-host", deadEngine, ...argv], env);
      const what = `berth ${argv.join(" ")} ${JSON.stringify(env)}`;
      assert.equal(result.code, 1, `${what}: ${result.stderr}`);
      assert.equal(result.stderr, `${line}\n`, what);
      assert.equal(result.stdout, "", what);
    };
    // Every command with the first broken file; each kind of breakage with a writing and a reading command.
    for (const [index, [text, line]] of broken.entries()) {
      await Deno.writeTextFile(file, text);
      const commands = index === 0
        ? COMMANDS
        : [["pull", "127.0.0.1:9/berth-test/app:1"], ["fsck", "--repair"]];
      for (const command of commands) {
        await expectRefused(["--config", file, "--store", seeded, ...command], {}, line);
      }
      await expectRefused(["ls"], { BERTH_CONFIG: file }, line);
      await expectRefused(["stop", "shop"], { BERTH_CONFIG: file }, line);
    }
    assert.deepEqual(await snapshotTree(seeded), before, "the seeded store is untouched");
    assert.equal(await statIfExists(`${dir}/file-store`), undefined, "the config's store was not created");
    assert.equal(await statIfExists(`${dir}/apps`), undefined, "the config's compose root was not created");

    const missing = await runBerth(["--config", `${dir}/absent.yml`, "--store", seeded, "fsck"]);
    assert.equal(missing.code, 1);
    assert.equal(
      missing.stderr,
      `berth: config file ${dir}/absent.yml does not exist; check --config or BERTH_CONFIG\n`,
    );

    // version and --help do not read the config: they must work to report a bug about it.
    await Deno.writeTextFile(file, broken[0][0]);
    const version = await runBerth(["--config", file, "version"]);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /^berth /);
    const help = await runBerth(["--config", file, "ls", "--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /--config FILE/);
    assert.deepEqual(await snapshotTree(seeded), before, "the seeded store is untouched");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the store resolves flag > BERTH_STORE > config file (observed through fsck)", async () => {
  const dir = await scratchDir("config-precedence-");
  try {
    const file = `${dir}/config.yml`;
    await Deno.writeTextFile(file, `store: ${dir}/file-store\n`);
    const fsck = async (args: string[], env: Record<string, string>) => {
      const result = await runBerth([...args, "fsck"], env);
      assert.equal(result.code, 1, result.stderr);
      return result.stderr.trim();
    };
    const missing = (store: string) => `berth: store ${dir}/${store} does not exist; nothing to check`;
    const env = { BERTH_STORE: `${dir}/env-store` };
    assert.equal(await fsck(["--config", file, "--store", `${dir}/flag-store`], env), missing("flag-store"));
    assert.equal(await fsck(["--config", file], env), missing("env-store"));
    assert.equal(await fsck(["--config", file], {}), missing("file-store"));
    assert.equal(await fsck([], { BERTH_CONFIG: file }), missing("file-store"));
    // A read-only command leaves every candidate uncreated.
    for (const store of ["flag-store", "env-store", "file-store"]) {
      assert.equal(await statIfExists(`${dir}/${store}`), undefined, store);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
