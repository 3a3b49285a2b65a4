/**
 * `berth agent`: runs the reconcile loop as a service, with the status endpoint beside it. Holds the
 * store's writer lock for its whole life (other writing commands fail at once, naming it). SIGHUP reloads
 * the config (a broken one is refused and the old one kept), status.listen, token and hosts and the peer keys
 * included; SIGTERM and SIGINT stop it cleanly, exit 0. With peer.listen set it also serves
 * its store read-only to neighbouring devices (status/peer.ts).
 */
import { BerthError, errorMessage, UsageError } from "../util/errors.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { VERSION } from "../version.ts";
import { Store } from "../store/store.ts";
import type { Config } from "../config/config.ts";
import { Agent, type AgentSettings } from "../agent/agent.ts";
import { StatusModel } from "../agent/model.ts";
import { serveStatus, type StatusServer } from "../status/server.ts";
import { type PeerServer, servePeers } from "../status/peer.ts";
import { SystemdSupervision } from "../agent/systemd.ts";
import { type Context, contextPolicy, makeContext } from "./context.ts";
import type { Policy } from "../trust/policy.ts";

/** The agent's settings: command-line options (already resolved over the config) and the config's own keys. */
function settingsOf(context: Context, config: Config, policy: Policy | undefined): AgentSettings {
  return {
    policy,
    composeRoot: context.composeRoot,
    dockerHost: context.dockerHost,
    composeCommand: context.composeCommand,
    composeEnvironment: config.composeEnvironment,
    platform: context.platform,
    parallel: context.parallel,
    registry: context.registry,
    apps: config.apps,
    pollInterval: config.pollInterval,
    pollJitter: config.pollJitter,
    keep: config.keep,
    timeouts: config.timeouts,
    storage: config.storage,
    rateLimit: config.rateLimit,
    limits: config.limits,
  };
}

/** With peer.listen set, serves the store read-only to neighbouring devices; undefined otherwise. */
function startPeers(config: Config, store: Store, log: Logger): PeerServer | undefined {
  if (config.peer.listen === undefined) return undefined;
  const peers = servePeers(config.peer.listen, store, {
    token: config.peer.token,
    warn: (message) => log.warn(message),
  });
  log.info(`store served to peers at ${peers.url}`);
  return peers;
}

/**
 * A reload's peer keys: a new token in force at once; a new address bound before the old one is closed (on
 * failure the old endpoint stays, and the error says why); none, and the endpoint stops.
 */
async function reloadPeers(
  peers: PeerServer | undefined,
  was: Config,
  now: Config,
  store: Store,
  log: Logger,
): Promise<PeerServer | undefined> {
  if (now.peer.listen === was.peer.listen) {
    if (now.peer.token !== was.peer.token) peers?.setToken(now.peer.token);
    return peers;
  }
  const next = startPeers(now, store, log);
  await peers?.close();
  if (!next) log.info("store no longer served to peers");
  return next;
}

/** The endpoints the agent runs, and the config its peer endpoint took last. */
interface Servers {
  status?: StatusServer;
  peers?: PeerServer;
  peerConfig: Config;
}

/**
 * SIGHUP: the config read again as at start (options given on the command line or in the environment still
 * win) and applied; a broken config or policy is refused and the running one kept.
 */
async function reload(context: Context, agent: Agent, servers: Servers, store: Store, log: Logger) {
  try {
    const reloaded = await makeContext(context.args);
    const fresh = reloaded.config;
    if (reloaded.storePath !== context.storePath) {
      log.warn(`config reload: store changed to ${reloaded.storePath}; that takes a restart`);
    }
    // A policy that does not load refuses the reload, as a broken config does.
    agent.reconfigure(settingsOf(reloaded, fresh, await contextPolicy(reloaded)));
    const statusWas = servers.status?.url;
    try {
      await servers.status?.reconfigure(fresh.status.listen, fresh.status);
    } catch (error) {
      log.error(`config reload: the status endpoint: ${errorMessage(error)}`);
    }
    if (servers.status && servers.status.url !== statusWas) {
      log.info(`status now at ${servers.status.url}`, { was: statusWas });
    }
    try {
      servers.peers = await reloadPeers(servers.peers, servers.peerConfig, fresh, store, log);
      servers.peerConfig = fresh;
    } catch (error) {
      log.error(`config reload: the peer endpoint, kept as it was: ${errorMessage(error)}`);
    }
    log.info(`config reloaded from ${context.configPath}`, { apps: fresh.apps.length });
  } catch (error) {
    log.error(`config reload refused, keeping the running config: ${errorMessage(error)}`, {
      reason: error instanceof BerthError ? error.reason : "internal",
    });
  }
}

/** `berth agent`: runs until SIGTERM/SIGINT (exit 0); the store stays locked for writing meanwhile. */
export async function agentCommand(context: Context): Promise<number> {
  if (context.args.positional.length > 0) throw new UsageError("agent takes no arguments");
  const config = context.config;
  const log = createLogger(config.logLevel);
  const policy = await contextPolicy(context);
  const store = await Store.open(context.storePath, { write: true, command: "agent" });
  const model = new StatusModel({
    version: VERSION,
    storePath: store.root,
    pollIntervalSeconds: config.pollInterval,
    stallSeconds: config.timeouts.stall,
    log,
  });
  const agent = new Agent(store, settingsOf(context, config, policy), model, log);
  const servers: Servers = { peerConfig: config };
  let supervision: SystemdSupervision | undefined;
  const stop = new AbortController();
  const onStop = (signal: string) => () => {
    log.info(`${signal}: stopping`);
    stop.abort(new BerthError("interrupted", `stopped by ${signal}`));
  };
  const onTerm = onStop("SIGTERM");
  const onInt = onStop("SIGINT");
  let reloading = Promise.resolve();
  const onHup = () => {
    reloading = reloading.then(() => reload(context, agent, servers, store, log));
  };
  Deno.addSignalListener("SIGTERM", onTerm);
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGHUP", onHup);
  try {
    servers.status = await serveStatus(config.status.listen, model, {
      token: config.status.token,
      hosts: config.status.hosts,
      warn: (message) => log.warn(message),
    });
    const { url } = servers.status;
    log.info(`status at ${url}`, { version: VERSION, store: store.root, apps: config.apps.length });
    servers.peers = startPeers(config, store, log);
    supervision = await SystemdSupervision.start(model, log);
    await agent.run(stop.signal, () => supervision?.ready() ?? Promise.resolve());
    return 0;
  } finally {
    // The SIGTERM and SIGINT listeners stay until the process exits: without them a second stop signal (a
    // supervisor's after a terminal's Ctrl-C) kills it with 143 or 130 while it closes or exits.
    Deno.removeSignalListener("SIGHUP", onHup);
    await supervision?.stop();
    await servers.peers?.close();
    await servers.status?.close();
    store.close();
    log.info("stopped");
  }
}
