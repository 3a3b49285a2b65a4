/**
 * The status page in a real browser: Debian's headless Chromium loads `GET /` from a real server, runs the
 * page's script against `/status`, and prints the DOM, which must show what the source says. The test
 * harness installs chromium (tests/harness/services.ts); run alone without it, these tests say so and are
 * skipped.
 */
import assert from "node:assert/strict";
import { serveStatus } from "../../src/status/server.ts";
import type { Status } from "../../src/agent/status_schema.ts";
import { FixedSource, sampleStatus } from "./fixture.ts";

const CHROMIUM = ["chromium", "chromium-browser"].map(findOnPath).find((path) => path !== undefined);
if (!CHROMIUM) {
  console.warn(
    "status page tests skipped: no chromium on PATH (apt-get install chromium; `deno task test` installs it)",
  );
}

function findOnPath(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/bin"])) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Loads `url` in a fresh headless Chromium and returns the DOM after the scripts ran for 5 s of page time. */
async function dumpDom(url: string): Promise<string> {
  const profile = await Deno.makeTempDir({ prefix: "berth-chromium-" });
  try {
    const output = await new Deno.Command(CHROMIUM!, {
      args: [
        "--headless",
        "--no-sandbox", // tests run as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--user-data-dir=${profile}`,
        "--dump-dom",
        "--virtual-time-budget=5000",
        url,
      ],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
    const dom = new TextDecoder().decode(output.stdout);
    if (!output.success || !dom.includes("</html>")) {
      const stderr = new TextDecoder().decode(output.stderr).trim().split("\n").slice(-15).join("\n");
      throw new Error(`chromium failed (exit ${output.code}) loading ${url}:\n${stderr}`);
    }
    return dom;
  } finally {
    await Deno.remove(profile, { recursive: true });
  }
}

/** A source that counts requests and moves the first app's progress on after the first answer. */
class MovingSource extends FixedSource {
  requests = 0;
  override snapshot(): Status {
    this.requests++;
    const status = sampleStatus();
    if (this.requests === 1) status.apps[0].progress!.bytesDone = 10_000_000; // 10%, then 42%
    // An exit code the page must not show: a running container's last one (0 before it ever exited).
    status.apps[1].services = [
      { name: "reader", state: "running", exitCode: 0, restartCount: 0 },
      { name: "cache", state: "restarting", exitCode: 137, restartCount: 4 },
      { name: "migrate", state: "exited", exitCode: 3 },
    ];
    status.apps.push({ ...status.apps[1], name: "<img src=x onerror=alert(1)>", state: "failed" });
    return status;
  }
}

/** The element with `attribute` (e.g. `data-app="shop"`) up to the next app card. */
function card(dom: string, name: string): string {
  const start = dom.indexOf(`data-app="${name}"`);
  assert.ok(start >= 0, `no card for ${name} in:\n${dom}`);
  const next = dom.indexOf('class="app"', start);
  return dom.slice(start, next < 0 ? undefined : next);
}

Deno.test({
  name:
    "status page in headless Chromium: an app mid-fetch with its state, 42% and bytes, refreshed; exit codes only of exited services",
  ignore: !CHROMIUM,
  async fn() {
    const source = new MovingSource();
    const server = await serveStatus("127.0.0.1:0", source, {});
    try {
      const dom = await dumpDom(`${server.url}/`);
      const shop = card(dom, "shop");
      assert.match(shop, /<strong class="name">shop<\/strong>/);
      assert.match(shop, /<span class="state updating">updating<\/span>/);
      assert.match(
        shop,
        /<span class="percent">42%<\/span> 40\.5 MiB of 95\.4 MiB, 7\/12 blobs, 1\.1 MiB\/s/,
      );
      assert.match(shop, /sha256:a1a1a1a1a1a1/);
      assert.match(shop, /sha256:b2b2b2b2b2b2/);
      assert.match(shop, /<li>db: running, 2 restarts<\/li>/);
      const sensor = card(dom, "sensor");
      assert.match(sensor, /<span class="state running">running<\/span>/);
      assert.doesNotMatch(sensor, /<progress|class="percent"/, "no progress for an app that is not fetching");
      assert.match(sensor, /<li>reader: running<\/li><li>cache: restarting, 4 restarts<\/li>/);
      assert.match(sensor, /<li>migrate: exited, exit 3<\/li>/);
      assert.match(dom, /<span id="agent-state" class="state">reconciling<\/span>/);
      assert.match(dom, /<span id="offline">yes<\/span>/);
      assert.match(dom, /178\.8 MiB in 41 blobs/);
      assert.match(dom, /<span class="host">10\.0\.0\.5:8471: 1\.0 KiB served, 0 errors<\/span>/);
      assert.match(dom, /<span class="host">registry\.example: 0 B served, 2 errors, skipped until /);
      // data is shown as text, never parsed as HTML
      assert.match(dom, /<strong class="name">&lt;img src=x onerror=alert\(1\)&gt;<\/strong>/);
      assert.ok(
        source.requests >= 2,
        `the page asked ${source.requests} time(s) in 5 s; it refreshes every 2 s`,
      );
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "status page in headless Chromium: the token from #token=… is sent; without it the page asks for it",
  ignore: !CHROMIUM,
  async fn() {
    const token = "page+token/with=odd chars";
    const source = new FixedSource();
    const server = await serveStatus("127.0.0.1:0", source, { token });
    try {
      const dom = await dumpDom(`${server.url}/#token=${encodeURIComponent(token)}`);
      assert.match(card(dom, "shop"), /<span class="percent">42%<\/span>/);
      assert.match(dom, /<form id="login" hidden="">/, "the token form stays hidden");
      assert.doesNotMatch(dom, /page\+token|odd chars/, "the token does not end up in the page");

      const asking = await dumpDom(`${server.url}/`);
      assert.match(asking, /<form id="login">/, `the page must ask for the token:\n${asking}`);
      assert.doesNotMatch(asking, /data-app=/);

      const wrong = await dumpDom(`${server.url}/#token=nope`);
      assert.match(wrong, /<form id="login">/);
      assert.match(wrong, /That token was refused\./);
      assert.doesNotMatch(wrong, /data-app=/);
    } finally {
      await server.close();
    }
  },
});
