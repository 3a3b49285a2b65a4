/**
 * The docs hold together: every relative link in README.md, build/README.md and docs/*.md names a file that
 * exists and, with a `#anchor` into a markdown file, a heading that file has (as GitHub names headings). A
 * newcomer who follows a link lands where it says. Pure file reading, no services.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The markdown files whose links are checked, relative to the repository root. */
async function docFiles(): Promise<string[]> {
  const files = ["README.md", "build/README.md"];
  for await (const entry of Deno.readDir(join(ROOT, "docs"))) {
    if (entry.isFile && entry.name.endsWith(".md")) files.push(`docs/${entry.name}`);
  }
  return files.sort();
}

/** The text outside fenced code blocks and inline code, where a `[x](y)` is a link and a `#` a heading. */
function prose(markdown: string): string[] {
  const lines: string[] = [];
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      lines.push("");
      continue;
    }
    lines.push(fenced ? "" : line.replace(/`[^`]*`/g, (code) => " ".repeat(code.length)));
  }
  return lines;
}

/** GitHub's anchor of a heading: its text lower-cased, punctuation dropped, spaces as hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/ /g, "-");
}

/** Every anchor a markdown text's headings give, with GitHub's -1, -2 … for repeated ones. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const found = new Set<string>();
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const heading = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const base = slug(heading[1]);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    found.add(count === 0 ? base : `${base}-${count}`);
  }
  return found;
}

/** The relative links of a markdown text, with the line each is on. */
function relativeLinks(markdown: string): { line: number; target: string }[] {
  const links: { line: number; target: string }[] = [];
  prose(markdown).forEach((text, index) => {
    for (const match of text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      const target = match[1];
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: — not a file here
      links.push({ line: index + 1, target });
    }
  });
  return links;
}

/** What is wrong with the relative links of `file` (a path under `root`), one line each. */
async function brokenLinks(root: string, file: string): Promise<string[]> {
  const text = await Deno.readTextFile(join(root, file));
  const problems: string[] = [];
  for (const { line, target } of relativeLinks(text)) {
    const [path, anchor] = target.split("#", 2) as [string, string | undefined];
    const resolved = path === "" ? join(root, file) : normalize(join(root, dirname(file), decodeURI(path)));
    const where = `${file}:${line}: (${target})`;
    if (relative(root, resolved).startsWith("..")) {
      problems.push(`${where} leaves the repository`);
      continue;
    }
    let isFile = false;
    try {
      isFile = (await Deno.stat(resolved)).isFile;
    } catch {
      problems.push(`${where} names ${relative(root, resolved)}, which does not exist`);
      continue;
    }
    if (anchor === undefined || !isFile || !resolved.endsWith(".md")) continue;
    if (!anchors(await Deno.readTextFile(resolved)).has(anchor)) {
      problems.push(`${where} names #${anchor}, which is not a heading of ${relative(root, resolved)}`);
    }
  }
  return problems;
}

Deno.test("every relative link in README.md and docs/ names an existing file and heading", async () => {
  const files = await docFiles();
  assert.ok(files.length > 3, `expected README.md and the docs/ pages, found ${files.join(", ")}`);
  const problems = (await Promise.all(files.map((file) => brokenLinks(ROOT, file)))).flat();
  assert.deepEqual(problems, []);
});

Deno.test("the link check finds a missing file, a missing heading and a link out of the repository", async () => {
  const root = await Deno.makeTempDir({ prefix: "berth-docs-links-" });
  try {
    await Deno.mkdir(join(root, "docs"));
    await Deno.writeTextFile(
      join(root, "docs/a.md"),
      [
        "# Page A",
        "## `berth status`",
        "## Crash-safety guarantees, and how they are tested",
        "```",
        "# not a heading",
        "[not a link](gone.md)",
        "```",
        "ok: [b](b.md), [self](#berth-status), [b's](b.md#the-binarys-permissions), [web](https://example.com)",
        "ok: [crash](#crash-safety-guarantees-and-how-they-are-tested), `[code](gone.md)`",
        "bad: [c](c.md), [anchor](b.md#nowhere), [code](#not-a-heading), [out](../../etc/passwd)",
      ].join("\n"),
    );
    await Deno.writeTextFile(join(root, "docs/b.md"), "# B\n\n## The binary's permissions\n");
    assert.deepEqual(await brokenLinks(root, "docs/a.md"), [
      "docs/a.md:10: (c.md) names docs/c.md, which does not exist",
      "docs/a.md:10: (b.md#nowhere) names #nowhere, which is not a heading of docs/b.md",
      "docs/a.md:10: (#not-a-heading) names #not-a-heading, which is not a heading of docs/a.md",
      "docs/a.md:10: (../../etc/passwd) leaves the repository",
    ]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("every source or test file the docs name in code spans exists", async () => {
  const missing: string[] = [];
  for (const file of await docFiles()) {
    const text = await Deno.readTextFile(join(ROOT, file));
    for (const match of text.matchAll(/`((?:src|tests|build)\/[\w./-]+\.(?:ts|yml|md|bb))`/g)) {
      try {
        await Deno.stat(join(ROOT, match[1]));
      } catch {
        missing.push(`${file}: ${match[1]}`);
      }
    }
  }
  assert.deepEqual(missing, [], "files the docs name that the tree no longer has (moved or renamed?)");
});

Deno.test("docs/internals.md's folder table names every file of src/, and only those", async () => {
  const text = await Deno.readTextFile(join(ROOT, "docs/internals.md"));
  const problems: string[] = [];
  for (const row of text.matchAll(/^\| `(src\/\w+\/)`\s*\|(.*)\|$/gm)) {
    const folder = row[1];
    const named = new Set([...row[2].matchAll(/`(\w+\.ts)`/g)].map((match) => match[1]));
    const present = new Set<string>();
    for await (const entry of Deno.readDir(join(ROOT, folder))) if (entry.isFile) present.add(entry.name);
    for (const name of present) if (!named.has(name)) problems.push(`${folder}${name} is not described`);
    for (const name of named) if (!present.has(name)) problems.push(`${folder}${name} does not exist`);
  }
  for await (const entry of Deno.readDir(join(ROOT, "src"))) {
    if (entry.isDirectory && !text.includes(`| \`src/${entry.name}/\``)) {
      problems.push(`src/${entry.name}/ has no row`);
    }
  }
  assert.deepEqual(problems, []);
});
