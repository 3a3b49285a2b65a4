/** The compose-app commands: publish, install, run, stop, rm, restore. */
import { UsageError } from "../util/errors.ts";
import { parseReference } from "../oci/reference.ts";
import { RegistryPusher } from "../registry/push.ts";
import { Store } from "../store/store.ts";
import { Engine } from "../docker/engine.ts";
import { type Compose, findCompose } from "../docker/compose_cli.ts";
import { publishApp } from "../app/publish.ts";
import {
  type Device,
  installApp,
  installedApp,
  removeApp,
  restoreApps,
  runApp,
  stopApp,
} from "../app/lifecycle.ts";
import { appName } from "../app/stored.ts";
import { type Context, formatBytes } from "./context.ts";

/**
 * Opens what app commands work on: the store (as the one writer), the engine, and compose on demand.
 * `check` runs before the engine is connected: what the store alone can refuse (an app that is not
 * installed) is said first, not hidden behind an unreachable engine.
 */
async function withDevice<T>(
  context: Context,
  command: string,
  work: (device: Device) => Promise<T>,
  check?: (local: Pick<Device, "store" | "composeRoot">) => Promise<unknown>,
): Promise<T> {
  const store = await Store.open(context.storePath, { write: true, command });
  let engine: Engine | undefined;
  try {
    await check?.({ store, composeRoot: context.composeRoot });
    engine = await Engine.connect(context.dockerHost);
    let compose: Promise<Compose> | undefined;
    const device: Device = {
      store,
      engine,
      composeRoot: context.composeRoot,
      composeEnvironment: context.config.composeEnvironment,
      compose: () => {
        compose ??= findCompose(context.dockerHost, context.composeCommand).then((found) => {
          context.note(`compose: ${found.argv.join(" ")} (${found.version})`);
          return found;
        });
        return compose;
      },
    };
    return await work(device);
  } finally {
    engine?.close();
    store.close();
  }
}

/** An app named by name ("shop") or by any of its references ("registry/factory/shop:v2"). */
function nameArg(context: Context, command: string): string {
  const [input, extra] = context.args.positional;
  if (!input || extra) throw new UsageError(`${command} takes one app name`);
  return /[/:@]/.test(input) ? appName(parseReference(input)) : input;
}

export async function publishCommand(context: Context): Promise<number> {
  const [dir, ref, extra] = context.args.positional;
  if (!dir || !ref || extra) {
    throw new UsageError("publish takes a compose project directory and a reference");
  }
  const pusher = new RegistryPusher(context.registry);
  try {
    const result = await publishApp(pusher, dir, ref);
    if (context.json) context.emit(result);
    for (const image of result.images) context.say(`  ${image.service}: ${image.image} → ${image.pinned}`);
    context.say(`Published ${result.ref} ${result.digest}`);
    return 0;
  } finally {
    await pusher.close();
  }
}

export function installCommand(context: Context): Promise<number> {
  const [ref, extra] = context.args.positional;
  if (!ref || extra) {
    throw new UsageError("install takes one app reference (fetch it first with 'berth pull')");
  }
  return withDevice(context, "install", async (device) => {
    const result = await installApp(device, ref);
    if (context.json) context.emit(result);
    context.say(
      result.alreadyInstalled
        ? `App ${result.name} ${result.digest} is installed already`
        : `Installed app ${result.name} ${result.digest}: ${result.imagesLoaded} images loaded, ` +
          `${result.layersSent} layers (${formatBytes(result.bytesSent)}) sent to the engine`,
    );
    return 0;
  });
}

/** A command that acts on one installed app by name and says what it did. */
function appAction(
  command: string,
  action: (device: Device, name: string) => Promise<void>,
  done: string,
): (context: Context) => Promise<number> {
  return (context) => {
    const name = nameArg(context, command);
    return withDevice(
      context,
      command,
      async (device) => {
        await action(device, name);
        context.say(`App ${name} ${done}`);
        return 0;
      },
      (local) => installedApp(local, name),
    );
  };
}

export const runCommand = appAction("run", runApp, "is up");
export const stopCommand = appAction("stop", stopApp, "is stopped");
export const rmCommand = appAction("rm", removeApp, "is removed (its content stays in the store)");

export function restoreCommand(context: Context): Promise<number> {
  if (context.args.positional.length > 0) throw new UsageError("restore takes no arguments");
  return withDevice(context, "restore", async (device) => {
    const results = await restoreApps(device);
    if (context.json) context.emit({ restored: results });
    for (const result of results) {
      context.say(
        `Restored app ${result.name} ${result.installed.digest}${result.started ? " and started it" : ""}`,
      );
    }
    if (results.length === 0) context.say("No installed apps recorded in the store");
    return 0;
  });
}
