/**
 * Test certificates made with the `openssl` CLI: a throw-away CA, a server certificate for 127.0.0.1 (an IP
 * subjectAltName, which is what rustls checks for an IP URL), client certificates for mutual TLS, and a
 * self-signed key pair for signing registry tokens. Keys are P-256: quick to make, and accepted by rustls,
 * Go's crypto/tls and the registry's token verifier alike.
 */
import { aptInstall, run } from "./services.ts";

/** A certificate and its private key, both PEM files. */
export interface KeyPair {
  cert: string;
  key: string;
}

/** A test CA that can issue server and client certificates. */
export interface TestCa extends KeyPair {
  /** Issues a certificate for 127.0.0.1, usable by a TLS server. */
  server(name: string): Promise<KeyPair>;
  /** Issues a client certificate for mutual TLS. */
  client(name: string): Promise<KeyPair>;
}

let opensslChecked: Promise<void> | undefined;

/** Whether `name` is an executable on PATH. */
function onPath(name: string): boolean {
  return (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":").some((dir) => {
    try {
      const info = Deno.statSync(`${dir}/${name}`);
      return info.isFile && ((info.mode ?? 0) & 0o111) !== 0;
    } catch {
      return false;
    }
  });
}

/** Installs openssl from Debian when it is missing (it is not in a minimal image). */
export function ensureOpenssl(): Promise<void> {
  return opensslChecked ??= onPath("openssl")
    ? Promise.resolve()
    : aptInstall(["openssl"], "openssl is missing; the TLS tests make their certificates with it");
}

const openssl = (args: string[]) => run(["openssl", ...args]);

/** A fresh P-256 private key (PKCS#8 PEM) at `path`. */
async function newKey(path: string): Promise<void> {
  await openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path]);
}

/** A random positive serial, so that no serial file is needed next to the CA. */
function serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  bytes[0] &= 0x7f;
  return "0x" + Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** A self-signed certificate for `key`, with `extensions` (openssl -addext lines). */
async function selfSigned(dir: string, name: string, extensions: string[]): Promise<KeyPair> {
  const pair = { cert: `${dir}/${name}.crt`, key: `${dir}/${name}.key` };
  await newKey(pair.key);
  await openssl([
    "req",
    "-new",
    "-x509",
    "-key",
    pair.key,
    "-out",
    pair.cert,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-set_serial",
    serial(),
    ...extensions.flatMap((extension) => ["-addext", extension]),
  ]);
  return pair;
}

/** Makes a CA under `dir` (created when missing). */
export async function makeCa(dir: string, name = "berth-test-ca"): Promise<TestCa> {
  await ensureOpenssl();
  await Deno.mkdir(dir, { recursive: true });
  const ca = await selfSigned(dir, name, [
    "basicConstraints=critical,CA:TRUE",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  const issue = async (leaf: string, extensions: string[]): Promise<KeyPair> => {
    const pair = { cert: `${dir}/${leaf}.crt`, key: `${dir}/${leaf}.key` };
    await newKey(pair.key);
    await openssl(["req", "-new", "-key", pair.key, "-out", `${dir}/${leaf}.csr`, "-subj", `/CN=${leaf}`]);
    await Deno.writeTextFile(`${dir}/${leaf}.ext`, extensions.join("\n") + "\n");
    await openssl([
      "x509",
      "-req",
      "-in",
      `${dir}/${leaf}.csr`,
      "-CA",
      ca.cert,
      "-CAkey",
      ca.key,
      "-set_serial",
      serial(),
      "-days",
      "2",
      "-extfile",
      `${dir}/${leaf}.ext`,
      "-out",
      pair.cert,
    ]);
    return pair;
  };
  return {
    ...ca,
    server: (leaf) =>
      issue(leaf, [
        "subjectAltName=IP:127.0.0.1",
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature",
        "extendedKeyUsage=serverAuth",
      ]),
    client: (leaf) =>
      issue(leaf, [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature",
        "extendedKeyUsage=clientAuth",
      ]),
  };
}

/** A self-signed key pair whose key signs registry tokens; the certificate is the registry's trust root. */
export async function makeSigningPair(dir: string, name = "berth-test-token-signer"): Promise<KeyPair> {
  await ensureOpenssl();
  await Deno.mkdir(dir, { recursive: true });
  return await selfSigned(dir, name, ["basicConstraints=critical,CA:FALSE", "keyUsage=digitalSignature"]);
}

/** The DER bytes of the first PEM block of `type` ("PRIVATE KEY", "CERTIFICATE", "PUBLIC KEY") in `pem`. */
export function pemToDer(pem: string, type: string): Uint8Array<ArrayBuffer> {
  const match = new RegExp(`-----BEGIN ${type}-----([^-]+)-----END ${type}-----`).exec(pem);
  if (!match) throw new Error(`no PEM block "${type}"`);
  const binary = atob(match[1].replace(/\s+/g, ""));
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

/** The SubjectPublicKeyInfo (DER) of a certificate, as openssl extracts it. */
export async function publicKeyDer(certFile: string): Promise<Uint8Array<ArrayBuffer>> {
  const pem = await openssl(["x509", "-in", certFile, "-noout", "-pubkey"]);
  return pemToDer(pem, "PUBLIC KEY");
}
