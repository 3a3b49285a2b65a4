/**
 * Paths inside a bundle or a project directory: what a name from an archive may be, and where a symlink
 * leads without ever following it out of its root. Bundle building, extraction and index checks all decide
 * "inside or not" here.
 */
import { join } from "../util/fs.ts";

/** Symlinks followed in one resolution before it counts as a loop (Linux's own limit). */
const MAX_SYMLINK_HOPS = 40;

/** The components of a relative archive path; refuses absolute paths, ".." components and NUL bytes. */
export function relativeComponents(name: string, fail: (problem: string) => never): string[] {
  if (name.includes("\0")) fail("the path contains a NUL byte");
  if (name.startsWith("/")) fail("absolute path");
  const parts = name.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) fail(`the path has a ".." component`);
  return parts;
}

/** lstat, or undefined when the path is missing or lies under something that is not a directory. */
export async function lstatIfReachable(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) return undefined;
    throw error;
  }
}

/**
 * Where `parts` leads inside `root`, following symlinks found there (relative ones only) without ever
 * leaving `root`; undefined when it would leave, goes through an absolute symlink, or loops. Components that
 * do not exist are taken as they are.
 */
export async function resolveInside(root: string, parts: string[]): Promise<string[] | undefined> {
  const pending = [...parts];
  const resolved: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (resolved.length === 0) return undefined;
      resolved.pop();
      continue;
    }
    resolved.push(part);
    const path = join(root, resolved.join("/"));
    const info = await lstatIfReachable(path);
    if (!info?.isSymlink) continue;
    if (++hops > MAX_SYMLINK_HOPS) return undefined;
    const target = await Deno.readLink(path);
    if (target.startsWith("/")) return undefined;
    resolved.pop();
    pending.unshift(...target.split("/"));
  }
  return resolved;
}

/** A symlink target read lexically from the link's directory; false when it climbs above the root. */
export function staysInside(linkParts: string[], target: string): boolean {
  const stack = linkParts.slice(0, -1);
  for (const part of target.split("/")) {
    if (part === "" || part === ".") continue;
    if (part !== "..") stack.push(part);
    else if (stack.pop() === undefined) return false;
  }
  return true;
}
