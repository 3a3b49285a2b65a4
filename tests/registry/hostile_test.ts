/**
 * berth against a registry that lies, stalls and floods (tests/harness/hostile_registry.ts): what a real
 * registry never sends. Every case runs `berth pull` as a separate process and holds it to the same
 * contract: exit 1 with one line on stderr naming the reference and what is wrong, nothing written outside
 * the store, a store that passes `berth fsck` — and, for the floods, a bounded peak RSS.
 *
 * The pulls run with `--json` so that stderr holds only the failure (progress lines go there otherwise),
 * and with short registry timeouts from a config file (the defaults are held to their promise in
 * default_timeouts_test.ts).
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir } from "../harness/env.ts";
import {
  generatedBody,
  type HostileRegistry,
  jsonResponse,
  sha256Digest,
} from "../harness/hostile_registry.ts";
import { MAX_REDIRECTS } from "../../src/registry/connection.ts";
import { RegistryPusher } from "../../src/registry/push.ts";
import { parseReference } from "../../src/oci/reference.ts";
import { BerthError } from "../../src/util/errors.ts";
import {
  assertRefused,
  blobPath,
  FAST_CONFIG,
  FLOOD_BYTES,
  hostile,
  manifestPath,
  pull,
} from "./hostile_cases.ts";

hostile(
  "the hostile registry's valid image pulls cleanly (the cases below start from it)",
  async (_, image) => {
    const result = await pull(image.ref, { config: FAST_CONFIG });
    assert.equal(result.run.code, 0, result.run.stderr);
    const fsck = await runBerth(["--store", `${result.dir}/store`, "fsck"]);
    assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
  },
);

// ---- stalls -------------------------------------------------------------------------------------------

hostile(
  "a stalled error body does not hold the pull: the status alone is reported",
  async (registry, image) => {
    registry.route(
      "GET",
      manifestPath(image),
      () => new Response(registry.stallingBody('{"errors":['), { status: 404 }),
    );
    const result = await pull(image.ref, { config: FAST_CONFIG });
    await assertRefused(result, image.ref, /not found in registry .*HTTP 404/);
    assert.ok(result.seconds < 10, `took ${result.seconds} s`);
  },
);

hostile("a stalled token response ends within the operation timeout", async (registry, image) => {
  registry.route("GET", manifestPath(image), () =>
    new Response(null, {
      status: 401,
      headers: { "WWW-Authenticate": `Bearer realm="http://${registry.host}/token",service="evil"` },
    }));
  registry.route("GET", "/token", () => new Response(registry.stallingBody('{"token":"'), { status: 200 }));
  const result = await pull(image.ref, { config: FAST_CONFIG });
  await assertRefused(result, image.ref, /did not deliver|no data/);
  assert.ok(result.seconds < 15, `took ${result.seconds} s`);
});

hostile(
  "a blob whose body always stalls fails the pull with registry_unreachable after a bounded time",
  async (registry, image) => {
    registry.route(
      "GET",
      blobPath(image, image.layer.digest),
      () =>
        new Response(registry.stallingBody(image.layer.bytes.subarray(0, 10)), {
          headers: { "Content-Length": String(image.layer.size) },
        }),
    );
    const result = await pull(image.ref, { config: FAST_CONFIG });
    await assertRefused(result, image.ref, new RegExp(`blob ${image.layer.digest}.*no data`));
    assert.ok(result.seconds < 20, `took ${result.seconds} s`);
  },
);

// ---- floods -------------------------------------------------------------------------------------------

hostile(
  "a 400 MB error body is not read: the pull fails with the status, in bounded memory",
  async (registry, image) => {
    registry.route(
      "GET",
      manifestPath(image),
      () => new Response(generatedBody(FLOOD_BYTES), { status: 404 }),
    );
    const result = await pull(image.ref, { config: FAST_CONFIG, measure: true });
    await assertRefused(result, image.ref, /not found in registry .*HTTP 404/);
  },
);

hostile("a 400 MB token response is refused in bounded memory", async (registry, image) => {
  registry.route("GET", manifestPath(image), () =>
    new Response(null, {
      status: 401,
      headers: { "WWW-Authenticate": `Bearer realm="http://${registry.host}/token"` },
    }));
  registry.route("GET", "/token", () => new Response(generatedBody(FLOOD_BYTES)));
  const result = await pull(image.ref, { config: FAST_CONFIG, measure: true });
  await assertRefused(result, image.ref, /token service .* more than \d+ bytes/);
});

hostile(
  "a 400 MB manifest without a Content-Length is refused in bounded memory",
  async (registry, image) => {
    registry.route("GET", manifestPath(image), () =>
      new Response(generatedBody(FLOOD_BYTES), {
        headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" },
      }));
    const result = await pull(image.ref, { config: FAST_CONFIG, measure: true });
    await assertRefused(result, image.ref, /manifest is over the \d+-byte limit/);
  },
);

hostile("400 MB error bodies of a blob, retried, are not read: bounded memory", async (registry, image) => {
  registry.route(
    "GET",
    blobPath(image, image.layer.digest),
    () => new Response(generatedBody(FLOOD_BYTES), { status: 500 }),
  );
  const result = await pull(image.ref, { config: FAST_CONFIG, measure: true });
  await assertRefused(result, image.ref, /HTTP 500/);
  assert.ok(registry.count("GET", blobPath(image, image.layer.digest)) >= 2, "a 500 is retried");
});

// ---- URLs a registry hands berth -----------------------------------------------------------------------

hostile(
  "a file: token realm is refused: no local file is read and sent as a token",
  async (registry, image) => {
    const secretDir = await scratchDir("secret-");
    const secret = "local-secret-3f9a0c";
    await Deno.writeTextFile(`${secretDir}/secret.json`, JSON.stringify({ token: secret }));
    registry.route(
      "GET",
      manifestPath(image),
      (request) =>
        request.headers.get("authorization") ? jsonResponse(200, {}) : new Response(null, {
          status: 401,
          headers: { "WWW-Authenticate": `Bearer realm="file://${secretDir}/secret.json"` },
        }),
    );
    const result = await pull(image.ref, { config: FAST_CONFIG });
    const line = await assertRefused(
      result,
      image.ref,
      /token realm "file:\/\/.*": berth goes only to https: URLs/,
    );
    assert.ok(line.includes(registry.host), line);
    assert.deepEqual(
      registry.requests.filter((seen) => seen.authorization !== null),
      [],
    );
    assert.ok(!result.run.stderr.includes(secret));
  },
);

hostile("a blob redirect to a file: URL is refused and names the URL", async (registry, image) => {
  registry.route(
    "GET",
    blobPath(image, image.layer.digest),
    () => new Response(null, { status: 307, headers: { Location: "file:///etc/passwd" } }),
  );
  const result = await pull(image.ref, { config: FAST_CONFIG });
  await assertRefused(
    result,
    image.ref,
    /redirect for blob .* "file:\/\/\/etc\/passwd": berth goes only to https:/,
  );
});

hostile("a redirect loop ends after the redirect limit with a clear error", async (registry, image) => {
  registry.route(
    "GET",
    manifestPath(image),
    (request) => new Response(null, { status: 302, headers: { Location: new URL(request.url).pathname } }),
  );
  const result = await pull(image.ref, { config: FAST_CONFIG });
  await assertRefused(
    result,
    image.ref,
    new RegExp(`redirected manifest .* more than ${MAX_REDIRECTS} times`),
  );
  assert.equal(registry.count("GET", manifestPath(image)), MAX_REDIRECTS + 1, "a loop is not retried");
});

// ---- lies ---------------------------------------------------------------------------------------------

hostile(
  "a Docker-Content-Digest that disagrees with the manifest body is refused",
  async (registry, image) => {
    const lie = `sha256:${"e".repeat(64)}`;
    registry.route("GET", manifestPath(image), () =>
      new Response(image.manifest.bytes, {
        headers: {
          "Content-Type": "application/vnd.oci.image.manifest.v1+json",
          "Docker-Content-Digest": lie,
        },
      }));
    const result = await pull(image.ref, { config: FAST_CONFIG });
    await assertRefused(
      result,
      image.ref,
      new RegExp(`hashes to ${image.manifest.digest} but the registry says ${lie}`),
    );
  },
);

/** A layer of `size` bytes whose first GET stalls half-way, so that the next one asks with Range. */
async function halfStalledLayer(registry: HostileRegistry, answerRange: (request: Request) => Response) {
  const layer = Uint8Array.from({ length: 256 * 1024 }, (_, i) => (i * 7 + (i >> 8)) & 0xff);
  const image = await registry.serveImage("evil/ranged", "1", { layer });
  const path = blobPath(image, image.layer.digest);
  registry.route(
    "GET",
    path,
    (request) =>
      request.headers.get("range")
        ? answerRange(request)
        : new Response(registry.stallingBody(image.layer.bytes.subarray(0, layer.length / 2)), {
          headers: { "Content-Length": String(layer.length) },
        }),
  );
  return { image, path, layer: image.layer };
}

hostile("a 206 whose Content-Range starts elsewhere than asked is refused", async (registry) => {
  const { image, layer } = await halfStalledLayer(registry, () =>
    new Response(layer.bytes, {
      status: 206,
      headers: { "Content-Range": `bytes 0-${layer.size - 1}/${layer.size}` },
    }));
  const result = await pull(image.ref, { config: FAST_CONFIG });
  await assertRefused(
    result,
    image.ref,
    /asked for bytes \d+-\d+ of \d+, registry answered Content-Range "bytes 0-/,
  );
});

hostile("a 206 whose Content-Range runs past the blob is refused", async (registry) => {
  const { image, layer } = await halfStalledLayer(registry, (request) => {
    const start = Number(/bytes=(\d+)-/.exec(request.headers.get("range")!)![1]);
    return new Response(generatedBody(layer.size - start + 1000), {
      status: 206,
      headers: { "Content-Range": `bytes ${start}-${layer.size + 999}/${layer.size + 1000}` },
    });
  });
  const result = await pull(image.ref, { config: FAST_CONFIG });
  await assertRefused(result, image.ref, /asked for bytes \d+-\d+ of \d+, registry answered Content-Range/);
});

hostile("a 200 answering a Range request has its prefix skipped: the pull succeeds", async (registry) => {
  const { image, path, layer } = await halfStalledLayer(registry, () => new Response(layer.bytes));
  const result = await pull(image.ref, { config: FAST_CONFIG });
  assert.equal(result.run.code, 0, result.run.stderr);
  assert.ok(registry.requests.some((seen) => seen.path === path && seen.range !== null), "asked with Range");
  const fsck = await runBerth(["--store", `${result.dir}/store`, "fsck"]);
  assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
});

hostile(
  "ESC sequences and control characters in a registry's error text never reach the terminal",
  async (registry, image) => {
    registry.route("GET", manifestPath(image), () =>
      jsonResponse(404, {
        errors: [{
          code: "NAME_UNKNOWN",
          message: "\x1b]0;owned\x07\x1b[2J\x1b[31mgone\r\nberth: forged line\x9b1m",
        }],
      }));
    const result = await pull(image.ref, { config: FAST_CONFIG });
    const line = await assertRefused(result, image.ref, /NAME_UNKNOWN: gone berth: forged line/);
    assert.ok(!line.includes("\x1b") && !line.includes("owned"), JSON.stringify(line));
  },
);

hostile(
  "an index of 10,000 platforms gives an error line that lists ten and counts the rest",
  async (registry, image) => {
    const manifests = Array.from({ length: 10_000 }, (_, i) => ({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: `sha256:${i.toString(16).padStart(64, "0")}`,
      size: 100,
      platform: { os: "plan9", architecture: `arch${i}` },
    }));
    const index = new TextEncoder().encode(
      JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests }),
    );
    registry.route(
      "GET",
      manifestPath(image),
      () => new Response(index, { headers: { "Content-Type": "application/vnd.oci.image.index.v1+json" } }),
    );
    const result = await pull(image.ref, { config: FAST_CONFIG });
    const line = await assertRefused(result, image.ref, /has no image for platform .* and 9990 more/);
    assert.ok(line.length < 600, `${line.length} characters`);
  },
);

hostile("an upload Location with a file: URL is refused before anything is sent there", async (registry) => {
  registry.route(
    "POST",
    "/v2/evil/up/blobs/uploads/",
    () => new Response(null, { status: 202, headers: { Location: "file:///tmp/berth-upload-target" } }),
  );
  const pusher = new RegistryPusher({ deadlineMs: 5_000, stallTimeoutMs: 1_000 });
  const bytes = new TextEncoder().encode("layer");
  try {
    await assert.rejects(
      pusher.pushBlob(parseReference(`${registry.host}/evil/up:1`), await sha256Digest(bytes), bytes),
      (error: unknown) =>
        error instanceof BerthError &&
        /registry 127\.0\.0\.1:\d+ sent a location for upload of blob .* "file:\/\/\/tmp\/berth-upload-target[^"]*": berth goes only to https:/
          .test(error.message),
    );
  } finally {
    await pusher.close();
  }
  assert.equal(await Deno.stat("/tmp/berth-upload-target").then(() => true, () => false), false);
});
