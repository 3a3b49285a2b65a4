/**
 * Listen addresses (`status.listen`): `host:port`, `[ipv6]:port`, or an absolute unix socket path. Parsed
 * here once, so the config check (a non-loopback address needs a token), the server (where to listen) and
 * `berth status` (where to connect) agree.
 */
import { BerthError } from "./errors.ts";

/** A parsed listen address: a TCP host and port, or a unix socket path. */
export type ListenAddress =
  | { transport: "tcp"; hostname: string; port: number }
  | { transport: "unix"; path: string };

/** DNS labels, dot-separated (names and IPv4 addresses). */
const HOSTNAME =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;
const MAX_PORT = 65535;

/**
 * Parses `listen`; `key` names the setting in errors (e.g. "status.listen"). Port 0 lets the system choose
 * a free port (useful in tests).
 */
export function parseListen(listen: string, key = "status.listen"): ListenAddress {
  const expected = `${key} ${
    JSON.stringify(listen)
  }: expected host:port (e.g. 127.0.0.1:8470), [ipv6]:port or an absolute unix socket path`;
  if (listen.startsWith("/")) {
    if (listen.length === 1 || listen.endsWith("/") || listen.includes("\0")) {
      throw new BerthError("invalid_input", expected);
    }
    return { transport: "unix", path: listen };
  }
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(listen);
  if (!match) throw new BerthError("invalid_input", expected);
  const port = Number(match[3]);
  if (port > MAX_PORT) {
    throw new BerthError(
      "invalid_input",
      `${key} ${JSON.stringify(listen)}: port ${port} is not from 0 to ${MAX_PORT}`,
    );
  }
  const hostname = match[1] ?? match[2];
  const valid = match[1] !== undefined
    ? IPV6.test(hostname) && hostname.includes(":")
    : HOSTNAME.test(hostname);
  if (!valid) throw new BerthError("invalid_input", expected);
  return { transport: "tcp", hostname, port };
}

/**
 * Whether only this device can reach `address`: a unix socket, `localhost`, 127.0.0.0/8 or ::1 (also as
 * an IPv4-mapped address). Any other name counts as reachable from outside, since it may resolve anywhere.
 */
export function isLoopback(address: ListenAddress): boolean {
  if (address.transport === "unix") return true;
  const host = address.hostname.toLowerCase().replace(/^::ffff:/, "");
  if (host === "localhost" || host === "::1" || host === "0:0:0:0:0:0:0:1") return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** "127.0.0.1:8470", "[::1]:8470" or the socket path: what people type and logs show. */
export function formatListen(address: ListenAddress): string {
  if (address.transport === "unix") return address.path;
  const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
  return `${host}:${address.port}`;
}

/**
 * The host a client on this device connects to: a wildcard listen address (0.0.0.0, ::) is reached
 * through loopback.
 */
export function connectHost(address: { hostname: string }): string {
  if (address.hostname === "0.0.0.0") return "127.0.0.1";
  if (address.hostname === "::" || address.hostname === "0:0:0:0:0:0:0:0") return "::1";
  return address.hostname;
}
