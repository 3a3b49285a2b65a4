/**
 * htpasswd lines for docker-registry's `auth.htpasswd`, which accepts bcrypt hashes only. bcrypt comes from
 * the system's crypt(3) through perl (perl-base is Essential on Debian, and Debian 12's libcrypt has
 * bcrypt), so no npm package is needed; `htpasswd -B` from apache2-utils is the fallback.
 */
import { run } from "./services.ts";
import { aptInstall } from "./services.ts";

const BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** A random 22-character bcrypt salt; its last character carries only 2 bits, so it is one of ".Oeu". */
function bcryptSalt(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(22));
  const chars = Array.from(bytes.subarray(0, 21), (byte) => BCRYPT_ALPHABET[byte % 64]);
  return chars.join("") + ".Oeu"[bytes[21] % 4];
}

/** Whether `hash` looks like a bcrypt hash of the given cost. */
const isBcrypt = (hash: string) => /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash);

/** "user:<bcrypt hash of password>", cost 5 (the registry checks it on every request; tests want speed). */
export async function htpasswdLine(user: string, password: string): Promise<string> {
  // Arguments, not interpolation: the password never meets a shell or perl source.
  const script = "print crypt($ARGV[0], $ARGV[1])";
  const hash = await run(["perl", "-e", script, password, `$2b$05$${bcryptSalt()}`]).catch(() => "");
  if (isBcrypt(hash)) return `${user}:${hash}`;
  const hasHtpasswd = await run(["sh", "-c", "command -v htpasswd"]).then(() => true, () => false);
  if (!hasHtpasswd) {
    await aptInstall(["apache2-utils"], "this system's crypt(3) has no bcrypt; need htpasswd");
  }
  const line = (await run(["htpasswd", "-nbB", "-C", "5", user, password])).trim();
  if (!isBcrypt(line.slice(user.length + 1))) throw new Error(`htpasswd gave no bcrypt hash: ${line}`);
  return line;
}
