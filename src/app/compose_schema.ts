/**
 * What berth accepts as a compose file, as a zod schema, and how a refusal is worded: one line naming the
 * file, the field (`services.web.labels["com.example.a"]`) and what is wrong with it.
 */
import { z } from "zod";
import { BerthError } from "../util/errors.ts";

/** Service names compose accepts. */
const SERVICE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** The error for an unusable compose file: BerthError("invalid_input") naming the file and, if given, the field. */
export function invalidCompose(file: string, path: string, message: string): BerthError {
  return new BerthError("invalid_input", path ? `${file}: ${path}: ${message}` : `${file}: ${message}`);
}

/** A path for messages: `services.web.image`, `services.web.labels["com.example.a"]`, `…command[1]`. */
export function formatPath(path: readonly (string | number)[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else if (/^[A-Za-z0-9_][A-Za-z0-9_-]*$/.test(part)) out += out ? `.${part}` : part;
    else out += `[${JSON.stringify(part)}]`;
  }
  return out;
}

/** "a string", "a number", "a list", "a mapping", "null": what a value is, for messages. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "number" || typeof value === "bigint") return "a number";
  return `a ${typeof value}`;
}

/** Names for zod's type names. */
const ZOD_TYPE_NAMES: Record<string, string> = {
  object: "a mapping",
  array: "a list",
  string: "a string",
  number: "a number",
  integer: "an integer",
  boolean: "a boolean",
  null: "null",
  undefined: "nothing",
};

/** zod's messages in berth's words: "missing", "expected a list, got a string". */
export const composeErrorMap: z.ZodErrorMap = (issue, ctx) => {
  if (issue.code === z.ZodIssueCode.invalid_type) {
    if (issue.received === "undefined") return { message: "missing" };
    const expected = ZOD_TYPE_NAMES[issue.expected] ?? issue.expected;
    const received = ZOD_TYPE_NAMES[issue.received] ?? issue.received;
    return { message: `expected ${expected}, got ${received}` };
  }
  return { message: ctx.defaultError };
};

/** Checks a service's `labels`: a mapping of scalars, or a list of "key=value" strings. */
function checkLabels(labels: unknown, ctx: z.RefinementCtx): void {
  if (labels === undefined) return;
  if (Array.isArray(labels)) {
    labels.forEach((item, index) => {
      if (typeof item !== "string") {
        ctx.addIssue({
          code: "custom",
          path: ["labels", index],
          message: `expected a "key=value" string, got ${describe(item)}`,
        });
      }
    });
  } else if (labels !== null && typeof labels === "object") {
    for (const [key, value] of Object.entries(labels)) {
      if (value !== null && !["string", "number", "boolean"].includes(typeof value)) {
        ctx.addIssue({
          code: "custom",
          path: ["labels", key],
          message: `expected a string, got ${describe(value)}`,
        });
      }
    }
  } else {
    ctx.addIssue({
      code: "custom",
      path: ["labels"],
      message: `expected a mapping or a list of "key=value" strings, got ${describe(labels)}`,
    });
  }
}

/** A service: it needs an image (berth builds nothing), and its labels must be scalars. */
const ServiceSchema = z.object({ image: z.string().min(1, "must not be empty").optional() }).passthrough()
  .superRefine((service, ctx) => {
    if (service.image === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["image"],
        message: service.build === undefined
          ? "missing: every service needs an image"
          : "missing: berth does not build images, so a service with `build` needs an `image` too",
      });
    }
    checkLabels(service.labels, ctx);
  });

/** `volumes`, `networks`, `configs`, `secrets`: names mapped to their settings (or nothing). */
const NamedSettings = z.record(z.record(z.unknown()).nullable()).nullable().optional();

/** The top level of a compose file: at least one service; keys berth does not read pass through. */
export const ComposeSchema = z.object({
  version: z.string().optional(),
  name: z.string().optional(),
  services: z.record(
    z.string().regex(
      SERVICE_NAME,
      'not a valid service name: compose wants letters, digits, "_", "." and "-", starting with a letter or digit',
    ),
    ServiceSchema,
  ).refine((services) => Object.keys(services).length > 0, "empty: an app needs at least one service"),
  volumes: NamedSettings,
  networks: NamedSettings,
  configs: NamedSettings,
  secrets: NamedSettings,
}).passthrough();
