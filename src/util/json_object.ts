/** Reading a JSON document that must be an object, as every manifest and index from outside is. */
import { BerthError } from "./errors.ts";

/** Strict UTF-8 JSON that must be an object; anything else is BerthError("invalid_input") naming `what`. */
export function parseJsonObject(bytes: Uint8Array, what: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    // reported below, as for any other non-object
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new BerthError("invalid_input", `${what}: not a JSON object`);
  }
  return json as Record<string, unknown>;
}
