/**
 * The bundle index: `{"relative/path": "sha256:…"}` of a bundle's files, made when the bundle is built and
 * checked against an extracted bundle as a device checks it after installing (see bundle_format.ts).
 */
import { BerthError } from "../util/errors.ts";
import { join } from "../util/fs.ts";
import { compareUtf8, GoJsonMap, marshalGoJson } from "../util/go_json.ts";
import { parseJsonObject } from "../util/json_object.ts";
import { EMPTY_SHA256, hashFile, parseDigest } from "../oci/digest.ts";
import { lstatIfReachable, relativeComponents, resolveInside } from "./bundle_paths.ts";

/** How many mismatches one verification error lists before it counts the rest. */
const PROBLEMS_SHOWN = 5;

/**
 * The index of a project's bundle, as Go's json.Marshal writes it: every regular file with its digest, and
 * each symlink with the digest of the file it leads to inside `dir` (what a device's check reads through
 * it); symlinks to directories or to nothing are left out.
 */
export async function buildBundleIndex(
  dir: string,
  fileDigests: ReadonlyMap<string, string>,
  symlinks: readonly string[],
): Promise<Uint8Array> {
  const index: Record<string, string> = Object.fromEntries(fileDigests);
  for (const link of symlinks) {
    const resolved = await resolveInside(dir, link.split("/"));
    const digest = resolved && fileDigests.get(resolved.join("/"));
    if (digest) index[link] = digest;
  }
  return marshalGoJson(new GoJsonMap(index));
}

/** Parses a bundle index: `{"relative/path": "sha256:…"}`; refuses paths that leave the bundle. */
function parseBundleIndex(bytes: Uint8Array, what: string): Record<string, string> {
  const json = parseJsonObject(bytes, what);
  for (const [path, digest] of Object.entries(json)) {
    relativeComponents(path, (problem) => {
      throw new BerthError("invalid_input", `${what}: key ${JSON.stringify(path)}: ${problem}`);
    });
    parseDigest(digest, `${what}: ${JSON.stringify(path)}`);
  }
  return json as Record<string, string>;
}

/** What is wrong with a directory above an indexed file, if anything. */
async function parentProblem(destDir: string, parts: string[]): Promise<string | undefined> {
  for (let i = 1; i < parts.length; i++) {
    const parent = parts.slice(0, i).join("/");
    const info = await lstatIfReachable(join(destDir, parent));
    if (!info) return "is missing";
    if (info.isSymlink || !info.isDirectory) return `lies under "${parent}", not a directory`;
  }
  return undefined;
}

/** What is wrong with one indexed file in `destDir`, if anything (see verifyBundleIndex). */
async function indexedFileProblem(destDir: string, key: string, digest: string): Promise<string | undefined> {
  const parts = key.split("/").filter((part) => part !== "" && part !== ".");
  const rel = parts.join("/");
  const aboveProblem = await parentProblem(destDir, parts);
  if (aboveProblem) return `"${rel}" ${aboveProblem}`;
  let path = join(destDir, rel);
  let info = await lstatIfReachable(path);
  if (info?.isSymlink) {
    if (digest === EMPTY_SHA256) return undefined;
    const resolved = await resolveInside(destDir, parts);
    if (!resolved) return `"${rel}" is a symlink leading outside the bundle`;
    path = join(destDir, resolved.join("/"));
    info = await lstatIfReachable(path);
  }
  if (!info) return `"${rel}" is missing`;
  if (!info.isFile) return `"${rel}" is not a regular file`;
  const actual = await hashFile(path);
  return actual === digest ? undefined : `"${rel}" has digest ${actual}, the index says ${digest}`;
}

/** The regular files under `destDir` that the index does not list. */
async function unlistedFiles(destDir: string, listed: ReadonlySet<string>): Promise<string[]> {
  const unlisted: string[] = [];
  const walk = async (relDir: string): Promise<void> => {
    for await (const entry of Deno.readDir(join(destDir, relDir || "."))) {
      const rel = relDir ? `${relDir}/${entry.name}` : entry.name;
      if (entry.isDirectory) await walk(rel);
      else if (entry.isFile && !listed.has(rel)) unlisted.push(rel);
    }
  };
  await walk("");
  return unlisted;
}

/**
 * Checks an extracted bundle against its index, as a device does after installing: every listed file must
 * exist with that digest (a symlink is read through, inside `destDir`; the digest of empty content, which
 * composeapp's publish gives symlinks, is accepted for a symlink as it is). Beyond the device's check, every
 * regular file in `destDir` must be listed. All mismatches are reported in one BerthError
 * ("verification_failed").
 */
export async function verifyBundleIndex(
  destDir: string,
  indexBytes: Uint8Array,
  what = "app bundle",
): Promise<void> {
  const index = parseBundleIndex(indexBytes, `${what} index`);
  const problems: string[] = [];
  const listed = new Set<string>();
  for (const key of Object.keys(index).sort(compareUtf8)) {
    listed.add(key.split("/").filter((part) => part !== "" && part !== ".").join("/"));
    const problem = await indexedFileProblem(destDir, key, index[key]);
    if (problem) problems.push(problem);
  }
  for (const rel of await unlistedFiles(destDir, listed)) {
    problems.push(`"${rel}" is not in the bundle index`);
  }
  if (problems.length === 0) return;
  problems.sort(compareUtf8);
  const shown = problems.slice(0, PROBLEMS_SHOWN).join("; ");
  const more = problems.length > PROBLEMS_SHOWN ? `; and ${problems.length - PROBLEMS_SHOWN} more` : "";
  throw new BerthError(
    "verification_failed",
    `${what}: ${problems.length} ${
      problems.length === 1 ? "file does" : "files do"
    } not match the bundle index: ${shown}${more}`,
  );
}
