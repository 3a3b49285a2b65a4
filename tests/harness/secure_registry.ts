/**
 * A real docker-registry with TLS, client certificates and a login turned on as a test asks, plus what the
 * tests of those share: certs dirs in docker's layout, credential files, and checks on berth's failures.
 */
import assert from "node:assert/strict";
import type { BerthRun } from "./env.ts";
import type { KeyPair } from "./pki.ts";
import { type Registry, startRegistry } from "./services.ts";

export interface SecureRegistryOptions {
  /** Serve HTTPS with this certificate; `clientCa` makes the registry demand a client certificate. */
  tls?: { server: KeyPair; ca: KeyPair; clientCa?: KeyPair };
  /** The registry's `auth` section (htpasswd or token). */
  auth?: Record<string, unknown>;
  /** Other top-level config sections (e.g. `middleware`). */
  extra?: Record<string, unknown>;
}

export interface SecureRegistry extends Registry {
  /** "https://127.0.0.1:PORT" or "http://127.0.0.1:PORT". */
  baseUrl: string;
  /** A client that trusts the test CA and presents a client certificate when one is needed (for set-up). */
  client?: Deno.HttpClient;
}

/**
 * Starts docker-registry under `dir` with `options`; ready once /v2/ answers 200 or 401 over the right
 * scheme. `setupClient` is the client certificate used for that probe and for pushing test images.
 */
export async function startSecureRegistry(
  dir: string,
  options: SecureRegistryOptions,
  setupClient?: KeyPair,
): Promise<SecureRegistry> {
  const { tls } = options;
  const client = tls
    ? Deno.createHttpClient({
      caCerts: [await Deno.readTextFile(tls.ca.cert)],
      ...(setupClient
        ? { cert: await Deno.readTextFile(setupClient.cert), key: await Deno.readTextFile(setupClient.key) }
        : {}),
    })
    : undefined;
  const scheme = tls ? "https" : "http";
  let registry: Registry;
  try {
    registry = await startRegistry(dir, {
      extra: {
        ...options.extra,
        ...(options.auth ? { auth: options.auth } : {}),
        ...(tls
          ? {
            http: {
              tls: {
                certificate: tls.server.cert,
                key: tls.server.key,
                ...(tls.clientCa ? { clientcas: [tls.clientCa.cert] } : {}),
              },
            },
          }
          : {}),
      },
      ready: async (host) => {
        const response = await fetch(`${scheme}://${host}/v2/`, { client });
        await response.body?.cancel();
        return response.status === 200 || response.status === 401;
      },
    });
  } catch (error) {
    client?.close();
    throw error;
  }
  return {
    ...registry,
    baseUrl: `${scheme}://${registry.host}`,
    client,
    stop: async () => {
      client?.close();
      await registry.stop();
    },
  };
}

/**
 * Fills `<root>/<host>/` as docker's certs.d does: `ca.crt` for the CA, and `client.cert` + `client.key` for
 * a client certificate. Returns `root`, for `--certs-dir`.
 */
export async function certsDir(
  root: string,
  host: string,
  files: { ca?: KeyPair; client?: KeyPair },
): Promise<string> {
  const dir = `${root}/${host}`;
  await Deno.mkdir(dir, { recursive: true });
  if (files.ca) await Deno.copyFile(files.ca.cert, `${dir}/ca.crt`);
  if (files.client) {
    await Deno.copyFile(files.client.cert, `${dir}/client.cert`);
    await Deno.copyFile(files.client.key, `${dir}/client.key`);
  }
  return root;
}

/** Writes a docker config.json holding `user:password` for `host`; returns its path. */
export async function credentialsFile(path: string, host: string, user: string, password: string) {
  await Deno.writeTextFile(
    path,
    JSON.stringify({ auths: { [host]: { auth: btoa(`${user}:${password}`) } } }),
  );
  return path;
}

/** berth failed the documented way: exit 1 and exactly one line on stderr; returns that line. */
export function failureLine(result: BerthRun): string {
  assert.equal(result.code, 1, `expected exit 1, got ${result.code}\n${result.stderr}`);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${result.stderr}`);
  return lines[0];
}

/** None of `secrets` (nor their base64 forms) appears in berth's output. */
export function assertNoSecrets(result: BerthRun, secrets: string[]): void {
  const output = result.stdout + result.stderr;
  for (const secret of secrets) {
    for (const form of [secret, btoa(secret)]) {
      assert.ok(!output.includes(form), `berth printed a secret (${secret.slice(0, 4)}…):\n${output}`);
    }
  }
}
