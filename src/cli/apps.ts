/** The compose-app commands: publish, install, run, stop, rm, restore. */
import { BerthError, errorMessage, UsageError } from "../util/errors.ts";
import { messageLine } from "../util/text.ts";
import { formatReference, parseReference } from "../oci/reference.ts";
import { RegistryPusher } from "../registry/push.ts";
import { Store } from "../store/store.ts";
import { Engine } from "../docker/engine.ts";
import { type Compose, findCompose } from "../docker/compose_cli.ts";
import { publishApp } from "../app/publish.ts";
import { bundleLimitsFor } from "../app/bundle_format.ts";
import {
  type Device,
  installApp,
  installedApp,
  type InstallResult,
  removeApp,
  restoreApps,
  type RestoreOutcome,
  runApp,
  stopApp,
} from "../app/lifecycle.ts";
import { appName } from "../app/stored.ts";
import { installWhilePulling } from "../app/install_pull.ts";
import { beforeFirstPull, pullReporting, takeBack } from "./pull.ts";
import { storedImages } from "../store/images.ts";
import { type Context, contextPolicy, formatBytes } from "./context.ts";
import { fetchedApps } from "./ls.ts";
import { operatorVariables } from "../util/child_env.ts";

/**
 * Opens what app commands work on: the store (as the one writer), the engine, and compose on demand.
 * `check` runs first, on the store as it is: what the store alone can refuse (an app that is not fetched or
 * not installed) is said first, not hidden behind an unreachable engine. `work` checks again under the lock.
 */
async function withDevice<T>(
  context: Context,
  command: string,
  work: (device: Device) => Promise<T>,
  check?: (local: Pick<Device, "store" | "composeRoot">) => Promise<unknown>,
): Promise<T> {
  if (check) {
    // On a reader: a command refused here creates no store (opening one for writing would).
    const reader = await Store.open(context.storePath, { write: false, command });
    await check({ store: reader, composeRoot: context.composeRoot });
  }
  // The policy first (a broken one changes nothing), then the engine: a command that cannot reach it leaves
  // no store where there was none.
  const policy = await contextPolicy(context);
  const engine = await Engine.connect(context.dockerHost);
  let store: Store;
  try {
    store = await Store.open(context.storePath, { write: true, command });
  } catch (error) {
    engine.close();
    throw error;
  }
  try {
    let compose: Promise<Compose> | undefined;
    const device: Device = {
      store,
      engine,
      composeRoot: context.composeRoot,
      composeEnvironment: context.config.composeEnvironment,
      bundleLimits: bundleLimitsFor(context.config.limits.bundle),
      storage: context.config.storage,
      policy,
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
    engine.close();
    store.close();
  }
}

/** The app a command names: by name ("shop"), or by one of its references ("registry/factory/shop:v2"). */
interface AppArg {
  name: string;
  /** The reference, normalised, when one was given. */
  ref?: string;
}

/** The one reading of an app argument, shared by install, run, stop and rm. */
function appArg(context: Context, command: string): AppArg {
  const [input, extra] = context.args.positional;
  if (!input || extra) throw new UsageError(`${command} takes one app name or reference`);
  if (!/[/:@]/.test(input)) return { name: input };
  const ref = parseReference(input);
  return { name: appName(ref), ref: formatReference(ref) };
}

/**
 * The fetched version `arg` stands for: the reference given, or the only version fetched under the name.
 * Fails naming what is fetched (or that nothing is) and the way on, from the store alone.
 */
async function fetchedVersion(store: Store, arg: AppArg): Promise<string> {
  const versions = (await fetchedApps(store)).get(arg.name) ?? [];
  if (arg.ref) {
    const fetched = versions.length ? ` (fetched: ${versions.join(", ")})` : "";
    if (versions.includes(arg.ref)) return arg.ref;
    // A stored container image: installApp says what to do with it instead.
    if ((await storedImages(store)).some((image) => image.ref === arg.ref)) return arg.ref;
    throw new BerthError(
      "not_found",
      `app ${arg.ref} is not in store ${store.root}${fetched}; fetch it first with 'berth pull ${arg.ref}'`,
    );
  }
  if (versions.length === 1) return versions[0];
  if (versions.length === 0) {
    throw new BerthError(
      "not_found",
      `app ${arg.name} is not in store ${store.root} (no version of it was fetched); fetch it first with ` +
        `'berth pull REGISTRY/REPOSITORY/${arg.name}:TAG'`,
    );
  }
  throw new BerthError(
    "invalid_input",
    `app ${arg.name} has ${versions.length} versions in store ${store.root}: ${versions.join(", ")}; ` +
      `name one, e.g. 'berth install ${versions.at(-1)}'`,
  );
}

/** `berth publish DIR REF`: builds the app from a compose project and pushes it; needs only a registry. */
export async function publishCommand(context: Context): Promise<number> {
  const [dir, ref, extra] = context.args.positional;
  if (!dir || !ref || extra) {
    throw new UsageError("publish takes a compose project directory and a reference");
  }
  const pusher = new RegistryPusher(context.registry);
  try {
    const compat = context.args.options.compat;
    if (compat !== undefined && compat !== "foundries") {
      throw new UsageError(`--compat: unknown value "${compat}"; the only one is "foundries"`);
    }
    const metaFile = context.args.options["layers-meta"];
    const noMeta = context.args.options["no-layers-meta"] === true;
    if (noMeta && metaFile !== undefined) {
      throw new UsageError("--layers-meta and --no-layers-meta exclude each other");
    }
    const result = await publishApp(pusher, dir, ref, {
      limits: bundleLimitsFor(context.config.limits.bundle),
      // `${VAR}` in images and labels: the publisher's environment, as composectl's publish reads it.
      variables: (name) => operatorVariables([name])[name],
      layersMeta: noMeta ? "none" : typeof metaFile === "string" ? { file: metaFile } : "measure",
      ...(compat === "foundries" ? { compat } : {}),
    });
    for (const problem of result.compatibility) context.note(`berth: warning: ${problem}`);
    for (const name of result.unsetVariables) {
      context.note(`berth: warning: variable ${name} is not set; an empty string was used`);
    }
    if (context.json) context.emit(result);
    for (const image of result.images) context.say(`  ${image.service}: ${image.image} → ${image.pinned}`);
    if (result.variables.length > 0) context.say(`  variables: ${result.variables.join(", ")}`);
    if (result.layersMeta) context.say(`  layers meta: ${result.layersMeta.digest}`);
    context.say(`Published ${result.ref} ${result.digest}`);
    return 0;
  } finally {
    await pusher.close();
  }
}

/**
 * `berth install APP`: the app's only fetched version, or the one its reference names. With `--pull REF`,
 * fetches what the store lacks first and loads each image as soon as it is stored (installWhilePulling).
 */
export function installCommand(context: Context): Promise<number> {
  if (context.args.options.pull === true) return installPullingCommand(context);
  const arg = appArg(context, "install");
  return withDevice(context, "install", async (device) => {
    sayInstalled(context, await installApp(device, await fetchedVersion(device.store, arg)));
    return 0;
  }, (local) => fetchedVersion(local.store, arg));
}

function sayInstalled(context: Context, result: InstallResult): void {
  if (context.json) context.emit(result);
  context.say(
    result.alreadyInstalled
      ? `App ${result.name} ${result.digest} is installed already`
      : `Installed app ${result.name} ${result.digest}: ${result.imagesLoaded} images loaded, ` +
        `${result.layersSent} layers (${formatBytes(result.bytesSent)}) sent to the engine`,
  );
}

/** `berth install --pull REF`: pull and install at once; a failure leaves no store where there was none. */
async function installPullingCommand(context: Context): Promise<number> {
  const [input, extra] = context.args.positional;
  if (!input || extra) throw new UsageError("install --pull takes one app reference");
  // Checked before the store, the engine or the network is touched.
  const ref = parseReference(input);
  const fresh = await beforeFirstPull(context.storePath);
  return await withDevice(context, "install", async (device) => {
    try {
      sayInstalled(
        context,
        await installWhilePulling(device, async (hooks) => {
          await pullReporting(context, device.store, [ref], hooks);
        }),
      );
      return 0;
    } catch (error) {
      if (fresh) await takeBack(device.store, fresh).catch(() => {});
      throw error;
    }
  });
}

/** A command that acts on one installed app by name and says what it did. */
function appAction(
  command: string,
  action: (device: Device, name: string) => Promise<void>,
  done: string,
): (context: Context) => Promise<number> {
  return (context) => {
    const { name } = appArg(context, command);
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

/** `berth run APP`: compose up, and the app recorded as one that should run. */
export const runCommand = appAction("run", runApp, "is up");
/** `berth stop APP`: compose stop, and the app recorded as stopped. */
export const stopCommand = appAction("stop", stopApp, "is stopped");
/** `berth rm APP`: removes a stopped app's project and record; its content stays in the store. */
export const rmCommand = appAction("rm", removeApp, "is removed (its content stays in the store)");

/** One app of `berth restore --json`: the version restored, whether it came back, and if not, why. */
interface RestoredApp {
  name: string;
  ref: string;
  digest: string;
  ok: boolean;
  /** Whether it was started (it is recorded as one that should run); only when ok. */
  started?: boolean;
  /** BerthError's reason, or "internal" for a failure berth did not expect; only when not ok. */
  reason?: string;
  message?: string;
}

/** An outcome as --json gives it, and as the one line on stderr names it. */
function restoredApp(outcome: RestoreOutcome): RestoredApp {
  const { name, ref, digest } = outcome;
  if (outcome.ok) return { name, ref, digest, ok: true, started: outcome.started };
  const reason = outcome.error instanceof BerthError ? outcome.error.reason : "internal";
  return { name, ref, digest, ok: false, reason, message: messageLine(errorMessage(outcome.error)) };
}

/**
 * `berth restore`: every app recorded as installed, installed again at its recorded digest from the store
 * alone, and those recorded as running started. Every app is tried; one line per app as it is done (a
 * failure on stderr, naming app, digest and reason). Exit 0 only when every app came back.
 */
export function restoreCommand(context: Context): Promise<number> {
  if (context.args.positional.length > 0) throw new UsageError("restore takes no arguments");
  return withDevice(context, "restore", async (device) => {
    const apps: RestoredApp[] = [];
    await restoreApps(device, {
      onApp: (outcome) => {
        const app = restoredApp(outcome);
        apps.push(app);
        if (app.ok) {
          context.say(`Restored app ${app.name} ${app.digest}${app.started ? " and started it" : ""}`);
        } else {
          context.note(
            `berth: app ${app.name} ${app.digest} was not restored (${app.reason}): ${app.message}`,
          );
        }
      },
    });
    if (context.json) context.emit({ apps });
    if (apps.length === 0) context.say("No installed apps recorded in the store");
    return apps.every((app) => app.ok) ? 0 : 1;
  });
}
