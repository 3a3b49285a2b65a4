/**
 * Every exported function, class, type and constant of src/ has a doc comment stating its promise, right
 * above it, so a reader learns what a name guarantees without reading its body. Pure: reads the source.
 */
import assert from "node:assert/strict";

const SRC = new URL("../../src/", import.meta.url);

/** The exported names of a file that have no `/** … *\/` comment ending on the line above them. */
export function undocumentedExports(text: string): string[] {
  const lines = text.split("\n");
  const missing: string[] = [];
  lines.forEach((line, index) => {
    const exported =
      /^export (?:default )?(?:declare )?(?:async )?(?:function\*?|class|abstract class|interface|type|const|let|enum) ([\w$]+)/
        .exec(line);
    if (!exported) return;
    let above = index - 1;
    while (above >= 0 && lines[above].trim().startsWith("//")) above--;
    if (above < 0 || !lines[above].trim().endsWith("*/")) missing.push(`${exported[1]} (line ${index + 1})`);
  });
  return missing;
}

async function* sourceFiles(dir: URL, prefix = ""): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) yield* sourceFiles(new URL(`${entry.name}/`, dir), `${prefix}${entry.name}/`);
    else if (entry.name.endsWith(".ts")) yield `${prefix}${entry.name}`;
  }
}

Deno.test("every export of src/ has a doc comment", async () => {
  const missing: string[] = [];
  for await (const file of sourceFiles(SRC)) {
    const text = await Deno.readTextFile(new URL(file, SRC));
    for (const name of undocumentedExports(text)) missing.push(`src/${file}: ${name}`);
  }
  assert.deepEqual(missing.sort(), []);
});

Deno.test("the doc-comment check tells documented exports from bare ones", () => {
  const text = [
    "/** Documented. */",
    "export const A = 1;",
    "",
    "export function b() {}",
    "/**",
    " * Documented over lines.",
    " */",
    "// a remark between",
    "export interface C {}",
    "export type D = string;",
  ].join("\n");
  assert.deepEqual(undocumentedExports(text), ["b (line 4)", "D (line 10)"]);
});
