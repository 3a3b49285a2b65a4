/**
 * The bench's image sets, built with the real tools: contexts built by dockerd's legacy builder on the
 * harness's busybox base (or on a Debian root made with debootstrap), pushed to the registry by skopeo.
 */
import { aptInstall, harnessCacheDir, run, unmountUnder } from "../harness/services.ts";
import type { TestImages } from "../harness/images.ts";

/** Images the comparisons run on. */
export interface ImageSet {
  name: string;
  /** What the images hold, for the report header. */
  description: string;
  /** Full references in the bench registry. */
  refs: string[];
}

/** Where sets are built and pushed. */
export interface SetBuilder {
  /** Scratch space for build contexts. */
  tmp: string;
  /** "host:port" of the plain-HTTP registry. */
  registry: string;
  /** DOCKER_HOST of the dockerd that builds (it holds berth-test/base:1). */
  docker: string;
  /** The harness's test images, already in the registry. */
  images: TestImages;
}

/** Every set's name, in the order the bench runs them. */
export const SET_NAMES = ["bench", "1", "3", "10", "512MiB", "debian3"];

const MiB = 1024 * 1024;
const MIRROR = "http://deb.debian.org/debian";

/** Writes `size` random bytes to `path`, in chunks; random so gzip cannot shrink the layer. */
export async function writeRandomFile(path: string, size: number): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const chunk = new Uint8Array(Math.min(size, 8 * MiB));
    for (let written = 0; written < size; written += chunk.length) {
      for (let at = 0; at < chunk.length; at += 65536) crypto.getRandomValues(chunk.subarray(at, at + 65536));
      const piece = chunk.subarray(0, Math.min(chunk.length, size - written));
      for (let done = 0; done < piece.length;) done += await file.write(piece.subarray(done));
    }
  } finally {
    file.close();
  }
}

/** Pushes a local image of the building dockerd to the registry; returns its reference there. */
export async function push(builder: SetBuilder, tag: string): Promise<string> {
  const ref = `${builder.registry}/${tag}`;
  await run([
    "skopeo",
    "copy",
    "-q",
    "--dest-tls-verify=false",
    "--src-daemon-host",
    builder.docker,
    `docker-daemon:${tag}`,
    `docker://${ref}`,
  ]);
  return ref;
}

/** Builds `tag` FROM berth-test/base:1 with one COPY layer per file of random bytes, and pushes it. */
async function buildRandomImage(builder: SetBuilder, tag: string, layerSizes: number[]): Promise<string> {
  const context = `${builder.tmp}/context-${tag.replace(/[/:]/g, "-")}`;
  await Deno.mkdir(context, { recursive: true });
  const lines = ["FROM berth-test/base:1"];
  for (const [index, size] of layerSizes.entries()) {
    await writeRandomFile(`${context}/layer${index}.bin`, size);
    lines.push(`COPY layer${index}.bin /data/layer${index}.bin`);
  }
  await Deno.writeTextFile(`${context}/Dockerfile`, lines.join("\n") + "\n");
  await dockerBuild(builder, tag, context);
  await Deno.remove(context, { recursive: true });
  return await push(builder, tag);
}

/** Builds `context` as `tag` with dockerd's legacy builder (whose layer cache reuses unchanged COPYs). */
export async function dockerBuild(builder: SetBuilder, tag: string, context: string): Promise<void> {
  await run(["docker", "-H", builder.docker, "build", "-q", "--network", "none", "-t", tag, context], {
    env: { DOCKER_BUILDKIT: "0" },
  });
}

/** Builds one set by name. */
export async function buildSet(builder: SetBuilder, name: string): Promise<ImageSet> {
  const { images } = builder;
  if (name === "bench") {
    const large = await buildRandomImage(builder, "bench/large:1", [32 * MiB, 32 * MiB, 32 * MiB]);
    return {
      name,
      description:
        "busybox base + 3×32 MiB random layers; berth-test/big (32 + 8 MiB); app-a, app-b, app-c " +
        "(a few KiB each); 5 images sharing the busybox layer",
      refs: [large, images.big.ref, images.appA.ref, images.appB.ref, images.appC.ref],
    };
  }
  if (/^\d+$/.test(name)) {
    const count = Number(name);
    const refs = [];
    for (let index = 0; index < count; index++) {
      refs.push(await buildRandomImage(builder, `bench/n${count}-${index}:1`, [4 * MiB, 2 * MiB]));
    }
    return {
      name,
      description:
        `${count} image(s), each busybox base + a 4 MiB and a 2 MiB layer of distinct random bytes`,
      refs,
    };
  }
  if (name === "512MiB") {
    const ref = await buildRandomImage(builder, "bench/huge:1", [512 * MiB]);
    return {
      name,
      description: "one image: busybox base + a single 512 MiB layer of random bytes (docker build keeps " +
        "it uncompressed; skopeo pushes it gzip-compressed, which leaves it about as large)",
      refs: [ref],
    };
  }
  if (name === "debian3") return await debianSet(builder);
  throw new Error(`unknown image set "${name}"; known: ${SET_NAMES.join(", ")}`);
}

const DEBIAN_TAGS = ["bench/debian-base:1", "bench/debian-curl:1", "bench/debian-python:1"];
const DEBIAN_CACHE = `${harnessCacheDir()}/bench-debian3.tar`;

/** The app of three Debian images: from the cached `docker save` archive, else built and cached. */
async function debianSet(builder: SetBuilder): Promise<ImageSet> {
  const docker = (...args: string[]) => run(["docker", "-H", builder.docker, ...args]);
  try {
    await Deno.stat(DEBIAN_CACHE);
    await docker("load", "-q", "-i", DEBIAN_CACHE);
  } catch {
    await buildDebianImages(builder);
    await Deno.mkdir(harnessCacheDir(), { recursive: true });
    await docker("save", "-o", `${DEBIAN_CACHE}.part`, ...DEBIAN_TAGS);
    await Deno.rename(`${DEBIAN_CACHE}.part`, DEBIAN_CACHE);
  }
  const refs = [];
  for (const tag of DEBIAN_TAGS) refs.push(await push(builder, tag));
  return {
    name: "debian3",
    description:
      "an app of three Debian bookworm images: a debootstrap minbase root imported into dockerd, " +
      "and two built FROM it adding curl and python3-minimal with apt (they share the base layer)",
    refs,
  };
}

/** debootstrap a bookworm minbase root, import it, and build the two images FROM it with apt. */
async function buildDebianImages(builder: SetBuilder): Promise<void> {
  const found = await Deno.stat("/usr/sbin/debootstrap").then(() => true, () => false);
  if (!found) await aptInstall(["debootstrap"], "the debian3 bench set is built with it");
  const root = `${builder.tmp}/debian-root`;
  console.error("bench: building a Debian bookworm root with debootstrap (cached afterwards)");
  try {
    await run(["debootstrap", "--variant=minbase", "bookworm", root, MIRROR]);
    await run([
      "bash",
      "-c",
      `tar --numeric-owner -C "$1" -c . | docker -H "$2" import - "$3"`,
      "import",
      root,
      builder.docker,
      DEBIAN_TAGS[0],
    ]);
  } finally {
    await unmountUnder(root);
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
  for (
    const [tag, packages] of [[DEBIAN_TAGS[1], "curl ca-certificates"], [DEBIAN_TAGS[2], "python3-minimal"]]
  ) {
    const context = `${builder.tmp}/context-${tag.replace(/[/:]/g, "-")}`;
    await Deno.mkdir(context, { recursive: true });
    await Deno.writeTextFile(
      `${context}/Dockerfile`,
      `FROM ${
        DEBIAN_TAGS[0]
      }\nRUN apt-get update && apt-get install -y --no-install-recommends ${packages} ` +
        "&& rm -rf /var/lib/apt/lists/*\n",
    );
    // dockerd runs without a bridge: the build reaches the mirror through the host's network.
    await run(["docker", "-H", builder.docker, "build", "-q", "--network", "host", "-t", tag, context], {
      env: { DOCKER_BUILDKIT: "0" },
    });
  }
}
