/** Error messages: a wrapper's line does not repeat what its cause already said. */
import assert from "node:assert/strict";
import { BerthError, withoutRepeats } from "../../src/util/errors.ts";

Deno.test("a cause's head that the wrapper already said is dropped; values and other text stay", () => {
  assert.equal(
    withoutRepeats(
      "cannot reach registry 10.0.0.1:5000 for manifest 10.0.0.1:5000/a:1 after 5 attempts: " +
        "cannot reach registry 10.0.0.1:5000: connection refused",
    ),
    "cannot reach registry 10.0.0.1:5000 for manifest 10.0.0.1:5000/a:1 after 5 attempts: connection refused",
  );
  assert.equal(withoutRepeats("store /s: store /s: permission denied"), "store /s: permission denied");
  // Only phrases count: a repeated value is information, not a repeat.
  assert.equal(withoutRepeats("tag 1: 1"), "tag 1: 1");
  assert.equal(withoutRepeats("limit: 4194304: 4194304 bytes"), "limit: 4194304: 4194304 bytes");
  assert.equal(withoutRepeats("a: b c: d"), "a: b c: d");
  assert.equal(
    new BerthError("registry_unreachable", "cannot reach x for y: cannot reach x: refused").message,
    "cannot reach x for y: refused",
  );
});
