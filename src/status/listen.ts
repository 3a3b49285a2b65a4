/**
 * The status endpoint's address, `status.listen`: `host:port`, `[ipv6]:port`, or an absolute unix socket
 * path. Shared by the server (where to listen, whether a token is required) and by `berth status` (where to
 * connect).
 */
import { BerthError } from "../util/errors.ts";

/** Loopback, so only this device can ask; scripts and `berth status` rely on this default. */
export const DEFAULT_STATUS_LISTEN = "127.0.0.1:8470";

export type ListenAddress =
  | { transport: "tcp"; hostname: string; port: number }
  | { transport: "unix"; path: string };

/** Parses `listen`; `key` names the setting in errors (e.g. "status.listen"). */
export function parseListen(listen: string, key = "status.listen"): ListenAddress {
  const expected =
    `${key} "${listen}": expected host:port (e.g. ${DEFAULT_STATUS_LISTEN}), [ipv6]:port or an absolute unix socket path`;
  if (listen.startsWith("/")) {
    if (listen.endsWith("/") || listen.includes("\0")) throw new BerthError("invalid_input", expected);
    return { transport: "unix", path: listen };
  }
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})$/.exec(listen);
  if (!match) throw new BerthError("invalid_input", expected);
  const port = Number(match[3]);
  if (port > 65535) {
    throw new BerthError("invalid_input", `${key} "${listen}": port ${port} is not from 0 to 65535`);
  }
  const hostname = match[1] ?? match[2];
  if (match[1] !== undefined && !hostname.includes(":")) throw new BerthError("invalid_input", expected);
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
