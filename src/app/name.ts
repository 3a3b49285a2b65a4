/** An app's name: the last path component of its repository (`registry/factory/shop:v2` → `shop`). */
import type { Reference } from "../oci/reference.ts";

export function appName(ref: Reference): string {
  return ref.repository.slice(ref.repository.lastIndexOf("/") + 1);
}
