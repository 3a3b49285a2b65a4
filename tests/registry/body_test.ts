/** The body readers and the token exchange's rules, on streams and callbacks made here (no network). */
import assert from "node:assert/strict";
import { MAX_ERROR_BODY_BYTES, readAtMost, readRegistryError } from "../../src/registry/body.ts";
import { answerChallenge, type TokenExchange } from "../../src/registry/auth.ts";
import { BerthError } from "../../src/util/errors.ts";

/** A stream of `chunks`, then (with `stall`) nothing ever again; records whether it was cancelled. */
function stream(chunks: Uint8Array[], stall = false) {
  const state = { cancelled: false, pulled: 0 };
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (state.pulled < chunks.length) return controller.enqueue(chunks[state.pulled++]);
      if (stall) return new Promise<void>(() => {});
      controller.close();
    },
    cancel() {
      state.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { body, state };
}

Deno.test("readAtMost reads a body whole under its cap", async () => {
  const { body } = stream([new Uint8Array([1, 2]), new Uint8Array([3])]);
  const read = await readAtMost(body, 10, { what: "x", stallMs: 1000 });
  assert.deepEqual([...read.bytes], [1, 2, 3]);
  assert.equal(read.truncated, false);
});

Deno.test("readAtMost stops at its cap and cancels the body instead of reading the rest", async () => {
  const chunks = Array.from({ length: 100 }, () => new Uint8Array(1000));
  const { body, state } = stream(chunks);
  const read = await readAtMost(body, 2500, { what: "x", stallMs: 1000 });
  assert.equal(read.bytes.length, 2500);
  assert.equal(read.truncated, true);
  assert.ok(state.cancelled, "cancelled");
  assert.ok(state.pulled <= 4, `pulled ${state.pulled} chunks`);
});

Deno.test("readAtMost fails a stalled body with a transient registry_unreachable after the stall timeout", async () => {
  const { body, state } = stream([new Uint8Array(3)], true);
  const started = Date.now();
  await assert.rejects(readAtMost(body, 100, { what: "manifest m", stallMs: 200 }), (error: unknown) => {
    assert.ok(error instanceof BerthError);
    assert.equal(error.reason, "registry_unreachable");
    assert.ok(error.transient);
    assert.match(error.message, /^manifest m: no data for 0.2 s$/);
    return true;
  });
  assert.ok(Date.now() - started < 2000);
  assert.ok(state.cancelled);
});

Deno.test("an error body is read only up to its cap, and its text is cleaned", async () => {
  const json = JSON.stringify({ errors: [{ code: "DENIED", message: "no\x1b[2J\nway" }] });
  const padding = new Uint8Array(10 * MAX_ERROR_BODY_BYTES).fill(0x20);
  const { body, state } = stream([new TextEncoder().encode(json), padding]);
  const error = await readRegistryError(new Response(body, { status: 403 }), 1000);
  assert.deepEqual(error, { code: "DENIED", text: "DENIED: no way" });
  assert.ok(state.cancelled);
});

Deno.test("a stalled error body gives the status alone", async () => {
  const { body } = stream([new TextEncoder().encode('{"errors":')], true);
  assert.deepEqual(await readRegistryError(new Response(body, { status: 500 }), 100), { text: "HTTP 500" });
});

const challenge = (realm: string) => ({ scheme: "bearer" as const, params: { realm } });
const credentials = { username: "u", password: "p" };
function exchange(overrides: Partial<TokenExchange> = {}) {
  const asked: URL[] = [];
  const value: TokenExchange = {
    fetch: (url) => {
      asked.push(url);
      return Promise.resolve(Response.json({ token: "t" }));
    },
    tls: true,
    plainHttpAllowed: false,
    stallMs: 1000,
    ...overrides,
  };
  return { value, asked };
}

Deno.test("a token realm that is not https: is refused before anything is fetched", async () => {
  for (const realm of ["file:///etc/berth/secret.json", "data:,{}", "http://auth.example.com/token"]) {
    const { value, asked } = exchange();
    await assert.rejects(
      answerChallenge(challenge(realm), "registry.example.com", "repository:a:pull", credentials, value),
      (error: unknown) =>
        error instanceof BerthError && error.message.includes("registry.example.com") &&
        error.message.includes(new URL(realm).protocol),
    );
    assert.deepEqual(asked, [], realm);
  }
});

Deno.test("credentials never go to a plain-HTTP realm of a TLS registry off this machine", async () => {
  // The registry may be spoken to in plain HTTP (an insecure registry), but it answered over TLS.
  const { value, asked } = exchange({ plainHttpAllowed: true, tls: true });
  await assert.rejects(
    answerChallenge(
      challenge("http://auth.example.com/token"),
      "reg.local:5000",
      "repository:a:pull",
      credentials,
      value,
    ),
    /over TLS but its token realm http:\/\/auth.example.com is plain HTTP/,
  );
  assert.deepEqual(asked, []);
  // Anonymous is fine there, and so is a loopback realm (nothing crosses a network) or a plain-HTTP registry.
  for (
    const [realm, tls, creds] of [
      ["http://auth.example.com/token", true, undefined],
      ["http://127.0.0.1:5001/token", true, credentials],
      ["http://auth.example.com/token", false, credentials],
    ] as const
  ) {
    const ok = exchange({ plainHttpAllowed: true, tls });
    const answer = await answerChallenge(
      challenge(realm),
      "reg.local:5000",
      "repository:a:pull",
      creds,
      ok.value,
    );
    assert.equal(answer.header, "Bearer t");
  }
});

Deno.test("a token that is not plain text is refused (it would go into a header)", async () => {
  const { value } = exchange({ fetch: () => Promise.resolve(Response.json({ token: "a\r\nX-Evil: 1" })) });
  await assert.rejects(
    answerChallenge(
      challenge("https://auth.example.com/t"),
      "r.example.com",
      "repository:a:pull",
      undefined,
      value,
    ),
    /not plain text/,
  );
});
