/**
 * `berth serve [--listen ADDR] [--token TOKEN]`: the store served read-only to neighbouring devices over the
 * OCI distribution API (status/peer.ts), until SIGINT or SIGTERM. It opens the store as a reader (no lock),
 * so it runs beside the agent or a pull; it never writes.
 */
import { BerthError, UsageError } from "../util/errors.ts";
import { Store } from "../store/store.ts";
import { servePeers } from "../status/peer.ts";
import { DEFAULT_PEER_LISTEN } from "../config/defaults.ts";
import type { Context } from "./context.ts";

/** Where and with which token: the flags, else the config's peer keys, else the loopback default. */
export function serveSettings(context: Context): { listen: string; token?: string; keys: Keys } {
  const listenFlag = context.args.options.listen;
  const tokenFlag = context.args.options.token;
  if (tokenFlag === "") throw new UsageError("--token needs a non-empty value");
  const listen = typeof listenFlag === "string"
    ? listenFlag
    : context.config.peer.listen ?? DEFAULT_PEER_LISTEN;
  const token = typeof tokenFlag === "string" ? tokenFlag : context.config.peer.token;
  return {
    listen,
    token,
    keys: {
      listen: typeof listenFlag === "string" ? "--listen" : "peer.listen",
      token: "--token (or peer.token)",
    },
  };
}

/** How errors name the address and the token. */
interface Keys {
  listen: string;
  token: string;
}

/** `berth serve`: exit 0 once stopped by SIGINT or SIGTERM; 1 when it cannot start. */
export async function serveCommand(context: Context): Promise<number> {
  if (context.args.positional.length > 0) throw new UsageError("serve takes no arguments");
  const { listen, token, keys } = serveSettings(context);
  const store = await Store.open(context.storePath, { write: false, command: "serve" });
  if (!store.exists) {
    throw new BerthError(
      "not_found",
      `store ${context.storePath} does not exist: nothing to serve (pull into it first, or give --store)`,
    );
  }
  const server = servePeers(listen, store, { token, keys, warn: (message) => context.note(message) });
  const stopped = Promise.withResolvers<void>();
  const onSignal = () => stopped.resolve();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    if (context.json) context.emit({ url: server.url, listen: server.listen, store: store.root });
    else context.say(`serving ${store.root} read-only at ${server.url}`);
    await stopped.promise;
    return 0;
  } finally {
    await server.close();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}
