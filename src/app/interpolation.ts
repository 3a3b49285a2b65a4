/**
 * `${VAR}` in a compose file at publish, as Foundries' composectl does it.
 *
 * What composectl's publish does (foundriesio/composeapp, pkg/compose/v1/publish.go, read from the public
 * source): it loads the project with compose-go v1.20.2's loader and the publisher's whole environment
 * (`os.Environ`), which interpolates the entire file, but it writes back the file as read, uninterpolated,
 * except for two fields it takes from the loaded project: each service's `image` (pinned from the
 * interpolated reference) and its `labels` (the interpolated labels plus the config hash). The config hash
 * is computed over the service as written, before its labels are replaced. The loader also sets
 * COMPOSE_PROJECT_NAME to the app's name when the environment has none.
 *
 * The syntax is compose-go v1.20.2's (template/template.go): `$$` is a literal `$`; `$VAR` and `${VAR}`
 * take the value, or an empty string with a warning when unset; `${VAR:-default}` / `${VAR-default}` fall
 * back when unset or empty / unset; `${VAR:+alt}` / `${VAR+alt}` give `alt` when set and non-empty / set;
 * `${VAR:?message}` / `${VAR?message}` fail when unset or empty / unset. Defaults, alternatives and
 * messages are themselves interpolated. A `$` followed by anything else is kept; a `${` that is not one of
 * these forms is an error.
 */
import type { ComposeFile } from "./compose_file.ts";
import { composeFromDocument } from "./compose_file.ts";
import { ownLabels, ownServiceMap, setOwnScalar } from "./compose_edit.ts";
import { formatPath, invalidCompose } from "./compose_schema.ts";
import YAML from "yaml";

/** A variable's value by name; undefined when it is not set. */
export type VariableLookup = (name: string) => string | undefined;

/** The variables an interpolation read, by name (never their values, which may be secrets). */
export interface VariableUse {
  /** Every variable named, set or not. */
  readonly used: Set<string>;
  /** Those read without a default while unset, which became empty strings. */
  readonly unset: Set<string>;
}

/** Why a template could not be interpolated: bad syntax, or a required variable missing. */
export class InterpolationError extends Error {}

const NAME = /^[_a-zA-Z][_a-zA-Z0-9]*/;
/** The inside of `${…}`: a name, optionally an operator and its argument (on one line, as compose-go's). */
const BRACED = /^([_a-zA-Z][_a-zA-Z0-9]*)(?:(:?[-+?])(.*))?$/;

/** The index of the `}` closing the `${` at `start`, counting nested `${`; -1 when there is none. */
function closingBrace(text: string, start: number): number {
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    if (text.startsWith("${", i)) {
      depth++;
      i++;
    } else if (text[i] === "}" && --depth === 0) {
      return i;
    }
  }
  return -1;
}

/** The value of `${inner}`; throws InterpolationError. */
function braced(inner: string, template: string, lookup: VariableLookup, use: VariableUse): string {
  const match = BRACED.exec(inner);
  if (!match) throw new InterpolationError(`invalid interpolation format "${template}" (write $$ for a $)`);
  const [, name, operator, argument] = match;
  use.used.add(name);
  const value = lookup(name);
  if (operator === undefined) {
    if (value === undefined) use.unset.add(name);
    return value ?? "";
  }
  // compose-go interpolates the argument whether it is used or not.
  const other = interpolate(argument, lookup, use);
  const empty = value === undefined || (operator.startsWith(":") && value === "");
  switch (operator.replace(":", "")) {
    case "-":
      return empty ? other : value!;
    case "+":
      return empty ? value ?? "" : other;
    default:
      if (empty) {
        throw new InterpolationError(
          `required variable ${name} is missing a value${other === "" ? "" : `: ${other}`}`,
        );
      }
      return value!;
  }
}

/**
 * `template` with its variables replaced, compose-go's way (see the top of this file); the names read are
 * added to `use`. Throws InterpolationError for a malformed `${` or a missing required variable.
 */
export function interpolate(template: string, lookup: VariableLookup, use: VariableUse): string {
  let out = "";
  let at = 0;
  while (at < template.length) {
    const dollar = template.indexOf("$", at);
    if (dollar < 0) break;
    out += template.slice(at, dollar);
    const next = template[dollar + 1];
    if (next === "$") {
      out += "$";
      at = dollar + 2;
    } else if (next === "{") {
      const close = closingBrace(template, dollar);
      if (close < 0) {
        throw new InterpolationError(`invalid interpolation format "${template}" (write $$ for a $)`);
      }
      out += braced(template.slice(dollar + 2, close), template, lookup, use);
      at = close + 1;
    } else {
      const name = NAME.exec(template.slice(dollar + 1))?.[0];
      if (name === undefined) {
        out += "$";
      } else {
        use.used.add(name);
        const value = lookup(name);
        if (value === undefined) use.unset.add(name);
        out += value ?? "";
      }
      at = dollar + 1 + (name?.length ?? 0);
    }
  }
  return out + template.slice(at);
}

/** A fresh, empty VariableUse. */
export function noVariablesUsed(): VariableUse {
  return { used: new Set(), unset: new Set() };
}

/**
 * Each service's string labels interpolated, in their form (a mapping's values; a list's whole
 * "key=value" items, as compose-go interpolates them before splitting). Run after `labelServices`:
 * composectl hashes the labels as written. Throws naming the file, service and label.
 */
export function interpolateLabels(
  compose: ComposeFile,
  lookup: VariableLookup,
  use: VariableUse,
): ComposeFile {
  const expand = (text: string, path: (string | number)[]) => {
    try {
      return interpolate(text, lookup, use);
    } catch (error) {
      if (!(error instanceof InterpolationError)) throw error;
      throw invalidCompose(compose.file, formatPath(path), error.message);
    }
  };
  const doc = compose.doc.clone();
  for (const service of compose.services) {
    const labels = service.config.labels;
    const path = ["services", service.name, "labels"];
    if (Array.isArray(labels)) {
      const values = labels.map((item, index) =>
        typeof item === "string" ? expand(item, [...path, index]) : item
      );
      if (values.every((value, index) => value === labels[index])) continue;
      const own = ownLabels(doc, ownServiceMap(doc, service.name));
      if (!YAML.isSeq(own)) continue;
      values.forEach((value, index) => {
        const item = own.items[index];
        if (value === labels[index]) return;
        // In place where it can be, so that its comments and quoting stay.
        if (YAML.isScalar(item)) {
          item.value = value;
          delete item.source;
        } else own.items[index] = doc.createNode(value);
      });
    } else if (labels !== null && typeof labels === "object") {
      for (const [key, value] of Object.entries(labels)) {
        if (typeof value !== "string") continue;
        const expanded = expand(value, [...path, key]);
        if (expanded === value) continue;
        const own = ownLabels(doc, ownServiceMap(doc, service.name));
        if (YAML.isMap(own)) setOwnScalar(doc, own, key, expanded);
      }
    }
  }
  return composeFromDocument(doc, compose.file);
}
