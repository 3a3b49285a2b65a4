import {
  type ComposeFile,
  formatComposeFile,
  MAX_COMPOSE_FILE_BYTES,
  parseComposeFile,
  serviceImages,
} from "../../src/app/compose_file.ts";
import { dropBuild, pinImages, pinnedReferences, rewriteForEngine } from "../../src/app/compose_pin.ts";
import { CONFIG_HASH_LABEL, configHash, labelServices } from "../../src/app/config_hash.ts";
import { marshalGoYaml } from "../../src/util/yaml_v3_marshal.ts";
import { BerthError } from "../../src/util/errors.ts";

const FILE = "docker-compose.yml";
const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const parse = (text: string) => parseComposeFile(encode(text), FILE);
const format = (compose: ComposeFile) => decode(formatComposeFile(compose));
const service = (compose: ComposeFile, name: string) => {
  const found = compose.services.find((each) => each.name === name);
  if (!found) throw new Error(`no service ${name}`);
  return found;
};

function assertEquals(actual: unknown, expected: unknown, what = "value"): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}:\n  expected ${e}\n  got      ${a}`);
}

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

/** Runs `fn`, expects a BerthError("invalid_input") whose message is `message` (or matches it). */
function assertInvalid(fn: () => unknown, message: string | RegExp): void {
  let error: unknown;
  try {
    fn();
  } catch (caught) {
    error = caught;
  }
  if (!(error instanceof BerthError)) throw new Error(`expected a BerthError, got ${error}`);
  assertEquals(error.reason, "invalid_input", "reason");
  const ok = typeof message === "string" ? error.message === message : message.test(error.message);
  if (!ok) throw new Error(`message:\n  expected ${message}\n  got      ${JSON.stringify(error.message)}`);
}

const DIGEST_A = `sha256:${"a".repeat(64)}`;
const DIGEST_B = `sha256:${"b".repeat(64)}`;
const WEB = "registry.example.com/shop/web:1.2";
const WORKER = "registry.example.com/shop/worker:1.2";
const WEB_PINNED = `registry.example.com/shop/web@${DIGEST_A}`;
const WORKER_PINNED = `registry.example.com/shop/worker@${DIGEST_B}`;
const PINS = new Map([[WEB, WEB_PINNED], [WORKER, WORKER_PINNED]]);

const APP = `# the shop
version: "3.8"
x-common: &common
  restart: unless-stopped # always
  logging:
    driver: local
services:
  web:
    <<: *common
    image: ${WEB} # the storefront
    ports: ["8080:80"]
    configs:
      - source: settings
        target: /etc/web.conf
        mode: 0440
    labels:
      com.example.team: edge
    x-berth-note: kept
  worker:
    image: "${WORKER}"
    command: [sleep, "30"]
    labels:
      - com.example.role=worker
    some_future_key: {nested: [1, 2]}
volumes:
  data:
networks:
  back: {}
configs:
  settings:
    file: ./web.conf
secrets: {}
x-vendor: {anything: [goes]}
`;

Deno.test("compose: a valid file parses, keeps unknown keys and the file's order", () => {
  const compose = parse(APP);
  assertEquals(compose.services.map((each) => each.name), ["web", "worker"], "services");
  assertEquals(serviceImages(compose), [{ service: "web", image: WEB }, {
    service: "worker",
    image: WORKER,
  }]);
  const web = service(compose, "web");
  assertEquals(web.config.restart, "unless-stopped", "merged key");
  assertEquals(web.config["x-berth-note"], "kept", "x- key of a service");
  assertEquals(service(compose, "worker").config.some_future_key, { nested: [1, 2] }, "unknown key");
  assertEquals(compose.config["x-vendor"], { anything: ["goes"] }, "top-level x- key");
  assertEquals(Object.keys(compose.config), [
    "version",
    "x-common",
    "services",
    "volumes",
    "networks",
    "configs",
    "secrets",
    "x-vendor",
  ]);
  // Unchanged, the file is written back with its comments, keys and values as they were.
  assertEquals(format(compose), APP, "round trip");
});

Deno.test("compose: build with an image is fine, other top-level keys pass through", () => {
  const compose = parse(
    `name: shop\ninclude: [other.yml]\nservices:\n  a:\n    image: x/y:1\n    build: .\n`,
  );
  assertEquals(serviceImages(compose), [{ service: "a", image: "x/y:1" }]);
});

Deno.test("compose: every error names the file, the service and the field", () => {
  const cases: [string, string | RegExp][] = [
    ["services:\n  web:\n    image: 42\n", `${FILE}: services.web.image: expected a string, got a number`],
    ["services:\n  web:\n    image: [a]\n", `${FILE}: services.web.image: expected a string, got a list`],
    ["services:\n  web:\n    image: ''\n", `${FILE}: services.web.image: must not be empty`],
    [
      "services:\n  web:\n    command: x\n",
      `${FILE}: services.web.image: missing: every service needs an image`,
    ],
    [
      "services:\n  web:\n    build: .\n",
      `${FILE}: services.web.image: missing: berth does not build images, so a service with \`build\` needs an \`image\` too`,
    ],
    ["services:\n  web:\n", `${FILE}: services.web: expected a mapping, got null`],
    ["services:\n  web: nginx\n", `${FILE}: services.web: expected a mapping, got a string`],
    ["services: {}\n", `${FILE}: services: empty: an app needs at least one service`],
    ["services:\n", `${FILE}: services: expected a mapping, got null`],
    ["services: [a]\n", `${FILE}: services: expected a mapping, got a list`],
    ["version: '3'\n", `${FILE}: services: missing`],
    ["- a\n", `${FILE}: expected a mapping at the top level, got a list`],
    ["", `${FILE}: expected a mapping at the top level, got null`],
    [
      "services:\n  -web:\n    image: x\n",
      /^docker-compose\.yml: services\["-web"\]: not a valid service name: /,
    ],
    [
      "services:\n  'we b':\n    image: x\n",
      /^docker-compose\.yml: services\["we b"\]: not a valid service name: /,
    ],
    [
      "services:\n  web:\n    image: x\n    labels: {a: [1]}\n",
      `${FILE}: services.web.labels.a: expected a string, got a list`,
    ],
    [
      "services:\n  web:\n    image: x\n    labels: {com.example.a: {b: c}}\n",
      `${FILE}: services.web.labels["com.example.a"]: expected a string, got a mapping`,
    ],
    [
      "services:\n  web:\n    image: x\n    labels: [a=b, 3]\n",
      `${FILE}: services.web.labels[1]: expected a "key=value" string, got a number`,
    ],
    [
      "services:\n  web:\n    image: x\n    labels: a=b\n",
      `${FILE}: services.web.labels: expected a mapping or a list of "key=value" strings, got a string`,
    ],
    [
      "services:\n  web:\n    image: x\n    environment:\n      1: one\n",
      `${FILE}: services.web.environment: key "1" is a number, but compose takes only string keys (quote it)`,
    ],
    ["version: 3.8\nservices:\n  web:\n    image: x\n", `${FILE}: version: expected a string, got a number`],
    [
      "services:\n  web:\n    image: x\nvolumes: [data]\n",
      `${FILE}: volumes: expected a mapping, got a list`,
    ],
    [
      "services:\n  web:\n    image: x\nnetworks:\n  n: 1\n",
      `${FILE}: networks.n: expected a mapping, got a number`,
    ],
    [
      "services:\n  web:\n    image: x\n    image: y\n",
      `${FILE}: Map keys must be unique at line 4, column 5`,
    ],
    [
      "services:\n  web:\n    image: [x\n",
      `${FILE}: Flow sequence in block collection must be sufficiently indented and end with a ] at line 4, column 1`,
    ],
    [
      "services:\n  web:\n    image: x\n---\nservices: {}\n",
      /^docker-compose\.yml: Source contains multiple documents/,
    ],
  ];
  for (const [text, message] of cases) assertInvalid(() => parse(text), message);
});

Deno.test("compose: size cap, UTF-8 and alias bombs are refused", () => {
  const big = `services:\n  web:\n    image: x\nx-pad: "${"a".repeat(MAX_COMPOSE_FILE_BYTES)}"\n`;
  assertInvalid(
    () => parse(big),
    /^docker-compose\.yml: \d+ bytes, more than the 1048576 \(1 MiB\) allowed$/,
  );
  assertInvalid(
    () => parseComposeFile(new Uint8Array([0x73, 0x3a, 0xff, 0x0a]), FILE),
    `${FILE}: not valid UTF-8`,
  );
  const lines = ["x-0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
  for (let i = 1; i < 10; i++) {
    lines.push(`x-${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(", ")}]`);
  }
  lines.push("services:\n  web:\n    image: x\n    x-bomb: *a9");
  assertInvalid(
    () => parse(lines.join("\n")),
    `${FILE}: too many alias expansions (refused as a resource exhaustion attack)`,
  );
  // A few aliases are fine.
  parse("x-img: &img x/y:1\nservices:\n  a:\n    image: *img\n  b:\n    image: *img\n");
});

Deno.test("compose: pinning replaces images only, deterministically, keeping order and comments", () => {
  const compose = parse(APP);
  const pinned = pinImages(compose, PINS);
  const text = format(pinned);
  assertEquals(text, APP.replace(WEB, WEB_PINNED).replace(WORKER, WORKER_PINNED), "pinned text");
  assertEquals(serviceImages(pinned), [{ service: "web", image: WEB_PINNED }, {
    service: "worker",
    image: WORKER_PINNED,
  }]);
  // Everything else is the same data.
  const strip = (c: ComposeFile) =>
    JSON.stringify(c.config, (key, value) => key === "image" ? undefined : value);
  assertEquals(strip(pinned), strip(compose), "other keys");
  // Same input, same bytes, whatever the order of the pins; the input is left alone.
  const again = pinImages(parse(APP), new Map([...PINS].reverse()));
  assertEquals(decode(formatComposeFile(again)), text, "determinism");
  assertEquals(format(compose), APP, "input unchanged");
});

Deno.test("compose: pinning errors", () => {
  const compose = parse(APP);
  assertInvalid(
    () => pinImages(compose, new Map([[WEB, WEB_PINNED]])),
    `${FILE}: services.worker.image: no pinned digest for "${WORKER}"`,
  );
  assertInvalid(
    () => pinImages(compose, new Map([[WEB, WEB], [WORKER, WORKER_PINNED]])),
    `${FILE}: services.web.image: the pin "${WEB}" for "${WEB}" is not pinned: expected host/path@sha256:<64 hex>`,
  );
  assertInvalid(
    () => pinImages(compose, new Map([[WEB, `shop/web@${DIGEST_A}`], [WORKER, WORKER_PINNED]])),
    /services\.web\.image: the pin "shop\/web@sha256:a+" for .* expected host\/path@sha256:<64 hex>$/,
  );
});

Deno.test("compose: a shared anchored image and whole-service aliases are pinned consistently", () => {
  const text = [
    "x-img: &img " + WEB,
    "services:",
    "  a:",
    "    image: *img",
    "  b: &b",
    "    image: " + WEB,
    "    command: [x]",
    "  c: *b",
    "",
  ].join("\n");
  const pinned = pinImages(parse(text), PINS);
  assertEquals(serviceImages(pinned).map((each) => each.image), [WEB_PINNED, WEB_PINNED, WEB_PINNED]);
  assertEquals(service(pinned, "c").config.command, ["x"], "aliased service keeps its settings");
  // The written file reads back the same.
  assertEquals(serviceImages(parse(format(pinned))), serviceImages(pinned), "re-read");
});

Deno.test("compose: numbers, special characters and block scalars survive formatting", () => {
  const text = [
    "services:",
    "  web:",
    "    image: x/y:1",
    "    x-octal: 0755",
    "    x-exp: 1e3",
    "    x-hex: 0x1F",
    "    x-yes: yes",
    '    x-control: "a\\u0080b\\u0085c"',
    "    x-script: |",
    "      echo one",
    "      echo two",
    "",
  ].join("\n");
  const compose = parse(text);
  const out = format(compose);
  for (const kept of ["x-octal: 0755", "x-exp: 1e3", "x-hex: 0x1F", "x-yes: yes", "x-script: |"]) {
    assert(out.includes(kept), `"${kept}" not in:\n${out}`);
  }
  assert(out.includes('x-control: "a\\u0080b\\u0085c"'), `control characters not escaped:\n${out}`);
  assertEquals(parse(out).config, compose.config, "same data");
});

// The hash and the text below are what gopkg.in/yaml.v3 v3.0.1 (yaml.Unmarshal into interface{}, then
// yaml.Marshal of the service) and sha256 give for this service.
const HASH_VECTOR = `x-base: &base
  restart: unless-stopped
services:
  web:
    <<: *base
    image: ${WEB_PINNED}
    command: ["sleep", "30"]
    ports: ["8080:80", 22:22]
    environment:
      MODE: 0755
      SWITCH: on
      WHEN: 2001-12-14
    labels: {b: 1, a: yes}
    healthcheck:
      test: |
        wget -q localhost
      interval: 1e3
    x-key10: a
    x-key9: b
`;
const HASH_VECTOR_YAML = `command:
    - sleep
    - "30"
environment:
    MODE: 493
    SWITCH: "on"
    WHEN: 2001-12-14T00:00:00Z
healthcheck:
    interval: 1000
    test: |
        wget -q localhost
image: ${WEB_PINNED}
labels:
    a: "yes"
    b: 1
ports:
    - 8080:80
    - "22:22"
restart: unless-stopped
x-key9: b
x-key10: a
`;
const HASH_VECTOR_HASH = "e4778c4ecde3b7a5f1a083efde48e9e0157d7b2cc65b3b5a17857eef7970cccc";

Deno.test("compose: configHash is composeapp's (yaml.v3 typing and marshalling, sha256)", () => {
  const web = service(parse(HASH_VECTOR), "web");
  assertEquals(marshalGoYaml(web.goConfig), HASH_VECTOR_YAML, "yaml.v3 text");
  assertEquals(configHash(web), HASH_VECTOR_HASH, "hash");
  // More of yaml.v3's writing rules (this text too is yaml.v3's).
  const other = service(
    parse(
      'services:\n  s:\n    image: x\n    a: ["- x", "a: b", "#c", "it\'s", "x\\ny", "", "1.5", "0x10", "t\\tab", "é", "\\u0001"]\n    n: [1.0, 1e6, 1234567.0, 0.00001, .inf, ~, 0o17, 1_000, 08]\n    m: {}\n    l: []\n',
    ),
    "s",
  );
  assertEquals(
    marshalGoYaml(other.goConfig),
    [
      "a:",
      "    - '- x'",
      "    - 'a: b'",
      "    - '#c'",
      "    - it's",
      "    - |-",
      "      x",
      "      y",
      '    - ""',
      '    - "1.5"',
      '    - "0x10"',
      '    - "t\\tab"',
      "    - é",
      '    - "\\x01"',
      "image: x",
      "l: []",
      "m: {}",
      '"n":',
      "    - 1",
      "    - 1e+06",
      "    - 1.234567e+06",
      "    - 1e-05",
      "    - .inf",
      "    - null",
      "    - 15",
      "    - 1000",
      "    - 8",
      "",
    ].join("\n"),
    "yaml.v3 text",
  );
});

Deno.test("compose: dropBuild removes build as composeapp's publish does; the hash is the service's without it", () => {
  const withImage = (text: string) =>
    HASH_VECTOR.replace(`    image: ${WEB_PINNED}\n`, `    image: ${WEB_PINNED}\n${text}`);
  const variants = [
    withImage("    build: ./web\n"),
    withImage("    build:\n      context: ./web\n      dockerfile: Dockerfile.arm\n"),
    // Through the `<<` merge: the service loses it; the extension it came from is left as it is.
    HASH_VECTOR.replace("x-base: &base\n", "x-base: &base\n  build: .\n"),
  ];
  for (const text of variants) {
    const compose = parse(text);
    assert(service(compose, "web").config.build !== undefined, "the fixture builds");
    assert(
      configHash(service(compose, "web")) !== HASH_VECTOR_HASH,
      "build counts in the hash until dropped",
    );
    const dropped = dropBuild(compose);
    assertEquals(service(dropped, "web").config.build, undefined);
    assertEquals(configHash(service(dropped, "web")), HASH_VECTOR_HASH, text);
    const written = parse(format(dropped));
    assertEquals(service(written, "web").config.build, undefined, "written without it");
    assertEquals(configHash(service(written, "web")), HASH_VECTOR_HASH, "and so read back");
    const labelled = labelServices(dropped);
    assertEquals(
      (service(labelled, "web").config.labels as Record<string, string>)[CONFIG_HASH_LABEL],
      HASH_VECTOR_HASH,
    );
  }
  const merged = format(dropBuild(parse(variants[2])));
  assert(merged.startsWith("x-base: &base\n  build: .\n"), merged);
  // Services without build are left alone, and a file without any is returned as it is.
  const plain = parse(HASH_VECTOR);
  assert(dropBuild(plain) === plain, "nothing to drop: the same file");
  const two = dropBuild(parse(`services:\n  a:\n    image: x/a:1\n    build: .\n  b:\n    image: x/b:1\n`));
  assertEquals(format(two), "services:\n  a:\n    image: x/a:1\n  b:\n    image: x/b:1\n");
});

Deno.test("compose: configHash is stable and follows the service's content", () => {
  const base = service(parse(HASH_VECTOR), "web");
  // Layout, key order, quoting and comments do not matter; content does.
  const relaid = parse(
    `services:\n  web:\n    x-key9: b\n    x-key10: 'a'\n    restart: unless-stopped # here\n    labels:\n      a: "yes"\n      b: 1\n    ports:\n      - "8080:80"\n      - "22:22"\n    environment: {WHEN: 2001-12-14, SWITCH: "on", MODE: 493}\n    healthcheck: {interval: 1000, test: "wget -q localhost\\n"}\n    command: [sleep, "30"]\n    image: ${WEB_PINNED}\n`,
  );
  assertEquals(configHash(service(relaid, "web")), configHash(base), "same content");
  assertEquals(configHash(service(parse(HASH_VECTOR), "web")), configHash(base), "parsed again");
  const changed = [
    HASH_VECTOR.replace('"30"', '"31"'),
    HASH_VECTOR.replace("22:22", '"22:23"'),
    HASH_VECTOR.replace(DIGEST_A, DIGEST_B),
    HASH_VECTOR.replace("restart: unless-stopped", "restart: always"),
    HASH_VECTOR.replace("x-key9: b", "x-key9: b\n    x-new: 1"),
    HASH_VECTOR.replace('["sleep", "30"]', '["sleep", 30]'),
  ];
  const hashes = new Set([
    configHash(base),
    ...changed.map((text) => configHash(service(parse(text), "web"))),
  ]);
  assertEquals(hashes.size, changed.length + 1, "every change changes the hash");
});

Deno.test("compose: labelServices sets the hash in the labels' own form", () => {
  const labelled = labelServices(pinImages(parse(APP), PINS));
  const pinned = pinImages(parse(APP), PINS);
  const webHash = configHash(service(pinned, "web"));
  const workerHash = configHash(service(pinned, "worker"));
  assert(webHash !== workerHash, "different services, different hashes");
  assertEquals(service(labelled, "web").config.labels, {
    "com.example.team": "edge",
    [CONFIG_HASH_LABEL]: webHash,
  }, "mapping form");
  assertEquals(service(labelled, "worker").config.labels, [
    "com.example.role=worker",
    `${CONFIG_HASH_LABEL}=${workerHash}`,
  ], "list form");
  // The label is not part of the hash, so labelling again changes nothing.
  assertEquals(configHash(service(labelled, "web")), webHash, "hash of a labelled service");
  const relabelled = labelServices(parse(format(labelled)));
  assertEquals(format(relabelled), format(labelled), "idempotent");
  const text = format(labelled);
  assert(text.includes(`      - ${CONFIG_HASH_LABEL}=${workerHash}\n`), `list entry:\n${text}`);
  assert(text.includes(`      ${CONFIG_HASH_LABEL}: ${webHash}\n`), `mapping entry:\n${text}`);
});

Deno.test("compose: labelServices gives services without labels, or with shared ones, their own", () => {
  const text = [
    "x-base: &base",
    "  labels: &labels",
    "    team: edge",
    "services:",
    "  plain:",
    "    image: x/a:1",
    "  merged:",
    "    <<: *base",
    "    image: x/b:1",
    "  aliased:",
    "    image: x/c:1",
    "    labels: *labels",
    "  stale:",
    "    image: x/d:1",
    "    labels:",
    `      - ${CONFIG_HASH_LABEL}=old`,
    "",
  ].join("\n");
  const compose = parse(text);
  const labelled = labelServices(compose);
  const hash = (name: string) => configHash(service(compose, name));
  assertEquals(service(labelled, "plain").config.labels, { [CONFIG_HASH_LABEL]: hash("plain") }, "added");
  assertEquals(service(labelled, "merged").config.labels, {
    team: "edge",
    [CONFIG_HASH_LABEL]: hash("merged"),
  });
  assertEquals(service(labelled, "aliased").config.labels, {
    team: "edge",
    [CONFIG_HASH_LABEL]: hash("aliased"),
  });
  assertEquals(
    service(labelled, "stale").config.labels,
    [`${CONFIG_HASH_LABEL}=${hash("stale")}`],
    "replaced",
  );
  assertEquals(
    labelled.config["x-base"],
    { labels: { team: "edge" } },
    "the shared labels stay as they were",
  );
});

Deno.test("compose: pinnedReferences parses pinned images and names the first unpinned service", () => {
  const pinned = pinImages(parse(APP), PINS);
  const refs = pinnedReferences(pinned);
  assertEquals(refs.map((each) => [each.service, each.reference.registry, each.reference.repository]), [
    ["web", "registry.example.com", "shop/web"],
    ["worker", "registry.example.com", "shop/worker"],
  ]);
  assertEquals(refs[0].reference.digest, DIGEST_A, "digest");
  const tagged = parse(`services:\n  a:\n    image: 127.0.0.1:5000/x/y:1@${DIGEST_A}\n`);
  assertEquals(pinnedReferences(tagged)[0].reference, {
    registry: "127.0.0.1:5000",
    repository: "x/y",
    tag: "1",
    digest: DIGEST_A,
  });
  assertInvalid(
    () => pinnedReferences(parse(APP)),
    `${FILE}: services.web.image: "${WEB}" is not pinned: expected host/path@sha256:<64 hex>`,
  );
  assertInvalid(
    () => pinnedReferences(parse(`services:\n  a:\n    image: nginx@${DIGEST_A}\n`)),
    `${FILE}: services.a.image: "nginx@${DIGEST_A}" is not pinned: expected host/path@sha256:<64 hex>`,
  );
  assertInvalid(
    () => pinnedReferences(parse(`services:\n  a:\n    image: host.io/UPPER@${DIGEST_A}\n`)),
    /services\.a\.image: "host\.io\/UPPER@sha256:a+" is not pinned: invalid reference .*lower-case/,
  );
  assertInvalid(
    () => pinnedReferences(parse(`services:\n  a:\n    image: host.io/x@sha256:abc\n`)),
    /services\.a\.image: "host\.io\/x@sha256:abc" is not pinned/,
  );
});

Deno.test("compose: rewriteForEngine swaps pinned images for local tags and never pulls", () => {
  const labelled = labelServices(pinImages(parse(APP), PINS));
  const local = new Map([
    [WEB_PINNED, "berth.local/shop/web:sha256-aaaaaaaaaaaa"],
    [WORKER_PINNED, "berth.local/shop/worker:sha256-bbbbbbbbbbbb"],
  ]);
  const engine = rewriteForEngine(labelled, local);
  assertEquals(serviceImages(engine).map((each) => each.image), [...local.values()], "images");
  for (const each of engine.services) {
    assertEquals(each.config.pull_policy, "never", `${each.name} pull_policy`);
  }
  // The config-hash labels still name the pinned app.
  assertEquals(
    service(engine, "web").config.labels,
    service(labelled, "web").config.labels,
    "labels kept",
  );
  const text = format(engine);
  assert(text.includes("    image: berth.local/shop/web:sha256-aaaaaaaaaaaa # the storefront\n"), text);
  assertEquals(format(rewriteForEngine(labelled, new Map([...local].reverse()))), text, "deterministic");

  assertInvalid(
    () => rewriteForEngine(parse(APP), local),
    `${FILE}: services.web.image: "${WEB}" is not pinned: expected host/path@sha256:<64 hex>`,
  );
  assertInvalid(
    () => rewriteForEngine(labelled, new Map([[WEB_PINNED, "berth.local/shop/web:1"]])),
    `${FILE}: services.worker.image: no local reference for "${WORKER_PINNED}"`,
  );
  assertInvalid(
    () => rewriteForEngine(labelled, new Map([...local, [WEB_PINNED, WEB_PINNED]])),
    `${FILE}: services.web.image: the local reference "${WEB_PINNED}" for "${WEB_PINNED}" must be a tag, not a digest`,
  );
  assertInvalid(
    () => rewriteForEngine(labelled, new Map([...local, [WEB_PINNED, "Bad Name"]])),
    /services\.web\.image: invalid reference "Bad Name"/,
  );
});
