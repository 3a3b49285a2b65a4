/**
 * A compose project's `.env`. compose reads it from the project directory for two things: values that the
 * compose file interpolates (what an app uses it for), and compose's and docker's own settings —
 * COMPOSE_FILE, COMPOSE_PROFILES, COMPOSE_ENV_FILES, COMPOSE_PROJECT_NAME, DOCKER_HOST and the rest. From a
 * bundle the second kind would let the app choose which files compose reads (an override naming an unpinned
 * image, which the engine pulls at `up`: no pinning, no verification, no offline restore), which further env
 * files it loads, or which engine it talks to. berth names the file, project and engine on every compose
 * call (src/docker/compose_cli.ts), and besides refuses any COMPOSE_* or DOCKER_* key in a bundle's `.env`, at
 * publish and at install, so that what a device runs does not depend on how each compose version ranks
 * them.
 *
 * The scan is cruder than compose's parsers (python-dotenv in v1, compose-go's in v2), on purpose: every
 * line is taken as a possible assignment, whatever quoting came before, so no key compose would see can
 * hide in what looks like a multi-line value here. A line inside a quoted value that reads `COMPOSE_X=…`
 * is refused too; a false refusal is reported and fixable, a missed key would not be.
 *
 * The file may hold secrets: installed, it is readable by root only (the project directory is too).
 */
import { BerthError } from "../util/errors.ts";

/** The file compose reads from the project directory. */
export const DOTENV_FILE = ".env";
/** Only root reads an installed `.env`. */
export const DOTENV_MODE = 0o600;

/** The key prefixes compose and the docker CLI take as their own settings (compared case-insensitively). */
const SETTING_PREFIXES = ["COMPOSE_", "DOCKER_"];

/** The first line of `text` that sets one of compose's or docker's settings: its key and line number. */
export function forbiddenDotEnvKey(text: string): { key: string; line: number } | undefined {
  const lines = text.replace(/^\uFEFF/, "").split(/\r\n|\n|\r/);
  for (const [index, raw] of lines.entries()) {
    const line = raw.trimStart();
    if (line === "" || line.startsWith("#")) continue;
    // `export KEY=…`, `KEY=…`, `KEY: …` (compose-go), `'KEY'=…` (python-dotenv).
    const assignment = line.replace(/^export\s+/, "");
    const key = /^[^=:\s]*/.exec(assignment)![0].replace(/^["']+|["']+$/g, "");
    if (SETTING_PREFIXES.some((prefix) => key.toUpperCase().startsWith(prefix))) {
      return { key, line: index + 1 };
    }
  }
  return undefined;
}

/** Throws (one line, `where` naming the file) when the `.env` text sets a COMPOSE_* or DOCKER_* key. */
export function checkDotEnv(bytes: Uint8Array, where: string): void {
  const found = forbiddenDotEnvKey(new TextDecoder().decode(bytes));
  if (!found) return;
  throw new BerthError(
    "invalid_input",
    `${where}: ${found.key} is not allowed: line ${found.line} sets one of compose's or docker's own ` +
      `settings (${SETTING_PREFIXES.map((prefix) => `${prefix}*`).join(", ")}), which berth decides ` +
      `(compose file, project, engine); an app's ${DOTENV_FILE} may only hold values its compose file uses`,
  );
}

/** Checks `<dir>/.env` (through a symlink, as compose reads it) when there is one. */
export async function checkProjectDotEnv(dir: string, where: string): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(`${dir}/${DOTENV_FILE}`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw new BerthError("invalid_input", `${where}: cannot read it (${(error as Error).message})`, {
      cause: error,
    });
  }
  checkDotEnv(bytes, where);
}

/** Makes `<dir>/.env` readable by root only, when it is a regular file (a symlink's target is left alone). */
export async function protectDotEnv(dir: string): Promise<void> {
  const path = `${dir}/${DOTENV_FILE}`;
  const info = await Deno.lstat(path).catch(() => undefined);
  if (info?.isFile) await Deno.chmod(path, DOTENV_MODE);
}
