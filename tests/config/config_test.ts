/** The config file parser: every key, the defaults, durations and sizes, and the one-line errors. */
import assert from "node:assert/strict";
import { type Config, DEFAULT_CONFIG_FILE, loadConfig, parseConfig } from "../../src/config/config.ts";
import { defaultConfig } from "../../src/config/defaults.ts";
import { parseDuration, parseSize } from "../../src/config/units.ts";
import { BerthError } from "../../src/util/errors.ts";

const FILE = "/etc/berth/config.yml";

/** The one line parseConfig throws for `text`. */
function errorFor(text: string): string {
  try {
    parseConfig(text, FILE);
  } catch (error) {
    assert.ok(error instanceof BerthError, `a BerthError, got ${error}`);
    assert.equal(error.reason, "invalid_input");
    assert.ok(!error.message.includes("\n"), `one line: ${error.message}`);
    return error.message;
  }
  assert.fail(`no error for:\n${text}`);
}

Deno.test("an empty file, comments only, or keys with no value give the defaults", () => {
  const defaults: Config = {
    docker: {},
    composeEnvironment: [],
    apps: [],
    pollInterval: 300,
    pollJitter: 30,
    status: { listen: "127.0.0.1:8470", hosts: [] },
    peer: {},
    storage: { watermark: 95, reserve: 64 * 1024 * 1024 },
    registries: { insecure: [] },
    keep: 1,
    timeouts: { stall: 60, start: 60, retryMax: 300, engine: 300, soak: 10 },
    limits: {
      bundle: 1024 * 1024 * 1024,
      bundleIndex: 16 * 1024 * 1024,
      layersMeta: 16 * 1024 * 1024,
      imageConfig: 8 * 1024 * 1024,
    },
    logLevel: "info",
  };
  assert.deepEqual(defaultConfig(), defaults);
  const strip = (config: Config) => JSON.parse(JSON.stringify(config));
  for (
    const text of ["", "# nothing set yet\n", "store:\napps:\nstatus:\ntimeouts:\nregistries:\n  insecure:\n"]
  ) {
    assert.deepEqual(strip(parseConfig(text, FILE)), defaults, JSON.stringify(text));
  }
  assert.equal(DEFAULT_CONFIG_FILE, "/etc/berth/config.yml");
});

Deno.test("the issue's example file parses", () => {
  const config = parseConfig(
    `store: /var/lib/berth/store          # as --store
composeRoot: /var/lib/berth/apps     # as --compose-root
docker: { host: unix:///var/run/docker.sock }
apps: [ "registry.example.com/factory/shop:stable" ]
pollInterval: 5m                     # a number of seconds or a duration: 30s, 5m, 1h
status: { listen: "127.0.0.1:8470" } # or a unix socket path
`,
    FILE,
  );
  assert.equal(config.store, "/var/lib/berth/store");
  assert.equal(config.composeRoot, "/var/lib/berth/apps");
  assert.equal(config.docker.host, "unix:///var/run/docker.sock");
  assert.deepEqual(config.apps, ["registry.example.com/factory/shop:stable"]);
  assert.equal(config.pollInterval, 300);
  assert.equal(config.pollJitter, 30);
  assert.equal(config.status.listen, "127.0.0.1:8470");
});

Deno.test("every key is read", () => {
  const config = parseConfig(
    `store: /data/berth/store/
composeRoot: /data/berth/apps
docker:
  host: tcp://127.0.0.1:2375
compose: docker-compose
composeEnvironment: [SITE_NAME, http_proxy, _X1]
platform: linux/aarch64
apps:
  - registry.example.com/factory/shop:stable
  - registry.example.com/factory/kiosk@sha256:${"a".repeat(64)}
pollInterval: 1h30m
pollJitter: 2m
status:
  listen: 0.0.0.0:9000
  token: s3cret-token
  hosts: [device.example.com, kiosk.lan.]
peer:
  listen: 0.0.0.0:8471
  token: peer-token
parallel: 8
rateLimit: 2MiB/s
storage:
  watermark: 90%
  reserve: 1GiB
registries:
  credentials: /etc/berth/creds.json
  certsDir: /etc/berth/certs
  policy: /etc/berth/fleet-policy.json
  insecure: [registry.local:5000, "[fd00::1]:5000"]
  stallTimeout: 15s
  timeout: 2m
keep: 0
timeouts:
  stall: 2m
  start: 90
  retryMax: 1h
  engine: 10m
  soak: 30s
limits:
  bundle: 2GiB
  bundleIndex: 1MiB
  layersMeta: 2MiB
  imageConfig: 512KiB
logLevel: debug
`,
    FILE,
  );
  assert.deepEqual(config, {
    store: "/data/berth/store",
    composeRoot: "/data/berth/apps",
    docker: { host: "tcp://127.0.0.1:2375" },
    compose: "docker-compose",
    composeEnvironment: ["SITE_NAME", "http_proxy", "_X1"],
    platform: "linux/arm64",
    apps: [
      "registry.example.com/factory/shop:stable",
      `registry.example.com/factory/kiosk@sha256:${"a".repeat(64)}`,
    ],
    pollInterval: 5400,
    pollJitter: 120,
    status: { listen: "0.0.0.0:9000", token: "s3cret-token", hosts: ["device.example.com", "kiosk.lan."] },
    peer: { listen: "0.0.0.0:8471", token: "peer-token" },
    parallel: 8,
    rateLimit: 2 * 1024 * 1024,
    storage: { watermark: 90, reserve: 1024 ** 3 },
    registries: {
      credentials: "/etc/berth/creds.json",
      certsDir: "/etc/berth/certs",
      policy: "/etc/berth/fleet-policy.json",
      insecure: ["registry.local:5000", "[fd00::1]:5000"],
      stallTimeout: 15,
      timeout: 120,
    },
    keep: 0,
    timeouts: { stall: 120, start: 90, retryMax: 3600, engine: 600, soak: 30 },
    limits: {
      bundle: 2 * 1024 ** 3,
      bundleIndex: 1024 ** 2,
      layersMeta: 2 * 1024 ** 2,
      imageConfig: 512 * 1024,
    },
    logLevel: "debug",
  });
});

Deno.test("the poll jitter defaults to a tenth of the poll interval, and may be set to 0", () => {
  assert.equal(parseConfig("pollInterval: 1m", FILE).pollJitter, 6);
  assert.equal(parseConfig("pollInterval: 60\npollJitter: 0", FILE).pollJitter, 0);
  assert.equal(parseConfig("pollJitter: 5s", FILE).pollInterval, 300);
});

Deno.test("durations: seconds or number+unit parts", () => {
  const good: [unknown, number][] = [
    [45, 45],
    [1.5, 1.5],
    [0, 0],
    ["90", 90],
    ["30s", 30],
    ["5m", 300],
    ["1h", 3600],
    ["1h30m", 5400],
    ["1h30m15s", 5415],
    ["2d", 172800],
    ["1.5h", 5400],
    [" 10s ", 10],
  ];
  for (const [input, seconds] of good) assert.equal(parseDuration(input), seconds, JSON.stringify(input));
  for (
    const input of ["5 minutes", "5min", "-1", -1, "1x", "", "m5", "1h 30m", "1e3", true, null, [], {}, NaN]
  ) {
    assert.equal(parseDuration(input), undefined, JSON.stringify(input));
  }
});

Deno.test("sizes: bytes, SI and IEC units", () => {
  const good: [unknown, number][] = [
    [4096, 4096],
    [0, 0],
    [10.7, 10],
    ["4096", 4096],
    ["100B", 100],
    ["500KB", 500_000],
    ["2MB", 2_000_000],
    ["3GB", 3e9],
    ["1TB", 1e12],
    ["2KiB", 2048],
    ["2MiB", 2 * 1024 ** 2],
    ["1.5GiB", 1.5 * 1024 ** 3],
    ["1TiB", 1024 ** 4],
    ["2 MiB", 2 * 1024 ** 2],
  ];
  for (const [input, bytes] of good) assert.equal(parseSize(input), bytes, JSON.stringify(input));
  for (const input of ["2Mb", "2mib", "2 M", "1e3", "-1", -5, "MiB", "", "1,5GiB", true, null, Infinity]) {
    assert.equal(parseSize(input), undefined, JSON.stringify(input));
  }
});

Deno.test("the status token is required when the endpoint listens beyond loopback", () => {
  assert.equal(
    errorFor("status: { listen: '0.0.0.0:8470' }"),
    `${FILE}: status.token: required when status.listen (0.0.0.0:8470) is not a loopback address or a unix socket: the status endpoint must not be open to the network`,
  );
  assert.equal(parseConfig("status: { listen: '0.0.0.0:8470', token: abc }", FILE).status.token, "abc");
  assert.equal(parseConfig("status: { listen: '[::1]:8470' }", FILE).status.token, undefined);
  assert.equal(
    parseConfig("status: { listen: /run/berth/status.sock }", FILE).status.listen,
    "/run/berth/status.sock",
  );
});

Deno.test("the peer token is required when the store is served beyond loopback; peer.listen is TCP only", () => {
  assert.equal(
    errorFor("peer: { listen: '0.0.0.0:8471' }"),
    `${FILE}: peer.token: required when peer.listen (0.0.0.0:8471) is not a loopback address: neighbours must send it to read the store`,
  );
  assert.deepEqual(parseConfig("peer: { listen: '0.0.0.0:8471', token: abc }", FILE).peer, {
    listen: "0.0.0.0:8471",
    token: "abc",
  });
  assert.equal(parseConfig("peer: { listen: '127.0.0.1:8471' }", FILE).peer.listen, "127.0.0.1:8471");
  assert.equal(
    errorFor("peer: { listen: /run/berth/peer.sock }"),
    `${FILE}: peer.listen: expected host:port or [v6]:port, got "/run/berth/peer.sock"`,
  );
});

Deno.test("wrong values name the file, the key path, what was expected and what was found", () => {
  const cases: [string, string][] = [
    [
      "apps: [registry.example.com/a:1, 42]",
      "apps[1]: expected a reference like registry.example.com/repo:tag, got 42",
    ],
    [
      "apps: [Registry.example.com/Shop:1]",
      'apps[0]: expected a reference like registry.example.com/repo:tag, got "Registry.example.com/Shop:1" (repository names must be lower-case)',
    ],
    ["apps:\n  - a:1\n  -\n", "apps[1]: expected a reference like registry.example.com/repo:tag, got null"],
    ["apps: registry.example.com/a:1", 'apps: expected a list, got "registry.example.com/a:1"'],
    [
      "apps: [x/shop:1, y/shop:2]",
      'apps[1]: "y/shop:2" is the same app as apps[0] ("x/shop:1"): both are named "shop", and an app name is its compose project',
    ],
    [
      "pollInterval: 5 minutes",
      'pollInterval: expected seconds or a duration like 30s, 5m, 1h, got "5 minutes"',
    ],
    ["pollInterval: 0", "pollInterval: expected seconds or a duration like 30s, 5m, 1h, got 0"],
    ["pollJitter: -1", "pollJitter: expected seconds or a duration like 30s, 5m, 1h, got -1"],
    ["store: var/lib/berth", 'store: expected an absolute directory path, got "var/lib/berth"'],
    ["composeRoot: 7", "composeRoot: expected an absolute directory path, got 7"],
    [
      "docker: { host: /var/run/docker.sock }",
      'docker.host: expected unix:///path/to/docker.sock or tcp://host:port, got "/var/run/docker.sock"',
    ],
    ["docker: unix:///x", 'docker: expected a mapping with keys host, got "unix:///x"'],
    ["compose: ''", 'compose: expected a command like "docker compose" or "docker-compose", got ""'],
    [
      "composeEnvironment: [OK, 1BAD]",
      'composeEnvironment[1]: expected an environment variable name like MY_SETTING (letters, digits and _), not COMPOSE_* or DOCKER_*, got "1BAD"',
    ],
    [
      "composeEnvironment: [MY-SETTING]",
      'composeEnvironment[0]: expected an environment variable name like MY_SETTING (letters, digits and _), not COMPOSE_* or DOCKER_*, got "MY-SETTING"',
    ],
    [
      "composeEnvironment: [COMPOSE_FILE]",
      'composeEnvironment[0]: expected an environment variable name like MY_SETTING (letters, digits and _), not COMPOSE_* or DOCKER_*, got "COMPOSE_FILE" (COMPOSE_* and DOCKER_* set compose\'s own behaviour, which berth decides: the engine is docker.host)',
    ],
    [
      "composeEnvironment: [A, docker_host]",
      'composeEnvironment[1]: expected an environment variable name like MY_SETTING (letters, digits and _), not COMPOSE_* or DOCKER_*, got "docker_host" (COMPOSE_* and DOCKER_* set compose\'s own behaviour, which berth decides: the engine is docker.host)',
    ],
    ["composeEnvironment: SITE_NAME", 'composeEnvironment: expected a list, got "SITE_NAME"'],
    ["platform: arm64", 'platform: expected os/arch[/variant], e.g. linux/arm64, got "arm64"'],
    [
      "status: { listen: 8470 }",
      "status.listen: expected host:port, [v6]:port or an absolute unix socket path, got 8470",
    ],
    ["status: { token: '' }", 'status.token: expected a non-empty string, got ""'],
    ["status: [a]", 'status: expected a mapping with keys listen, token, hosts, got ["a"]'],
    ["status: { hosts: device.lan }", 'status.hosts: expected a list, got "device.lan"'],
    [
      "status: { hosts: [ok.lan, 'device.lan:8470'] }",
      'status.hosts[1]: expected a host name like device.example.com (no port, no scheme), got "device.lan:8470"',
    ],
    [
      "status: { hosts: ['http://device.lan'] }",
      'status.hosts[0]: expected a host name like device.example.com (no port, no scheme), got "http://device.lan"',
    ],
    ["parallel: 0", "parallel: expected a whole number from 1 to 64, got 0"],
    ["parallel: 2.5", "parallel: expected a whole number from 1 to 64, got 2.5"],
    ["parallel: '4'", 'parallel: expected a whole number from 1 to 64, got "4"'],
    [
      "rateLimit: 2Mbit",
      'rateLimit: expected bytes per second or a size like 500KB, 2MiB (units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), got "2Mbit"',
    ],
    [
      "rateLimit: 0",
      "rateLimit: expected bytes per second or a size like 500KB, 2MiB (units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), got 0",
    ],
    ["storage: { watermark: 101 }", "storage.watermark: expected a percentage from 1 to 100, got 101"],
    ["storage: { watermark: '95 %' }", 'storage.watermark: expected a percentage from 1 to 100, got "95 %"'],
    [
      "storage: { reserve: 2Mb }",
      'storage.reserve: expected bytes or a size like 500KB, 2MiB (units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), got "2Mb"',
    ],
    [
      "registries: { credentials: creds.json }",
      'registries.credentials: expected an absolute file path, got "creds.json"',
    ],
    ["registries: { certsDir: [] }", "registries.certsDir: expected an absolute directory path, got []"],
    [
      "registries: { insecure: [ok.local, 'http://bad.local'] }",
      'registries.insecure[1]: expected a registry host like registry.local:5000, got "http://bad.local"',
    ],
    ["keep: -1", "keep: expected a whole number, 0 or more, got -1"],
    ["keep: one", 'keep: expected a whole number, 0 or more, got "one"'],
    [
      "timeouts: { stall: forever }",
      'timeouts.stall: expected seconds or a duration like 30s, 5m, 1h, got "forever"',
    ],
    ["timeouts: { start: 0s }", 'timeouts.start: expected seconds or a duration like 30s, 5m, 1h, got "0s"'],
    [
      "timeouts: { retryMax: true }",
      "timeouts.retryMax: expected seconds or a duration like 30s, 5m, 1h, got true",
    ],
    ["logLevel: verbose", 'logLevel: expected one of debug, info, warn, error, got "verbose"'],
    ["logLevel: INFO", 'logLevel: expected one of debug, info, warn, error, got "INFO"'],
  ];
  for (const [text, message] of cases) assert.equal(errorFor(text), `${FILE}: ${message}`, text);
});

Deno.test("an unknown key is an error naming it, with the likely key it misspells", () => {
  assert.equal(
    errorFor("pollIntervall: 5m"),
    `${FILE}: pollIntervall: unknown key (did you mean pollInterval?); expected one of: store, composeRoot, docker, compose, composeEnvironment, platform, apps, pollInterval, pollJitter, status, peer, parallel, rateLimit, storage, registries, keep, timeouts, limits, logLevel`,
  );
  assert.equal(
    errorFor("status:\n  listne: 127.0.0.1:1\n"),
    `${FILE}: status.listne: unknown key (did you mean listen?); expected one of: listen, token, hosts`,
  );
  assert.equal(
    errorFor("timeouts: { install: 5m }"),
    `${FILE}: timeouts.install: unknown key; expected one of: stall, start, retryMax, engine, soak`,
  );
  assert.match(errorFor("compose_root: /x"), /: compose_root: unknown key \(did you mean composeRoot\?\)/);
});

Deno.test("with several problems the first in the file is named and the rest counted", () => {
  assert.equal(
    errorFor("statsu: {}\nkeep: x\nlogLevl: info\n"),
    `${FILE}: statsu: unknown key (did you mean status?); expected one of: store, composeRoot, docker, compose, composeEnvironment, platform, apps, pollInterval, pollJitter, status, peer, parallel, rateLimit, storage, registries, keep, timeouts, limits, logLevel (and 2 more problems)`,
  );
  assert.equal(
    errorFor("keep: -1\nparallel: 0\nlogLevel: loud"),
    `${FILE}: keep: expected a whole number, 0 or more, got -1 (and 2 more problems)`,
  );
});

Deno.test("a file that is not a mapping of settings says so", () => {
  assert.match(
    errorFor("- store\n- apps\n"),
    /^\/etc\/berth\/config\.yml: expected a mapping of settings \(key: value lines\), got \["store","apps"\]$/,
  );
  assert.match(
    errorFor("just some words"),
    /: expected a mapping of settings \(key: value lines\), got "just some words"$/,
  );
});

Deno.test("YAML syntax errors name the file, line and column", () => {
  assert.equal(
    errorFor("store: /x\napps: [a:1\nkeep: 1\n"),
    `${FILE}: line 3, column 1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]`,
  );
  assert.equal(
    errorFor("keep: 1\nstore: /a\nkeep: 2\n"),
    `${FILE}: line 3, column 1: invalid YAML: Map keys must be unique`,
  );
  assert.match(
    errorFor("store: /x\n\tapps: []\n"),
    /^\/etc\/berth\/config\.yml: line 2, column 1: invalid YAML: /,
  );
  assert.match(
    errorFor("apps: *nowhere\n"),
    /^\/etc\/berth\/config\.yml: (line \d+, column \d+: )?invalid YAML: .*nowhere/,
  );
});

Deno.test("loadConfig: a missing default file gives the defaults, a missing named file or a directory is an error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-config-" });
  try {
    assert.deepEqual(await loadConfig(`${dir}/absent.yml`, { explicit: false }), defaultConfig());
    await assert.rejects(
      loadConfig(`${dir}/absent.yml`, { explicit: true }),
      (error: unknown) =>
        error instanceof BerthError && error.reason === "invalid_input" &&
        error.message === `config file ${dir}/absent.yml does not exist; check --config or BERTH_CONFIG`,
    );
    await assert.rejects(
      loadConfig(dir, { explicit: false }),
      (error: unknown) =>
        error instanceof BerthError &&
        error.message === `config file ${dir} is a directory; expected a YAML file`,
    );
    await Deno.writeTextFile(`${dir}/config.yml`, "keep: 3\nlogLevel: warn\n");
    const config = await loadConfig(`${dir}/config.yml`, { explicit: true });
    assert.equal(config.keep, 3);
    assert.equal(config.logLevel, "warn");
    await Deno.writeTextFile(`${dir}/config.yml`, "keep: lots\n");
    await assert.rejects(
      loadConfig(`${dir}/config.yml`, { explicit: false }),
      (error: unknown) =>
        error instanceof BerthError &&
        error.message === `${dir}/config.yml: keep: expected a whole number, 0 or more, got "lots"`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
