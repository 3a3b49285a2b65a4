/** berth's entry point: `deno run -A main.ts [global options] <command> [args]`, or the compiled binary. */
import { main } from "./src/cli/main.ts";

if (import.meta.main) Deno.exit(await main(Deno.args));
