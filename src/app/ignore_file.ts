/**
 * The project's `.composeappignores`: dockerignore syntax with moby/patternmatcher's semantics, as
 * composeapp's publish applies them when it builds a bundle.
 */
import { BerthError } from "../util/errors.ts";
import { join, readFileIfExists } from "../util/fs.ts";
import { IGNORE_FILE } from "./bundle_format.ts";

/** One pattern of the ignore file; an exclusion ("!pattern") takes back what earlier patterns left out. */
export interface IgnorePattern {
  text: string;
  regex: RegExp;
  exclusion: boolean;
}

/** Go's path.Clean. */
function cleanPath(path: string): string {
  const rooted = path.startsWith("/");
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part !== "..") out.push(part);
    else if (out.length > 0 && out.at(-1) !== "..") out.pop();
    else if (!rooted) out.push("..");
  }
  const joined = out.join("/");
  return rooted ? `/${joined}` : joined || ".";
}

/** patternmatcher's translation of a pattern into a regular expression. */
function patternRegex(pattern: string): RegExp {
  let source = "^";
  const chars = [...pattern];
  for (let i = 0; i < chars.length; i++) {
    const char = chars[i];
    if (char === "*") {
      if (chars[i + 1] === "*") {
        i++;
        if (chars[i + 1] === "/") i++;
        source += i + 1 >= chars.length ? ".*" : "(.*/)?";
      } else {
        source += "[^/]*";
      }
    } else if (char === "?") source += "[^/]";
    else if (".+()|{}$".includes(char)) source += `\\${char}`;
    else if (char === "\\") source += i + 1 < chars.length ? `\\${chars[++i]}` : "\\\\";
    else source += char;
  }
  return new RegExp(source + "$");
}

/** The patterns of the project's ignore file (ignorefile.ReadAll + patternmatcher.New). */
export async function loadIgnorePatterns(dir: string): Promise<IgnorePattern[]> {
  const bytes = await readFileIfExists(join(dir, IGNORE_FILE));
  if (bytes === undefined) return [];
  const lines = new TextDecoder().decode(bytes).replace(/^\uFEFF/, "").split("\n");
  const texts: string[] = [];
  for (const line of lines) {
    if (line.startsWith("#")) continue;
    let pattern = line.trim();
    if (pattern === "") continue;
    const invert = pattern.startsWith("!");
    if (invert) pattern = pattern.slice(1).trim();
    if (pattern !== "") {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern.startsWith("/")) pattern = pattern.slice(1);
    }
    texts.push(invert ? `!${pattern}` : pattern);
  }
  // The ignore file leaves itself out only when it has a pattern, as composeapp does.
  if (texts.length > 0) texts.push(IGNORE_FILE);
  return texts.map((text) => {
    let cleaned = cleanPath(text.trim());
    const exclusion = cleaned.startsWith("!");
    if (exclusion) cleaned = cleaned.slice(1);
    if (cleaned === "") {
      throw new BerthError("invalid_input", `${join(dir, IGNORE_FILE)}: illegal exclusion pattern "!"`);
    }
    try {
      return { text: cleaned, regex: patternRegex(cleaned), exclusion };
    } catch {
      throw new BerthError("invalid_input", `${join(dir, IGNORE_FILE)}: bad pattern ${JSON.stringify(text)}`);
    }
  });
}

/** Whether `path` (or a directory above it) is ignored, the last matching pattern winning. */
export function isIgnored(patterns: IgnorePattern[], path: string): boolean {
  let matched = false;
  const parents = path.split("/").slice(0, -1);
  for (const pattern of patterns) {
    if (pattern.exclusion !== matched) continue;
    let match = pattern.regex.test(path);
    for (let i = 1; !match && i <= parents.length; i++) {
      match = pattern.regex.test(parents.slice(0, i).join("/"));
    }
    if (match) matched = !pattern.exclusion;
  }
  return matched;
}

/**
 * Whether an ignored directory must still be walked: as in moby's walk, only when a "!" pattern names
 * something inside it.
 */
export function hasExclusionInside(patterns: IgnorePattern[], dir: string): boolean {
  return patterns.some((pattern) => pattern.exclusion && `${pattern.text}/`.startsWith(`${dir}/`));
}
