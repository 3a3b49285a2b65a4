/**
 * Typed errors: callers branch on `reason`, never on message text. The message is the one line a user sees,
 * so it names the input (reference, digest, file, key) and, where there is one, the way out.
 */

/** Machine-readable failure kinds; the status API (and the agent's retry policy) key on these. */
export type Reason =
  | "usage"
  | "invalid_reference"
  | "invalid_input"
  | "not_found"
  | "auth_failed"
  | "registry_unreachable"
  | "registry_error"
  | "unsupported"
  | "verification_failed"
  /** Signatures (policy.json): no signature where the policy requires one. */
  | "signature_missing"
  /** A signature that does not verify with the policy's key, or whose payload names another digest. */
  | "signature_invalid"
  /** A valid signature for another identity (repository or tag) than the policy's signedIdentity allows. */
  | "signature_identity_mismatch"
  /** The policy's `reject` requirement for the reference's scope. */
  | "policy_rejected"
  | "store_invalid"
  | "store_locked"
  | "store_io"
  | "insufficient_storage"
  | "interrupted"
  | "engine_unavailable"
  | "engine_error"
  | "compose_failed"
  | "agent_unavailable";

/** The reasons a signature policy refuses a version with: nothing of it is fetched beyond its manifest. */
export const POLICY_REASONS: readonly Reason[] = [
  "signature_missing",
  "signature_invalid",
  "signature_identity_mismatch",
  "policy_rejected",
];

/** A failure berth expects and explains; anything else is a bug and prints its stack. */
export class BerthError extends Error {
  readonly reason: Reason;
  /** Whether trying the same thing again later may succeed (network, 5xx, a busy store). */
  readonly transient: boolean;
  /** Structured facts for machines (the status API), e.g. `{ needBytes, freeBytes }`; never secrets. */
  readonly details?: Record<string, number | string>;

  constructor(
    reason: Reason,
    message: string,
    options?: { cause?: unknown; transient?: boolean; details?: Record<string, number | string> },
  ) {
    super(withoutRepeats(message), { cause: options?.cause });
    this.name = "BerthError";
    this.reason = reason;
    this.transient = options?.transient ?? false;
    this.details = options?.details;
  }
}

/** A command-line usage error: exit code 2. */
export class UsageError extends BerthError {
  constructor(message: string) {
    super("usage", message);
    this.name = "UsageError";
  }
}

/**
 * `message` without the parts a wrapped cause repeats. A wrapper says "cannot reach registry h for x after 5
 * attempts: " and then its cause's message, which often starts with the wrapper's own head ("cannot reach
 * registry h: connection refused"): a `: `-separated part that an earlier part starts with (or equals) is
 * dropped. Only phrases (with a space) count, so a repeated value ("1", a digest) is never taken for one.
 */
export function withoutRepeats(message: string): string {
  const parts = message.split(": ");
  const kept: string[] = [];
  for (const part of parts) {
    const said = part.includes(" ") && kept.some((earlier) => earlier.startsWith(part));
    if (!said) kept.push(part);
  }
  return kept.join(": ");
}

/** The message of any thrown value, without a stack; fetch's bare "fetch failed" gets its cause. */
export function errorMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.cause instanceof Error && /^fetch failed$/i.test(error.message)) {
    // "error sending request for url (…): client error (Connect): dns error: …" → the part after the URL
    return error.cause.message.replace(/^error sending request for url \([^)]*\): /, "");
  }
  return error.message;
}
