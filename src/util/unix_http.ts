/**
 * HTTP over a unix socket (the engine's, the agent's status socket): a Deno.HttpClient that dials the socket,
 * and the origin to put in its URLs. The URL's host is never dialled, but Deno's fetch still resolves a name
 * given there: a made-up name ("docker") cost one DNS query per request, and on a device whose resolver does
 * not answer (offline, which restore is for) each request waited out the resolver's timeout. An IP literal
 * is not looked up.
 */

/** The origin of every URL fetched through unixSocketClient. */
export const UNIX_SOCKET_ORIGIN = "http://127.0.0.1";

/** A client whose every connection goes to the unix socket at `path`. */
export function unixSocketClient(path: string): Deno.HttpClient {
  return Deno.createHttpClient({ proxy: { transport: "unix", path } });
}
