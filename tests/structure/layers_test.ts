/**
 * The shape of src/, checked so that later work keeps it: imports point down the pipeline, no two files
 * import each other (directly or round a loop), no file is over 650 lines and no function over 80.
 * Pure: reads the source text, runs nothing.
 */
import assert from "node:assert/strict";

const SRC = new URL("../../src/", import.meta.url);

/**
 * The folders of src/ from the bottom up. A folder may import only folders of a lower rank; folders of one
 * rank are peers and import neither each other. Files directly in src/ (version.ts) are at the bottom.
 */
const RANKS: Record<string, number> = {
  ".": 0,
  util: 0,
  oci: 1,
  store: 2,
  registry: 2,
  trust: 2,
  fetch: 3,
  docker: 3,
  app: 4,
  agent: 5,
  status: 6,
  config: 7,
  cli: 8,
};
const MAX_FILE_LINES = 650;
const MAX_FUNCTION_LINES = 80;

/** Every .ts file under src/, as a path relative to src/. */
async function sourceFiles(dir = SRC, prefix = ""): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) {
      files.push(...await sourceFiles(new URL(`${entry.name}/`, dir), `${prefix}${entry.name}/`));
    } else if (entry.name.endsWith(".ts")) files.push(`${prefix}${entry.name}`);
  }
  return files.sort();
}

/** The relative modules a file imports: static, type-only, re-exports and dynamic imports alike. */
function importsOf(file: string, text: string): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^import\s+)["'](\.{1,2}\/[^"']+)["']/gm)) {
    found.push(new URL(match[1], new URL(file, SRC)).href.slice(SRC.href.length));
  }
  return found;
}

const folderOf = (file: string) => file.includes("/") ? file.slice(0, file.indexOf("/")) : ".";

async function readGraph(): Promise<Map<string, { text: string; imports: string[] }>> {
  const graph = new Map<string, { text: string; imports: string[] }>();
  for (const file of await sourceFiles()) {
    const text = await Deno.readTextFile(new URL(file, SRC));
    graph.set(file, { text, imports: importsOf(file, text) });
  }
  return graph;
}

Deno.test("layers: every folder of src/ has a rank, and imports only folders below its own", async () => {
  const graph = await readGraph();
  const wrong: string[] = [];
  for (const [file, { imports }] of graph) {
    const from = folderOf(file);
    assert.ok(from in RANKS, `src/${from}/ has no rank in this test: place it in the pipeline`);
    for (const target of imports) {
      assert.ok(graph.has(target), `src/${file} imports src/${target}, which does not exist`);
      const to = folderOf(target);
      if (to !== from && !(RANKS[to] < RANKS[from])) wrong.push(`src/${file} -> src/${target}`);
    }
  }
  assert.deepEqual(wrong, [], "imports that point up the pipeline or sideways between peers");
});

Deno.test("layers: no files of src/ import each other, directly or round a loop", async () => {
  const graph = await readGraph();
  const state = new Map<string, "open" | "done">();
  const loops: string[] = [];
  const visit = (file: string, path: string[]) => {
    if (state.get(file) === "done") return;
    if (state.get(file) === "open") {
      loops.push([...path.slice(path.indexOf(file)), file].join(" -> "));
      return;
    }
    state.set(file, "open");
    for (const target of graph.get(file)?.imports ?? []) visit(target, [...path, file]);
    state.set(file, "done");
  };
  for (const file of graph.keys()) visit(file, []);
  assert.deepEqual(loops, []);
});

Deno.test(`files: none in src/ is over ${MAX_FILE_LINES} lines`, async () => {
  const graph = await readGraph();
  const long = [...graph].map(([file, { text }]) => ({ file, lines: text.split("\n").length - 1 }))
    .filter(({ lines }) => lines > MAX_FILE_LINES);
  assert.deepEqual(long, []);
});

/**
 * Functions, methods and function-valued constants with their line counts. deno fmt's layout makes this
 * reliable enough: a body ends at the first later line that closes at the opening line's indentation.
 */
export function functionLengths(text: string): { name: string; line: number; lines: number }[] {
  const lines = text.split("\n");
  const found: { name: string; line: number; lines: number }[] = [];
  const start =
    /^( *)(?:export )?(?:default )?(?:(?:async )?function\*? ?([\w$]+)|(?:(?:static|async|get|set|private|public|protected|readonly|override) )*(#?[\w$]+)(?:<[^>]*>)?\(.*\)(?:: .*)? \{$|(?:const|let) ([\w$]+)(?:: [^=]+)? = (?:async )?(?:\([^)]*\)|[\w$]+)(?:: [^=]+)? => \{$)/;
  const keywords = new Set(["if", "for", "while", "switch", "catch", "with", "return", "function"]);
  lines.forEach((line, index) => {
    const match = start.exec(line);
    if (!match) return;
    const name = match[2] ?? match[3] ?? match[4];
    if (!name || keywords.has(name)) return;
    const indent = match[1];
    for (let end = index + 1; end < lines.length; end++) {
      if (new RegExp(`^${indent}\\}`).test(lines[end])) {
        found.push({ name, line: index + 1, lines: end - index + 1 });
        return;
      }
    }
  });
  return found;
}

Deno.test(`functions: none in src/ is over ${MAX_FUNCTION_LINES} lines`, async () => {
  const graph = await readGraph();
  const long = [...graph].flatMap(([file, { text }]) =>
    functionLengths(text).filter(({ lines }) => lines > MAX_FUNCTION_LINES)
      .map(({ name, line, lines }) => `src/${file}:${line} ${name}: ${lines} lines`)
  );
  assert.deepEqual(long, []);
});

Deno.test("functions: the length measure finds declarations, methods and arrow constants", () => {
  const text = [
    "export async function top(a: number): Promise<void> {",
    "  if (a) {",
    "  }",
    "}",
    "class A {",
    "  async #run<T>(job: () => T): Promise<T> {",
    "    return job();",
    "  }",
    "}",
    "const arrow = async (x: string) => {",
    "  return x;",
    "};",
  ].join("\n");
  assert.deepEqual(functionLengths(text), [
    { name: "top", line: 1, lines: 4 },
    { name: "#run", line: 6, lines: 3 },
    { name: "arrow", line: 10, lines: 3 },
  ]);
});
