/** An app's name, from its reference. */
import type { Reference } from "../oci/reference.ts";

/** An app's name: the last path component of its repository (`registry/factory/shop:v2` → `shop`). */
export function appName(ref: Reference): string {
  return ref.repository.slice(ref.repository.lastIndexOf("/") + 1);
}
