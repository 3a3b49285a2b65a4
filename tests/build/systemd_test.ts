/**
 * The shipped systemd unit, `build/systemd/berth.service`: `systemd-analyze verify` has nothing to say about
 * it, and it runs the agent the way the rest of berth expects (config file, store and compose root writable).
 *
 * verify runs with `--root` on a scratch tree that holds the unit byte for byte, a stub executable at
 * /usr/bin/berth and at /bin/kill (ExecReload), and the one unit every service depends on (sysinit.target):
 * nothing is installed on the machine, and a wrong path or directive in the unit is still reported. Needs
 * `systemd-analyze` (Debian's `systemd` package); no registry or engine.
 */
import assert from "node:assert/strict";
import { scratchDir } from "../harness/env.ts";
import { DEFAULT_COMPOSE_ROOT, DEFAULT_CONFIG_FILE, DEFAULT_STORE } from "../../src/config/defaults.ts";

const UNIT_FILE = new URL("../../build/systemd/berth.service", import.meta.url).pathname;
const UNIT = await Deno.readTextFile(UNIT_FILE);
/** What the Yocto recipe installs and every doc names. */
const EXEC_START = `/usr/bin/berth agent --config ${DEFAULT_CONFIG_FILE}`;
/** The executables the unit runs: berth itself and the kill of ExecReload. */
const STUBBED = ["/usr/bin/berth", "/bin/kill"];

interface Verdict {
  code: number;
  output: string;
}

/**
 * `systemd-analyze verify` of `unitText` as /etc/systemd/system/berth.service in a scratch root, with
 * `extra` files (path under /etc/systemd/system → text) beside it and `alsoVerify` units named too.
 */
async function verify(
  unitText: string,
  extra: Record<string, string> = {},
  alsoVerify: string[] = [],
): Promise<Verdict> {
  const root = await scratchDir("systemd-verify-");
  try {
    await Deno.mkdir(`${root}/etc/systemd/system`, { recursive: true });
    await Deno.writeTextFile(`${root}/etc/systemd/system/berth.service`, unitText);
    for (const [path, text] of Object.entries(extra)) {
      const full = `${root}/etc/systemd/system/${path}`;
      await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
      await Deno.writeTextFile(full, text);
    }
    for (const path of STUBBED) {
      await Deno.mkdir(`${root}${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
      await Deno.writeTextFile(`${root}${path}`, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    }
    // DefaultDependencies= orders every service after sysinit.target; verify refuses to load a unit without it.
    await Deno.mkdir(`${root}/lib/systemd/system`, { recursive: true });
    // A mount unit orders itself against these two.
    for (const target of ["sysinit.target", "local-fs.target", "umount.target"]) {
      await Deno.writeTextFile(`${root}/lib/systemd/system/${target}`, "[Unit]\nDescription=stub\n");
    }
    const { code, stdout, stderr } = await new Deno.Command("systemd-analyze", {
      args: ["verify", `--root=${root}`, "berth.service", ...alsoVerify],
      env: { SYSTEMD_LOG_COLOR: "0", SYSTEMD_PAGER: "" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output().catch((error) => {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error("systemd-analyze is not installed: apt-get install systemd (deno task test does it)");
      }
      throw error;
    });
    const decoder = new TextDecoder();
    return { code, output: decoder.decode(stdout) + decoder.decode(stderr) };
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** Every value of `key` in the unit, in order (a key may repeat: After=, ReadWritePaths=). */
function values(unitText: string, key: string): string[] {
  return unitText.split("\n")
    .filter((line) => line.startsWith(`${key}=`))
    .map((line) => line.slice(key.length + 1).trim());
}

Deno.test("berth.service: systemd-analyze verify prints nothing and exits 0", async () => {
  const verdict = await verify(UNIT);
  assert.equal(verdict.output, "", `systemd-analyze verify said:\n${verdict.output}`);
  assert.equal(verdict.code, 0);
});

Deno.test("berth.service with the Yocto example's drop-in and mount unit: verify prints nothing", async () => {
  const examples = new URL("../../build/yocto/examples/berth/", import.meta.url).pathname;
  const verdict = await verify(UNIT, {
    "berth.service.d/persist.conf": await Deno.readTextFile(`${examples}berth-persist.conf`),
    "persist.mount": await Deno.readTextFile(`${examples}persist.mount`),
  }, ["persist.mount"]);
  assert.equal(verdict.output, "", `systemd-analyze verify said:\n${verdict.output}`);
  assert.equal(verdict.code, 0);
});

Deno.test("berth.service: verify reports a misspelt directive, a bad value and a missing executable", async () => {
  const misspelt = await verify(UNIT.replace("ProtectSystem=strict", "ProtectSystm=strict"));
  assert.match(misspelt.output, /Unknown key.*ProtectSystm/);
  const badValue = await verify(UNIT.replace("Restart=on-failure", "Restart=sometimes"));
  assert.match(badValue.output, /restart.*sometimes/i);
  const missing = await verify(UNIT.replace(/^ExecStart=\/usr\/bin\/berth/m, "ExecStart=/usr/sbin/berth"));
  assert.match(missing.output, /\/usr\/sbin\/berth is not executable/);
  assert.notEqual(missing.code, 0);
});

Deno.test("berth.service: runs the agent with the default config, after docker, restarting on failure", () => {
  assert.deepEqual(values(UNIT, "ExecStart"), [EXEC_START]);
  assert.deepEqual(values(UNIT, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
  assert.deepEqual(values(UNIT, "Restart"), ["on-failure"]);
  assert.ok(values(UNIT, "After").some((value) => value.split(/\s+/).includes("docker.service")));
  assert.ok(values(UNIT, "Wants").some((value) => value.split(/\s+/).includes("docker.service")));
  assert.deepEqual(values(UNIT, "WantedBy"), ["multi-user.target"]);
});

Deno.test("berth.service: the sandbox leaves the default store and compose root writable and V8's JIT working", () => {
  assert.deepEqual(values(UNIT, "ProtectSystem"), ["strict"]);
  assert.deepEqual(values(UNIT, "NoNewPrivileges"), ["yes"]);
  const writable = [
    ...values(UNIT, "ReadWritePaths").flatMap((value) => value.split(/\s+/)),
    ...values(UNIT, "StateDirectory").map((name) => `/var/lib/${name}`),
  ].map((path) => path.replace(/^-/, ""));
  for (const path of [DEFAULT_STORE, DEFAULT_COMPOSE_ROOT]) {
    assert.ok(
      writable.some((dir) => path === dir || path.startsWith(`${dir}/`)),
      `${path} is under a writable path (${writable.join(", ")})`,
    );
  }
  // The default status endpoint is TCP; a unix socket's place must be writable too.
  assert.deepEqual(values(UNIT, "RuntimeDirectory"), ["berth"]);
  const families = values(UNIT, "RestrictAddressFamilies").join(" ").split(/\s+/);
  for (const family of ["AF_UNIX", "AF_INET", "AF_INET6"]) assert.ok(families.includes(family), family);
  // deno's V8 writes machine code at run time; this would kill berth at its first JIT compile.
  assert.deepEqual(values(UNIT, "MemoryDenyWriteExecute"), []);
  // docker's credentials are read from root's home; hiding it (yes, tmpfs) would lose them.
  assert.deepEqual(values(UNIT, "ProtectHome"), ["read-only"]);
});
