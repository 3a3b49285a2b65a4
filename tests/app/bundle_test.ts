/**
 * Compose-app bundles: building reproducibly, the manifest composeapp's publish writes, parsing what
 * composeapp published over the years (fixtures in ./fixtures, see its README), the bundle index, and
 * extraction that refuses every way out of the destination.
 */
import assert from "node:assert/strict";
import { appManifest, isAppManifest, parseAppManifest } from "../../src/app/app_manifest.ts";
import { buildBundle } from "../../src/app/bundle_build.ts";
import { bundleFileBytes, extractBundle } from "../../src/app/bundle_extract.ts";
import { bundleLimitsFor, DEFAULT_BUNDLE_LIMITS } from "../../src/app/bundle_format.ts";
import { verifyBundleIndex } from "../../src/app/bundle_index.ts";
import { buildLayersMeta, parseLayersMeta } from "../../src/app/layers_meta.ts";
import { type TarEntry, writeTar } from "../../src/app/tar_write.ts";
import { gzip } from "../../src/util/gzip.ts";
import { BerthError } from "../../src/util/errors.ts";
import { EMPTY_SHA256, sha256Of } from "../../src/oci/digest.ts";

/** Temporary directories of the running test, removed when it ends. */
const temps: string[] = [];
async function tempDir(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  temps.push(dir);
  return dir;
}
function test(name: string, fn: () => Promise<void>): void {
  Deno.test(name, async () => {
    try {
      await fn();
    } finally {
      for (const dir of temps.splice(0)) await Deno.remove(dir, { recursive: true });
    }
  });
}

const text = (value: string) => new TextEncoder().encode(value);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const fixture = (name: string) => Deno.readFile(new URL(`./fixtures/${name}`, import.meta.url));
const PINNED = text(
  "services:\n  web:\n    image: registry.example.com/library/nginx@sha256:" + "1".repeat(64) +
    "\n    labels:\n      io.compose-spec.config-hash: " + "2".repeat(64) + "\n",
);

async function expectError(
  promise: Promise<unknown> | (() => unknown),
  reason: string,
  pattern: RegExp,
): Promise<BerthError> {
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (error) {
    assert.ok(error instanceof BerthError, `expected a BerthError, got ${error}`);
    assert.equal(error.reason, reason, error.message);
    assert.match(error.message, pattern);
    return error;
  }
  throw new Error(`expected an error matching ${pattern}`);
}

/** A compose project exercising ordering, ignores, modes and symlinks. */
async function makeProject(): Promise<string> {
  const dir = await tempDir("berth-project-");
  const write = async (path: string, content: string, mode = 0o644) => {
    await Deno.mkdir(`${dir}/${path}`.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.writeTextFile(`${dir}/${path}`, content);
    await Deno.chmod(`${dir}/${path}`, mode);
  };
  await write("docker-compose.yml", "services:\n  web:\n    image: nginx:1.27\n");
  await write("config/nginx.conf", "server { listen 80; }\n");
  await write("scripts/run.sh", "#!/bin/sh\necho hi\n", 0o750);
  await write("a/x", "x\n");
  await write("a-b", "a-b\n");
  await write("secrets/key", "do not ship\n");
  await write("secrets/keep.pub", "public\n");
  await write("debug.log", "noise\n");
  await write(".composeappignores", "# what stays home\nsecrets\n!secrets/keep.pub\n/*.log\n");
  await Deno.mkdir(`${dir}/empty`);
  await Deno.symlink("config/nginx.conf", `${dir}/current`);
  await Deno.symlink("config", `${dir}/confdir`);
  return dir;
}

async function extractInto(bundle: Uint8Array, options = {}): Promise<{ dest: string; files: string[] }> {
  const dest = await tempDir("berth-extract-");
  const files = await extractBundle(ReadableStream.from([bundle]), dest, options);
  return { dest, files };
}

test("build: the same project gives the same bytes, whatever its files' times; modes are carried", async () => {
  const dir = await makeProject();
  const first = await buildBundle(dir, PINNED);
  for (
    const path of ["docker-compose.yml", "config/nginx.conf", "scripts/run.sh", "a-b", "config", "empty"]
  ) {
    await Deno.utime(`${dir}/${path}`, new Date(2001, 1, 1), new Date(2011, 1, 1));
  }
  const second = await buildBundle(dir, PINNED);
  assert.equal(sha256Of(second.bundle), sha256Of(first.bundle));
  assert.equal(sha256Of(second.bundleIndex), sha256Of(first.bundleIndex));
  // A mode is part of the bundle (a secret kept 0600 ships 0600); not of the index.
  await Deno.chmod(`${dir}/config/nginx.conf`, 0o600);
  const narrowed = await buildBundle(dir, PINNED);
  assert.notEqual(sha256Of(narrowed.bundle), sha256Of(first.bundle));
  assert.equal(sha256Of(narrowed.bundleIndex), sha256Of(first.bundleIndex));
  const { dest } = await extractInto(narrowed.bundle);
  assert.equal((await Deno.lstat(`${dest}/config/nginx.conf`)).mode! & 0o7777, 0o600);
  // Go's WalkDir order: depth first, names sorted by bytes; ignored paths left out, the ignore file too.
  assert.deepEqual(first.files, [
    "a/",
    "a/x",
    "a-b",
    "confdir",
    "config/",
    "config/nginx.conf",
    "current",
    "docker-compose.yml",
    "empty/",
    "scripts/",
    "scripts/run.sh",
    "secrets/keep.pub",
  ]);
  // A different pinned compose file is a different bundle.
  const other = await buildBundle(dir, text("services: {}\n"));
  assert.notEqual(sha256Of(other.bundle), sha256Of(first.bundle));
});

test("build: the index covers every file; the bundle extracts to the pinned project", async () => {
  const dir = await makeProject();
  const built = await buildBundle(dir, PINNED);
  const nginx = sha256Of(text("server { listen 80; }\n"));
  const index = JSON.parse(decode(built.bundleIndex));
  assert.deepEqual(index, {
    "a-b": sha256Of(text("a-b\n")),
    "a/x": sha256Of(text("x\n")),
    "config/nginx.conf": nginx,
    "current": nginx, // a symlink: the digest of what a device reads through it
    "docker-compose.yml": sha256Of(PINNED),
    "scripts/run.sh": sha256Of(text("#!/bin/sh\necho hi\n")),
    "secrets/keep.pub": sha256Of(text("public\n")),
  });
  // Go's json.Marshal of a map: compact, keys sorted by bytes.
  assert.ok(decode(built.bundleIndex).startsWith(`{"a-b":"sha256:`));

  const { dest, files } = await extractInto(built.bundle);
  assert.deepEqual(files, built.files.map((name) => name.replace(/\/$/, "")));
  assert.deepEqual(await Deno.readFile(`${dest}/docker-compose.yml`), PINNED);
  assert.equal((await Deno.lstat(`${dest}/scripts/run.sh`)).mode! & 0o7777, 0o750);
  assert.equal((await Deno.lstat(`${dest}/config/nginx.conf`)).mode! & 0o7777, 0o644);
  assert.equal(
    (await Deno.lstat(`${dest}/config`)).mode! & 0o7777,
    (await Deno.lstat(`${dir}/config`)).mode! & 0o7777,
  );
  assert.equal(await Deno.readLink(`${dest}/current`), "config/nginx.conf");
  assert.equal(await Deno.readLink(`${dest}/confdir`), "config");
  assert.ok((await Deno.lstat(`${dest}/empty`)).isDirectory);
  await verifyBundleIndex(dest, built.bundleIndex);
});

test("extract: permission bits kept, setuid/setgid/sticky dropped; directories without write filled", async () => {
  const data = text("x\n");
  const bundle = await gzip(writeTar([
    { name: "docker-compose.yml", type: "file", data: PINNED, mode: 0o640 },
    { name: "secret", type: "file", data, mode: 0o600 },
    { name: "bin/", type: "dir", mode: 0o750 },
    { name: "bin/run.sh", type: "file", data, mode: 0o750 },
    { name: "bin/su", type: "file", data, mode: 0o4755 },
    { name: "shared/", type: "dir", mode: 0o3777 },
    { name: "sealed/", type: "dir", mode: 0o555 },
    { name: "sealed/inner/", type: "dir", mode: 0o500 },
    { name: "sealed/inner/file", type: "file", data, mode: 0o400 },
    { name: "implicit/file", type: "file", data, mode: 0o2644 },
  ]));
  const { dest } = await extractInto(bundle);
  const modes: Record<string, string> = {};
  const expected = {
    "docker-compose.yml": "640",
    "secret": "600",
    "bin": "750",
    "bin/run.sh": "750",
    "bin/su": "755",
    "shared": "777",
    "sealed": "555",
    "sealed/inner": "500",
    "sealed/inner/file": "400",
    "implicit": "755",
    "implicit/file": "644",
  };
  for (const path of Object.keys(expected)) {
    modes[path] = ((await Deno.lstat(`${dest}/${path}`)).mode! & 0o7777).toString(8);
  }
  assert.deepEqual(modes, expected);
  assert.equal(await Deno.readTextFile(`${dest}/sealed/inner/file`), "x\n");
});

test("verifyBundleIndex: changed, missing and unlisted files are all reported", async () => {
  const built = await buildBundle(await makeProject(), PINNED);
  const { dest } = await extractInto(built.bundle);
  await Deno.writeTextFile(`${dest}/a-b`, "changed\n");
  await Deno.remove(`${dest}/a/x`);
  await Deno.writeTextFile(`${dest}/config/extra.conf`, "extra\n");
  const error = await expectError(
    verifyBundleIndex(dest, built.bundleIndex),
    "verification_failed",
    /3 files do not/,
  );
  assert.match(error.message, /"a-b" has digest sha256:[0-9a-f]{64}, the index says sha256:/);
  assert.match(error.message, /"a\/x" is missing/);
  assert.match(error.message, /"config\/extra\.conf" is not in the bundle index/);
  // composeapp's publish lists symlinks with the digest of empty content; that is accepted for a symlink.
  const { dest: second } = await extractInto(built.bundle);
  const index = JSON.parse(decode(built.bundleIndex));
  index.current = EMPTY_SHA256;
  await verifyBundleIndex(second, text(JSON.stringify(index)));
  await expectError(
    verifyBundleIndex(second, text(JSON.stringify({ "../x": EMPTY_SHA256 }))),
    "invalid_input",
    /app bundle index: key "\.\.\/x": the path has a "\.\." component/,
  );
});

test("build: refuses what cannot go into a bundle, naming the path", async () => {
  const project = async (setup: (dir: string) => Promise<void>) => {
    const dir = await tempDir("berth-project-");
    await Deno.writeTextFile(`${dir}/docker-compose.yml`, "services: {}\n");
    await setup(dir);
    return dir;
  };
  const onlyCompose = await project(async (dir) => {
    await Deno.rename(`${dir}/docker-compose.yml`, `${dir}/compose.yaml`);
  });
  await expectError(
    buildBundle(onlyCompose, PINNED),
    "invalid_input",
    /docker-compose\.yml: missing \(found compose\.yaml; compose apps, and the devices that run them, read only docker-compose\.yml\)/,
  );
  const escaping = await project((dir) => Deno.symlink("../../etc/passwd", `${dir}/pw`));
  await expectError(
    buildBundle(escaping, PINNED),
    "invalid_input",
    /\/pw: symlink to "\.\.\/\.\.\/etc\/passwd" leads outside/,
  );
  const absolute = await project((dir) => Deno.symlink("/etc/hosts", `${dir}/hosts`));
  await expectError(
    buildBundle(absolute, PINNED),
    "invalid_input",
    /\/hosts: symlink to the absolute path "\/etc\/hosts"/,
  );
  const viaLink = await project(async (dir) => {
    await Deno.symlink("..", `${dir}/up`);
    await Deno.symlink("up/x", `${dir}/sneaky`);
  });
  await expectError(
    buildBundle(viaLink, PINNED),
    "invalid_input",
    /\/sneaky: symlink to "up\/x" leads outside the project directory/,
  );
  const socketDir = await project(() => Promise.resolve());
  const listener = Deno.listen({ transport: "unix", path: `${socketDir}/control.sock` });
  try {
    await expectError(
      buildBundle(socketDir, PINNED),
      "invalid_input",
      /control\.sock: not a regular file, directory or symlink/,
    );
  } finally {
    listener.close();
  }
  const ignored = await project((dir) => Deno.writeTextFile(`${dir}/.composeappignores`, "*.yml\n"));
  await expectError(
    buildBundle(ignored, PINNED),
    "invalid_input",
    /\.composeappignores leaves out docker-compose\.yml/,
  );
  const plain = await project(() => Promise.resolve());
  await expectError(
    buildBundle(plain, new Uint8Array(1024 * 1024 + 1)),
    "invalid_input",
    /docker-compose\.yml: the pinned compose file has 1048577 bytes, over the limit of 1048576/,
  );
  const large = await project((dir) => Deno.writeFile(`${dir}/blob.bin`, new Uint8Array(2048)));
  await expectError(
    buildBundle(large, PINNED, { maxFileBytes: 1024 }),
    "invalid_input",
    /blob\.bin: 2048 bytes, over the limit of 1024/,
  );
});

test("build: .composeappignores follows dockerignore rules as composeapp applies them", async () => {
  const dir = await tempDir("berth-project-");
  await Deno.writeTextFile(`${dir}/docker-compose.yml`, "services: {}\n");
  for (
    const path of ["logs/a.log", "logs/keep/me.txt", "deep/x/y.tmp", "deep/x/y.txt", "notes.md", "README.md"]
  ) {
    await Deno.mkdir(`${dir}/${path}`.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.writeTextFile(`${dir}/${path}`, path);
  }
  await Deno.writeTextFile(
    `${dir}/.composeappignores`,
    "\uFEFFlogs\n!logs/keep\n**/*.tmp\n/notes.md\n  \n# README.md\n",
  );
  const { files } = await buildBundle(dir, PINNED);
  assert.deepEqual(files, [
    "README.md",
    "deep/",
    "deep/x/",
    "deep/x/y.txt",
    "docker-compose.yml",
    "logs/keep/",
    "logs/keep/me.txt",
  ]);
  // An ignore file without patterns is shipped, as composeapp does.
  await Deno.writeTextFile(`${dir}/.composeappignores`, "# nothing\n");
  assert.ok((await buildBundle(dir, PINNED)).files.includes(".composeappignores"));
});

test("manifest: byte for byte what composeapp's publish writes", async () => {
  const index = await fixture("bundle-index.json.golden");
  const layersMeta = await fixture("layers-meta.json.golden");
  const bytes = appManifest({
    bundle: { digest: sha256Of(text("fixture bundle")), size: 1234 },
    bundleIndex: { digest: sha256Of(index), size: index.length },
    layersMeta: { digest: sha256Of(layersMeta), size: layersMeta.length },
  });
  assert.equal(decode(bytes), decode(await fixture("app-manifest.json.golden")));
  const parsed = parseAppManifest(bytes, "app");
  assert.deepEqual(parsed.bundleIndex, { digest: sha256Of(index), size: index.length });
  assert.equal(parsed.layersMeta?.digest, sha256Of(layersMeta));
  // Without layers meta, with extra annotations (sorted, as Go writes a map).
  const plain = JSON.parse(decode(appManifest({
    bundle: { digest: sha256Of(text("b")), size: 10 },
    bundleIndex: { digest: sha256Of(text("i")), size: 2 },
    annotations: { "org.opencontainers.image.version": "1.0", "a.first": "x" },
  })));
  assert.deepEqual(Object.keys(plain.annotations), [
    "a.first",
    "compose-app",
    "org.opencontainers.image.version",
  ]);
  assert.equal(plain.layers.length, 1);
  assert.deepEqual(plain.config, {
    mediaType: "application/vnd.oci.empty.v1+json",
    size: 2,
    digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
  });
  assert.equal(sha256Of(text("{}")), plain.config.digest);
});

test("manifest: refused at 50 KiB, as composeapp refuses it", async () => {
  const annotations: Record<string, string> = {};
  for (let i = 0; i < 600; i++) annotations[`io.example.note.${i}`] = "x".repeat(64);
  await expectError(
    () =>
      appManifest({
        bundle: { digest: sha256Of(text("b")), size: 10 },
        bundleIndex: { digest: sha256Of(text("i")), size: 2 },
        annotations,
      }),
    "invalid_input",
    /app manifest: \d+ bytes; compose-app manifests must stay under 51200 bytes/,
  );
});

test("parse: composeapp's manifests of every vintage, legacy `manifests` array included", async () => {
  const current = parseAppManifest(
    await fixture("app-manifest-layers-manifests.json.golden"),
    "factory/shop:v3",
  );
  assert.equal(current.bundle.mediaType, "application/octet-stream");
  assert.equal(current.bundle.size, 1234);
  assert.equal(current.bundleIndex?.size, (await fixture("bundle-index.json.golden")).length);
  assert.ok(current.layersMeta);
  assert.equal((current.manifest as unknown as { manifests: unknown[] }).manifests.length, 2);

  const legacy = parseAppManifest(await fixture("app-manifest-2024.json.golden"), "factory/shop:v1");
  assert.equal(legacy.bundleIndex, undefined, "no index before Nov 2024");
  assert.equal(legacy.manifest.config.size, 0, "Go left out the empty config's size");
  assert.equal(legacy.layersMeta?.size, (await fixture("layers-meta.json.golden")).length);

  for (const name of ["app-manifest.json.golden", "app-manifest-2024.json.golden"]) {
    assert.ok(isAppManifest(JSON.parse(decode(await fixture(name)))), name);
  }
  assert.equal(
    isAppManifest({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", size: 1, digest: sha256Of(text("x")) },
      layers: [],
    }),
    false,
  );
  assert.equal(isAppManifest("nope"), false);
});

test("parse: what is not a compose-app v1 manifest is refused, naming the field", async () => {
  const base = JSON.parse(decode(await fixture("app-manifest.json.golden")));
  interface Editable {
    schemaVersion: number;
    mediaType: string;
    artifactType?: string;
    annotations?: Record<string, string>;
    config: { digest: string };
    layers: { mediaType?: unknown; digest: string; size?: unknown; annotations: Record<string, string> }[];
  }
  const variant = (change: (manifest: Editable) => void) => {
    const copy = structuredClone(base);
    change(copy);
    return text(JSON.stringify(copy));
  };
  const cases: [Uint8Array, string, RegExp][] = [
    [
      variant((m) => m.artifactType = "application/vnd.example+thing"),
      "invalid_input",
      /^shop: artifactType "application\/vnd\.example\+thing" is not application\/vnd\.fio\+compose-app/,
    ],
    [
      variant((m) => delete m.annotations),
      "invalid_input",
      /^shop: annotation "compose-app" is missing: not a compose app/,
    ],
    [
      variant((m) => m.annotations!["compose-app"] = "v2"),
      "unsupported",
      /^shop: annotation "compose-app" is "v2"; berth reads v1/,
    ],
    [
      variant((m) => m.layers[0].mediaType = "application/vnd.oci.image.layer.v1.tar+gzip"),
      "invalid_input",
      /^shop layers\[0\]\.mediaType: "application\/vnd\.oci\.image\.layer\.v1\.tar\+gzip"; an app bundle is application\/octet-stream/,
    ],
    [variant((m) => m.layers = []), "invalid_input", /^shop: layers is missing or empty/],
    [
      variant((m) => m.mediaType = "application/vnd.docker.distribution.manifest.v2+json"),
      "invalid_input",
      /^shop: mediaType "application\/vnd\.docker/,
    ],
    [
      variant((m) => delete m.layers[0].annotations["org.foundries.app.bundle.index.size"]),
      "invalid_input",
      /^shop layers\[0\]\.annotations: org\.foundries\.app\.bundle\.index\.size is missing/,
    ],
    [
      variant((m) => m.layers[0].annotations["org.foundries.app.bundle.index.size"] = "-1"),
      "invalid_input",
      /index\.size: "-1" is not a size/,
    ],
    [
      variant((m) => m.layers[0].digest = "not-a-digest"),
      "invalid_input",
      /^shop layers\[0\]\.digest: "not-a-digest" is not a valid digest/,
    ],
    [
      variant((m) => m.layers[1].digest = "sha256:../../../../tmp/victim"),
      "invalid_input",
      /^shop layers\[1\]\.digest: "sha256:\.\.\/\.\.\/\.\.\/\.\.\/tmp\/victim" is not a valid digest/,
    ],
    [
      variant((m) => m.layers[1].size = -2),
      "invalid_input",
      /^shop layers\[1\]\.size: -2 is not a size/,
    ],
    [
      variant((m) => m.layers[1].mediaType = 7),
      "invalid_input",
      /^shop layers\[1\]\.mediaType: not a media type/,
    ],
    [
      variant((m) => m.layers.push({ ...m.layers[0], digest: "sha256:../../../../tmp/victim" })),
      "invalid_input",
      /^shop: layers\[2\] \("sha256:\.\.\/\.\.\/\.\.\/\.\.\/tmp\/victim"\) is not part of a compose app/,
    ],
    [
      variant((m) => m.config.digest = `sha256:${"A".repeat(64)}`),
      "invalid_input",
      /^shop config\.digest: "sha256:A{64}" is not a valid digest/,
    ],
    [
      variant((m) => m.layers[0].annotations["org.foundries.app.bundle.index.digest"] = "sha256:x/../y"),
      "invalid_input",
      /index\.digest: "sha256:x\/\.\.\/y" is not a valid digest/,
    ],
    [variant((m) => m.layers[0].size = 1.5), "invalid_input", /^shop layers\[0\]\.size: 1\.5 is not a size/],
    [variant((m) => m.layers[0].size = -1), "invalid_input", /^shop layers\[0\]\.size: -1 is not a size/],
    [variant((m) => m.layers[0].size = "12"), "invalid_input", /^shop layers\[0\]\.size: "12" is not a size/],
    [
      variant((m) => m.layers[0].size = 2 ** 53),
      "invalid_input",
      /^shop layers\[0\]\.size: 9007199254740992 is not a size/,
    ],
    [
      variant((m) => m.layers[0].digest = "sha512:" + "a".repeat(128)),
      "invalid_input",
      /^shop layers\[0\]\.digest: "sha512:a+…" is not a valid digest/,
    ],
    [variant((m) => m.schemaVersion = 1), "unsupported", /^shop: schemaVersion 1/],
    [text("[1,2]"), "invalid_input", /^shop: not a JSON object/],
    [
      variant((m) => m.annotations!.pad = "x".repeat(52000)),
      "invalid_input",
      /^shop: \d+ bytes; a compose-app manifest is under 51200/,
    ],
  ];
  for (const [bytes, reason, pattern] of cases) {
    await expectError(() => parseAppManifest(bytes, "shop"), reason, pattern);
  }
  // Layers meta is known by its annotation, as devices know it: its media type is whatever the publisher's
  // registry answered, or nothing; a missing, null or empty one reads as application/json.
  const served = (mediaType: unknown) =>
    parseAppManifest(
      variant((m) =>
        mediaType === undefined ? delete m.layers[1].mediaType : m.layers[1].mediaType = mediaType
      ),
      "shop",
    ).layersMeta;
  for (
    const [mediaType, readAs] of [
      [undefined, "application/json"],
      [null, "application/json"],
      ["", "application/json"],
      ["\u0000", "application/json"],
      ["text/plain; charset=utf-8", "text/plain; charset=utf-8"],
      ["application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+gzip"],
    ]
  ) {
    const meta = served(mediaType);
    assert.equal(meta?.mediaType, readAs, JSON.stringify(mediaType));
    assert.equal(meta?.annotations?.["layers-meta"], "v1");
  }
  // A layers meta of another version is ignored, as devices ignore it.
  assert.equal(
    parseAppManifest(variant((m) => m.layers[1].annotations["layers-meta"] = "v2"), "shop").layersMeta,
    undefined,
  );
});

test("layers meta: parsed, and built from the factory's file as composeapp's publish does", async () => {
  const golden = await fixture("layers-meta.json.golden");
  const meta = parseLayersMeta(golden, "layers meta");
  assert.equal(meta.amd64.fs_block_size, 4096);
  const appLayers = Object.fromEntries(
    Object.entries(meta).map(([arch, { layers }]) => [
      arch,
      Object.entries(layers).map(([digest, layer]) => ({ digest, size: layer.archive_size ?? 0 })),
    ]),
  );
  assert.equal(decode(buildLayersMeta(meta, appLayers)), decode(golden));
  const one = JSON.parse(
    decode(buildLayersMeta(meta, { amd64: [{ digest: `sha256:${"b".repeat(64)}`, size: 99 }] })),
  );
  assert.deepEqual(one, {
    amd64: {
      fs_block_size: 4096,
      layers: { [`sha256:${"b".repeat(64)}`]: { size: 1024, usage: 8192, archive_size: 99 } },
    },
  });
  await expectError(
    () => buildLayersMeta(meta, { amd64: [{ digest: `sha256:${"f".repeat(64)}`, size: 1 }] }),
    "invalid_input",
    /layer sha256:f{64} \(amd64\) is not in the layers meta/,
  );
  await expectError(
    () => buildLayersMeta(meta, { riscv64: [] }),
    "invalid_input",
    /nothing about the app's layers for riscv64/,
  );
  await expectError(
    () =>
      parseLayersMeta(
        text(`{"amd64":{"fs_block_size":4096,"layers":{"sha256:${"a".repeat(64)}":{"size":-1,"usage":0}}}}`),
        "lm",
      ),
    "invalid_input",
    /^lm\.amd64\.layers\.sha256:a{64}\.size: -1 is not a valid number/,
  );
});

// ---------------------------------------------------------------------------------------------------------
// Hostile bundles

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** A ustar header block written by hand, for entry types the writer does not produce. */
function rawHeader(name: string, typeflag: string, size: number): Uint8Array {
  const block = new Uint8Array(512);
  block.set(text(name), 0);
  block.set(text("0000644\0"), 100);
  block.set(text(size.toString(8).padStart(11, "0") + "\0"), 124);
  block.set(text(typeflag), 156);
  block.set(text("ustar\u000000"), 257);
  block.fill(0x20, 148, 156);
  block.set(text(block.reduce((total, byte) => total + byte, 0).toString(8).padStart(6, "0") + "\0 "), 148);
  return block;
}

const COMPOSE: TarEntry = { name: "docker-compose.yml", type: "file", data: text("services: {}\n") };

/** A destination inside a parent that also holds a sentinel; the parent must look the same afterwards. */
async function sandbox(): Promise<{ base: string; dest: string; snapshot: () => Promise<string[]> }> {
  const base = await tempDir("berth-sandbox-");
  await Deno.mkdir(`${base}/outside`);
  await Deno.writeTextFile(`${base}/outside/sentinel`, "untouched");
  await Deno.mkdir(`${base}/dest`);
  const snapshot = async () => {
    const out: string[] = [];
    const walk = async (dir: string) => {
      for await (const entry of Deno.readDir(dir)) {
        const path = `${dir}/${entry.name}`;
        if (path === `${base}/dest`) continue;
        const info = await Deno.lstat(path);
        out.push(
          `${path.slice(base.length)} ${info.isDirectory ? "d" : info.isSymlink ? "l" : "f"} ${info.size}`,
        );
        if (entry.isDirectory) await walk(path);
      }
    };
    await walk(base);
    out.push(await Deno.readTextFile(`${base}/outside/sentinel`));
    return out.sort();
  };
  return { base, dest: `${base}/dest`, snapshot };
}

test("extract: hostile entries are refused, naming the entry, and nothing appears outside", async () => {
  const absolute = `/berth-test-absolute-${crypto.randomUUID()}`;
  const bomb = new Uint8Array(64 * 1024 * 1024);
  const cases: { name: string; tar: Uint8Array; pattern: RegExp; options?: Record<string, number> }[] = [
    {
      name: "../evil",
      tar: writeTar([COMPOSE, { name: "../evil", type: "file", data: text("x") }]),
      pattern: /entry "\.\.\/evil": the path has a "\.\." component/,
    },
    {
      name: "absolute path",
      tar: writeTar([COMPOSE, { name: absolute, type: "file", data: text("x") }]),
      pattern: new RegExp(`entry "${absolute}": absolute path`),
    },
    {
      name: "a/../../x",
      tar: writeTar([COMPOSE, { name: "a/../../x", type: "file", data: text("x") }]),
      pattern: /entry "a\/\.\.\/\.\.\/x": the path has a "\.\." component/,
    },
    {
      name: "symlink out, then a file through it",
      tar: writeTar([
        COMPOSE,
        { name: "link", type: "symlink", linkname: "../../outside" },
        { name: "link/file", type: "file", data: text("x") },
      ]),
      pattern: /entry "link": symlink to "\.\.\/\.\.\/outside" points outside the destination/,
    },
    {
      name: "symlink to /etc, then writing through it",
      tar: writeTar([
        COMPOSE,
        { name: "etc", type: "symlink", linkname: "/etc" },
        { name: "etc/berth-test-passwd", type: "file", data: text("root::0:0::/:/bin/sh\n") },
      ]),
      pattern: /entry "etc": symlink to "\/etc" points outside the destination \(absolute\)/,
    },
    {
      name: "a file through an in-bundle symlink",
      tar: writeTar([
        COMPOSE,
        { name: "sub", type: "dir" },
        { name: "s", type: "symlink", linkname: "sub" },
        { name: "s/file", type: "file", data: text("x") },
      ]),
      pattern: /entry "s\/file": goes through the symlink "s"; nothing is written through a symlink/,
    },
    {
      name: "a symlink that escapes through another symlink",
      tar: writeTar([
        COMPOSE,
        { name: "d", type: "dir" },
        { name: "d/up", type: "symlink", linkname: ".." },
        { name: "x", type: "symlink", linkname: "d/up/.." },
      ]),
      pattern: /entry "x": symlink to "d\/up\/\.\." leads outside the destination through other symlinks/,
    },
    {
      name: "a symlink turned into an escape by a later entry",
      tar: writeTar([
        COMPOSE,
        { name: "d", type: "dir" },
        { name: "y", type: "symlink", linkname: "d/q/../.." },
        { name: "d/q", type: "symlink", linkname: "../d" },
      ]),
      pattern: /entry "y": symlink leads outside the destination through other symlinks/,
    },
    {
      name: "char device",
      tar: writeTar([COMPOSE, { name: "null", type: "char", devmajor: 1, devminor: 3 }]),
      pattern: /entry "null": a char device; bundles may hold only files, directories and symlinks/,
    },
    {
      name: "block device",
      tar: writeTar([COMPOSE, { name: "sda", type: "block", devmajor: 8, devminor: 0 }]),
      pattern: /entry "sda": a block device/,
    },
    {
      name: "fifo",
      tar: writeTar([COMPOSE, { name: "pipe", type: "fifo" }]),
      pattern: /entry "pipe": a fifo/,
    },
    {
      name: "hard link",
      tar: writeTar([COMPOSE, { name: "h", type: "hardlink", linkname: "docker-compose.yml" }]),
      pattern: /entry "h": a hard link \(to "docker-compose\.yml"\)/,
    },
    {
      name: "compose file over 1 MiB",
      tar: writeTar([{ name: "docker-compose.yml", type: "file", data: new Uint8Array(1024 * 1024 + 1) }]),
      pattern: /entry "docker-compose\.yml": 1048577 bytes, over the limit of 1048576/,
    },
    {
      name: "file over the limit",
      tar: writeTar([COMPOSE, { name: "big.bin", type: "file", data: new Uint8Array(2000) }]),
      pattern: /entry "big\.bin": 2000 bytes, over the limit of 1024/,
      options: { maxFileBytes: 1024 },
    },
    {
      name: "files over the total",
      tar: writeTar([
        COMPOSE,
        ...[1, 2, 3].map((i): TarEntry => ({ name: `f${i}`, type: "file", data: new Uint8Array(1000) })),
      ]),
      pattern: /entry "f3": the bundle's files add up to more than 2048 bytes/,
      options: { maxTotalBytes: 2048 },
    },
    {
      name: "too many entries",
      tar: writeTar([
        COMPOSE,
        ...Array.from({ length: 10 }, (_, i): TarEntry => ({ name: `e${i}`, type: "file" })),
      ]),
      pattern: /entry "e4": more than 5 entries in the bundle/,
      options: { maxEntries: 5 },
    },
    {
      name: "a 64 MiB file of zeros (a few KiB compressed)",
      tar: writeTar([COMPOSE, { name: "zeros", type: "file", data: bomb }]),
      pattern: /entry "zeros": 67108864 bytes, over the limit of 16777216/,
      options: { maxFileBytes: 16 * 1024 * 1024 },
    },
    {
      name: "zeros after the end of the archive",
      tar: (() => {
        const tar = writeTar([COMPOSE]);
        const out = new Uint8Array(tar.length + 8 * 1024 * 1024);
        out.set(tar);
        return out;
      })(),
      pattern: /app bundle: more than 1048576 bytes follow the end-of-archive marker/,
    },
    {
      name: "a huge PAX header",
      tar: (() => {
        const tar = writeTar([COMPOSE, { name: "p".repeat(200), type: "file" }]);
        // Make the PAX header claim 10 MiB, fixing its checksum.
        const start = 1024;
        tar.set(
          new TextEncoder().encode((10 * 1024 * 1024).toString(8).padStart(11, "0") + "\0"),
          start + 124,
        );
        tar.fill(0x20, start + 148, start + 156);
        const sum = tar.subarray(start, start + 512).reduce((total, byte) => total + byte, 0);
        tar.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0") + "\0 "), start + 148);
        return tar;
      })(),
      pattern: /extended header of 10485760 bytes \(limit 65536\)/,
    },
    {
      name: "megabytes of PAX global headers (no entries, so no entry limit applies)",
      tar: (() => {
        const record = (value: string) => {
          const body = ` comment=${value}\n`;
          const length = body.length + String(body.length + 5).length;
          return `${length}${body}`;
        };
        const data = text(record("c".repeat(60_000)));
        assert.equal(Number(decode(data).split(" ")[0]), data.length);
        const header = rawHeader("pax_global_header", "g", data.length);
        const padded = new Uint8Array(Math.ceil(data.length / 512) * 512);
        padded.set(data);
        const parts = [writeTar([COMPOSE]).subarray(0, 1024)];
        for (let i = 0; i < 60; i++) parts.push(header, padded);
        parts.push(new Uint8Array(1024));
        return concat(parts);
      })(),
      pattern: /app bundle: expands to more than \d+ bytes/,
      options: { maxEntries: 50, maxTotalBytes: 1024 },
    },
    {
      name: "a path component too long for any file system",
      tar: writeTar([COMPOSE, { name: `dir/${"n".repeat(300)}`, type: "file", data: text("x") }]),
      pattern: /entry "dir\/n{300}": a path component is longer than 255 bytes/,
    },
    {
      name: "an entry twice",
      tar: writeTar([COMPOSE, { name: "docker-compose.yml", type: "file", data: text("again") }]),
      pattern: /entry "docker-compose\.yml": appears twice in the bundle/,
    },
    {
      name: "a file under a file",
      tar: writeTar([COMPOSE, { name: "docker-compose.yml/x", type: "file", data: text("x") }]),
      pattern: /entry "docker-compose\.yml\/x": goes through the file "docker-compose\.yml"/,
    },
    {
      name: "no compose file",
      tar: writeTar([{ name: "README.md", type: "file", data: text("hi") }]),
      pattern: /app bundle: has no docker-compose\.yml at its top level/,
    },
  ];
  for (const { name, tar, pattern, options } of cases) {
    const { dest, snapshot } = await sandbox();
    const before = await snapshot();
    await expectError(
      extractBundle(ReadableStream.from([await gzip(tar)]), dest, options),
      "invalid_input",
      pattern,
    ).catch((error) => {
      throw new Error(`${name}: ${error.message}`);
    });
    assert.deepEqual(await snapshot(), before, `${name}: nothing changed outside the destination`);
    await assert.rejects(Deno.lstat(absolute), Deno.errors.NotFound);
    await assert.rejects(Deno.lstat("/etc/berth-test-passwd"), Deno.errors.NotFound);
  }
});

Deno.test("bundle limits: 1 GiB per file and in all by default (composectl's), following limits.bundle", () => {
  assert.equal(DEFAULT_BUNDLE_LIMITS.maxFileBytes, 1024 * 1024 * 1024);
  assert.equal(DEFAULT_BUNDLE_LIMITS.maxTotalBytes, 1024 * 1024 * 1024);
  assert.equal(DEFAULT_BUNDLE_LIMITS.maxComposeBytes, 1024 * 1024);
  assert.deepEqual(bundleLimitsFor(4096), {
    ...DEFAULT_BUNDLE_LIMITS,
    maxFileBytes: 4096,
    maxTotalBytes: 4096,
  });
});

test("bundleFileBytes: sums the declared file sizes without writing, refusing what extraction would", async () => {
  const tar = writeTar([
    COMPOSE,
    { name: "d", type: "dir" },
    { name: "d/a", type: "file", data: new Uint8Array(3000) },
    { name: "link", type: "symlink", linkname: "d/a" },
  ]);
  const bundle = await gzip(tar);
  assert.equal(await bundleFileBytes(ReadableStream.from([bundle])), COMPOSE.data!.length + 3000);
  await expectError(
    bundleFileBytes(ReadableStream.from([bundle]), { ...bundleLimitsFor(2048), what: "shop bundle" }),
    "invalid_input",
    /^shop bundle: entry "d\/a": 3000 bytes, over the limit of 2048 \(limits\.bundle in the config file\)$/,
  );
});

test("extract: a stream that is not a gzip'd tar is refused", async () => {
  const { dest } = await sandbox();
  await expectError(
    extractBundle(ReadableStream.from([text("<html>not a bundle</html>")]), dest),
    "invalid_input",
    /^app bundle: cannot be read/,
  );
  const good = await gzip(writeTar([COMPOSE]));
  await expectError(
    extractBundle(ReadableStream.from([good.subarray(0, good.length - 8)]), dest, {
      what: "app bundle sha256:abc",
    }),
    "invalid_input",
    /^app bundle sha256:abc: cannot be read/,
  );
});
