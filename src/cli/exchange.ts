/**
 * `berth export --to DIR REF...` and `berth import DIR`: updates carried on removable media, as an OCI
 * image layout. Neither touches the network: export reads only the store, import reads only the directory.
 */
import { UsageError } from "../util/errors.ts";
import { parseReference } from "../oci/reference.ts";
import { Store } from "../store/store.ts";
import { exportRefs } from "../app/export.ts";
import { importLayout } from "../app/import.ts";
import { type Context, contextPolicy, formatBytes } from "./context.ts";

/** `berth export --to DIR REF...`: exit 0 once DIR's index.json names every reference (and what apps pin). */
export async function exportCommand(context: Context): Promise<number> {
  const to = context.args.options.to;
  if (typeof to !== "string" || to === "") throw new UsageError("export needs --to DIR");
  if (context.args.positional.length === 0) throw new UsageError("export needs at least one reference");
  // Every reference is checked before the store or the directory is touched.
  for (const input of context.args.positional) parseReference(input);
  const store = await Store.open(context.storePath, { write: false, command: "export" });
  const dir = to.replace(/(.)\/+$/, "$1");
  const result = await exportRefs(store, dir, context.args.positional);
  if (context.json) context.emit(result);
  else {
    for (const ref of result.exported) context.say(`Exported ${ref}`);
    context.say(
      `${dir}: ${result.refs.length} references, ${result.blobs} blobs (${formatBytes(result.bytes)}), ` +
        `${formatBytes(result.bytesWritten)} written`,
    );
  }
  return 0;
}

/** `berth import DIR`: exit 0 once every reference DIR names is stored and recorded; 1 (nothing recorded) else. */
export async function importCommand(context: Context): Promise<number> {
  if (context.args.positional.length !== 1) throw new UsageError("import takes one directory");
  const dir = context.args.positional[0].replace(/(.)\/+$/, "$1");
  const policy = await contextPolicy(context);
  const store = await Store.open(context.storePath, { write: true, command: "import" });
  try {
    const result = await importLayout(store, dir, undefined, policy);
    if (context.json) context.emit(result);
    else {
      for (const ref of result.refs) context.say(`Imported ${ref}`);
      context.say(
        `${result.refs.length} references, ${result.blobs} blobs (${formatBytes(result.bytes)}), ` +
          `${formatBytes(result.bytesCopied)} copied into the store`,
      );
    }
    return 0;
  } finally {
    store.close();
  }
}
