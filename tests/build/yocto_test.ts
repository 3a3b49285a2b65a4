/**
 * The Yocto recipe's static facts (no bitbake can run here): its version is berth's, the architectures map
 * to the binaries `deno task compile` writes (build/out/berth-<arch>, arch from the Rust target triple), the
 * files it fetches exist in the repository, and what it installs is where the unit and the CLI look.
 */
import assert from "node:assert/strict";
import { VERSION } from "../../src/version.ts";
import { DEFAULT_CONFIG_FILE } from "../../src/config/defaults.ts";

const YOCTO = new URL("../../build/yocto/", import.meta.url).pathname;
const BUILD = new URL("../../build/", import.meta.url).pathname;
/** The targets `deno task compile` builds (issue 5): the binary is berth-<first part of the triple>. */
const COMPILE_TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];

const recipes = [...Deno.readDirSync(YOCTO)].map((entry) => entry.name).filter((name) =>
  name.endsWith(".bb")
);

function recipe(): string {
  return Deno.readTextFileSync(`${YOCTO}berth_${VERSION}.bb`);
}

/** The value of `NAME = "..."` (one assignment, continuation lines joined). */
function assignment(text: string, name: string): string {
  const match = new RegExp(`^${name.replace(/[$:{}]/g, "\\$&")} \\+?= "((?:[^"\\\\]|\\\\[\\s\\S])*)"`, "m")
    .exec(text);
  assert.ok(match, `${name} is assigned`);
  return match[1].replace(/\\\n/g, " ").replace(/\s+/g, " ").trim();
}

Deno.test("the recipe is named for berth's version, and it is the only one", () => {
  assert.deepEqual(recipes, [`berth_${VERSION}.bb`]);
});

Deno.test("the recipe maps aarch64 and x86_64 to deno task compile's binaries, and nothing else", () => {
  const map = /binaries = (\{[^}]*\})/.exec(recipe());
  assert.ok(map, "berth_binary's map");
  const binaries = JSON.parse(map[1]) as Record<string, string>;
  const expected = Object.fromEntries(
    COMPILE_TARGETS.map((triple) => triple.split("-")[0]).map((arch) => [arch, `berth-${arch}`]),
  );
  assert.deepEqual(binaries, expected);
  assert.match(recipe(), /bb\.fatal\("berth: no prebuilt binary for TARGET_ARCH/);
  assert.equal(assignment(recipe(), "COMPATIBLE_HOST"), "(aarch64|x86_64).*-linux.*");
  for (const arch of Object.keys(binaries)) {
    assert.ok(new RegExp(assignment(recipe(), "COMPATIBLE_HOST")).test(`${arch}-poky-linux`), arch);
  }
  assert.ok(!new RegExp(assignment(recipe(), "COMPATIBLE_HOST")).test("arm-poky-linux-gnueabi"));
});

Deno.test("the recipe fetches the unit and the config from the repository and installs them where berth looks", () => {
  const text = recipe();
  const sources = assignment(text, "SRC_URI").split(" ").map((uri) => uri.replace(/^file:\/\//, ""));
  assert.deepEqual(sources, ["${BERTH_BINARY}", "berth.service", "config.yml"]);
  // The README tells to copy these two from the repository into files/.
  assert.ok(Deno.statSync(`${BUILD}systemd/berth.service`).isFile);
  assert.ok(Deno.statSync(`${BUILD}config.yml`).isFile);
  assert.match(text, /install -m 0755 \$\{BERTH_FILES\}\/\$\{BERTH_BINARY\} \$\{D\}\$\{bindir\}\/berth$/m);
  const unit = Deno.readTextFileSync(`${BUILD}systemd/berth.service`);
  assert.match(unit, /^ExecStart=\/usr\/bin\/berth /m, "${bindir} is /usr/bin");
  assert.match(
    text,
    /install -m 0644 \$\{BERTH_FILES\}\/config\.yml \$\{D\}\$\{sysconfdir\}\/berth\/config\.yml$/m,
  );
  assert.equal(DEFAULT_CONFIG_FILE, "/etc/berth/config.yml");
  assert.equal(assignment(text, "CONFFILES:${PN}"), "${sysconfdir}/berth/config.yml");
  assert.match(text, /^inherit systemd$/m);
  assert.equal(assignment(text, "SYSTEMD_SERVICE:${PN}"), "berth.service");
  assert.equal(assignment(text, "SYSTEMD_AUTO_ENABLE:${PN}"), "enable");
  assert.deepEqual(assignment(text, "RDEPENDS:${PN}").split(" "), ["docker", "docker-compose", "coreutils"]);
  assert.equal(assignment(text, "INHIBIT_PACKAGE_STRIP"), "1", "stripping would cut off the program");
});

Deno.test("the recipe and the bbappend use the new override syntax only", () => {
  for (const file of [`berth_${VERSION}.bb`, "examples/berth_%.bbappend"]) {
    const text = Deno.readTextFileSync(`${YOCTO}${file}`);
    assert.doesNotMatch(text, /_\$\{PN\}|_(append|prepend|remove)\b/, `${file}: old _override syntax`);
  }
});

Deno.test("the bbappend example moves the store to the kept partition on the line config.yml has", () => {
  const bbappend = Deno.readTextFileSync(`${YOCTO}examples/berth_%.bbappend`);
  const sed = /sed -i 's\|\^(# store: )\.\*\$\|store: \$\{BERTH_PERSIST_DIR\}\/store\|'/.exec(bbappend);
  assert.ok(sed, "the bbappend rewrites the commented store line");
  const config = Deno.readTextFileSync(`${BUILD}config.yml`);
  assert.equal(config.split("\n").filter((line) => line.startsWith(sed[1])).length, 1, "one such line");
  for (const name of ["persist.mount", "berth-persist.conf"]) {
    assert.ok(bbappend.includes(`file://${name}`), name);
    assert.ok(Deno.statSync(`${YOCTO}examples/berth/${name}`).isFile, name);
  }
});
