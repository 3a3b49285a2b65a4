/**
 * How berth reaches one registry host: the scheme (HTTPS, verified; plain HTTP only for loopback hosts
 * and hosts listed as insecure, as docker does) and a Deno.HttpClient carrying extra CAs and a client
 * certificate from `<certs dir>/<host>/` (`*.crt` CA, `*.cert` + `*.key` client pair — docker's layout).
 * Proxies: Deno's fetch honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { outsideText } from "../util/text.ts";
import { isLoopbackHost } from "../oci/reference.ts";

/** Docker's certificate directory, read as well as berth's own. */
export const DOCKER_CERTS_DIR = "/etc/docker/certs.d";
/** How long the HTTPS-or-HTTP probe of a loopback or insecure registry may take. */
const PROBE_TIMEOUT_MS = 5_000;

/** What the operator allows per host: plain HTTP, and the directories holding its certificates. */
export interface TransportOptions {
  /** Hosts (host or host:port) that may be reached over plain HTTP. */
  insecureRegistries: string[];
  /** Directories holding `<host>/*.crt|*.cert|*.key`, searched in order. */
  certsDirs: string[];
}

/** How to reach one registry host, as resolveTransport decided it; reused for every request to it. */
export interface HostTransport {
  /** "https://host" or "http://host". */
  baseUrl: string;
  /** Carries the host's extra CAs and client certificate; absent when it has none (fetch's default). */
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

/** Certificates a hosts.toml names for a host, besides those of its certs directory entry. */
export interface HostCertificates {
  caFiles: string[];
  client?: { certFile: string; keyFile: string };
}

async function readCertificate(path: string, host: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new BerthError(
      "invalid_input",
      `cannot read ${path} (a certificate for ${host}): ${errorMessage(error)}`,
    );
  }
}

/**
 * Builds an HttpClient from the certificate files for `host` (its certs directory entries, then what its
 * hosts.toml names), or undefined when there are none.
 */
async function clientFor(
  host: string,
  certsDirs: string[],
  named: HostCertificates = { caFiles: [] },
): Promise<Deno.HttpClient | undefined> {
  const caCerts: string[] = [];
  for (const file of named.caFiles) caCerts.push(await readCertificate(file, host));
  let cert = named.client && await readCertificate(named.client.certFile, host);
  let key = named.client && await readCertificate(named.client.keyFile, host);
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

/**
 * The transport of a host whose scheme hosts.toml states: no probe, plain HTTP exactly when written http://.
 * Its certificates come from its own certs directory entry and from hosts.toml, never another host's.
 */
export async function configuredTransport(
  host: string,
  scheme: "https" | "http",
  options: TransportOptions,
  named: HostCertificates,
): Promise<HostTransport> {
  return { baseUrl: `${scheme}://${host}`, client: await clientFor(host, options.certsDirs, named) };
}

/** Whether `registry` may be spoken to over plain HTTP. */
export function allowsPlainHttp(registry: string, insecureRegistries: string[]): boolean {
  if (isLoopbackHost(registry)) return true;
  const hostOnly = registry.replace(/:[0-9]+$/, "");
  return insecureRegistries.some((entry) => entry === registry || entry === hostOnly);
}

/**
 * Refuses a URL that a registry handed berth to go to — a redirect, an upload's Location, a token realm —
 * unless it is https:, or http: for a registry berth may speak plain HTTP to (`plainHttpAllowed`). fetch
 * also reads file: and data: URLs: a registry must not make berth read a local file and send it on. The
 * error names the refused URL (cleaned, it came from the registry) and the registry.
 */
export function checkRegistryUrl(url: URL, registry: string, plainHttpAllowed: boolean, what: string): void {
  if (url.protocol === "https:" || (url.protocol === "http:" && plainHttpAllowed)) return;
  throw new BerthError(
    "registry_error",
    `registry ${registry} sent ${what} "${outsideText(url.href, 120)}": berth goes only to https: URLs` +
      (url.protocol === "http:" ? ` (http: only for loopback and --insecure-registry hosts)` : ""),
  );
}

/** Whether a connection error is about TLS (certificates, handshake) rather than reachability. */
export function isTlsError(message: string): boolean {
  return /certificate|UnknownIssuer|handshake|\btls\b|\bssl\b/i.test(message);
}

/** The way out of a TLS failure, naming the files berth reads. */
export function tlsHint(host: string, certsDirs: string[]): string {
  const dir = `${certsDirs[0] ?? "the certs directory (--certs-dir)"}/${host}`;
  return `for a private CA put it in ${dir}/ca.crt; for a client certificate, ${dir}/client.cert and client.key`;
}

/**
 * Decides the transport for `host` (the API host). Where plain HTTP is allowed, HTTPS is still tried
 * first, as docker does; plain HTTP is taken only when the host really speaks it (answers /v2/ with 200
 * or 401), so a TLS registry whose certificate is not trusted fails with that reason instead of being
 * spoken to in plain text.
 */
export async function resolveTransport(
  host: string,
  registry: string,
  options: TransportOptions,
  signal?: AbortSignal,
  named?: HostCertificates,
): Promise<HostTransport> {
  const client = await clientFor(host, options.certsDirs, named);
  const https: HostTransport = { baseUrl: `https://${host}`, client };
  if (!allowsPlainHttp(registry, options.insecureRegistries)) return https;
  const probeSignal = () =>
    signal
      ? AbortSignal.any([signal, AbortSignal.timeout(PROBE_TIMEOUT_MS)])
      : AbortSignal.timeout(PROBE_TIMEOUT_MS);
  let httpsError: unknown;
  try {
    const response = await fetch(`https://${host}/v2/`, { client, signal: probeSignal() });
    await response.body?.cancel();
    return https;
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    httpsError = error;
  }
  let plainStatus: number | undefined;
  try {
    const response = await fetch(`http://${host}/v2/`, { signal: probeSignal() });
    await response.body?.cancel();
    plainStatus = response.status;
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    // Neither answers: a reachability problem, reported (and retried) like any other.
    throw new BerthError("registry_unreachable", `cannot reach registry ${host}: ${errorMessage(error)}`, {
      cause: error,
      transient: true,
    });
  }
  if (plainStatus === 200 || plainStatus === 401) return { baseUrl: `http://${host}`, client };
  const reason = errorMessage(httpsError);
  throw new BerthError(
    "registry_unreachable",
    `TLS connection to registry ${host} failed (${reason}); ${tlsHint(host, options.certsDirs)}`,
    { cause: httpsError, transient: !isTlsError(reason) },
  );
}
