import assert from "node:assert/strict";
import type { ComparisonResult } from "./measure.ts";
import { comparisonTable, extrasSection, median, tables } from "./report.ts";
import { chartSvg, escapeXml, niceCeiling } from "./svg.ts";

const sample = (seconds: number, peakRssKiB = 2048) => ({ seconds, peakRssKiB });

const results: ComparisonResult[] = [
  {
    set: "1",
    comparison: "fetch",
    megabytes: 10,
    contenders: [
      { name: "berth pull", samples: [sample(1), sample(3), sample(2)] },
      { name: "skopeo copy", samples: [sample(4), sample(4, 4096), sample(4)] },
    ],
  },
  {
    set: "3",
    comparison: "fetch",
    megabytes: 30,
    contenders: [
      { name: "berth pull", samples: [sample(3)] },
      { name: "skopeo <copy>", samples: [sample(6)] },
    ],
  },
  { set: "1", comparison: "sync", megabytes: 0, contenders: [{ name: "sync -f", samples: [sample(0.5)] }] },
];

Deno.test("median takes the middle value, the upper one for an even count", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 3);
  assert.ok(Number.isNaN(median([])));
});

Deno.test("a comparison table has a row per set and tool with median, MB/s, peak RSS and ratio", () => {
  const table = comparisonTable("fetch", results);
  assert.match(table, /\| 1 \| 10\.0 \| berth pull \| 2\.00 \| 5 \| 2\.0 \| — \| 1\.00 3\.00 2\.00 \|/);
  assert.match(table, /\| 1 \| 10\.0 \| skopeo copy \| 4\.00 \| 3 \| 4\.0 \| 0\.50 \|/);
  assert.match(table, /\| 3 \| 30\.0 \| skopeo <copy> \| 6\.00 \| 5 \| 2\.0 \| 0\.50 \|/);
  assert.ok(!table.includes("sync -f"));
});

Deno.test("tables hold one section per comparison in first-seen order; no MB/s without megabytes", () => {
  const text = tables(results);
  assert.ok(text.indexOf("### fetch") < text.indexOf("### sync"));
  assert.match(text, /\| 1 \| 0\.0 \| sync -f \| 0\.500 \| — \|/);
});

Deno.test("extras give ratios, and say what was not measured", () => {
  const text = extrasSection({
    resume: { kills: 8, servedBytes: 110e6, distinctBytes: 100e6 },
    statusMs: [300, 100, 200],
  });
  assert.match(text, /8 kill -9s mid-pull: 110\.0 MB served for 100\.0 MB distinct \(ratio 1\.100\)/);
  assert.match(text, /Update bytes: not measured/);
  assert.match(text, /median 200 ms/);
});

Deno.test("the chart has a panel per comparison, a bar per set and tool, and escaped labels", () => {
  const svg = chartSvg(results);
  assert.ok(svg.startsWith("<svg"));
  // 5 bars, and a legend swatch per tool per panel: fetch names three tools, sync one.
  assert.equal(svg.match(/<rect x=/g)?.length, 5 + 4);
  assert.ok(svg.includes("skopeo &lt;copy&gt;"));
  assert.ok(!svg.includes("NaN"));
});

Deno.test("axis maxima are round and escapes cover XML's specials", () => {
  assert.equal(niceCeiling(3.2), 5);
  assert.equal(niceCeiling(0.07), 0.1);
  assert.equal(niceCeiling(0), 1);
  assert.equal(escapeXml(`a<b>&"`), "a&lt;b&gt;&amp;&quot;");
});
