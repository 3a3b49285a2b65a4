/**
 * The config hash of a compose service: the label `io.compose-spec.config-hash`, which is Foundries'
 * composeapp's, not docker compose's.
 *
 * Facts this module relies on (read from the public sources; nothing here is copied from them):
 *
 * - In foundriesio/composeapp, pkg/compose/v1/publish.go (`DoPublish`) reads the file with compose-go v1's
 *   `loader.ParseYAML` (compose-spec/compose-go v1.20.2, loader/loader.go: gopkg.in/yaml.v3 decoded into
 *   `map[string]interface{}`, merge keys resolved, no interpolation), pins each service's image to
 *   `domain/path@digest` (`pinServiceImages`), and then, in `pinServiceConfigs`, hashes each service as
 *   `sha256(yaml.Marshal(serviceMap))` with gopkg.in/yaml.v3 v3.0.1, writes the lower-case hex into the
 *   service's `labels` under `io.compose-spec.config-hash` (replacing `labels` by the loaded project's map,
 *   so composeapp turns a list of labels into a map), and publishes the result. pkg/compose/v1/app.go copies
 *   the label into the app manifest's image annotations (`AppServiceHashLabelKey`), and
 *   pkg/compose/status.go finds a service's running container by that label (compose copies service labels
 *   onto containers) together with the container's image.
 * - `configHash` below reproduces that hash: the service as yaml.v3 decodes it (util/yaml_v3_decode.ts),
 *   written as yaml.v3's `Marshal` writes a map (util/yaml_v3_marshal.ts). One deliberate difference: an
 *   `io.compose-spec.config-hash` label already in the service is left out of the hash, so labelling a
 *   labelled file changes nothing (composeapp hashes files that do not carry it yet). Not reproduced:
 *   compose-go's `!reset`/`!override` tags (their scalars count as strings here), and services switched off
 *   by `profiles` are labelled too (composeapp only walks the project's active services). The tests hold
 *   texts and hashes that yaml.v3 v3.0.1 itself produced.
 * - docker compose has its own, unrelated `com.docker.compose.config-hash` container label, which it uses to
 *   decide whether to recreate a container. Compose v2 (docker/compose v2.26.1, pkg/compose/hash.go
 *   `ServiceHash`, set in pkg/compose/create.go, compared in pkg/compose/convergence.go) hashes
 *   `json.Marshal` of the loaded `types.ServiceConfig` with build, pull_policy, scale and deploy.replicas
 *   cleared; it also recreates when `com.docker.compose.image` (the image ID) changes. Compose v1
 *   (docker/compose 1.29.2, compose/service.py `config_hash`, compose/utils.py `json_hash`) hashes
 *   `json.dumps(sort_keys=True, separators=(",", ":"))` of the service options, the image ID, links,
 *   network and ipc modes, networks, secrets and volumes_from. Neither is computable before the engine has
 *   the image, which is why apps carry composeapp's label.
 */
import { createHash } from "node:crypto";
import { marshalGoYaml } from "../util/yaml_v3_marshal.ts";
import { type ComposeFile, composeFromDocument, type ComposeService } from "./compose_file.ts";
import { ownServiceMap, setOwnLabel } from "./compose_edit.ts";

/** The label composeapp sets on each service (and compose copies onto its containers). */
export const CONFIG_HASH_LABEL = "io.compose-spec.config-hash";

/**
 * composeapp's config hash of a service: lower-case hex sha256 of the service's mapping as gopkg.in/yaml.v3
 * marshals it (see the top of this file), without any config-hash label it already has.
 */
export function configHash(service: ComposeService): string {
  const config = new Map(service.goConfig);
  const labels = config.get("labels");
  if (labels instanceof Map) {
    const rest = new Map(labels);
    rest.delete(CONFIG_HASH_LABEL);
    if (rest.size > 0) config.set("labels", rest);
    else config.delete("labels");
  } else if (Array.isArray(labels)) {
    const rest = labels.filter((item) =>
      !(typeof item === "string" && (item === CONFIG_HASH_LABEL || item.startsWith(`${CONFIG_HASH_LABEL}=`)))
    );
    if (rest.length > 0) config.set("labels", rest);
    else config.delete("labels");
  }
  return createHash("sha256").update(marshalGoYaml(config)).digest("hex");
}

/**
 * Sets `io.compose-spec.config-hash` on every service to its `configHash`, in the form its labels have (a
 * mapping, or a list of "key=value"; a service without labels gets a mapping). Pin first: the hash covers
 * the image.
 */
export function labelServices(compose: ComposeFile): ComposeFile {
  const hashes = compose.services.map((service) => configHash(service));
  const doc = compose.doc.clone();
  compose.services.forEach((service, index) => {
    setOwnLabel(doc, ownServiceMap(doc, service.name), CONFIG_HASH_LABEL, hashes[index]);
  });
  return composeFromDocument(doc, compose.file);
}
