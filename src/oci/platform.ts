/**
 * Platforms (os/arch[/variant]) and choosing one manifest from an index, normalised as containerd does:
 * aarch64 → arm64 (variant v8 is the default, so it is dropped), x86_64 → amd64, arm defaults to v7,
 * and an arm v7 device also runs v6 and v5 images, in that order of preference.
 */
import { BerthError } from "../util/errors.ts";
import { listSome, outsideText } from "../util/text.ts";

/** os/architecture[/variant]; compare two only after normalizePlatform (lower case, aliases resolved). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const ARCH_ALIASES: Record<string, { architecture: string; variant?: string }> = {
  x86_64: { architecture: "amd64" },
  "x86-64": { architecture: "amd64" },
  aarch64: { architecture: "arm64" },
  armhf: { architecture: "arm", variant: "v7" },
  armel: { architecture: "arm", variant: "v6" },
  i386: { architecture: "386" },
};

/** Lower-cases and resolves aliases and default variants. */
export function normalizePlatform(platform: Platform): Platform {
  const os = platform.os.toLowerCase();
  let architecture = platform.architecture.toLowerCase();
  let variant = platform.variant?.toLowerCase() || undefined;
  const alias = ARCH_ALIASES[architecture];
  if (alias) {
    architecture = alias.architecture;
    variant = variant ?? alias.variant;
  }
  if (architecture === "arm64" && (variant === "v8" || variant === "8")) variant = undefined;
  if (architecture === "arm") variant = variant ? (variant.startsWith("v") ? variant : `v${variant}`) : "v7";
  return variant ? { os, architecture, variant } : { os, architecture };
}

/** Parses "os/arch[/variant]"; throws a usage-level error quoting the input. */
export function parsePlatform(input: string): Platform {
  const parts = input.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((part) => !/^[A-Za-z0-9_.-]+$/.test(part))) {
    throw new BerthError(
      "invalid_input",
      `invalid platform "${input}": expected os/arch[/variant], e.g. linux/arm64`,
    );
  }
  return normalizePlatform({ os: parts[0], architecture: parts[1], variant: parts[2] });
}

/** "linux/arm/v7". */
export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join("/");
}

/** The platform this process runs on. */
export function hostPlatform(): Platform {
  return normalizePlatform({ os: Deno.build.os, architecture: Deno.build.arch });
}

/** Variants a device of `variant` can run, best first. */
function compatibleVariants(platform: Platform): (string | undefined)[] {
  if (platform.architecture === "arm") {
    const order = ["v8", "v7", "v6", "v5"];
    const start = order.indexOf(platform.variant ?? "v7");
    return start < 0 ? [platform.variant] : order.slice(start);
  }
  return [platform.variant];
}

/** An index entry as far as platform choice cares. */
export interface PlatformCandidate {
  platform?: { os?: string; architecture?: string; variant?: string };
}

/**
 * Picks the entry of an index that best fits `wanted`; throws an error listing what the index offers
 * (named by `what`, usually the reference) when nothing fits.
 */
export function choosePlatform<T extends PlatformCandidate>(entries: T[], wanted: Platform, what: string): T {
  const normalized = entries.map((entry) =>
    entry.platform?.os && entry.platform.architecture
      ? normalizePlatform({
        os: entry.platform.os,
        architecture: entry.platform.architecture,
        variant: entry.platform.variant,
      })
      : undefined
  );
  for (const variant of compatibleVariants(wanted)) {
    const index = normalized.findIndex((platform) =>
      platform !== undefined && platform.os === wanted.os && platform.architecture === wanted.architecture &&
      platform.variant === variant
    );
    if (index >= 0) return entries[index];
  }
  // The names come from the registry: cleaned, and only the first few listed (an index may hold thousands).
  const offered = normalized.filter((platform): platform is Platform => platform !== undefined)
    .map((platform) => outsideText(formatPlatform(platform), 60)).filter((name) =>
      name !== "unknown/unknown"
    );
  throw new BerthError(
    "not_found",
    `${what} has no image for platform ${formatPlatform(wanted)}; it offers: ${
      offered.length ? listSome([...new Set(offered)]) : "none"
    } (choose one with --platform)`,
  );
}
