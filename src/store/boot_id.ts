/**
 * The kernel's boot id tells a process crash from a reboot: after kill -9 the page cache (so every byte a
 * partial download wrote) survives; after a power cut only what was fsynced does.
 */

const BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id";
let cached: string | undefined;

/** This boot's id, or "unknown" where the kernel does not expose one (then every resume is treated as after a reboot). */
export function currentBootId(): string {
  if (cached === undefined) {
    try {
      cached = Deno.readTextFileSync(BOOT_ID_FILE).trim();
    } catch {
      cached = "unknown";
    }
  }
  return cached;
}
