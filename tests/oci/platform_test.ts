import assert from "node:assert/strict";
import { choosePlatform, formatPlatform, parsePlatform } from "../../src/oci/platform.ts";
import { BerthError } from "../../src/util/errors.ts";

const entry = (platform: string) => {
  const [os, architecture, variant] = platform.split("/");
  return { name: platform, platform: { os, architecture, variant } };
};

Deno.test("platforms normalise aliases and default variants", () => {
  assert.equal(formatPlatform(parsePlatform("linux/aarch64")), "linux/arm64");
  assert.equal(formatPlatform(parsePlatform("linux/arm64/v8")), "linux/arm64");
  assert.equal(formatPlatform(parsePlatform("linux/arm")), "linux/arm/v7");
  assert.equal(formatPlatform(parsePlatform("linux/x86_64")), "linux/amd64");
  assert.equal(formatPlatform(parsePlatform("linux/armhf")), "linux/arm/v7");
  assert.throws(() => parsePlatform("linux"), BerthError);
  assert.throws(() => parsePlatform("linux/arm/v7/x"), BerthError);
});

Deno.test("an index entry is chosen by os, architecture and variant", () => {
  const index = ["linux/amd64", "linux/arm64/v8", "linux/arm/v6", "linux/arm/v7", "unknown/unknown"].map(
    entry,
  );
  assert.equal(choosePlatform(index, parsePlatform("linux/arm64"), "x").name, "linux/arm64/v8");
  assert.equal(choosePlatform(index, parsePlatform("linux/aarch64"), "x").name, "linux/arm64/v8");
  assert.equal(choosePlatform(index, parsePlatform("linux/arm"), "x").name, "linux/arm/v7");
  assert.equal(choosePlatform(index, parsePlatform("linux/amd64"), "x").name, "linux/amd64");
});

Deno.test("arm falls back v7 → v6 → v5, never upwards", () => {
  const index = ["linux/arm/v5", "linux/arm/v6"].map(entry);
  assert.equal(choosePlatform(index, parsePlatform("linux/arm/v7"), "x").name, "linux/arm/v6");
  assert.equal(choosePlatform(index, parsePlatform("linux/arm/v6"), "x").name, "linux/arm/v6");
  assert.equal(
    choosePlatform([entry("linux/arm/v5")], parsePlatform("linux/arm/v7"), "x").name,
    "linux/arm/v5",
  );
  assert.throws(() => choosePlatform([entry("linux/arm/v7")], parsePlatform("linux/arm/v6"), "x"));
});

Deno.test("no fitting platform lists what the index offers", () => {
  const index = ["linux/amd64", "linux/arm64", "unknown/unknown"].map(entry);
  assert.throws(
    () => choosePlatform(index, parsePlatform("linux/riscv64"), "reg/app:1"),
    (error: unknown) =>
      error instanceof BerthError &&
      /reg\/app:1 has no image for platform linux\/riscv64/.test(error.message) &&
      error.message.includes("linux/amd64, linux/arm64") && !error.message.includes("unknown"),
  );
});
