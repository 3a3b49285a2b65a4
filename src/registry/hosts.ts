/**
 * Registry mirrors, read from containerd's `hosts.toml` (containerd's docs/hosts.md): under a certs directory,
 * `<host[:port]>/hosts.toml` (or containerd's `<host>_<port>_/hosts.toml`) lists the hosts to try for that
 * registry, in order, and `server` last; `_default/hosts.toml` applies to registries without a file of their own.
 * The first certs directory holding the registry's file wins, else the first `_default`; files are never merged.
 * One validation point: every key and value is checked here, and the file is named in every refusal.
 */
import { parse as parseToml } from "smol-toml";
import { BerthError, errorMessage } from "../util/errors.ts";
import { outsideText } from "../util/text.ts";
import { apiHost } from "../oci/reference.ts";

/** What a host may be asked: containerd's three capabilities. */
export type HostCapability = "pull" | "resolve" | "push";

/** One host of a registry, as hosts.toml describes it (the registry itself is the last). */
export interface RegistryHost {
  /** "mirror.lan:5000": the host berth connects to; keys its transport, credentials, tokens and statistics. */
  host: string;
  /** Written in the file; absent for the registry itself when `server` is not given (probed as usual). */
  scheme?: "https" | "http";
  /** The API root: "/v2", or the path as written with `override_path`. */
  path: string;
  capabilities: ReadonlySet<HostCapability>;
  /** CA files added to the system's roots for this host. */
  caFiles: string[];
  /** The client certificate and its key (one file may hold both). */
  client?: { certFile: string; keyFile: string };
  /** Headers sent with every request to this host (a peer's token, for one). */
  headers: [string, string][];
  /** containerd's `dial_timeout`: bounds the wait for this host's response headers. */
  timeoutMs?: number;
  /** A `[host]` entry, not the registry's server: its requests carry `ns=<registry>`, as containerd sends. */
  mirror: boolean;
  /** The file it came from, for messages. */
  file: string;
}

/** A hosts.toml is a short list; anything larger is not one. */
const MAX_HOSTS_FILE_BYTES = 64 * 1024;
const ALL_CAPABILITIES: ReadonlySet<HostCapability> = new Set(["pull", "resolve", "push"]);
const HOST_KEYS = ["capabilities", "ca", "client", "skip_verify", "header", "override_path", "dial_timeout"];
const HOST_PORT =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]{1,5})?$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** containerd's directory name for a host with a port: "host_port_" (a ':' is not allowed everywhere). */
function portDirectory(host: string): string | undefined {
  const colon = host.lastIndexOf(":");
  return colon > 0 && !host.endsWith("]") ? `${host.slice(0, colon)}_${host.slice(colon + 1)}_` : undefined;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) return false;
    throw error;
  }
}

/** The hosts.toml that applies to `registry`, or undefined: the registry is then reached as it always was. */
export async function findHostsFile(registry: string, certsDirs: string[]): Promise<string | undefined> {
  for (const dir of certsDirs) {
    for (const name of [portDirectory(registry), registry]) {
      if (name && await isFile(`${dir}/${name}/hosts.toml`)) return `${dir}/${name}/hosts.toml`;
    }
  }
  for (const dir of certsDirs) {
    if (await isFile(`${dir}/_default/hosts.toml`)) return `${dir}/_default/hosts.toml`;
  }
  return undefined;
}

/** The hosts to try for `registry`, in order, or undefined when no hosts.toml applies. */
export async function loadRegistryHosts(
  registry: string,
  certsDirs: string[],
): Promise<RegistryHost[] | undefined> {
  const file = await findHostsFile(registry, certsDirs);
  if (!file) return undefined;
  let text: string;
  try {
    using handle = await Deno.open(file);
    const bytes = new Uint8Array(MAX_HOSTS_FILE_BYTES + 1);
    let length = 0;
    for (let n; length < bytes.length && (n = await handle.read(bytes.subarray(length))) !== null;) {
      length += n;
    }
    if (length > MAX_HOSTS_FILE_BYTES) throw new Error(`over ${MAX_HOSTS_FILE_BYTES} bytes`);
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, length));
  } catch (error) {
    throw new BerthError("invalid_input", `${file}: cannot read: ${errorMessage(error)}`);
  }
  return parseHostsFile(text, file, registry);
}

/**
 * Reads a hosts.toml's text: the `[host."URL"]` tables in the order written, then the server (`server`, or
 * the registry itself, with the file's top-level settings). Throws naming the file and the key.
 */
export function parseHostsFile(text: string, file: string, registry: string): RegistryHost[] {
  const fail = (why: string) => new BerthError("invalid_input", `${file}: ${why}`);
  let root: Record<string, unknown>;
  try {
    root = parseToml(text) as Record<string, unknown>;
  } catch (error) {
    throw fail(`not valid TOML: ${outsideText(errorMessage(error), 200)}`);
  }
  const dir = file.slice(0, file.lastIndexOf("/")) || "/";
  for (const key of Object.keys(root)) {
    if (key !== "server" && key !== "host" && !HOST_KEYS.includes(key)) {
      throw fail(
        `unknown key "${outsideText(key, 60)}" (hosts.toml has server, host and ${HOST_KEYS.join(", ")})`,
      );
    }
  }
  const hosts: RegistryHost[] = [];
  const tables = root.host ?? {};
  if (!isTable(tables)) throw fail(`"host" must be a table of [host."URL"] tables`);
  for (const [url, settings] of Object.entries(tables)) {
    if (!isTable(settings)) throw fail(`host "${outsideText(url, 100)}" must be a table`);
    hosts.push(hostEntry(url, settings, { dir, file, mirror: true }));
  }
  const server = root.server;
  if (server !== undefined && typeof server !== "string") throw fail(`"server" must be a URL string`);
  const serverSettings = Object.fromEntries(Object.entries(root).filter(([key]) => HOST_KEYS.includes(key)));
  if (server) {
    hosts.push(hostEntry(server, serverSettings, { dir, file, mirror: false }));
  } else {
    // No server: the registry itself, reached as without a file (scheme probed where plain HTTP is allowed),
    // with the file's top-level settings.
    const entry = hostEntry(`https://${apiHost(registry)}`, serverSettings, { dir, file, mirror: false });
    hosts.push({ ...entry, host: registry, scheme: undefined, path: "/v2" });
  }
  return hosts;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** One host table (or the file's top level, for the server), checked key by key. */
function hostEntry(
  written: string,
  settings: Record<string, unknown>,
  { dir, file, mirror }: { dir: string; file: string; mirror: boolean },
): RegistryHost {
  const name = mirror ? `host "${outsideText(written, 100)}"` : `server "${outsideText(written, 100)}"`;
  const fail = (why: string) => new BerthError("invalid_input", `${file}: ${name}: ${why}`);
  for (const key of Object.keys(settings)) {
    if (!HOST_KEYS.includes(key)) throw fail(`unknown key "${outsideText(key, 60)}"`);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(written) && !/^https?:\/\//i.test(written)) {
    throw fail("the scheme must be http or https");
  }
  // containerd reads a URL without a scheme as https.
  const withScheme = /^https?:\/\//i.test(written) ? written : `https://${written}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw fail("not a URL");
  }
  if (url.username || url.password || url.search || url.hash || !HOST_PORT.test(url.host)) {
    throw fail("expected http(s)://host[:port][/path], without credentials, query or fragment");
  }
  const overridePath = settings.override_path ?? false;
  if (typeof overridePath !== "boolean") throw fail(`"override_path" must be true or false`);
  let path = url.pathname.replace(/\/+$/, "");
  if (!overridePath && !path.endsWith("/v2")) path = `${path}/v2`;
  if (settings.skip_verify === true) {
    throw fail(
      `"skip_verify = true" is not supported: berth always verifies TLS; put the host's CA in "ca" instead`,
    );
  }
  if (settings.skip_verify !== undefined && typeof settings.skip_verify !== "boolean") {
    throw fail(`"skip_verify" must be true or false`);
  }
  return {
    host: url.host,
    scheme: url.protocol === "http:" ? "http" : "https",
    path,
    capabilities: capabilitiesOf(settings.capabilities, fail),
    caFiles: stringList(settings.ca, "ca", fail).map((path) => absolute(path, dir, fail)),
    client: clientPair(settings.client, dir, fail),
    headers: headersOf(settings.header, fail),
    timeoutMs: settings.dial_timeout === undefined ? undefined : durationMs(settings.dial_timeout, fail),
    mirror,
    file,
  };
}

function capabilitiesOf(value: unknown, fail: (why: string) => Error): ReadonlySet<HostCapability> {
  if (value === undefined) return ALL_CAPABILITIES;
  const list = stringList(value, "capabilities", fail).map((item) => item.toLowerCase());
  for (const item of list) {
    if (!ALL_CAPABILITIES.has(item as HostCapability)) {
      throw fail(`unknown capability "${outsideText(item, 40)}" (pull, resolve, push)`);
    }
  }
  return new Set(list as HostCapability[]);
}

function stringList(value: unknown, key: string, fail: (why: string) => Error): string[] {
  if (value === undefined) return [];
  if (typeof value === "string") return [value];
  if (Array.isArray(value) && value.every((item) => typeof item === "string")) return value as string[];
  throw fail(`"${key}" must be a string or a list of strings`);
}

/** containerd reads a relative path against the directory of the hosts.toml. */
function absolute(path: string, dir: string, fail: (why: string) => Error): string {
  if (path === "" || path.includes("\0")) throw fail(`"${outsideText(path, 60)}" is not a file path`);
  return path.startsWith("/") ? path : `${dir}/${path}`;
}

/** `client`: one file with both PEM blocks, or a [cert, key] pair; Deno's client takes one certificate. */
function clientPair(
  value: unknown,
  dir: string,
  fail: (why: string) => Error,
): { certFile: string; keyFile: string } | undefined {
  if (value === undefined) return undefined;
  const pairs: [string, string][] = [];
  const items = Array.isArray(value) ? value : [value];
  for (const item of items) {
    if (typeof item === "string") pairs.push([item, item]);
    else if (Array.isArray(item) && item.length === 2 && item.every((part) => typeof part === "string")) {
      pairs.push([item[0], item[1]]);
    } else throw fail(`"client" must be a file, a list of files or a list of [cert, key] pairs`);
  }
  if (pairs.length > 1) throw fail(`"client" names ${pairs.length} certificates; berth presents one`);
  if (pairs.length === 0) return undefined;
  return { certFile: absolute(pairs[0][0], dir, fail), keyFile: absolute(pairs[0][1], dir, fail) };
}

function headersOf(value: unknown, fail: (why: string) => Error): [string, string][] {
  if (value === undefined) return [];
  if (!isTable(value)) throw fail(`"header" must be a table of header names`);
  const headers: [string, string][] = [];
  for (const [name, values] of Object.entries(value)) {
    if (!HEADER_NAME.test(name)) throw fail(`"${outsideText(name, 60)}" is not a header name`);
    for (const text of stringList(values, `header.${name}`, fail)) {
      if (/[\r\n\0]/.test(text)) throw fail(`header ${name} holds a line break`);
      headers.push([name, text]);
    }
  }
  return headers;
}

/** A Go duration as containerd writes it ("500ms", "5s", "1m30s"), in milliseconds. */
function durationMs(value: unknown, fail: (why: string) => Error): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (typeof value !== "string" || !/^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/.test(value)) {
    throw fail(`"dial_timeout" must be a duration such as "5s"`);
  }
  let total = 0;
  for (const [, amount, unit] of value.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(amount) * units[unit];
  }
  if (total <= 0) throw fail(`"dial_timeout" must be above zero`);
  return total;
}
