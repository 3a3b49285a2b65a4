/**
 * Image references, parsed and normalised the way docker does: `nginx` → `docker.io/library/nginx:latest`,
 * `host:port/a/b:tag`, `name@sha256:…`, `name:tag@sha256:…` (the digest wins when pulling).
 */
import { BerthError } from "../util/errors.ts";

/** A parsed, normalised reference. */
export interface Reference {
  /** Registry host as written, with port: "docker.io", "127.0.0.1:5000". */
  registry: string;
  /** Repository path within the registry: "library/nginx". */
  repository: string;
  tag?: string;
  digest?: string;
}

/** The registry a reference without a host names; index.docker.io is read as this too. */
export const DOCKER_HUB = "docker.io";
/** Where docker.io's registry API actually lives. */
const DOCKER_HUB_API = "registry-1.docker.io";

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const DOMAIN =
  /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;
/** docker's limit on the length of a repository name. */
const MAX_NAME_LENGTH = 255;

function invalid(input: string, why: string): BerthError {
  return new BerthError("invalid_reference", `invalid reference "${input}": ${why}`);
}

/** Parses and normalises an image reference; throws a BerthError quoting the input when malformed. */
export function parseReference(input: string): Reference {
  if (input === "" || input.trim() !== input) throw invalid(input, "empty or surrounded by white space");
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw invalid(input, `"${digest}" is not a digest (expected sha256:<64 hex>)`);
    if (digest.startsWith("sha256:") && !/^sha256:[a-f0-9]{64}$/.test(digest)) {
      throw invalid(input, `"${digest}" is not a sha256 digest of 64 lower-case hex characters`);
    }
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(input, `"${tag}" is not a valid tag`);
  }
  if (rest === "") throw invalid(input, "no repository name");

  let registry = DOCKER_HUB;
  let repository = rest;
  const firstSlash = rest.indexOf("/");
  if (firstSlash >= 0) {
    const first = rest.slice(0, firstSlash);
    if (/[.:]/.test(first) || first === "localhost" || first !== first.toLowerCase()) {
      registry = first;
      repository = rest.slice(firstSlash + 1);
      if (!DOMAIN.test(registry)) throw invalid(input, `"${registry}" is not a valid registry host`);
    }
  }
  if (registry === "index.docker.io") registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !repository.includes("/")) repository = `library/${repository}`;
  for (const component of repository.split("/")) {
    if (!COMPONENT.test(component)) {
      throw invalid(
        input,
        component === component.toLowerCase()
          ? `"${component}" is not a valid repository name component`
          : "repository names must be lower-case",
      );
    }
  }
  if (`${registry}/${repository}`.length > MAX_NAME_LENGTH) {
    throw invalid(input, `repository name longer than ${MAX_NAME_LENGTH} characters`);
  }
  if (tag === undefined && digest === undefined) tag = "latest";
  return { registry, repository, tag, digest };
}

/** The full normalised form: "docker.io/library/nginx:latest", "host:5000/a/b@sha256:…". */
export function formatReference(ref: Reference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ""}${
    ref.digest ? `@${ref.digest}` : ""
  }`;
}

/** The host berth connects to for a registry name (docker.io's API lives elsewhere). */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
}

/** What to ask the registry for: the digest when there is one, else the tag. */
export function manifestSelector(ref: Reference): string {
  return ref.digest ?? ref.tag ?? "latest";
}

/** Whether a registry host is on the loopback interface, where docker allows plain HTTP. */
export function isLoopbackHost(registry: string): boolean {
  const host = registry.replace(/:[0-9]+$/, "").replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
