/**
 * Requests over a unix socket (the engine's, the agent's status socket) name no host to look up. Deno's fetch
 * resolves a URL's host name even when its client dials a unix socket, so a made-up name sent one DNS query per
 * request; on a device whose resolver does not answer (offline, the very case restore is for) each engine
 * request waited out the resolver's timeout; and a NO_PROXY naming the host (`*` names every name) made fetch
 * skip the socket for a TCP connection. Here berth runs in a mount namespace whose resolv.conf names a
 * resolver that never answers, whose /etc/hosts is empty, with `NO_PROXY=*`: it must reach both sockets and
 * send the resolver nothing.
 */
import assert from "node:assert/strict";
import { startDockerd } from "../harness/services.ts";
import { CHILD_ENV, RUN_ARGS, runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";

/** A resolver on 127.0.0.53-ish that counts the queries it gets and never answers them. */
function silentResolver(hostname: string): { queries: () => number; close: () => void } {
  const socket = Deno.listenDatagram({ transport: "udp", hostname, port: 53 });
  let queries = 0;
  (async () => {
    try {
      for await (const _ of socket) queries++;
    } catch {
      // closed
    }
  })();
  return { queries: () => queries, close: () => socket.close() };
}

/** Runs berth with `resolv.conf` and an empty `/etc/hosts` bound over the system's, in a namespace of its own. */
async function berthWithResolver(dir: string, args: string[]): Promise<{ code: number; stderr: string }> {
  const output = await new Deno.Command("unshare", {
    args: [
      "-m",
      "sh",
      "-c",
      'mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts && shift 2 && exec "$@"',
      "sh",
      `${dir}/resolv.conf`,
      `${dir}/hosts`,
      Deno.execPath(),
      ...RUN_ARGS,
      ...args,
    ],
    // A proxy that is closed, and a NO_PROXY that matches every name: the socket must be used all the same.
    env: { ...CHILD_ENV, HTTP_PROXY: "http://127.0.0.1:9", HTTPS_PROXY: "http://127.0.0.1:9", NO_PROXY: "*" },
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

Deno.test({
  name: "requests over a unix socket look up no name and ignore NO_PROXY: a silent resolver costs nothing",
  ...withServices,
  async fn() {
    const { appA } = testEnv()!.images;
    const dir = await scratchDir("unix-dns-");
    const resolverHost = "127.0.0.153";
    await Deno.writeTextFile(
      `${dir}/resolv.conf`,
      `nameserver ${resolverHost}\noptions timeout:2 attempts:1\n`,
    );
    await Deno.writeTextFile(`${dir}/hosts`, "");
    const store = `${dir}/store`;
    assert.equal((await runBerth(["--store", store, "pull", appA.ref])).code, 0);
    const dockerd = await startDockerd(`${dir}/engine`);
    // A status socket that answers every request with a 503: berth status fails, but only after asking.
    const statusSocket = `${dir}/status.sock`;
    const status = Deno.serve(
      { transport: "unix", path: statusSocket, onListen() {} },
      () => new Response("not now", { status: 503 }),
    );
    const resolver = silentResolver(resolverHost);
    try {
      const loaded = await berthWithResolver(dir, [
        "--store",
        store,
        "--docker-host",
        dockerd.host,
        "load",
        appA.ref,
      ]);
      assert.equal(loaded.code, 0, loaded.stderr);
      const asked = await berthWithResolver(dir, ["status", "--listen", statusSocket]);
      assert.equal(asked.code, 1, asked.stderr);
      assert.match(asked.stderr, /503/);
      assert.equal(resolver.queries(), 0, "no DNS query was sent");
    } finally {
      resolver.close();
      await status.shutdown();
      await dockerd.stop();
    }
  },
});
