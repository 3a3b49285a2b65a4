/**
 * The signature policy: a containers-policy.json(5) file, read as strictly as containers/image reads it
 * (unknown or misspelt fields refuse the whole file) and more strictly where berth supports less: every
 * requirement type, field and identity berth does not check is refused by name when the file is loaded,
 * never silently accepted. Only the `docker` transport applies to berth; the others' scopes are skipped.
 * This file is the one validation point: what it returns is checked, keys included.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { BerthError } from "../util/errors.ts";
import { quoted } from "../util/text.ts";
import { parseReference, type Reference } from "../oci/reference.ts";

/** A policy file is a few scopes and keys; anything larger is not one. */
export const MAX_POLICY_BYTES = 1024 * 1024;
/** A PEM public key is well under 1 KiB (RSA-4096: 800 bytes). */
const MAX_KEY_BYTES = 64 * 1024;

/** What a signature's identity must be, per containers-policy.json(5) `signedIdentity`. */
export type SignedIdentity =
  | { type: "matchRepoDigestOrExact" }
  | { type: "matchExact" }
  | { type: "matchRepository" }
  /** `dockerRepository`, normalised: "docker.io/library/busybox". */
  | { type: "exactRepository"; dockerRepository: string };

/** A sigstoreSigned requirement with its key already read and parsed. */
export interface SigstoreSigned {
  type: "sigstoreSigned";
  /** The public key (ECDSA, RSA or Ed25519). */
  key: KeyObject;
  /** How messages name the key: its keyPath, or "keyData in <policy file>". */
  keySource: string;
  signedIdentity: SignedIdentity;
  /** The policy file the requirement came from, for messages. */
  policyFile: string;
}

/** One policy requirement; a list of them must all be satisfied. */
export type Requirement = { type: "insecureAcceptAnything" } | { type: "reject" } | SigstoreSigned;

/** A loaded policy: the global default and the `docker` transport's scopes. */
export interface Policy {
  /** The file it was read from, for messages. */
  file: string;
  default: Requirement[];
  /** Scope ("" for the transport's default, "host", "host/ns/repo", "*.example.com", …) → requirements. */
  docker: Map<string, Requirement[]>;
}

/** The requirement types of containers-policy.json(5) that berth does not check, and why. */
const UNSUPPORTED_TYPES: Record<string, string> = {
  signedBy: "GPG simple signing is not supported; sign with cosign and use sigstoreSigned",
  signedBaseLayer: "not supported",
};
/** sigstoreSigned fields that containers/image knows and berth does not check. */
const UNSUPPORTED_SIGSTORE_FIELDS = [
  "keyPaths",
  "keyDatas",
  "fulcio",
  "rekorPublicKeyPath",
  "rekorPublicKeyPaths",
  "rekorPublicKeyData",
  "rekorPublicKeyDatas",
  "pki",
];
const UNSUPPORTED_IDENTITIES = ["exactReference", "remapIdentity"];
const SCOPE_WILDCARD = /^\*\.[a-z0-9-]+(?:\.[a-z0-9-]+)*$/i;

function refuse(file: string, message: string): BerthError {
  return new BerthError("invalid_input", `${file}: ${message}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Refuses any field of `value` not in `allowed`, naming it and `where`. */
function onlyFields(file: string, where: string, value: Record<string, unknown>, allowed: string[]): void {
  for (const field of Object.keys(value)) {
    if (!allowed.includes(field)) {
      throw refuse(file, `${where}: unknown field ${quoted(field)} (allowed: ${allowed.join(", ")})`);
    }
  }
}

/**
 * Parses a policy file's text. Reads the keyPath files it names (synchronously: once, at load) and parses
 * every key, so a policy that loads can be applied. Anything berth would not check is BerthError
 * "invalid_input" naming `file`, the place and the field.
 */
export function parsePolicy(text: string, file: string): Policy {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw refuse(file, `not JSON: ${error instanceof Error ? error.message : error}`);
  }
  if (!isObject(json)) throw refuse(file, "not a JSON object");
  const repeated = repeatedKey(text);
  if (repeated !== undefined) {
    // JSON.parse keeps the last: a scope written twice would silently lose its first requirements.
    throw refuse(file, `field ${quoted(repeated)} appears twice in one object`);
  }
  onlyFields(file, "top level", json, ["default", "transports"]);
  if (json.default === undefined) throw refuse(file, `no "default" requirements (the field is required)`);
  const policy: Policy = {
    file,
    default: parseRequirements(file, "default", json.default),
    docker: new Map(),
  };
  if (json.transports === undefined) return policy;
  if (!isObject(json.transports)) throw refuse(file, `"transports" is not an object`);
  const docker = json.transports.docker;
  if (docker === undefined) return policy;
  if (!isObject(docker)) throw refuse(file, `transports.docker is not an object`);
  for (const [scope, requirements] of Object.entries(docker)) {
    checkScope(file, scope);
    policy.docker.set(scope, parseRequirements(file, `transports.docker[${quoted(scope)}]`, requirements));
  }
  return policy;
}

/** The first key that appears twice in one object of `text`, which JSON.parse has accepted. */
function repeatedKey(text: string): string | undefined {
  const objects: { keys: Set<string> | undefined; expectKey: boolean }[] = [];
  for (let at = 0; at < text.length; at++) {
    const char = text[at];
    const top = objects.at(-1);
    if (char === '"') {
      let end = at + 1;
      while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      if (top?.keys && top.expectKey) {
        const key: string = JSON.parse(text.slice(at, end + 1));
        if (top.keys.has(key)) return key;
        top.keys.add(key);
        top.expectKey = false;
      }
      at = end;
    } else if (char === "{") objects.push({ keys: new Set(), expectKey: true });
    else if (char === "[") objects.push({ keys: undefined, expectKey: false });
    else if (char === "}" || char === "]") objects.pop();
    else if (char === "," && top?.keys) top.expectKey = true;
  }
  return undefined;
}

/** Reads and parses a policy file of at most MAX_POLICY_BYTES; see parsePolicy. */
export async function loadPolicy(file: string): Promise<Policy> {
  let bytes: Uint8Array;
  try {
    const handle = await Deno.open(file, { read: true });
    try {
      const info = await handle.stat();
      if (!info.isFile) throw refuse(file, "not a regular file");
      if (info.size > MAX_POLICY_BYTES) throw refuse(file, `larger than ${MAX_POLICY_BYTES} bytes`);
      bytes = new Uint8Array(info.size);
      let read = 0;
      while (read < bytes.length) {
        const count = await handle.read(bytes.subarray(read));
        if (count === null) break;
        read += count;
      }
      bytes = bytes.subarray(0, read);
    } finally {
      handle.close();
    }
  } catch (error) {
    if (error instanceof BerthError) throw error;
    throw refuse(file, `cannot read the policy: ${error instanceof Error ? error.message : error}`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw refuse(file, "not UTF-8 text");
  }
  return parsePolicy(text, file);
}

/**
 * Checks a `docker` scope: "" (the transport's default), a fully expanded reference with tag or digest
 * ("docker.io/library/busybox:latest"), a repository or namespace ("host:5000/ns/repo", "host/ns"), a host,
 * or "*.example.com". A scope that can never match (not expanded: "busybox", "library/busybox") is refused
 * rather than silently ignored.
 */
function checkScope(file: string, scope: string): void {
  if (scope === "" || SCOPE_WILDCARD.test(scope)) return;
  const where = `transports.docker scope ${quoted(scope)}`;
  const slash = scope.indexOf("/");
  const host = slash < 0 ? scope : scope.slice(0, slash);
  if (!/[.:]/.test(host) && host !== "localhost") {
    throw refuse(file, `${where}: does not start with a registry host (write it fully expanded)`);
  }
  let parsed: Reference;
  try {
    // A host alone is checked as the host of a repository.
    parsed = parseReference(slash < 0 ? `${scope}/x` : scope);
  } catch (error) {
    throw refuse(file, `${where}: ${error instanceof Error ? error.message : error}`);
  }
  if (parsed.registry !== host) throw refuse(file, `${where}: write the registry as ${parsed.registry}`);
  if (slash < 0 || !hasTagOrDigest(scope)) return;
  // One image: the exact form berth looks up, with the digest alone when there is one.
  const name = `${parsed.registry}/${parsed.repository}`;
  const expanded = parsed.digest ? `${name}@${parsed.digest}` : `${name}:${parsed.tag}`;
  if (expanded !== scope) {
    throw refuse(file, `${where}: not in the fully expanded form, which is ${quoted(expanded)}`);
  }
}

function parseRequirements(file: string, where: string, value: unknown): Requirement[] {
  if (!Array.isArray(value)) throw refuse(file, `${where}: not a list of requirements`);
  if (value.length === 0) {
    throw refuse(file, `${where}: an empty list of requirements (containers-policy.json(5) forbids it)`);
  }
  return value.map((item, position) => parseRequirement(file, `${where}[${position}]`, item));
}

function parseRequirement(file: string, where: string, value: unknown): Requirement {
  if (!isObject(value)) throw refuse(file, `${where}: not an object`);
  const type = value.type;
  if (typeof type !== "string") throw refuse(file, `${where}: no "type"`);
  if (type === "insecureAcceptAnything" || type === "reject") {
    onlyFields(file, `${where} (${type})`, value, ["type"]);
    return { type };
  }
  if (type === "sigstoreSigned") return parseSigstoreSigned(file, `${where} (sigstoreSigned)`, value);
  if (type in UNSUPPORTED_TYPES) {
    throw refuse(file, `${where}: requirement type ${quoted(type)}: ${UNSUPPORTED_TYPES[type]}`);
  }
  throw refuse(
    file,
    `${where}: unknown requirement type ${
      quoted(type)
    } (berth supports insecureAcceptAnything, reject, sigstoreSigned)`,
  );
}

function parseSigstoreSigned(file: string, where: string, value: Record<string, unknown>): SigstoreSigned {
  for (const field of UNSUPPORTED_SIGSTORE_FIELDS) {
    if (field in value) {
      throw refuse(
        file,
        `${where}: field ${
          quoted(field)
        } is not supported (berth checks keyPath or keyData, and signedIdentity)`,
      );
    }
  }
  onlyFields(file, where, value, ["type", "keyPath", "keyData", "signedIdentity"]);
  const { keyPath, keyData } = value;
  if ((keyPath === undefined) === (keyData === undefined)) {
    throw refuse(file, `${where}: exactly one of keyPath and keyData is required`);
  }
  let pem: Uint8Array;
  let keySource: string;
  if (keyPath !== undefined) {
    if (typeof keyPath !== "string" || !keyPath.startsWith("/")) {
      throw refuse(file, `${where}: keyPath ${quoted(keyPath)} is not an absolute path`);
    }
    pem = readKeyFile(file, where, keyPath);
    keySource = keyPath;
  } else {
    const decoded = typeof keyData === "string" ? decodeBase64(keyData) : undefined;
    if (!decoded?.length) throw refuse(file, `${where}: keyData is not base64 (of a PEM public key)`);
    pem = decoded;
    keySource = `keyData in ${file}`;
  }
  const key = parsePublicKey(file, `${where} key ${keySource}`, pem);
  const signedIdentity = parseSignedIdentity(file, `${where}.signedIdentity`, value.signedIdentity);
  return { type: "sigstoreSigned", key, keySource, signedIdentity, policyFile: file };
}

function readKeyFile(file: string, where: string, keyPath: string): Uint8Array {
  try {
    const info = Deno.statSync(keyPath);
    if (!info.isFile) throw new Error("not a regular file");
    if (info.size > MAX_KEY_BYTES) throw new Error(`larger than ${MAX_KEY_BYTES} bytes`);
    return Deno.readFileSync(keyPath);
  } catch (error) {
    throw refuse(file, `${where}: keyPath ${keyPath}: ${error instanceof Error ? error.message : error}`);
  }
}

/** A PEM public key of a type cosign signs with: ECDSA, RSA (PKCS#1 v1.5) or Ed25519. */
function parsePublicKey(file: string, where: string, pem: Uint8Array): KeyObject {
  const text = new TextDecoder().decode(pem);
  if (!text.includes("-----BEGIN PUBLIC KEY-----")) {
    throw refuse(file, `${where}: not a PEM public key ("-----BEGIN PUBLIC KEY-----")`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: text, format: "pem" });
  } catch (error) {
    throw refuse(file, `${where}: not a public key: ${error instanceof Error ? error.message : error}`);
  }
  if (!["ec", "rsa", "ed25519"].includes(key.asymmetricKeyType ?? "")) {
    throw refuse(
      file,
      `${where}: ${quoted(key.asymmetricKeyType)} keys are not supported (ECDSA, RSA, Ed25519)`,
    );
  }
  return key;
}

function parseSignedIdentity(file: string, where: string, value: unknown): SignedIdentity {
  if (value === undefined) return { type: "matchRepoDigestOrExact" };
  if (!isObject(value)) throw refuse(file, `${where}: not an object`);
  const type = value.type;
  if (type === "matchRepoDigestOrExact" || type === "matchExact" || type === "matchRepository") {
    onlyFields(file, `${where} (${type})`, value, ["type"]);
    return { type };
  }
  if (type === "exactRepository") {
    onlyFields(file, `${where} (${type})`, value, ["type", "dockerRepository"]);
    return {
      type,
      dockerRepository: parseRepository(file, `${where}.dockerRepository`, value.dockerRepository),
    };
  }
  if (typeof type === "string" && UNSUPPORTED_IDENTITIES.includes(type)) {
    throw refuse(file, `${where}: identity type ${quoted(type)} is not supported`);
  }
  throw refuse(
    file,
    `${where}: unknown identity type ${
      quoted(type)
    } (berth supports matchRepoDigestOrExact, matchExact, matchRepository, exactRepository)`,
  );
}

/** A repository name without tag or digest, normalised as docker does ("busybox" → "docker.io/library/busybox"). */
function parseRepository(file: string, where: string, value: unknown): string {
  if (typeof value !== "string") throw refuse(file, `${where}: not a string`);
  if (hasTagOrDigest(value)) {
    throw refuse(file, `${where}: ${quoted(value)} names a tag or digest, not a repository`);
  }
  try {
    const parsed = parseReference(value);
    return `${parsed.registry}/${parsed.repository}`;
  } catch (error) {
    throw refuse(file, `${where}: ${error instanceof Error ? error.message : error}`);
  }
}

/** Standard base64 with its padding, as Go's StdEncoding reads it; undefined for anything else. */
export function decodeBase64(text: string): Uint8Array | undefined {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return undefined;
  return Uint8Array.from(atob(text), (char) => char.charCodeAt(0));
}

/** Whether a reference as written carries a tag or a digest (parseReference adds "latest" when it does not). */
export function hasTagOrDigest(written: string): boolean {
  return written.includes("@") || written.lastIndexOf(":") > written.lastIndexOf("/");
}

/**
 * The requirements for `ref` under the `docker` transport, as containers/image looks them up: the exact
 * reference (digest form first: berth pulls by the digest when there is one, then tag form), then the
 * repository and each parent namespace up to the host, then `*.domain` wildcards from the most specific,
 * then the transport's "" scope, then the global default. `scope` is the key that matched ("" for the
 * transport's default, "default" for the global one).
 */
export function requirementsFor(
  policy: Policy,
  ref: Reference,
): { scope: string; requirements: Requirement[] } {
  for (const scope of scopesOf(ref)) {
    const requirements = policy.docker.get(scope);
    if (requirements) return { scope, requirements };
  }
  return { scope: "default", requirements: policy.default };
}

/** The scopes that apply to `ref`, most specific first, "" last. */
function scopesOf(ref: Reference): string[] {
  let name = `${ref.registry}/${ref.repository}`;
  const scopes: string[] = [];
  if (ref.digest) scopes.push(`${name}@${ref.digest}`);
  if (ref.tag) scopes.push(`${name}:${ref.tag}`);
  for (;;) {
    scopes.push(name);
    const slash = name.lastIndexOf("/");
    if (slash < 0) break;
    name = name.slice(0, slash);
  }
  let host = name.replace(/:[0-9]+$/, "");
  for (let dot = host.indexOf("."); dot >= 0; dot = host.indexOf(".")) {
    host = host.slice(dot + 1);
    scopes.push(`*.${host}`);
  }
  scopes.push("");
  return scopes;
}
