/** hosts.toml read as containerd reads it: order, defaults, paths, and refusals that name the key. */
import assert from "node:assert/strict";
import { findHostsFile, parseHostsFile } from "../../src/registry/hosts.ts";

const FILE = "/etc/berth/certs.d/docker.io/hosts.toml";

Deno.test("hosts.toml: [host] tables in the order written, then the server, with containerd's defaults", () => {
  const hosts = parseHostsFile(
    `server = "https://registry-1.docker.io"
[host."http://10.0.0.5:8471"]
  capabilities = ["pull", "resolve"]
  [host."http://10.0.0.5:8471".header]
    Authorization = "Bearer t"
[host."mirror.example/prefix"]
  ca = "mirror-ca.crt"
  client = [["c.cert", "/abs/c.key"]]
[host."https://raw.example/custom"]
  override_path = true
  dial_timeout = "1m30s"
`,
    FILE,
    "docker.io",
  );
  assert.deepEqual(hosts.map((host) => [host.host, host.scheme, host.path, host.mirror]), [
    ["10.0.0.5:8471", "http", "/v2", true],
    ["mirror.example", "https", "/prefix/v2", true],
    ["raw.example", "https", "/custom", true],
    ["registry-1.docker.io", "https", "/v2", false],
  ]);
  assert.deepEqual([...hosts[0].capabilities], ["pull", "resolve"]);
  assert.deepEqual([...hosts[1].capabilities].sort(), ["pull", "push", "resolve"]);
  assert.deepEqual(hosts[0].headers, [["Authorization", "Bearer t"]]);
  assert.deepEqual(hosts[1].caFiles, ["/etc/berth/certs.d/docker.io/mirror-ca.crt"]);
  assert.deepEqual(hosts[1].client, {
    certFile: "/etc/berth/certs.d/docker.io/c.cert",
    keyFile: "/abs/c.key",
  });
  assert.equal(hosts[2].timeoutMs, 90_000);
});

Deno.test("hosts.toml: without server, the registry itself comes last, its scheme probed as usual", () => {
  const hosts = parseHostsFile(`[host."http://m:5000"]\n`, FILE, "127.0.0.1:5000");
  assert.equal(hosts.length, 2);
  assert.equal(hosts[1].host, "127.0.0.1:5000");
  assert.equal(hosts[1].scheme, undefined);
  assert.equal(hosts[1].mirror, false);
});

Deno.test("hosts.toml: refusals name the file, the host and the key", () => {
  const cases: [string, RegExp][] = [
    [`nonsense = 1`, /unknown key "nonsense"/],
    [`[host."http://m"]\ncapabilities = ["pull", "fly"]`, /host "http:\/\/m": unknown capability "fly"/],
    [`[host."http://m"]\nskip_verify = true`, /skip_verify = true" is not supported/],
    [`[host."http://user:pw@m"]`, /without credentials/],
    [`[host."ftp://m"]`, /scheme must be http or https/],
    [`[host."http://m"]\nclient = ["a.pem", "b.pem"]`, /names 2 certificates/],
    [`[host."http://m".header]\nX = "a\\nb"`, /line break/],
    [`[host."http://m"]\ndial_timeout = "soon"`, /dial_timeout/],
    [`server = [`, /not valid TOML/],
  ];
  for (const [text, expected] of cases) {
    assert.throws(() => parseHostsFile(text, FILE, "docker.io"), (error: Error) => {
      assert.ok(error.message.startsWith(`${FILE}: `), error.message);
      assert.match(error.message, expected);
      return true;
    });
  }
});

Deno.test("hosts.toml: the first certs directory with the registry's file wins, else the first _default", async () => {
  const root = await Deno.makeTempDir();
  try {
    const [a, b] = [`${root}/a`, `${root}/b`];
    for (const path of [`${a}/_default`, `${b}/reg.example_5000_`, `${b}/other.example`]) {
      await Deno.mkdir(path, { recursive: true });
      await Deno.writeTextFile(`${path}/hosts.toml`, "");
    }
    assert.equal(await findHostsFile("reg.example:5000", [a, b]), `${b}/reg.example_5000_/hosts.toml`);
    assert.equal(await findHostsFile("other.example", [a, b]), `${b}/other.example/hosts.toml`);
    assert.equal(await findHostsFile("third.example", [a, b]), `${a}/_default/hosts.toml`);
    assert.equal(await findHostsFile("third.example", [b]), undefined);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
