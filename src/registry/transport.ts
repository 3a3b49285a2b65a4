/**
 * How berth reaches one registry host: the scheme (HTTPS, verified; plain HTTP only for loopback hosts
 * and hosts listed as insecure, as docker does) and a Deno.HttpClient carrying extra CAs and a client
 * certificate from `<certs dir>/<host>/` (`*.crt` CA, `*.cert` + `*.key` client pair — docker's layout).
 * Proxies: Deno's fetch honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment.
 */
import { BerthError } from "../util/errors.ts";
import { isLoopbackHost } from "./reference.ts";

/** Docker's certificate directory, read as well as berth's own. */
export const DOCKER_CERTS_DIR = "/etc/docker/certs.d";
/** berth's own certificate directory (same layout as docker's). */
export const DEFAULT_CERTS_DIR = "/etc/berth/certs.d";

export interface TransportOptions {
  /** Hosts (host or host:port) that may be reached over plain HTTP. */
  insecureRegistries: string[];
  /** Directories holding `<host>/*.crt|*.cert|*.key`, searched in order. */
  certsDirs: string[];
}

export interface HostTransport {
  /** "https://host" or "http://host". */
  baseUrl: string;
  client?: Deno.HttpClient;
}

async function readDirNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) if (entry.isFile || entry.isSymlink) names.push(entry.name);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.PermissionDenied) return [];
    throw error;
  }
  return names.sort();
}

/** Builds an HttpClient from the certificate files for `host`, or undefined when there are none. */
async function clientFor(host: string, certsDirs: string[]): Promise<Deno.HttpClient | undefined> {
  const caCerts: string[] = [];
  let cert: string | undefined;
  let key: string | undefined;
  // docker names the directory after host:port, with ':' kept.
  for (const dir of certsDirs) {
    const hostDir = `${dir}/${host}`;
    const names = await readDirNames(hostDir);
    for (const name of names) {
      const path = `${hostDir}/${name}`;
      if (name.endsWith(".crt")) caCerts.push(await Deno.readTextFile(path));
      const pair = name.endsWith(".cert") ? name.replace(/\.cert$/, ".key") : name.replace(/\.key$/, ".cert");
      if ((name.endsWith(".cert") || name.endsWith(".key")) && !names.includes(pair)) {
        throw new BerthError(
          "invalid_input",
          `${path} has no matching ${hostDir}/${pair} (client certificate pair)`,
        );
      }
      if (name.endsWith(".cert") && cert === undefined) {
        cert = await Deno.readTextFile(path);
        key = await Deno.readTextFile(`${hostDir}/${pair}`);
      }
    }
  }
  if (caCerts.length === 0 && cert === undefined) return undefined;
  return Deno.createHttpClient({ caCerts, ...(cert ? { cert, key } : {}) });
}

/** Whether `registry` may be spoken to over plain HTTP. */
export function allowsPlainHttp(registry: string, insecureRegistries: string[]): boolean {
  if (isLoopbackHost(registry)) return true;
  const hostOnly = registry.replace(/:[0-9]+$/, "");
  return insecureRegistries.some((entry) => entry === registry || entry === hostOnly);
}

/**
 * Decides the transport for `host` (the API host). Where plain HTTP is allowed, HTTPS is still tried
 * first and HTTP used only when the TLS connection fails, as docker does.
 */
export async function resolveTransport(
  host: string,
  registry: string,
  options: TransportOptions,
  signal?: AbortSignal,
): Promise<HostTransport> {
  const client = await clientFor(host, options.certsDirs);
  const https: HostTransport = { baseUrl: `https://${host}`, client };
  if (!allowsPlainHttp(registry, options.insecureRegistries)) return https;
  try {
    const response = await fetch(`https://${host}/v2/`, {
      client,
      signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(5_000)]) : AbortSignal.timeout(5_000),
    });
    await response.body?.cancel();
    return https;
  } catch {
    if (signal?.aborted) throw signal.reason;
    return { baseUrl: `http://${host}`, client };
  }
}
