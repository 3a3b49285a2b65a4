/**
 * Copies a single-platform test image from the runner's plain-HTTP registry into a registry a test started
 * itself (TLS, client certificates, a login): the distribution API's two-step blob upload and a manifest
 * PUT with the original bytes, so digests stay the same. Done over HTTP here rather than with skopeo so
 * that the test decides exactly which Authorization and TLS client are used.
 */
import { MANIFEST_ACCEPT } from "./images.ts";

/** Where an image goes: the registry's base URL, and how to reach and log in to it. */
export interface Destination {
  /** "https://127.0.0.1:PORT" or "http://127.0.0.1:PORT". */
  baseUrl: string;
  /** Authorization header value, e.g. "Basic …" or "Bearer …". */
  authorization?: string;
  /** For extra CAs and client certificates. */
  client?: Deno.HttpClient;
}

/** What was copied. */
export interface CopiedImage {
  /** The manifest's digest (unchanged by the copy). */
  digest: string;
  /** Config and layer digests and sizes. */
  blobs: { digest: string; size: number }[];
}

/** Checks the status and releases the body. */
async function expectStatus(response: Response, status: number, what: string): Promise<void> {
  const text = await response.text();
  if (response.status === status) return;
  throw new Error(`${what}: HTTP ${response.status} (expected ${status}) ${text.slice(0, 300)}`);
}

/** Copies `source` ("host:port/repo:tag", plain HTTP, no login) to `repo:tag` at `destination`. */
export async function copyImage(
  source: string,
  destination: Destination,
  repo: string,
  tag: string,
): Promise<CopiedImage> {
  const match = /^([^/]+)\/(.+):([^:/]+)$/.exec(source);
  if (!match) throw new Error(`not host/repo:tag: ${source}`);
  const [, host, sourceRepo, sourceTag] = match;
  const from = `http://${host}/v2/${sourceRepo}`;
  const to = `${destination.baseUrl}/v2/${repo}`;
  const headers = (extra: Record<string, string> = {}) => {
    const result = new Headers(extra);
    if (destination.authorization) result.set("Authorization", destination.authorization);
    return result;
  };
  const send = (url: string, init: RequestInit) =>
    fetch(url, {
      ...init,
      headers: headers(init.headers as Record<string, string>),
      client: destination.client,
    });

  const manifestResponse = await fetch(`${from}/manifests/${sourceTag}`, {
    headers: { Accept: MANIFEST_ACCEPT },
  });
  const manifestBytes = new Uint8Array(await manifestResponse.arrayBuffer());
  if (manifestResponse.status !== 200) throw new Error(`GET ${source}: HTTP ${manifestResponse.status}`);
  const mediaType = manifestResponse.headers.get("content-type")!;
  const digest = manifestResponse.headers.get("docker-content-digest")!;
  const manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
  if (!manifest.config) throw new Error(`${source} is an index; copyImage copies single images only`);
  const blobs = [manifest.config, ...manifest.layers].map(({ digest, size }) => ({ digest, size }));

  for (const blob of blobs) {
    const blobResponse = await fetch(`${from}/blobs/${blob.digest}`);
    const bytes = new Uint8Array(await blobResponse.arrayBuffer());
    if (blobResponse.status !== 200) throw new Error(`GET blob ${blob.digest}: HTTP ${blobResponse.status}`);
    const started = await send(`${to}/blobs/uploads/`, { method: "POST" });
    await expectStatus(started, 202, `start upload of ${blob.digest} to ${to}`);
    const location = new URL(started.headers.get("location")!, destination.baseUrl);
    location.searchParams.set("digest", blob.digest);
    const finished = await send(location.href, {
      method: "PUT",
      headers: { "Content-Type": "application/octet-stream" },
      body: bytes,
    });
    await expectStatus(finished, 201, `upload of ${blob.digest} to ${to}`);
  }
  const put = await send(`${to}/manifests/${tag}`, {
    method: "PUT",
    headers: { "Content-Type": mediaType },
    body: manifestBytes,
  });
  await expectStatus(put, 201, `PUT manifest ${repo}:${tag} to ${to}`);
  return { digest, blobs };
}
