/**
 * Test images built with the real tools: a busybox rootfs imported into dockerd, small images built on it
 * with the legacy docker builder, pushed to the test registry with skopeo, and a two-platform manifest list
 * made with `docker manifest`. What the registry then serves for each tag is read back over HTTP, so tests
 * compare against the registry's own digests rather than against values computed here.
 */
import {
  busyboxRootfsTar,
  type Dockerd,
  type Registry,
  run,
  startDockerd,
  startRegistry,
} from "./services.ts";

/** One descriptor: a blob's digest and size. */
export interface BlobRef {
  digest: string;
  size: number;
}

/** What the registry serves for one test image tag. */
export interface ImageInfo {
  /** "<registry>/berth-test/<repo>:<tag>". */
  ref: string;
  /** The Docker-Content-Digest the registry answers for the tag. */
  digest: string;
  /** The manifest's media type (for `multi`, the index's). */
  mediaType: string;
  /** The config blob's digest (for `multi`, the linux/amd64 child's). */
  configDigest: string;
  /** The layers, base first (for `multi`, the linux/amd64 child's). */
  layers: BlobRef[];
  /** Only for an index: its entries as the registry serves them. */
  manifests?: { digest: string; size: number; mediaType: string; platform: Record<string, string> }[];
}

/** Every test image, by role. */
export interface TestImages {
  /** berth-test/base:1: one layer, a static busybox rootfs; Docker v2 schema 2. */
  base: ImageInfo;
  /** berth-test/app-a:1, app-b:1, app-c:1: base plus two small layers each; Docker v2 schema 2. */
  appA: ImageInfo;
  appB: ImageInfo;
  appC: ImageInfo;
  /** berth-test/app-oci:1: like app-a with other content, OCI manifest and config media types. */
  appOci: ImageInfo;
  /** berth-test/big:1: base plus a 32 MiB and an 8 MiB layer of random bytes; Docker v2 schema 2. */
  big: ImageInfo;
  /** berth-test/multi:1: a manifest list of app-a as linux/amd64 and app-b as linux/arm64/v8. */
  multi: ImageInfo;
}

/** Where the images go and where scratch files may be written. */
export interface BuildOptions {
  /** DOCKER_HOST of the dockerd to build with, e.g. "unix:///…/docker.sock". */
  docker: string;
  /** "host:port" of a plain-HTTP registry. */
  registry: string;
  /** A directory for build contexts and tool configs; created when missing. */
  workDir: string;
}

const NS = "berth-test";

/** Every manifest media type, so the registry answers with what it stored instead of converting. */
export const MANIFEST_ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

/** `n` random bytes; random so that gzip cannot shrink them and layers never collide across runs. */
function randomBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(bytes.subarray(at, Math.min(n, at + 65536)));
  return bytes;
}

/** Builds, pushes and describes all test images; see `TestImages`. */
export async function buildTestImages(opts: BuildOptions): Promise<TestImages> {
  const { registry, workDir } = opts;
  await Deno.mkdir(workDir, { recursive: true });
  // The docker CLI keeps manifest lists and credentials in its config dir, and skopeo reads a trust
  // policy from /etc unless told otherwise: both get private copies so the machine's files are not used.
  const dockerConfig = `${workDir}/docker-config`;
  await Deno.mkdir(dockerConfig, { recursive: true });
  await Deno.writeTextFile(`${dockerConfig}/config.json`, "{}\n");
  const policy = `${workDir}/policy.json`;
  await Deno.writeTextFile(policy, JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
  const env = { DOCKER_HOST: opts.docker, DOCKER_CONFIG: dockerConfig, DOCKER_BUILDKIT: "0" };
  const docker = (args: string[]) => run(["docker", "-H", opts.docker, ...args], { env });
  const push = (repo: string, format?: "oci") =>
    run([
      "skopeo",
      "--policy",
      policy,
      "copy",
      "--quiet",
      "--dest-tls-verify=false",
      ...(format ? ["--format", format] : []),
      "--src-daemon-host",
      opts.docker,
      `docker-daemon:${NS}/${repo}:1`,
      `docker://${registry}/${NS}/${repo}:1`,
    ], { env });

  await importBase(`${workDir}/base`, docker);
  await push("base");

  const apps = {
    "app-a": smallContext("app-a"),
    "app-b": smallContext("app-b"),
    "app-c": smallContext("app-c"),
    "app-oci": smallContext("app-oci"),
    big: { "layer1.bin": randomBytes(32 << 20), "layer2.bin": randomBytes(8 << 20) },
  };
  // The legacy builder handles concurrent builds fine, and each build is mostly waiting on I/O.
  await Promise.all(
    Object.entries(apps).map(async ([repo, files]) => {
      const context = `${workDir}/${repo}`;
      await writeContext(context, files);
      await docker(["build", "--network", "none", "-q", "-t", `${NS}/${repo}:1`, context]);
      await push(repo, repo === "app-oci" ? "oci" : undefined);
    }),
  );

  await makeMulti(registry, docker);

  const describe = (repo: string) => describeImage(registry, `${NS}/${repo}`, "1");
  const [base, appA, appB, appC, appOci, big, multi] = await Promise.all(
    ["base", "app-a", "app-b", "app-c", "app-oci", "big", "multi"].map(describe),
  );
  return { base, appA, appB, appC, appOci, big, multi };
}

/** Files for a small image: a few KiB of random bytes, and a text file naming the image. */
function smallContext(name: string): Record<string, Uint8Array | string> {
  return { "random.bin": randomBytes(4096 + Math.floor(Math.random() * 4096)), "name.txt": `${name}\n` };
}

/** Writes a build context: the files, and a Dockerfile that COPYs each into /data as its own layer. */
async function writeContext(dir: string, files: Record<string, Uint8Array | string>): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const lines = [`FROM ${NS}/base:1`];
  for (const [name, content] of Object.entries(files)) {
    if (typeof content === "string") await Deno.writeTextFile(`${dir}/${name}`, content);
    else await Deno.writeFile(`${dir}/${name}`, content);
    lines.push(`COPY ${name} /data/${name}`);
  }
  await Deno.writeTextFile(`${dir}/Dockerfile`, lines.join("\n") + "\n");
}

/** Makes berth-test/base:1 in dockerd with `docker import` of a busybox-static rootfs tar. */
async function importBase(dir: string, docker: (args: string[]) => Promise<string>): Promise<void> {
  const tar = await busyboxRootfsTar(dir, ["sh", "ls", "cat", "sleep", "echo", "true"], {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\n",
  });
  await docker(["import", "--change", 'CMD ["/bin/sh"]', tar, `${NS}/base:1`]);
}

/** The media type of a Docker manifest list, which `docker manifest push` writes. */
const DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";

/**
 * Makes berth-test/multi:1, a manifest list of app-a as linux/amd64 and app-b annotated as linux/arm64/v8.
 *
 * First with `docker manifest create/annotate/push`, which copies both child manifests into the multi
 * repository (the registry rejects a list naming manifests it lacks there) and PUTs the list. The docker
 * CLI 20.10 from Debian's docker.io fails at that: it re-serializes the child manifests before pushing
 * them, so their digests no longer match the ones in the list and the registry answers "manifest blob
 * unknown" (newer CLIs push the original bytes and succeed). Then the same is done by hand over HTTP:
 * cross-repository blob mounts, child manifests PUT by digest with their original bytes, and a Docker
 * manifest list of the same shape, so that tests see the same media type and entries whichever path ran.
 */
async function makeMulti(registry: string, docker: (args: string[]) => Promise<string>): Promise<void> {
  const list = `${registry}/${NS}/multi:1`;
  const a = `${registry}/${NS}/app-a:1`;
  const b = `${registry}/${NS}/app-b:1`;
  try {
    await docker(["manifest", "create", "--insecure", list, a, b]);
    await docker(["manifest", "annotate", "--os", "linux", "--arch", "amd64", list, a]);
    await docker(["manifest", "annotate", "--os", "linux", "--arch", "arm64", "--variant", "v8", list, b]);
    await docker(["manifest", "push", "--insecure", "--purge", list]);
  } catch (error) {
    const reason = (error instanceof Error ? error.message : String(error)).split("\n").slice(1).join(" ");
    console.error(`multi:1: docker manifest push failed (${reason}); writing the manifest list over HTTP`);
    await putListByHand(registry, DOCKER_LIST, [
      { repo: "app-a", platform: { architecture: "amd64", os: "linux" } },
      { repo: "app-b", platform: { architecture: "arm64", os: "linux", variant: "v8" } },
    ]);
  }
}

/** The fallback for `makeMulti`: copies each child into berth-test/multi by digest, then PUTs the list. */
async function putListByHand(
  registry: string,
  listType: string,
  children: { repo: string; platform: Record<string, string> }[],
): Promise<void> {
  const base = `http://${registry}/v2/${NS}/multi`;
  const manifests = [];
  for (const child of children) {
    const { digest, mediaType, bytes, body } = await getManifest(registry, `${NS}/${child.repo}`, "1");
    const blobs = [body.config, ...body.layers] as BlobRef[];
    for (const blob of blobs) {
      // A cross-repository mount answers 201 when the registry has the blob, which it does.
      const response = await fetch(
        `${base}/blobs/uploads/?mount=${blob.digest}&from=${NS}/${child.repo}`,
        { method: "POST" },
      );
      await response.body?.cancel();
      if (response.status !== 201) throw new Error(`mount of ${blob.digest}: HTTP ${response.status}`);
    }
    await putManifest(`${base}/manifests/${digest}`, mediaType, bytes);
    manifests.push({ mediaType, size: bytes.length, digest, platform: child.platform });
  }
  const list = { schemaVersion: 2, mediaType: listType, manifests };
  await putManifest(`${base}/manifests/1`, listType, new TextEncoder().encode(JSON.stringify(list, null, 3)));
}

/** PUTs a manifest, throwing on any answer but 201. */
async function putManifest(url: string, mediaType: string, bytes: Uint8Array<ArrayBuffer>): Promise<void> {
  const response = await fetch(url, { method: "PUT", headers: { "Content-Type": mediaType }, body: bytes });
  const text = await response.text();
  if (response.status !== 201) throw new Error(`PUT ${url}: HTTP ${response.status} ${text}`);
}

/** A manifest as the registry serves it: digest and media type from the headers, raw and parsed body. */
async function getManifest(registry: string, repo: string, reference: string) {
  const url = `http://${registry}/v2/${repo}/manifests/${reference}`;
  const response = await fetch(url, { headers: { Accept: MANIFEST_ACCEPT } });
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (response.status !== 200) throw new Error(`GET ${url}: HTTP ${response.status}`);
  const digest = response.headers.get("Docker-Content-Digest");
  const mediaType = response.headers.get("Content-Type");
  if (!digest || !mediaType) throw new Error(`GET ${url}: no Docker-Content-Digest or Content-Type`);
  return { digest, mediaType, bytes, body: JSON.parse(new TextDecoder().decode(bytes)) };
}

/** Reads what the registry serves for `repo:tag`, following an index to its linux/amd64 entry. */
async function describeImage(registry: string, repo: string, tag: string): Promise<ImageInfo> {
  const top = await getManifest(registry, repo, tag);
  const info = { ref: `${registry}/${repo}:${tag}`, digest: top.digest, mediaType: top.mediaType };
  if (!Array.isArray(top.body.manifests)) {
    return { ...info, configDigest: top.body.config.digest, layers: blobRefs(top.body.layers) };
  }
  const manifests = top.body.manifests as NonNullable<ImageInfo["manifests"]>;
  const amd64 = manifests.find((entry) =>
    entry.platform?.os === "linux" && entry.platform?.architecture === "amd64"
  );
  if (!amd64) throw new Error(`${repo}:${tag}: no linux/amd64 entry in the index`);
  const child = await getManifest(registry, repo, amd64.digest);
  return {
    ...info,
    configDigest: child.body.config.digest,
    layers: blobRefs(child.body.layers),
    manifests: manifests.map(({ digest, size, mediaType, platform }) => ({
      digest,
      size,
      mediaType,
      platform,
    })),
  };
}

/** Just digest and size of each descriptor. */
function blobRefs(descriptors: BlobRef[]): BlobRef[] {
  return descriptors.map(({ digest, size }) => ({ digest, size }));
}

/** The test services, started together, with the test images in the registry. */
export interface TestServices {
  registry: Registry;
  dockerd: Dockerd;
  images: TestImages;
  /** Seconds the image build and push took. */
  buildSeconds: number;
  /** Stops both services (idempotent). */
  stop(): Promise<void>;
}

/** Starts a registry and a dockerd under `dir` and builds the test images into them. */
export async function startServices(dir: string): Promise<TestServices> {
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const each of stops.splice(0).reverse()) {
      await each().catch((error) => console.error(`cleanup: ${error}`));
    }
  };
  try {
    const registry = await startRegistry(`${dir}/registry`);
    stops.push(registry.stop);
    const dockerd = await startDockerd(`${dir}/docker`);
    stops.push(dockerd.stop);
    const started = Date.now();
    const images = await buildTestImages({
      docker: dockerd.host,
      registry: registry.host,
      workDir: `${dir}/images`,
    });
    return { registry, dockerd, images, buildSeconds: (Date.now() - started) / 1000, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
