import assert from "node:assert/strict";
import {
  listSome,
  MAX_MESSAGE_CHARS,
  MAX_OUTSIDE_TEXT_CHARS,
  messageLine,
  outsideText,
  quoted,
} from "../../src/util/text.ts";

Deno.test("outside text loses ESC sequences, control characters and bidi overrides, and stays on one line", () => {
  assert.equal(
    outsideText("a\x1b[31mred\x1b[0m \x1b]0;title\x07b\r\nc\td\u202ee\x9b2Jf\x00g"),
    "ared b c d ef g",
  );
  assert.equal(outsideText("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"), "link");
});

Deno.test("outside text is cut at its limit", () => {
  const long = "x".repeat(MAX_OUTSIDE_TEXT_CHARS + 50);
  assert.equal(outsideText(long), `${"x".repeat(MAX_OUTSIDE_TEXT_CHARS)}…`);
  assert.equal(outsideText("abcdef", 3), "abc…");
});

Deno.test("a long list names its first ten and counts the rest", () => {
  assert.equal(listSome(["a", "b"]), "a, b");
  const items = Array.from({ length: 10_000 }, (_, i) => `p${i}`);
  assert.equal(listSome(items), "p0, p1, p2, p3, p4, p5, p6, p7, p8, p9 and 9990 more");
});

Deno.test("a value is quoted short and escaped; an error line leaves as one bounded line", () => {
  assert.equal(quoted("sha256:../x"), '"sha256:../x"');
  assert.equal(quoted("a\u0000\x1b[2J"), '"a\\u0000\\u001b[2J"');
  assert.equal(quoted(1.5), "1.5");
  assert.equal(quoted(undefined), "nothing");
  assert.equal(quoted("y".repeat(200)), `"${"y".repeat(80)}…"`);
  assert.equal(messageLine("one\nline\x1b[31m"), "one line");
  assert.equal(messageLine("z".repeat(MAX_MESSAGE_CHARS * 3)).length, MAX_MESSAGE_CHARS + 1);
});
