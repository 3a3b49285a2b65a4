import assert from "node:assert/strict";
import { GoJsonMap, marshalGoJson } from "../../src/util/go_json.ts";

const json = (value: unknown, indent?: string) => new TextDecoder().decode(marshalGoJson(value, indent));

Deno.test("Go maps are written with keys in UTF-8 byte order, structs in field order without undefined fields", () => {
  assert.equal(
    json({
      z: 1,
      a: new GoJsonMap({ "é": 1, "z": 2, "Z": 3, "\u{1F600}": 4, "\uFFFD": 5 }),
      skipped: undefined,
    }),
    '{"z":1,"a":{"Z":3,"z":2,"é":1,"\uFFFD":5,"\u{1F600}":4}}',
  );
});

Deno.test("<, >, &, U+2028 and U+2029 are escaped as Go's encoder escapes them", () => {
  assert.equal(json("<a&b>\u2028\u2029"), '"\\u003ca\\u0026b\\u003e\\u2028\\u2029"');
});

Deno.test("MarshalIndent puts each element on its own line; empty collections stay on one", () => {
  assert.equal(
    json({ a: [1, 2], b: {}, c: [] }, "   "),
    '{\n   "a": [\n      1,\n      2\n   ],\n   "b": {},\n   "c": []\n}',
  );
});

Deno.test("numbers that are not safe integers are refused", () => {
  assert.throws(() => json({ size: 1.5 }), /1\.5 is not an integer/);
});
