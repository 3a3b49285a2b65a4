/**
 * Real services for integration tests: a docker-registry and a dockerd (with its own containerd), each
 * bound to loopback or to sockets under a directory the caller owns, so nothing touches the machine's own
 * daemons. Also the Debian packages they come from, and a small `run` helper for commands.
 */

/** Runs `cmd` to completion and returns its stdout; throws with the command, exit code and stderr tail. */
export async function run(
  cmd: string[],
  opts: { env?: Record<string, string>; stdin?: Uint8Array | string; cwd?: string } = {},
): Promise<string> {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env: opts.env,
    cwd: opts.cwd,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const data = typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin;
    const writer = child.stdin.getWriter();
    // A command that exits without reading all its input must not turn into an unhandled rejection.
    await writer.write(data).catch(() => {});
    await writer.close().catch(() => {});
  }
  const output = await child.output();
  const decoder = new TextDecoder();
  const stdout = decoder.decode(output.stdout);
  if (!output.success) {
    const stderr = decoder.decode(output.stderr);
    const detail = tail(stderr.trim() ? stderr : stdout, 30);
    throw new Error(`command failed (exit ${output.code}): ${cmd.join(" ")}\n${detail}`);
  }
  return stdout;
}

/** The last `lines` lines of `text`. */
function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** The last lines of a log file, for error messages; never throws. */
async function logTail(path: string, lines = 40): Promise<string> {
  try {
    return tail(await Deno.readTextFile(path), lines);
  } catch (error) {
    return `(no log: ${error instanceof Error ? error.message : error})`;
  }
}

/** Whether `path` is a regular file (following symlinks). */
function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Whether `name` is an executable file on PATH (sbin included: root's tools live there). */
function onPath(name: string): boolean {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin", "/usr/bin", "/bin"]);
  return dirs.some((dir) => {
    try {
      const info = Deno.statSync(`${dir}/${name}`);
      return info.isFile && ((info.mode ?? 0) & 0o111) !== 0;
    } catch {
      return false;
    }
  });
}

/**
 * Whether the ELF file at `path` is statically linked (no PT_INTERP program header). Images copy
 * /bin/busybox into a rootfs that has no libc, so the dynamic build from the plain busybox package would not
 * run there.
 */
export function isStaticElf(path: string): boolean {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch {
    return false;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 64 || view.getUint32(0) !== 0x7f454c46 || bytes[4] !== 2) return false; // ELF64 only
  const little = bytes[5] === 1;
  const phoff = Number(view.getBigUint64(32, little));
  const phentsize = view.getUint16(54, little);
  const phnum = view.getUint16(56, little);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > bytes.length) return false;
    if (view.getUint32(at, little) === 3) return false; // PT_INTERP: needs a dynamic loader
  }
  return true;
}

/**
 * Installs the Debian packages the harness needs (docker.io, docker-registry, skopeo, docker-compose,
 * busybox-static, time, openssl, chromium, strace, python3-fusepy, fuse3) when any of their tools is missing;
 * does nothing when all are present. apt's output goes to stderr so that it shows in CI logs without mixing into test output.
 */
export async function ensurePackages(): Promise<void> {
  const missing = [
    "dockerd",
    "containerd",
    "docker",
    "docker-registry",
    "skopeo",
    "docker-compose",
    "openssl",
    "chromium", // the status page test loads the page in headless Chromium
    "systemd-analyze", // verifies build/systemd/berth.service; a Debian container image has no systemd
    "strace", // the durability test reads berth's fsync and rename order from a trace
    "fusermount3", // the power cut test mounts powercut_fs.py, a FUSE filesystem
  ]
    .filter((tool) => !onPath(tool));
  if (!isStaticElf("/bin/busybox")) missing.push("/bin/busybox (static)");
  if (!isFile("/usr/bin/time")) missing.push("/usr/bin/time"); // the shell's `time` builtin is not enough
  // Debian's python3-fusepy names the module fusepy, for Debian's own python3.
  if (!isFile("/usr/lib/python3/dist-packages/fusepy.py")) missing.push("python3 fusepy");
  if (missing.length === 0) return;
  await aptInstall(
    [
      "docker.io",
      "docker-registry",
      "skopeo",
      "docker-compose",
      "busybox-static",
      "time",
      "openssl",
      "chromium",
      "systemd",
      "strace",
      "python3-fusepy",
      "fuse3",
    ],
    `the test services need them; missing: ${missing.join(", ")}`,
  );
}

/**
 * Writes `<dir>/rootfs.tar`: a root filesystem of the static busybox with links for `applets`, and `files`
 * (path → content), owned by root by number so the host's user names stay out of the layer. Returns its path.
 */
export async function busyboxRootfsTar(
  dir: string,
  applets: string[],
  files: Record<string, string>,
): Promise<string> {
  const rootfs = `${dir}/rootfs`;
  await Deno.mkdir(`${rootfs}/bin`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${rootfs}/bin/busybox`);
  await Deno.chmod(`${rootfs}/bin/busybox`, 0o755);
  for (const applet of applets) await Deno.symlink("busybox", `${rootfs}/bin/${applet}`);
  for (const [path, content] of Object.entries(files)) {
    await Deno.mkdir(`${rootfs}/${path}`.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.writeTextFile(`${rootfs}/${path}`, content);
  }
  const tar = `${dir}/rootfs.tar`;
  await run(["tar", "--numeric-owner", "--owner=0", "--group=0", "-C", rootfs, "-cf", tar, "."]);
  return tar;
}

/** Installs Debian packages, with apt-get's output on stderr so CI logs show it. */
export async function aptInstall(packages: string[], why: string): Promise<void> {
  console.error(`installing Debian packages ${packages.join(", ")} (${why})`);
  for (const args of [["update"], ["install", "-y", "--no-install-recommends", ...packages]]) {
    const child = new Deno.Command("apt-get", {
      args,
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    await child.stdout.pipeTo(Deno.stderr.writable, { preventClose: true });
    const { code } = await child.status;
    if (code !== 0) throw new Error(`apt-get ${args.join(" ")} failed (exit ${code})`);
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago (listen on port 0, read it, close). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * Starts `cmd` detached from our pipes, its stdout and stderr appended to `log`. The shell `exec`s the
 * daemon, so the child's pid is the daemon's own and signals reach it directly; a file rather than a pipe
 * keeps no read loop pending in this process.
 */
function spawnLogged(cmd: string[], log: string, cwd: string): Deno.ChildProcess {
  return new Deno.Command("sh", {
    args: ["-c", 'log="$1"; shift; exec "$@" >>"$log" 2>&1', "sh", log, ...cmd],
    cwd,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/** Sends SIGTERM, waits up to `graceMs`, then SIGKILL; resolves once the process has exited. */
async function terminate(child: Deno.ChildProcess, graceMs: number): Promise<void> {
  let exited = false;
  const status = child.status.then(() => {
    exited = true;
  });
  try {
    child.kill("SIGTERM");
  } catch {
    // Already exited.
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([status, new Promise((resolve) => timer = setTimeout(resolve, graceMs))]);
  clearTimeout(timer);
  if (!exited) {
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited between the check and the kill.
    }
    await status;
  }
}

/** Polls `ready` every 200 ms until it returns true, the process exits, or `timeoutMs` passes. */
async function waitReady(
  what: string,
  child: Deno.ChildProcess,
  log: string,
  timeoutMs: number,
  ready: () => Promise<boolean>,
): Promise<void> {
  let exitCode: number | undefined;
  child.status.then((status) => exitCode = status.code);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) {
      throw new Error(
        `${what} exited with code ${exitCode} while starting; log ${log}:\n${await logTail(log)}`,
      );
    }
    if (await ready().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what} not ready after ${timeoutMs / 1000} s; log ${log}:\n${await logTail(log)}`);
}

/** Makes a stop function run its work once, however often and concurrently it is called. */
function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => done ??= fn();
}

/** A running docker-registry. */
export interface Registry {
  /** "127.0.0.1:PORT"; plain HTTP unless `extra` (see RegistryConfig) configured TLS. */
  host: string;
  /** Where the registry's filesystem storage lives (`storage.filesystem.rootdirectory`). */
  dataDir: string;
  /** Stops the registry; safe to call more than once. */
  stop(): Promise<void>;
}

/** Optional changes to the registry `startRegistry` runs, for tests of TLS, authentication and redirects. */
export interface RegistryConfig {
  /**
   * Top-level sections added to the config (`auth`, `middleware`, …); `http` and `storage` are merged key
   * by key into the defaults, so the address and the storage directory stay as they are.
   */
  extra?: Record<string, unknown> & { http?: Record<string, unknown>; storage?: Record<string, unknown> };
  /**
   * Whether the registry is up, given its "127.0.0.1:PORT". The default (GET http://HOST/v2/ answers 200)
   * cannot see a registry that speaks TLS or wants a login.
   */
  ready?: (host: string) => Promise<boolean>;
}

/** Starts docker-registry on a free loopback port, storing blobs under `dir`; resolves once /v2/ answers. */
export async function startRegistry(dir: string, options: RegistryConfig = {}): Promise<Registry> {
  const dataDir = `${dir}/data`;
  await Deno.mkdir(dataDir, { recursive: true });
  const port = freePort();
  const host = `127.0.0.1:${port}`;
  const { http, storage, ...sections } = options.extra ?? {};
  // JSON is YAML, so the config needs no YAML writer.
  const config = {
    version: 0.1,
    log: { level: "info", accesslog: { disabled: true } },
    ...sections,
    storage: { filesystem: { rootdirectory: dataDir }, delete: { enabled: true }, ...storage },
    http: { ...http, addr: host },
  };
  await Deno.writeTextFile(`${dir}/config.yml`, JSON.stringify(config, null, 2));
  const log = `${dir}/registry.log`;
  const child = spawnLogged(["docker-registry", "serve", `${dir}/config.yml`], log, dir);
  const stop = once(() => terminate(child, 10_000));
  const ready = options.ready ?? (async () => {
    const response = await fetch(`http://${host}/v2/`);
    await response.body?.cancel();
    return response.status === 200;
  });
  try {
    await waitReady("docker-registry", child, log, 30_000, () => ready(host));
  } catch (error) {
    await stop();
    throw error;
  }
  return { host, dataDir, stop };
}

/** A running dockerd with its own containerd. */
export interface Dockerd {
  /** "unix:///…/docker.sock", for `docker -H` or DOCKER_HOST. */
  host: string;
  /** The socket's path. */
  socket: string;
  /** dockerd's --data-root. */
  dataRoot: string;
  /** Stops dockerd and containerd and unmounts what they left; safe to call more than once. */
  stop(): Promise<void>;
}

/**
 * containerd's config: all of its state, sockets and plugin dirs under `dir`. We run containerd ourselves
 * rather than let dockerd do it because dockerd silently attaches to a system containerd when
 * /run/containerd/containerd.sock exists, which would share state with the machine's own daemons.
 */
function containerdConfig(dir: string, socket: string): string {
  const q = JSON.stringify; // TOML basic strings accept JSON string syntax for plain paths
  return [
    "version = 2",
    `root = ${q(`${dir}/root`)}`,
    `state = ${q(`${dir}/state`)}`,
    `disabled_plugins = ["io.containerd.grpc.v1.cri"]`,
    "[grpc]",
    `  address = ${q(socket)}`,
    "[ttrpc]",
    `  address = ${q(`${socket}.ttrpc`)}`,
    "[debug]",
    `  address = ""`,
    "[plugins]",
    `  [plugins."io.containerd.internal.v1.opt"]`,
    `    path = ${q(`${dir}/opt`)}`,
    "",
  ].join("\n");
}

/** Mount points at or below any of `roots`, deepest first, read from /proc/self/mountinfo. */
async function mountsUnder(roots: string[]): Promise<string[]> {
  const info = await Deno.readTextFile("/proc/self/mountinfo");
  // Field 5 is the mount point, with space, tab, newline and backslash written as octal escapes.
  const points = info.split("\n").filter((line) => line).map((line) =>
    line.split(" ")[4].replace(/\\([0-7]{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)))
  );
  return points.filter((point) => roots.some((root) => point === root || point.startsWith(`${root}/`)))
    .sort((a, b) => b.length - a.length);
}

/**
 * SIGKILLs every running container, because on SIGTERM dockerd gives each one its own stop timeout (10 s
 * by default) before shutting down; test containers hold nothing worth a graceful stop.
 */
async function killContainers(host: string): Promise<void> {
  try {
    const ids = (await run(["docker", "-H", host, "ps", "-q"])).split("\n").filter((id) => id);
    if (ids.length > 0) await run(["docker", "-H", host, "kill", ...ids]);
  } catch {
    // dockerd is not answering; its own shutdown and the SIGKILL after it still follow.
  }
}

/** Unmounts everything at or below `roots`, so the directories can be removed. */
async function unmountAll(roots: string[]): Promise<void> {
  // A mount can be stacked several times on one point; a few rounds take them all off.
  for (let round = 0; round < 5; round++) {
    const points = await mountsUnder(roots);
    if (points.length === 0) return;
    for (const point of points) {
      await run(["umount", point]).catch(() => run(["umount", "-l", point]).catch(() => {}));
    }
  }
  const left = await mountsUnder(roots);
  if (left.length > 0) throw new Error(`could not unmount: ${left.join(", ")}`);
}

/**
 * Starts a private dockerd (overlay2, no bridge, no iptables) on a socket under `dir`, with its data root,
 * exec root, config file, key and containerd all under `dir`. Resolves once `docker version` succeeds.
 */
export async function startDockerd(dir: string): Promise<Dockerd> {
  await Deno.mkdir(dir, { recursive: true });
  dir = await Deno.realPath(dir); // mount points in mountinfo are real paths
  // Unix socket paths are limited to about 104 bytes, and test dirs nest deep: the sockets and the exec
  // root (which holds more sockets) live in a short directory of their own.
  const shortDir = await Deno.realPath(await Deno.makeTempDir({ prefix: "bd-" }));
  const dataRoot = `${dir}/data`;
  const execRoot = `${shortDir}/exec`;
  const ctrDir = `${dir}/containerd`;
  const ctrSocket = `${shortDir}/containerd.sock`;
  const socket = `${shortDir}/docker.sock`;
  const host = `unix://${socket}`;
  for (const sub of [dataRoot, execRoot, ctrDir]) await Deno.mkdir(sub, { recursive: true });

  await Deno.writeTextFile(`${ctrDir}/config.toml`, containerdConfig(ctrDir, ctrSocket));
  const ctrLog = `${dir}/containerd.log`;
  const containerd = spawnLogged(["containerd", "--config", `${ctrDir}/config.toml`], ctrLog, dir);
  let dockerd: Deno.ChildProcess | undefined;
  const stop = once(async () => {
    if (dockerd) {
      await killContainers(host);
      await terminate(dockerd, 20_000);
    }
    await terminate(containerd, 10_000);
    await unmountAll([dataRoot, execRoot, ctrDir]);
    await Deno.remove(shortDir, { recursive: true }).catch(() => {});
  });

  try {
    await waitReady("containerd", containerd, ctrLog, 30_000, async () => {
      await Deno.stat(ctrSocket);
      return true;
    });
    // Our own config file keeps a machine's /etc/docker/daemon.json (registry mirrors, storage driver…)
    // out of the test daemon; the key path keeps dockerd from creating /etc/docker/key.json.
    await Deno.writeTextFile(
      `${dir}/daemon.json`,
      JSON.stringify({ "deprecated-key-path": `${dir}/key.json` }),
    );
    const log = `${dir}/dockerd.log`;
    dockerd = spawnLogged(
      [
        "dockerd",
        "--config-file",
        `${dir}/daemon.json`,
        "--data-root",
        dataRoot,
        "--exec-root",
        execRoot,
        "-H",
        host,
        "--pidfile",
        `${dir}/docker.pid`,
        "--containerd",
        ctrSocket,
        "--iptables=false",
        "--bridge=none",
        "--storage-driver=overlay2",
      ],
      log,
      dir,
    );
    const started = dockerd;
    await waitReady("dockerd", started, log, 60_000, async () => {
      const { success } = await new Deno.Command("docker", {
        args: ["-H", host, "version"],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output();
      return success;
    });
  } catch (error) {
    await stop().catch((stopError) => console.error(`cleanup after failed start: ${stopError}`));
    throw error;
  }
  return { host, socket, dataRoot, stop };
}

/** Compose v2, as a docker CLI plugin in a config directory the harness owns. */
export interface ComposeV2 {
  /** A DOCKER_CONFIG directory: `cli-plugins/docker-compose` and an empty `config.json`. */
  dockerConfigDir: string;
  /** What `docker compose version --short` prints, e.g. "2.26.1-4". */
  version: string;
}

/** Unmounts what debootstrap left mounted under `root` (it mounts /proc and /sys inside), deepest first. */
export async function unmountUnder(root: string): Promise<void> {
  const points = (await Deno.readTextFile("/proc/self/mounts")).split("\n")
    .map((line) => line.split(" ")[1])
    .filter((point) => point?.startsWith(`${root}/`))
    .reverse();
  for (const point of points) await run(["umount", "-l", point]);
}

/** Where `ensureComposeV2` keeps its download when the caller has no better place: the system temp dir. */
export function harnessCacheDir(): string {
  return `${Deno.env.get("TMPDIR") || "/tmp"}/berth-harness-cache`;
}

/** The Debian release whose `docker-compose` package is compose v2 (Debian 12's is compose v1 1.29). */
const COMPOSE_V2_SUITE = "trixie";
/** Where that package puts the plugin. */
const COMPOSE_V2_PLUGIN = "usr/libexec/docker/cli-plugins/docker-compose";

const composeV2ByDir = new Map<string, Promise<ComposeV2>>();

/**
 * Compose v2 for the tests, next to Debian 12's compose v1: the `docker-compose` package of Debian 13
 * (whose plugin is a static Go binary that runs on Debian 12 and talks to dockerd 20.10), fetched with
 * `apt-get download` through a sources list, package lists and cache of its own under `cacheDir`, so the
 * machine's apt configuration and package state are not touched, unpacked with `dpkg-deb -x`, and its plugin
 * put into `<cacheDir>/docker-config/cli-plugins/`. Use it as `DOCKER_CONFIG=<dockerConfigDir> docker compose
 * …`. Downloaded once per cache dir (a few seconds on a fresh machine); later calls and runs reuse it.
 */
export function ensureComposeV2(cacheDir: string): Promise<ComposeV2> {
  let pending = composeV2ByDir.get(cacheDir);
  if (!pending) {
    pending = provisionComposeV2(cacheDir);
    composeV2ByDir.set(cacheDir, pending);
    pending.catch(() => composeV2ByDir.delete(cacheDir));
  }
  return pending;
}

/** The version a compose plugin binary reports, or undefined when it is missing or does not run. */
async function composeVersion(plugin: string): Promise<string | undefined> {
  try {
    return (await run([plugin, "version", "--short"])).trim() || undefined;
  } catch {
    return undefined;
  }
}

async function provisionComposeV2(cacheDir: string): Promise<ComposeV2> {
  const dockerConfigDir = `${cacheDir}/docker-config`;
  const plugin = `${dockerConfigDir}/cli-plugins/docker-compose`;
  const cached = await composeVersion(plugin);
  if (cached) return { dockerConfigDir, version: cached };

  const started = Date.now();
  await Deno.mkdir(cacheDir, { recursive: true });
  // Each provisioner works in its own directory and publishes with one rename, so concurrent test runs
  // neither see a half-made plugin dir nor break each other.
  const work = await Deno.makeTempDir({ dir: cacheDir, prefix: "download-" });
  try {
    const { deb, source } = await downloadDebianPackage(work, COMPOSE_V2_SUITE, "docker-compose");
    const packageVersion = (await run(["dpkg-deb", "-f", deb, "Version"])).trim();
    const contents = await run(["dpkg-deb", "-c", deb]);
    if (!packageVersion.startsWith("2.") || !contents.includes(`./${COMPOSE_V2_PLUGIN}`)) {
      throw new Error(
        `docker-compose ${packageVersion} from ${source.uri} ${COMPOSE_V2_SUITE} is not compose v2 with ${COMPOSE_V2_PLUGIN}`,
      );
    }
    await run(["dpkg-deb", "-x", deb, `${work}/root`]);
    const staged = `${work}/docker-config`;
    await Deno.mkdir(`${staged}/cli-plugins`, { recursive: true });
    await Deno.rename(`${work}/root/${COMPOSE_V2_PLUGIN}`, `${staged}/cli-plugins/docker-compose`);
    await Deno.chmod(`${staged}/cli-plugins/docker-compose`, 0o755);
    await Deno.writeTextFile(`${staged}/config.json`, "{}\n");
    if (!await composeVersion(`${staged}/cli-plugins/docker-compose`)) {
      throw new Error(`the compose v2 plugin from docker-compose ${packageVersion} does not run here`);
    }
    try {
      await Deno.rename(staged, dockerConfigDir);
    } catch (error) {
      // Another run published first, or an earlier copy is broken: keep a working one.
      if (await composeVersion(plugin)) return { dockerConfigDir, version: (await composeVersion(plugin))! };
      await Deno.remove(dockerConfigDir, { recursive: true }).catch(() => {});
      await Deno.rename(staged, dockerConfigDir).catch(() => {
        throw error;
      });
    }
    const version = await composeVersion(plugin);
    if (!version) throw new Error(`${plugin} does not run after provisioning`);
    console.error(
      `compose v2 ${version} (Debian ${COMPOSE_V2_SUITE} docker-compose ${packageVersion}) provisioned in ${
        ((Date.now() - started) / 1000).toFixed(1)
      } s under ${cacheDir}`,
    );
    return { dockerConfigDir, version };
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/**
 * Downloads the `.deb` of `name` from Debian `suite` into `work` with `apt-get download`, through a sources
 * list, package lists and cache of its own under `work` (the mirror and keyring of this machine's own
 * release, see `debianSource`), so the machine's apt configuration and package state are not touched.
 * Returns the file's path and the source it came from.
 */
export async function downloadDebianPackage(
  work: string,
  suite: string,
  name: string,
): Promise<{ deb: string; source: { uri: string; signedBy?: string } }> {
  const source = await debianSource();
  const lists = `${work}/lists`;
  const cache = `${work}/cache`;
  for (const dir of [`${lists}/partial`, `${cache}/archives/partial`]) {
    await Deno.mkdir(dir, { recursive: true });
  }
  const sourcesList = `${work}/sources.list`;
  const signedBy = source.signedBy ? `[signed-by=${source.signedBy}] ` : "";
  await Deno.writeTextFile(sourcesList, `deb ${signedBy}${source.uri} ${suite} main\n`);
  const apt = (args: string[]) =>
    run([
      "apt-get",
      "-q",
      "-o",
      `Dir::Etc::SourceList=${sourcesList}`,
      "-o",
      "Dir::Etc::SourceParts=/nonexistent",
      "-o",
      `Dir::State::Lists=${lists}`,
      "-o",
      `Dir::Cache=${cache}`,
      "-o",
      "Acquire::Languages=none",
      // The download dirs are root's 0700 temp dirs, which apt's unprivileged _apt user cannot write.
      "-o",
      "APT::Sandbox::User=root",
      ...args,
    ], { cwd: work, env: { DEBIAN_FRONTEND: "noninteractive" } });
  await apt(["update"]);
  await apt(["download", name]);
  const debs: string[] = [];
  for await (const entry of Deno.readDir(work)) {
    if (entry.name.startsWith(`${name}_`) && entry.name.endsWith(".deb")) debs.push(`${work}/${entry.name}`);
  }
  if (debs.length !== 1) throw new Error(`apt-get download ${name} left ${debs.length} .deb files`);
  return { deb: debs[0], source };
}

/**
 * The Debian mirror this machine installs its own release from (the first `deb` source for the release in
 * /etc/os-release, in one-line or deb822 form) and its keyring, so that the other suite comes from the
 * same host with the same trust.
 */
async function debianSource(): Promise<{ uri: string; signedBy?: string }> {
  const osRelease = await Deno.readTextFile("/etc/os-release");
  const codename = osRelease.match(/^VERSION_CODENAME="?([a-z]+)"?$/m)?.[1];
  if (!codename) throw new Error("/etc/os-release names no VERSION_CODENAME: not a Debian release?");
  const files = ["/etc/apt/sources.list"];
  try {
    const parts = [];
    for await (const entry of Deno.readDir("/etc/apt/sources.list.d")) {
      if (/\.(list|sources)$/.test(entry.name)) parts.push(`/etc/apt/sources.list.d/${entry.name}`);
    }
    files.push(...parts.sort());
  } catch {
    // No sources.list.d.
  }
  const found: { uri: string; signedBy?: string }[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch {
      continue;
    }
    if (file.endsWith(".sources")) {
      // deb822: stanzas of "Field: value", continued on indented lines.
      for (const stanza of text.split(/\n\s*\n/)) {
        const fields = new Map<string, string>();
        let last = "";
        for (const line of stanza.split("\n")) {
          if (line.startsWith("#")) continue;
          const field = line.match(/^([A-Za-z-]+):\s*(.*)$/);
          if (field) fields.set(last = field[1].toLowerCase(), field[2].trim());
          else if (/^\s/.test(line) && last) fields.set(last, `${fields.get(last)}\n${line.trim()}`);
        }
        if (fields.get("enabled")?.toLowerCase() === "no") continue;
        const words = (name: string) => (fields.get(name) ?? "").split(/\s+/).filter((word) => word);
        if (!words("types").includes("deb") || !words("suites").includes(codename)) continue;
        const signedBy = fields.get("signed-by");
        for (const uri of words("uris")) {
          found.push({
            uri,
            signedBy: signedBy?.startsWith("/") && !signedBy.includes("\n") ? signedBy : undefined,
          });
        }
      }
    } else {
      for (const line of text.split("\n")) {
        const entry = line.trim().match(/^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)/);
        if (!entry || entry[3] !== codename) continue;
        const signedBy = entry[1]?.match(/(?:^|\s)signed-by=(\S+)/)?.[1];
        found.push({ uri: entry[2], signedBy });
      }
    }
  }
  if (found.length === 0) throw new Error(`no apt source for ${codename} in ${files.join(", ")}`);
  const { uri, signedBy } = found[0];
  const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
  if (signedBy && isFile(signedBy)) return { uri, signedBy };
  return isFile(keyring) ? { uri, signedBy: keyring } : { uri };
}
