/** The agent's logger: levels, one logfmt line per call, quoting, and no secrets. */
import assert from "node:assert/strict";
import { createLogger, formatLogLine, LOG_LEVELS } from "../../src/util/log.ts";

const TIME = new Date("2026-11-28T19:00:00.000Z");
const DIGEST = `sha256:${"a".repeat(64)}`;

Deno.test("a line is time, level, fields in order, then the message", () => {
  assert.equal(
    formatLogLine(TIME, "info", "app is running", {
      app: "shop",
      digest: DIGEST,
      state: "running",
      reason: undefined,
      bytes: 1234,
      resumed: true,
    }),
    `2026-11-28T19:00:00.000Z info app=shop digest=${DIGEST} state=running bytes=1234 resumed=true app is running`,
  );
  assert.equal(formatLogLine(TIME, "warn", "no fields"), "2026-11-28T19:00:00.000Z warn no fields");
});

Deno.test("values with spaces, quotes, = or nothing are quoted; keys and the message stay on one line", () => {
  assert.equal(
    formatLogLine(TIME, "error", "compose failed\nsecond line", {
      reason: "compose_failed",
      message: 'service "web" exited 1',
      empty: "",
      expr: "a=b",
      path: "/var/lib/berth/apps/shop",
      "bad key": "x",
      "k=v": "y",
    }),
    '2026-11-28T19:00:00.000Z error reason=compose_failed message="service \\"web\\" exited 1" empty="" expr="a=b" ' +
      "path=/var/lib/berth/apps/shop bad_key=x k_v=y compose failed\\nsecond line",
  );
  assert.equal(formatLogLine(TIME, "info", "", { tab: "a\tb" }), '2026-11-28T19:00:00.000Z info tab="a\\tb"');
});

Deno.test("fields named like secrets are redacted whatever the caller passed", () => {
  const line = formatLogLine(TIME, "debug", "auth", {
    token: "abc",
    registryToken: "def",
    password: "hunter2",
    Authorization: "Bearer xyz",
    clientSecret: "s",
    user: "alice",
  });
  assert.equal(
    line,
    "2026-11-28T19:00:00.000Z debug token=[redacted] registryToken=[redacted] password=[redacted] " +
      "Authorization=[redacted] clientSecret=[redacted] user=alice auth",
  );
  for (const secret of ["abc", "def", "hunter2", "xyz"]) assert.ok(!line.includes(secret), secret);
});

Deno.test("a logger writes one line per call at its level and above", () => {
  for (const level of LOG_LEVELS) {
    const lines: string[] = [];
    const log = createLogger(level, (line) => lines.push(line));
    log.debug("d", { n: 1 });
    log.info("i");
    log.warn("w");
    log.error("e");
    const expected = LOG_LEVELS.slice(LOG_LEVELS.indexOf(level));
    assert.deepEqual(lines.map((line) => line.split(" ")[1]), expected, level);
    for (const line of lines) {
      assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) /);
      assert.ok(!line.includes("\n"));
    }
  }
});

Deno.test("the default logger writes to stderr", async () => {
  const script = `import { createLogger } from ${
    JSON.stringify(new URL("../../src/util/log.ts", import.meta.url).href)
  };
createLogger("info").info("hello", { app: "shop" });`;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(stdout, "");
  assert.match(stderr, /^\S+Z info app=shop hello\n$/);
});
