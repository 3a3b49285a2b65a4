/**
 * A self-check of the harness itself (services and image build), run only with BERTH_HARNESS_SELFTEST=1:
 * it starts its own registry and dockerd, so it must not run inside `deno task test`, which has its own.
 */
import { type ImageInfo, startServices } from "./images.ts";
import { ensurePackages, run } from "./services.ts";

Deno.test({
  name: "harness: services start, images build and push, everything stops",
  ignore: Deno.env.get("BERTH_HARNESS_SELFTEST") !== "1",
  async fn() {
    await ensurePackages();
    const tmp = await Deno.makeTempDir({ prefix: "berth-harness-" });
    const services = await startServices(tmp);
    try {
      const { images } = services;
      console.log(`images built and pushed in ${services.buildSeconds.toFixed(1)} s`);

      for (const [name, image] of Object.entries(images) as [string, ImageInfo][]) {
        const inspected = JSON.parse(
          await run(["skopeo", "inspect", "--tls-verify=false", `docker://${image.ref}`]),
        );
        // For the index skopeo picks the host's (amd64) child, whose layers we recorded.
        const layers = image.layers.map((layer) => layer.digest);
        if (JSON.stringify(inspected.Layers) !== JSON.stringify(layers)) {
          throw new Error(`${name}: skopeo sees layers ${inspected.Layers}, harness recorded ${layers}`);
        }
      }
      const baseLayer = images.base.layers[0].digest;
      for (const app of [images.appA, images.appB, images.appC]) {
        if (app.layers.length !== 3 || app.layers[0].digest !== baseLayer) {
          throw new Error(`${app.ref} does not have 3 layers on the base layer ${baseLayer}`);
        }
      }
      if (!images.appOci.mediaType.includes("oci")) throw new Error(`app-oci is ${images.appOci.mediaType}`);
      const entries = images.multi.manifests?.map((entry) => entry.digest);
      if (JSON.stringify(entries) !== JSON.stringify([images.appA.digest, images.appB.digest])) {
        throw new Error(`multi's entries ${entries} are not app-a and app-b`);
      }
      console.log(JSON.stringify(images, null, 2));
    } finally {
      await services.stop();
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
