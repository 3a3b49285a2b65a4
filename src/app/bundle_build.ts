/**
 * Building the bundle of a compose project: the .tar.gz that is an app's layers[0], and its bundle index
 * (see bundle_format.ts for the format and where berth differs from composeapp on purpose).
 */
import { BerthError } from "../util/errors.ts";
import { join } from "../util/fs.ts";
import { compareUtf8 } from "../util/go_json.ts";
import { gzip } from "../util/gzip.ts";
import { sha256Of } from "../oci/digest.ts";
import {
  BUNDLE_LIMIT_KEY,
  type BundleLimits,
  COMPOSE_FILE,
  DEFAULT_BUNDLE_LIMITS,
  IGNORE_FILE,
} from "./bundle_format.ts";
import { buildBundleIndex } from "./bundle_index.ts";
import { lstatIfReachable, resolveInside, staysInside } from "./bundle_paths.ts";
import { hasExclusionInside, type IgnorePattern, isIgnored, loadIgnorePatterns } from "./ignore_file.ts";
import { type TarEntry, writeTar } from "./tar_write.ts";

/** A built bundle: what publish pushes. */
export interface BuiltBundle {
  /** The .tar.gz, layers[0] of the app manifest. */
  bundle: Uint8Array;
  /** The bundle index JSON, pushed as a blob and named by layers[0]'s annotations. */
  bundleIndex: Uint8Array;
  /** The tar entry names in archive order (directories end in "/"). */
  files: string[];
}

/** Compose file names other tools read, named when a project has one of them but no docker-compose.yml. */
const OTHER_COMPOSE_NAMES = ["docker-compose.yaml", "compose.yml", "compose.yaml"];

/** The walk of a project directory, depth first and sorted as moby's, collecting the bundle's entries. */
class ProjectWalk {
  readonly entries: TarEntry[] = [];
  /** Regular files by their bundle path. */
  readonly fileDigests = new Map<string, string>();
  readonly symlinks: string[] = [];
  #totalBytes = 0;

  constructor(
    readonly dir: string,
    readonly composeFileBytes: Uint8Array,
    readonly limit: BundleLimits,
    readonly ignore: IgnorePattern[],
  ) {}

  /** Throws the one-line error about `path` in the project. */
  fail(path: string, problem: string): never {
    throw new BerthError("invalid_input", `${join(this.dir, path)}: ${problem}`);
  }

  /** Adds the entries under `relDir` ("" for the project itself), in the order of their names' bytes. */
  async walk(relDir: string): Promise<void> {
    const names: string[] = [];
    for await (const entry of Deno.readDir(join(this.dir, relDir || "."))) names.push(entry.name);
    names.sort(compareUtf8);
    for (const name of names) {
      const rel = relDir ? `${relDir}/${name}` : name;
      const info = await Deno.lstat(join(this.dir, rel));
      const ignored = isIgnored(this.ignore, rel);
      if (info.isDirectory) {
        if (!ignored) this.entries.push({ name: `${rel}/`, type: "dir", mode: info.mode ?? 0o755 });
        if (!ignored || hasExclusionInside(this.ignore, rel)) await this.walk(rel);
      } else if (ignored) {
        if (rel === COMPOSE_FILE) this.fail(rel, `${IGNORE_FILE} leaves out ${COMPOSE_FILE}`);
      } else if (info.isFile) {
        await this.addFile(rel, info);
      } else if (info.isSymlink) {
        await this.addSymlink(rel);
      } else {
        this.fail(
          rel,
          "not a regular file, directory or symlink (sockets, fifos and devices cannot go into a bundle)",
        );
      }
    }
  }

  /** Adds a regular file (docker-compose.yml as the pinned file), within the size limits. */
  async addFile(rel: string, info: Deno.FileInfo): Promise<void> {
    const tooBig = (size: number) => rel !== COMPOSE_FILE && size > this.limit.maxFileBytes;
    const refuseSize = (size: number) =>
      this.fail(
        rel,
        `${size} bytes, over the limit of ${this.limit.maxFileBytes} for a file in a bundle (${BUNDLE_LIMIT_KEY})`,
      );
    if (tooBig(info.size)) refuseSize(info.size);
    const data = rel === COMPOSE_FILE ? this.composeFileBytes : await Deno.readFile(join(this.dir, rel));
    if (tooBig(data.length)) refuseSize(data.length); // it may have grown since the lstat
    this.#totalBytes += data.length;
    if (this.#totalBytes > this.limit.maxTotalBytes) {
      this.fail(
        rel,
        `the project's files add up to more than ${this.limit.maxTotalBytes} bytes (${BUNDLE_LIMIT_KEY})`,
      );
    }
    this.entries.push({ name: rel, type: "file", data, mode: info.mode ?? 0o644 });
    this.fileDigests.set(rel, sha256Of(data));
  }

  /** Adds a symlink, which must be relative and lead to somewhere inside the project. */
  async addSymlink(rel: string): Promise<void> {
    const target = await Deno.readLink(join(this.dir, rel));
    if (target.startsWith("/")) {
      this.fail(
        rel,
        `symlink to the absolute path ${
          JSON.stringify(target)
        }; a bundle's symlinks must be relative and stay inside the project`,
      );
    }
    if (!staysInside(rel.split("/"), target) || await resolveInside(this.dir, rel.split("/")) === undefined) {
      this.fail(rel, `symlink to ${JSON.stringify(target)} leads outside the project directory`);
    }
    this.entries.push({ name: rel, type: "symlink", linkname: target });
    this.symlinks.push(rel);
  }

  /** Refuses a project without docker-compose.yml, naming the other compose file names it has. */
  async requireComposeFile(): Promise<void> {
    if (this.fileDigests.has(COMPOSE_FILE)) return;
    const others = [];
    for (const name of OTHER_COMPOSE_NAMES) {
      if (await lstatIfReachable(join(this.dir, name))) others.push(name);
    }
    this.fail(
      COMPOSE_FILE,
      others.length > 0
        ? `missing (found ${
          others.join(", ")
        }; compose apps, and the devices that run them, read only ${COMPOSE_FILE})`
        : "missing, or not a regular file",
    );
  }
}

/**
 * Builds the bundle of the compose project in `dir`: every file, directory and symlink (symlinks must stay
 * inside the project), minus what `.composeappignores` leaves out, with `docker-compose.yml` replaced by
 * `composeFileBytes` (the pinned compose file). Files and directories keep their permission bits (setuid,
 * setgid and sticky included, as composeapp writes them; installs drop those three), so a secret kept 0600
 * ships 0600. The same project gives the same bytes whatever the files' times or owners.
 */
export async function buildBundle(
  dir: string,
  composeFileBytes: Uint8Array,
  limits: Partial<BundleLimits> = {},
): Promise<BuiltBundle> {
  const limit = { ...DEFAULT_BUNDLE_LIMITS, ...limits };
  if (composeFileBytes.length > limit.maxComposeBytes) {
    throw new BerthError(
      "invalid_input",
      `${
        join(dir, COMPOSE_FILE)
      }: the pinned compose file has ${composeFileBytes.length} bytes, over the limit of ${limit.maxComposeBytes}`,
    );
  }
  const project = new ProjectWalk(dir, composeFileBytes, limit, await loadIgnorePatterns(dir));
  await project.walk("");
  if (project.entries.length > limit.maxEntries) {
    project.fail(
      ".",
      `the project has ${project.entries.length} entries, over the limit of ${limit.maxEntries}`,
    );
  }
  await project.requireComposeFile();
  return {
    bundle: await gzip(writeTar(project.entries)),
    bundleIndex: await buildBundleIndex(dir, project.fileDigests, project.symlinks),
    files: project.entries.map((entry) => entry.name),
  };
}
