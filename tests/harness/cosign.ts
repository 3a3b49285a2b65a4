/**
 * Real cosign for the signature tests: the `cosign` package of Debian 13 (a static Go binary, cosign 2.x),
 * fetched with `apt-get download` through a private sources list as compose v2 is (see `ensureComposeV2`),
 * unpacked with `dpkg-deb -x` and kept in a cache directory, so the machine's own packages are not touched.
 */
import { downloadDebianPackage, harnessCacheDir, run } from "./services.ts";

/** The Debian release whose `cosign` package is cosign 2.x (Debian 12 has none). */
const COSIGN_SUITE = "trixie";
/** Where that package puts the binary. */
const COSIGN_BINARY = "usr/bin/cosign";

const cosignByDir = new Map<string, Promise<string>>();

/**
 * The path of a working cosign 2.x binary under `<cacheDir>/cosign/`, downloaded once per cache dir; later
 * calls and runs reuse it. Use `harnessCacheDir()` for `cacheDir` unless a test has a better place.
 */
export function ensureCosign(cacheDir: string): Promise<string> {
  let pending = cosignByDir.get(cacheDir);
  if (!pending) {
    pending = provisionCosign(cacheDir);
    cosignByDir.set(cacheDir, pending);
    pending.catch(() => cosignByDir.delete(cacheDir));
  }
  return pending;
}

/**
 * Whether `dir` holds a cosign that runs and came from a 2.x package. Debian builds report "devel" as their
 * own version, so the package's version, written beside the binary, is what says 2.x.
 */
async function usable(dir: string): Promise<boolean> {
  try {
    const packageVersion = await Deno.readTextFile(`${dir}/package-version`);
    await run([`${dir}/cosign`, "version"]);
    return packageVersion.startsWith("2.");
  } catch {
    return false;
  }
}

async function provisionCosign(cacheDir: string): Promise<string> {
  const published = `${cacheDir}/cosign`;
  if (await usable(published)) return `${published}/cosign`;

  const started = Date.now();
  await Deno.mkdir(cacheDir, { recursive: true });
  // Its own directory, published with one rename: concurrent runs never see a half-made binary.
  const work = await Deno.makeTempDir({ dir: cacheDir, prefix: "download-" });
  try {
    const { deb, source } = await downloadDebianPackage(work, COSIGN_SUITE, "cosign");
    const packageVersion = (await run(["dpkg-deb", "-f", deb, "Version"])).trim();
    await run(["dpkg-deb", "-x", deb, `${work}/root`]);
    const staged = `${work}/cosign`;
    await Deno.mkdir(staged);
    await Deno.rename(`${work}/root/${COSIGN_BINARY}`, `${staged}/cosign`);
    await Deno.chmod(`${staged}/cosign`, 0o755);
    await Deno.writeTextFile(`${staged}/package-version`, packageVersion);
    if (!await usable(staged)) {
      throw new Error(
        `cosign ${packageVersion} from ${source.uri} ${COSIGN_SUITE} is not a cosign 2.x that runs here`,
      );
    }
    await Deno.remove(published, { recursive: true }).catch(() => {});
    await Deno.rename(staged, published).catch(async (error) => {
      // Another run published first: keep its copy when it works.
      if (!await usable(published)) throw error;
    });
    console.error(
      `cosign (Debian ${COSIGN_SUITE} ${packageVersion}) provisioned in ${
        ((Date.now() - started) / 1000).toFixed(1)
      } s under ${cacheDir}`,
    );
    return `${published}/cosign`;
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/** Real cosign with a home and docker config of its own, and key pairs made by name. */
export interface CosignSigner {
  /** `<dir>/<key>/cosign.pub`. */
  publicKey(key: string): string;
  /** `cosign sign` of `target` (host/repo@digest) with key `key`, pushed to its plain-HTTP registry. */
  sign(target: string, key: string): Promise<void>;
  /** Whether `cosign verify --insecure-ignore-tlog` accepts `target` with key `key`. */
  verifies(target: string, key: string): Promise<boolean>;
}

/**
 * A signer under `dir` with a key pair per name in `keys` (empty passwords): cosign keeps nothing of the
 * machine's, its home and docker config are the test's own.
 */
export async function cosignSigner(dir: string, keys: string[]): Promise<CosignSigner> {
  const cosign = await ensureCosign(harnessCacheDir());
  const env = { COSIGN_PASSWORD: "", HOME: dir, DOCKER_CONFIG: `${dir}/docker` };
  await Deno.mkdir(`${dir}/docker`, { recursive: true });
  await Deno.writeTextFile(`${dir}/docker/config.json`, "{}");
  for (const key of keys) {
    await Deno.mkdir(`${dir}/${key}`);
    await run([cosign, "generate-key-pair"], { cwd: `${dir}/${key}`, env });
  }
  return {
    publicKey: (key) => `${dir}/${key}/cosign.pub`,
    async sign(target, key) {
      await run([
        cosign,
        "sign",
        "--key",
        `${dir}/${key}/cosign.key`,
        "--tlog-upload=false",
        "--allow-http-registry",
        "--allow-insecure-registry",
        "-y",
        target,
      ], { env });
    },
    async verifies(target, key) {
      const args = [
        "verify",
        "--key",
        `${dir}/${key}/cosign.pub`,
        "--insecure-ignore-tlog",
        "--allow-http-registry",
      ];
      return await run([cosign, ...args, target], { env }).then(() => true, () => false);
    },
  };
}
