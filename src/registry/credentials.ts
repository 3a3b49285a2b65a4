/**
 * Registry credentials: berth's own credentials file first, then docker's `config.json` (`auths` only:
 * credential helpers are not run, because a device agent must not depend on desktop tooling).
 * Both files have docker's shape: `{"auths": {"host": {"auth": base64("user:password")}}}` or
 * `{"username", "password"}`. Credentials are never logged or printed.
 */
import { BerthError } from "../util/errors.ts";
import { readFileIfExists } from "../util/fs.ts";
import { DOCKER_HUB } from "../oci/reference.ts";

/** A user name and password for one registry; secret, so never put in a message or a log. */
export interface Credentials {
  username: string;
  password: string;
}

/** docker's config.json: $DOCKER_CONFIG/config.json, else ~/.docker/config.json. */
export function dockerConfigPath(): string | undefined {
  const dir = Deno.env.get("DOCKER_CONFIG");
  if (dir) return `${dir}/config.json`;
  const home = Deno.env.get("HOME");
  return home ? `${home}/.docker/config.json` : undefined;
}

/** The keys docker itself uses for a registry in `auths`. */
function authKeys(registry: string): string[] {
  const keys = [registry, `https://${registry}`, `http://${registry}`, `https://${registry}/v1/`];
  if (registry === DOCKER_HUB) {
    keys.push("https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io");
  }
  return keys;
}

function decodeEntry(entry: unknown, file: string, key: string): Credentials | undefined {
  if (typeof entry !== "object" || entry === null) return undefined;
  const record = entry as Record<string, unknown>;
  if (typeof record.auth === "string" && record.auth !== "") {
    let decoded: string;
    try {
      decoded = atob(record.auth);
    } catch {
      throw new BerthError("invalid_input", `${file}: auths["${key}"].auth is not valid base64`);
    }
    const colon = decoded.indexOf(":");
    if (colon < 0) {
      throw new BerthError("invalid_input", `${file}: auths["${key}"].auth is not "user:password"`);
    }
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (typeof record.username === "string" && typeof record.password === "string") {
    return { username: record.username, password: record.password };
  }
  return undefined;
}

/** Finds credentials for `registry` in the given files, in order; a missing file is skipped. */
export async function findCredentials(registry: string, files: string[]): Promise<Credentials | undefined> {
  for (const file of files) {
    let bytes: Uint8Array | undefined;
    try {
      bytes = await readFileIfExists(file);
    } catch (error) {
      if (error instanceof Deno.errors.PermissionDenied) continue; // another user's docker config
      throw error;
    }
    if (!bytes) continue;
    let config: unknown;
    try {
      config = JSON.parse(new TextDecoder().decode(bytes));
    } catch (error) {
      throw new BerthError("invalid_input", `${file}: not valid JSON (${(error as Error).message})`);
    }
    const auths = (config as { auths?: unknown })?.auths;
    if (typeof auths !== "object" || auths === null) continue;
    for (const key of authKeys(registry)) {
      const found = decodeEntry((auths as Record<string, unknown>)[key], file, key);
      if (found) return found;
    }
  }
  return undefined;
}
