/** `berth serve` as a child process, for tests of peers and mirrors. */
import assert from "node:assert/strict";
import { CHILD_ENV, RUN_ARGS } from "./env.ts";

/** One `berth serve` child, its URL read from its first line of output. */
/** A running `berth serve`: its URL and host:port. */
export interface Serving {
  url: string;
  host: string;
  stop(): Promise<void>;
}

/** Starts `berth serve` on a free loopback port for `store`; resolves once it printed its URL. */
export async function startServe(store: string, extra: string[] = []): Promise<Serving> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...RUN_ARGS, "--store", store, "serve", "--listen", "127.0.0.1:0", ...extra],
    env: CHILD_ENV,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { done, value } = await reader.read();
    if (done) break;
    text += value;
  }
  const url = /at (http:\/\/\S+)/.exec(text)?.[1];
  if (!url) {
    child.kill("SIGKILL");
    throw new Error(`berth serve did not start: ${JSON.stringify(text)}`);
  }
  return {
    url,
    host: new URL(url).host,
    async stop() {
      child.kill("SIGTERM");
      const status = await child.status;
      await reader.cancel().catch(() => {});
      assert.equal(status.code, 0, "berth serve exits 0 on SIGTERM");
    },
  };
}
