/**
 * chart.svg, drawn by hand: one panel per comparison, grouped bars of median seconds per image set, one
 * bar (series) per tool, each bar labelled with its value, with axes, a title and a legend per panel.
 */
import type { ComparisonResult } from "./measure.ts";
import { comparisonNames, medianSeconds } from "./report.ts";

const PANEL_WIDTH = 760;
const PANEL_HEIGHT = 300;
const MARGIN = { left: 60, right: 190, top: 34, bottom: 44 };
/** berth first, in a colour that stands out; the other tools in quieter ones. */
const COLOURS = ["#1f6fd1", "#e07b24", "#6b8e23", "#8e44ad", "#7f7f7f"];

/** Escapes text for SVG. */
export function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A round axis maximum at or above `value` (1, 2 or 5 times a power of ten). */
export function niceCeiling(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/** One panel: the results of `comparison`, placed `top` pixels down. */
export function panel(comparison: string, results: ComparisonResult[], top: number): string {
  const mine = results.filter((result) => result.comparison === comparison);
  const tools = [...new Set(mine.flatMap((result) => result.contenders.map((contender) => contender.name)))];
  const seconds = (set: ComparisonResult, tool: string) => {
    const found = set.contenders.find((contender) => contender.name === tool);
    return found ? medianSeconds(found.samples) : NaN;
  };
  const values = mine.flatMap((result) => tools.map((tool) => seconds(result, tool))).filter(Number.isFinite);
  const yMax = niceCeiling(Math.max(0, ...values));
  const plotWidth = PANEL_WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom;
  const x0 = MARGIN.left;
  const y0 = top + MARGIN.top + plotHeight;
  const y = (value: number) => Math.round((y0 - (value / yMax) * plotHeight) * 10) / 10;
  const out = [
    `<text x="${x0}" y="${top + 20}" font-size="15" font-weight="bold">${escapeXml(comparison)}</text>`,
    `<line x1="${x0}" y1="${y0}" x2="${x0 + plotWidth}" y2="${y0}" stroke="black"/>`,
    `<line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y0 - plotHeight}" stroke="black"/>`,
    `<text x="14" y="${y0 - plotHeight / 2}" font-size="12" text-anchor="middle" ` +
    `transform="rotate(-90 14 ${y0 - plotHeight / 2})">seconds (median)</text>`,
    `<text x="${x0 + plotWidth / 2}" y="${y0 + 36}" font-size="12" text-anchor="middle">image set</text>`,
  ];
  for (let tick = 0; tick <= 4; tick++) {
    const value = (yMax * tick) / 4;
    out.push(
      `<line x1="${x0 - 4}" y1="${y(value)}" x2="${x0 + plotWidth}" y2="${y(value)}" stroke="#ddd"/>`,
      `<text x="${x0 - 6}" y="${y(value) + 4}" font-size="11" text-anchor="end">${+value.toPrecision(
        3,
      )}</text>`,
    );
  }
  const groupWidth = plotWidth / Math.max(1, mine.length);
  const barWidth = (groupWidth * 0.8) / Math.max(1, tools.length);
  for (const [group, result] of mine.entries()) {
    const groupLeft = x0 + group * groupWidth + groupWidth * 0.1;
    for (const [series, tool] of tools.entries()) {
      const value = seconds(result, tool);
      if (!Number.isFinite(value)) continue;
      const left = groupLeft + series * barWidth;
      out.push(
        `<rect x="${left.toFixed(1)}" y="${y(value).toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" ` +
          `height="${(y0 - y(value)).toFixed(1)}" fill="${COLOURS[series % COLOURS.length]}"/>`,
        `<text x="${(left + barWidth / 2).toFixed(1)}" y="${(y(value) - 3).toFixed(1)}" font-size="9" ` +
          `text-anchor="middle">${value.toFixed(value < 1 ? 3 : value < 10 ? 2 : 1)}</text>`,
      );
    }
    out.push(
      `<text x="${(groupLeft + groupWidth * 0.4).toFixed(1)}" y="${y0 + 16}" font-size="12" ` +
        `text-anchor="middle">${escapeXml(result.set)}</text>`,
    );
  }
  for (const [series, tool] of tools.entries()) {
    const legendY = top + MARGIN.top + 8 + series * 18;
    const legendX = x0 + plotWidth + 14;
    out.push(
      `<rect x="${legendX}" y="${legendY - 9}" width="12" height="12" fill="${
        COLOURS[series % COLOURS.length]
      }"/>`,
      `<text x="${legendX + 18}" y="${legendY + 1}" font-size="12">${escapeXml(tool)}</text>`,
    );
  }
  return out.join("\n");
}

/** The whole chart: a panel per comparison, stacked; lower bars are better. */
export function chartSvg(results: ComparisonResult[]): string {
  const names = comparisonNames(results);
  const height = Math.max(1, names.length) * PANEL_HEIGHT + 30;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${PANEL_WIDTH}" height="${height}" ` +
    `viewBox="0 0 ${PANEL_WIDTH} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${PANEL_WIDTH / 2}" y="20" font-size="14" text-anchor="middle">` +
    "berth vs other tools: median seconds per image set (lower is better)</text>",
    ...names.map((name, index) => panel(name, results, 30 + index * PANEL_HEIGHT)),
    "</svg>",
    "",
  ].join("\n");
}
