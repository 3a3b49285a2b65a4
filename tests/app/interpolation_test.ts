/**
 * The `${VAR}` syntax publish interpolates, compose-go v1.20.2's: every form, nested defaults, escapes,
 * what counts as used or unset, and the errors. Pure logic; the expectations follow compose-go's
 * template.Substitute.
 */
import assert from "node:assert/strict";
import {
  interpolate,
  interpolateLabels,
  InterpolationError,
  noVariablesUsed,
  type VariableLookup,
} from "../../src/app/interpolation.ts";
import { formatComposeFile, parseComposeFile } from "../../src/app/compose_file.ts";

const VALUES: Record<string, string> = { TAG: "1.2", EMPTY: "", REGISTRY: "reg.example:5000", x_y1: "low" };
const lookup: VariableLookup = (name) => VALUES[name];

/** The interpolation of `template`, and the names it used and found unset. */
function run(template: string) {
  const use = noVariablesUsed();
  const value = interpolate(template, lookup, use);
  return { value, used: [...use.used].sort(), unset: [...use.unset].sort() };
}

Deno.test("interpolate: $VAR and ${VAR}, set, empty and unset (unset becomes empty and is reported)", () => {
  assert.deepEqual(run("app:$TAG"), { value: "app:1.2", used: ["TAG"], unset: [] });
  assert.deepEqual(run("app:${TAG}-x"), { value: "app:1.2-x", used: ["TAG"], unset: [] });
  assert.deepEqual(run("$TAG.$x_y1"), { value: "1.2.low", used: ["TAG", "x_y1"], unset: [] });
  assert.deepEqual(run("a${EMPTY}b"), { value: "ab", used: ["EMPTY"], unset: [] });
  assert.deepEqual(run("a${NOPE}b$NOPE2"), {
    value: "ab",
    used: ["NOPE", "NOPE2"],
    unset: ["NOPE", "NOPE2"],
  });
  assert.deepEqual(run("${REGISTRY}/berth-test/app-a:${TAG}"), {
    value: "reg.example:5000/berth-test/app-a:1.2",
    used: ["REGISTRY", "TAG"],
    unset: [],
  });
});

Deno.test("interpolate: defaults :- and -, alternatives :+ and +", () => {
  assert.equal(run("${TAG:-d}").value, "1.2");
  assert.equal(run("${EMPTY:-d}").value, "d");
  assert.equal(run("${NOPE:-d}").value, "d");
  assert.equal(run("${TAG-d}").value, "1.2");
  assert.equal(run("${EMPTY-d}").value, "");
  assert.equal(run("${NOPE-d}").value, "d");
  assert.equal(run("${TAG:+alt}").value, "alt");
  assert.equal(run("${EMPTY:+alt}").value, "");
  assert.equal(run("${NOPE:+alt}").value, "");
  assert.equal(run("${TAG+alt}").value, "alt");
  assert.equal(run("${EMPTY+alt}").value, "alt");
  assert.equal(run("${NOPE+alt}").value, "");
  // A default is not a warning, and it may hold anything up to the closing brace.
  assert.deepEqual(run("${NOPE:-a-b:c/d}"), { value: "a-b:c/d", used: ["NOPE"], unset: [] });
  assert.equal(run("${NOPE:-}").value, "");
});

Deno.test("interpolate: nested defaults, and the argument is interpolated whether used or not", () => {
  assert.deepEqual(run("${NOPE:-${TAG}}"), { value: "1.2", used: ["NOPE", "TAG"], unset: [] });
  assert.deepEqual(run("${NOPE:-${NOPE2:-x}}-y"), { value: "x-y", used: ["NOPE", "NOPE2"], unset: [] });
  assert.deepEqual(run("${TAG:-${OTHER}}"), { value: "1.2", used: ["OTHER", "TAG"], unset: ["OTHER"] });
  // Only `${` opens a level: a bare `{` in a default does not.
  assert.equal(run("${NOPE:-{x}}").value, "{x}");
});

Deno.test("interpolate: :? and ? fail when unset (or empty), with the message interpolated", () => {
  assert.equal(run("${TAG:?needed}").value, "1.2");
  assert.equal(run("${TAG?needed}").value, "1.2");
  assert.equal(run("${EMPTY?needed}").value, "");
  const fails = (template: string, message: RegExp) =>
    assert.throws(
      () => run(template),
      (error) => error instanceof InterpolationError && message.test(error.message),
    );
  fails("${EMPTY:?needed}", /^required variable EMPTY is missing a value: needed$/);
  fails("${NOPE:?}", /^required variable NOPE is missing a value$/);
  fails("${NOPE?set TAG=$TAG}", /^required variable NOPE is missing a value: set TAG=1.2$/);
});

Deno.test("interpolate: $$ is a literal $, a lone $ stays, malformed ${ is an error", () => {
  assert.deepEqual(run("a$$b $${TAG} $$$TAG"), { value: "a$b ${TAG} $1.2", used: ["TAG"], unset: [] });
  assert.equal(run("cost $5, $ and $-x and $").value, "cost $5, $ and $-x and $");
  for (const bad of ["${", "${TAG", "${}", "${1X}", "${TAG:x}", "${TAG!}", "${A B}", "${NOPE:-x\ny}"]) {
    assert.throws(
      () => run(bad),
      (error) => error instanceof InterpolationError && /invalid interpolation format/.test(error.message),
      bad,
    );
  }
});

Deno.test("interpolateLabels: mapping values and whole list items, other labels and fields untouched", () => {
  const text = [
    "services:",
    "  web:",
    "    image: ${TAG}",
    "    environment:",
    "      A: ${TAG}",
    "    labels:",
    "      version: v${TAG} # kept comment",
    "      plain: '$$x'",
    "      number: 3",
    "  api:",
    "    image: x",
    "    labels:",
    '      - "k${TAG}=${NOPE:-d}"',
    "      - fixed=1",
    "",
  ].join("\n");
  const use = noVariablesUsed();
  const compose = interpolateLabels(parseComposeFile(new TextEncoder().encode(text), "f.yml"), lookup, use);
  const out = new TextDecoder().decode(formatComposeFile(compose));
  assert.match(out, /version: v1\.2 # kept comment/);
  assert.deepEqual(compose.services[0].config.labels, { version: "v1.2", plain: "$x", number: 3 });
  assert.deepEqual(compose.services[1].config.labels, ["k1.2=d", "fixed=1"]);
  // Only labels: image and environment are left as written.
  assert.equal(compose.services[0].image, "${TAG}");
  assert.deepEqual(compose.services[0].config.environment, { A: "${TAG}" });
  assert.deepEqual([...use.used].sort(), ["NOPE", "TAG"]);
  assert.throws(
    () =>
      interpolateLabels(
        parseComposeFile(
          new TextEncoder().encode("services:\n  w:\n    image: x\n    labels:\n      a: ${NOPE:?why}\n"),
          "f.yml",
        ),
        lookup,
        noVariablesUsed(),
      ),
    /f\.yml: services\.w\.labels\.a: required variable NOPE is missing a value: why/,
  );
});
