/**
 * The kernel's boot id tells a process crash from a reboot: after kill -9 the page cache (so every byte a
 * partial download wrote) survives; after a power cut only what was fsynced does.
 */
import { childCommand } from "../util/child_env.ts";

const BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id";
let cached: string | undefined;

/**
 * This boot's id, or "unknown" where the kernel does not expose one (then every resume is treated as after a
 * reboot). Read by `cat`, not by Deno: Deno lets a program read /proc only with every permission, and the
 * binary runs with narrower ones (build/permissions.ts); one small process per berth run is the price.
 */
export function currentBootId(): string {
  if (cached === undefined) {
    try {
      const output = childCommand("cat", { args: [BOOT_ID_FILE], stdout: "piped", stderr: "null" })
        .outputSync();
      const id = new TextDecoder().decode(output.stdout).trim();
      cached = output.success && id ? id : "unknown";
    } catch {
      cached = "unknown";
    }
  }
  return cached;
}
