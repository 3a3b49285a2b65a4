/**
 * A small checker of the Prometheus text exposition format 0.0.4, enough to catch what a scraper would
 * reject: every sample line is `name{label="value",…} number`, names and label names are valid, label
 * values use only the allowed escapes, and every sample's family has HELP and TYPE lines before it.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const VALUE = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)$/;

/** Parses `text`; throws naming the line on the first violation. */
export function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  if (!text.endsWith("\n")) throw new Error("exposition must end with a line feed");
  const help = new Set<string>();
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, index) => {
    const where = `line ${index + 1} "${line}"`;
    if (line.startsWith("#")) {
      const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      if (!meta) return; // other comments are allowed
      const [, kind, name, rest] = meta;
      if (!NAME.test(name)) throw new Error(`${where}: bad metric name`);
      if (kind === "HELP") {
        if (help.has(name)) throw new Error(`${where}: second HELP for ${name}`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ""))) throw new Error(`${where}: bad escape in HELP`);
        help.add(name);
      } else {
        if (types.has(name)) throw new Error(`${where}: second TYPE for ${name}`);
        if (!["counter", "gauge", "summary", "histogram", "untyped"].includes(rest)) {
          throw new Error(`${where}: unknown type`);
        }
        types.set(name, rest);
      }
      return;
    }
    if (line.trim() === "") throw new Error(`${where}: empty line`);
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`${where}: not "name{labels} value"`);
    const [, name, labelText, valueText] = match;
    if (!VALUE.test(valueText)) throw new Error(`${where}: bad value`);
    const labels: Record<string, string> = {};
    let rest = labelText ?? "";
    while (rest.length > 0) {
      const label = /^([^=]+)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
      if (!label) throw new Error(`${where}: bad label at "${rest}"`);
      if (!LABEL_NAME.test(label[1])) throw new Error(`${where}: bad label name ${label[1]}`);
      if (label[1] in labels) throw new Error(`${where}: label ${label[1]} twice`);
      labels[label[1]] = label[2].replace(/\\(.)/g, (_, c) => c === "n" ? "\n" : c);
      rest = rest.slice(label[0].length);
    }
    const family = types.has(name) ? name : name.replace(/_(sum|count|bucket)$/, "");
    const type = types.get(family);
    if (!type || !help.has(family)) throw new Error(`${where}: no HELP and TYPE before the sample`);
    if (family !== name && !["summary", "histogram"].includes(type)) {
      throw new Error(`${where}: suffix ${name.slice(family.length)} on a ${type}`);
    }
    samples.push({ name, labels, value: Number(valueText.replace("Inf", "Infinity")) });
  });
  return { samples, types };
}
