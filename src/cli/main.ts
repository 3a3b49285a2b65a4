/**
 * The command table and the exit-code contract: 0 success, 1 failure (one clear line on stderr),
 * 2 usage error. Unexpected exceptions are bugs: they print their stack and exit 1.
 */
import { BerthError, errorMessage, UsageError } from "../util/errors.ts";
import { messageLine } from "../util/text.ts";
import { VERSION } from "../version.ts";
import { LAYOUT_VERSION } from "../store/store.ts";
import { formatPlatform, hostPlatform } from "../oci/platform.ts";
import { formatOptions, type OptionSpec, parseArgs } from "./args.ts";
import { type Context, GLOBAL_OPTIONS, makeContext } from "./context.ts";
import { pullCommand } from "./pull.ts";
import { lsCommand } from "./ls.ts";
import { loadCommand } from "./load.ts";
import { fsckCommand } from "./fsck.ts";

interface Command {
  usage: string;
  summary: string;
  options: OptionSpec[];
  /** False for commands that must work whatever the config file holds (`version`, for bug reports). */
  readsConfig?: boolean;
  run(context: Context): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  pull: {
    usage: "pull REF...",
    summary: "fetch images (every blob verified, resumable) into the store",
    options: [],
    run: pullCommand,
  },
  check: {
    usage: "check REF...",
    summary: "storage pre-flight: would these references fit in the store and the engine? (no layer fetched)",
    options: [],
    run: async (context) => (await import("./check.ts")).checkCommand(context),
  },
  publish: {
    usage: "publish DIR REF",
    summary: "publish a compose project as a compose app (images pinned by digest) to a registry",
    options: [{
      name: "--compat",
      value: "foundries",
      help: "refuse (instead of warn about) images Foundries' devices would not run: OCI manifests",
    }, {
      name: "--layers-meta",
      value: "FILE",
      help:
        "take the layers meta from a factory's layers-meta file (as composectl) instead of measuring the layers",
    }, { name: "--no-layers-meta", help: "publish without layers meta (neither measured nor read)" }],
    run: async (context) => (await import("./apps.ts")).publishCommand(context),
  },
  install: {
    usage: "install APP | install --pull REF",
    summary:
      "install a fetched app (its name or reference): project under the compose root, images from the store",
    options: [{
      name: "--pull",
      help: "fetch the app first (what the store lacks), loading each image as soon as it is stored",
    }],
    run: async (context) => (await import("./apps.ts")).installCommand(context),
  },
  run: {
    usage: "run APP",
    summary: "start an installed app (compose up -d)",
    options: [],
    run: async (context) => (await import("./apps.ts")).runCommand(context),
  },
  stop: {
    usage: "stop APP",
    summary: "stop an app's containers",
    options: [],
    run: async (context) => (await import("./apps.ts")).stopCommand(context),
  },
  rm: {
    usage: "rm APP",
    summary: "remove a stopped app from the engine (its content stays stored)",
    options: [],
    run: async (context) => (await import("./apps.ts")).rmCommand(context),
  },
  restore: {
    usage: "restore",
    summary: "after a factory reset: reinstall and restart every recorded app from the store, offline",
    options: [],
    run: async (context) => (await import("./apps.ts")).restoreCommand(context),
  },
  agent: {
    usage: "agent",
    summary:
      "run unattended: keep the config's apps fetched, installed, running and updated; serve the status",
    options: [],
    run: async (context) => (await import("./agent.ts")).agentCommand(context),
  },
  load: {
    usage: "load REF...",
    summary: "load stored images into the docker engine (no network; only missing layers are sent)",
    options: [],
    run: loadCommand,
  },
  export: {
    usage: "export --to DIR REF...",
    summary: "write stored references (apps with the images they pin) as an OCI layout, for removable media",
    options: [{ name: "--to", value: "DIR", help: "the directory: new, empty, or an earlier export" }],
    run: async (context) => (await import("./exchange.ts")).exportCommand(context),
  },
  import: {
    usage: "import DIR",
    summary: "verify and store every reference an export directory holds (no network)",
    options: [],
    run: async (context) => (await import("./exchange.ts")).importCommand(context),
  },
  ls: {
    usage: "ls",
    summary: "list the images and apps in the store, and whether each app is installed and running",
    options: [],
    run: lsCommand,
  },
  fsck: {
    usage: "fsck [--repair]",
    summary: "re-hash every blob and check every reference",
    options: [{ name: "--repair", help: "remove corrupt blobs, stale ingests and temporary files" }],
    run: fsckCommand,
  },
  status: {
    usage: "status",
    summary: "show what a running agent is doing (apps, progress, store, engine), from its status endpoint",
    options: [{
      name: "--listen",
      value: "ADDR",
      help: "the agent's status.listen: host:port or a unix socket path (env BERTH_STATUS_LISTEN; " +
        "default: the config's status.listen); the token: env BERTH_STATUS_TOKEN, else status.token",
    }],
    run: async (context) => (await import("./status.ts")).statusCommand(context),
  },
  serve: {
    usage: "serve [--listen ADDR] [--token TOKEN]",
    summary: "serve the store read-only to neighbouring devices (OCI distribution API), until stopped",
    options: [{
      name: "--listen",
      value: "ADDR",
      help: "host:port to listen on (default: the config's peer.listen, else 127.0.0.1:8471)",
    }, {
      name: "--token",
      value: "TOKEN",
      help: "bearer token requests must send (default: peer.token); required beyond loopback",
    }],
    run: async (context) => (await import("./serve.ts")).serveCommand(context),
  },
  prune: {
    usage: "prune [--keep N] [--dry-run]",
    summary: "remove app versions beyond the N kept, images only they used, and unreferenced content",
    options: [{
      name: "--keep",
      value: "N",
      help: "earlier versions of each app kept besides the installed one (default 1)",
    }, { name: "--dry-run", help: "say what would be removed; change nothing" }],
    run: async (context) => (await import("./prune.ts")).pruneCommand(context),
  },
  version: {
    usage: "version",
    summary: "print versions",
    options: [],
    readsConfig: false,
    run: (context) => {
      const info = {
        version: VERSION,
        deno: Deno.version.deno,
        storeLayoutVersion: LAYOUT_VERSION,
        platform: formatPlatform(hostPlatform()),
      };
      if (context.json) context.emit(info);
      else {
        context.say(
          `berth ${info.version} (deno ${info.deno}, store layout ${info.storeLayoutVersion}, ${info.platform})`,
        );
      }
      return Promise.resolve(0);
    },
  },
};

/** Where the summaries start in the command list; a longer usage puts its summary on the next line. */
const SUMMARY_COLUMN = 20;

/** One command's entry in the list: usage and summary, never run together. */
function commandLine(command: Command): string {
  const usage = `  ${command.usage}`;
  return usage.length + 2 <= SUMMARY_COLUMN
    ? `${usage.padEnd(SUMMARY_COLUMN)}${command.summary}`
    : `${usage}\n${" ".repeat(SUMMARY_COLUMN)}${command.summary}`;
}

function usage(): string {
  const commands = Object.values(COMMANDS).map(commandLine);
  return [
    "berth — delivers compose apps and their images to edge devices, robustly",
    "",
    "Usage: berth [global options] <command> [args]",
    "",
    "Commands:",
    ...commands,
    "",
    "Global options:",
    formatOptions(GLOBAL_OPTIONS),
    "",
    "Run 'berth <command> --help' for a command's own options.",
  ].join("\n");
}

function commandHelp(command: Command): string {
  return [
    `Usage: berth [global options] ${command.usage}`,
    "",
    command.summary,
    ...(command.options.length ? ["", "Options:", formatOptions(command.options)] : []),
    "",
    "Global options:",
    formatOptions(GLOBAL_OPTIONS),
  ].join("\n");
}

/** Runs berth with `argv`; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const write = (line: string, to: typeof Deno.stdout | typeof Deno.stderr) =>
    to.writeSync(new TextEncoder().encode(line + "\n"));
  try {
    const args = parseArgs(argv, GLOBAL_OPTIONS, (name) => COMMANDS[name]?.options ?? []);
    if (args.command === undefined) {
      write(usage(), args.options.help ? Deno.stdout : Deno.stderr);
      return args.options.help ? 0 : 2;
    }
    const command = COMMANDS[args.command];
    if (!command) throw new UsageError(`unknown command "${args.command}"; run 'berth --help' for the list`);
    if (args.options.help) {
      write(commandHelp(command), Deno.stdout);
      return 0;
    }
    if (["ls", "fsck", "version", "status", "prune"].includes(args.command) && args.positional.length > 0) {
      throw new UsageError(`${args.command} takes no arguments, got "${args.positional[0]}"`);
    }
    return await command.run(await makeContext(args, { readConfig: command.readsConfig ?? true }));
  } catch (error) {
    // The last line may carry text from a registry or a bundle: it leaves as one clean, bounded line.
    if (error instanceof UsageError) {
      write(`berth: ${messageLine(error.message)}`, Deno.stderr);
      return 2;
    }
    if (error instanceof BerthError) {
      write(`berth: ${messageLine(error.message)}`, Deno.stderr);
      return 1;
    }
    write(`berth: internal error: ${messageLine(errorMessage(error))}`, Deno.stderr);
    if (error instanceof Error && error.stack) write(error.stack, Deno.stderr);
    return 1;
  }
}
