/**
 * The status endpoint's listen address: `host:port`, `[v6]:port`, or an absolute unix socket path. Parsed
 * here once, so the config check (a non-loopback address needs a token) and the server agree.
 */

export type ListenAddress =
  | { transport: "unix"; path: string }
  | { transport: "tcp"; hostname: string; port: number; loopback: boolean };

const HOSTNAME =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;
const MAX_PORT = 65535;

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/**
 * Parses a listen address; undefined when it is none of the three forms. Port 0 lets the system choose a
 * free port (useful in tests).
 */
export function parseListenAddress(text: string): ListenAddress | undefined {
  if (text.startsWith("/")) {
    return text.length > 1 && !text.endsWith("/") ? { transport: "unix", path: text } : undefined;
  }
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > MAX_PORT) return undefined;
  const hostname = match[1] ?? match[2];
  if (match[1] !== undefined ? !IPV6.test(hostname) || !hostname.includes(":") : !HOSTNAME.test(hostname)) {
    return undefined;
  }
  return { transport: "tcp", hostname, port, loopback: isLoopback(hostname) };
}
