/**
 * HTTP over a unix socket (the engine's, the agent's status socket): a Deno.HttpClient that dials the socket,
 * and the origin to put in its URLs. The URL's host is never dialled, yet Deno's fetch treats it as a host:
 * - it resolves a name given there: a made-up name ("docker") cost one DNS query per request, and on a device
 *   whose resolver does not answer (offline, which restore is for) each request waited out the resolver's
 *   timeout (10 s with glibc's defaults);
 * - it matches it against NO_PROXY, and a match skips the client's socket for a direct TCP connection:
 *   `NO_PROXY=*` matched any name, and the usual `127.0.0.1,localhost` matches those.
 * So the origin is an IP literal (never looked up) that no NO_PROXY names and `*` does not match: 192.0.2.1,
 * reserved for documentation (RFC 5737) and never routed.
 */

/** The origin of every URL fetched through unixSocketClient. */
export const UNIX_SOCKET_ORIGIN = "http://192.0.2.1";

/** A client whose every connection goes to the unix socket at `path`. */
export function unixSocketClient(path: string): Deno.HttpClient {
  return Deno.createHttpClient({ proxy: { transport: "unix", path } });
}
