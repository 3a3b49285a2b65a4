/**
 * berth's runtime permissions: the one definition that `deno task compile` bakes into each binary and the
 * smoke test runs berth under. Each is as narrow as berth allows; where one is broad, the reason is that the
 * paths and hosts are the operator's (config file, flags) and only known at run time.
 */

/**
 * Environment variables berth's code reads by name (the proxy variables are read by Deno's fetch itself,
 * unchecked); besides these, only the names the operator lists in the config's composeEnvironment and
 * those `${VAR}` names in the images and labels of a compose file being published.
 */
export const ENV_VARS = [
  "BERTH_CONFIG",
  "BERTH_STORE",
  "BERTH_COMPOSE_ROOT",
  "BERTH_COMPOSE",
  "BERTH_CREDENTIALS",
  "BERTH_PARALLEL",
  "BERTH_STATUS_LISTEN",
  "BERTH_STATUS_TOKEN",
  "DOCKER_HOST",
  "DOCKER_CONFIG", // docker's credentials (config.json)
  "HOME", // ~/.docker/config.json
  "PATH", // finding docker, docker-compose, df, sync
  "LOG_TOKENS", // read by the yaml package (a debugging switch of its parser) on every parse
  "LOG_STREAM", // likewise
  "NOTIFY_SOCKET", // systemd's notify socket (Type=notify)
  "WATCHDOG_USEC", // systemd's watchdog period (WatchdogSec=)
  "WATCHDOG_PID", // the process that watchdog is for
];

/** `deno run` / `deno compile` flags (permissions, and two runtime settings); no prompts: a service has no one to ask. */
export const PERMISSION_FLAGS: readonly string[] = [
  "--no-prompt",
  // Store, compose root, config, certs and credentials: anywhere the config or a flag points.
  "--allow-read",
  "--allow-write",
  // Registries anywhere, the docker engine (unix socket or tcp), and the status endpoint's listener.
  "--allow-net",
  // Every variable, not ENV_VARS: the config's composeEnvironment names variables to pass on to compose,
  // and publish interpolates the variables a compose file names, both known only at run time, and a
  // compiled binary's permissions are fixed. Narrowing it would not keep the environment from anyone: with
  // --allow-run any child could read it. What keeps it from apps is that every child gets an environment
  // written out by berth (src/util/child_env.ts), never berth's own.
  "--allow-env",
  // compose (`docker compose`, `docker-compose`, or whatever command the config's `compose` names), df
  // for the storage pre-flight, sync -f to flush the engine: the compose command is the operator's.
  "--allow-run",
  // Not a permission: unix datagram sockets (Deno.listenDatagram), which Deno 2.9 has only behind this flag,
  // for systemd's notify protocol (READY=1, WATCHDOG=1) sent from berth's own process; see
  // src/util/sd_notify.ts for why not `systemd-notify`.
  "--unstable-net",
  // Not a permission either: 1 MiB semi-spaces for V8's young generation, where every body chunk and
  // layer piece lives briefly, instead of V8's default. Peak RSS of a 143 MB pull 105 → 87 MiB, of an
  // install --pull of three Debian images 160 → 140 MiB, no slower (docs/performance.md).
  "--v8-flags=--max-semi-space-size=1",
];
