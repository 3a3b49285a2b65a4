/** What prune keeps and drops (app/prune.ts planPrune), from index entries and app records in memory. */
import assert from "node:assert/strict";
import { planPrune, type PruneInput } from "../../src/app/prune.ts";
import { localImageTag } from "../../src/app/lifecycle.ts";
import type { AppRecord } from "../../src/store/apps.ts";
import type { Descriptor } from "../../src/oci/descriptor.ts";
import {
  APP_NAME,
  MANIFEST_DIGEST,
  PULLED_FOR_APP,
  REF_NAME,
  SIGNATURE_OF,
} from "../../src/store/annotations.ts";

const d = (name: string) => `sha256:${name.padEnd(64, "0")}`;
const image = (name: string) => `reg.example/img/${name}@${d(name)}`;

function entry(ref: string, digest: string, annotations: Record<string, string> = {}): Descriptor {
  return {
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest,
    size: 1,
    annotations: { [REF_NAME]: ref, [MANIFEST_DIGEST]: digest, ...annotations },
  };
}
const appEntry = (ref: string, digest: string, app = "shop") => entry(ref, digest, { [APP_NAME]: app });
const forApp = (name: string) => entry(image(name), d(name), { [PULLED_FOR_APP]: "shop" });

const record = (digest: string, previous: string[]): AppRecord => ({
  name: "shop",
  ref: "reg.example/factory/shop:stable",
  digest,
  installed: true,
  running: true,
  previous,
  updatedAt: "",
});

/** shop: v3 installed, v2 and v1 before it; v4 fetched, never installed; "tool" fetched, no record. */
function input(keep: number, pins?: Partial<Record<string, string[] | undefined>>): PruneInput {
  const allPins: Record<string, string[] | undefined> = {
    [d("v1")]: [image("a"), image("c"), image("dd")],
    [d("v2")]: [image("a"), image("b")],
    [d("v3")]: [image("a")],
    [d("v4")]: [image("a"), image("e")],
    [d("t1")]: [image("f")],
    ...pins,
  };
  return {
    entries: [
      appEntry("reg.example/factory/shop:stable", d("v3")),
      appEntry("reg.example/factory/shop:old", d("v1")),
      appEntry("reg.example/factory/shop:next", d("v4")),
      appEntry("reg.example/factory/tool:1", d("t1"), "tool"),
      forApp("a"),
      forApp("b"),
      forApp("c"),
      forApp("e"),
      forApp("f"),
      entry(image("dd"), d("dd")), // pinned by v1, but a user pulled it
      entry("docker.io/library/nginx:1.27", d("x")), // a user's image
    ],
    apps: { shop: record(d("v3"), [d("v2"), d("v1")]) },
    keep,
    pins: new Map(Object.entries(allPins)),
  };
}

const refs = (entries: Descriptor[]) => entries.map((item) => item.annotations![REF_NAME]).sort();

Deno.test("planPrune keep=1: v1 and the image only it pinned go; v2, pending v4, unrecorded apps and user images stay", () => {
  const plan = planPrune(input(1));
  assert.deepEqual(refs(plan.droppedEntries), [image("c"), "reg.example/factory/shop:old"].sort());
  assert.deepEqual([...plan.keptVersions].sort(), [d("t1"), d("v2"), d("v3"), d("v4")].sort());
  assert.deepEqual([...plan.engineTags.keys()], [localImageTag(image("c"))]);
  assert.deepEqual(plan.trimmedApps.map((app) => app.previous), [[d("v2")]]);
  assert.deepEqual(plan.warnings, []);
});

Deno.test("planPrune keep=0: v2's image goes too; shared and user-pulled images stay", () => {
  const plan = planPrune(input(0));
  assert.deepEqual(
    refs(plan.droppedEntries),
    [image("b"), image("c"), "reg.example/factory/shop:old"].sort(),
  );
  assert.deepEqual(
    [...plan.engineTags.keys()].sort(),
    [localImageTag(image("b")), localImageTag(image("c"))].sort(),
  );
  assert.deepEqual(plan.trimmedApps.map((app) => app.previous), [[]]);
});

Deno.test("planPrune keep=2: nothing of shop goes, nothing is trimmed", () => {
  const plan = planPrune(input(2));
  assert.deepEqual(plan.droppedEntries, []);
  assert.equal(plan.engineTags.size, 0);
  assert.deepEqual(plan.trimmedApps, []);
});

Deno.test("planPrune: a kept version whose pins cannot be read keeps every image pulled for apps", () => {
  const plan = planPrune(input(0, { [d("v3")]: undefined }));
  assert.deepEqual(refs(plan.droppedEntries), ["reg.example/factory/shop:old"]);
  assert.equal(plan.engineTags.size, 0);
  assert.equal(plan.warnings.length, 1);
  assert.match(plan.warnings[0], new RegExp(d("v3")));
});

Deno.test("planPrune: removeApps drops an unrecorded app's versions and the images only they pinned", () => {
  const plan = planPrune({ ...input(1), removeApps: ["tool"] });
  assert.ok(refs(plan.droppedEntries).includes("reg.example/factory/tool:1"));
  assert.ok(refs(plan.droppedEntries).includes(image("f")));
  assert.ok(plan.engineTags.has(localImageTag(image("f"))));
});

Deno.test("prune: a signature stays exactly as long as the version or image it signs", () => {
  const signature = (signs: string, name: string) =>
    entry(`reg.example/factory/shop:sha256-${signs.slice(7)}.sig`, d(name), { [SIGNATURE_OF]: signs });
  const base = input(0);
  const plan = planPrune({
    ...base,
    entries: [
      ...base.entries,
      signature(d("v3"), "s3"), // the installed version
      signature(d("v1"), "s1"), // beyond keep 0, with its entry dropped
      signature(d("x"), "sx"), // a user's image, kept
      signature(d("zz"), "sz"), // a version the store never recorded (a refused or unfinished pull)
    ],
  });
  const dropped = plan.droppedEntries.map((dropped) => dropped.digest);
  assert.ok(!dropped.includes(d("s3")));
  assert.ok(dropped.includes(d("s1")));
  assert.ok(!dropped.includes(d("sx")));
  assert.ok(dropped.includes(d("sz")));
});
