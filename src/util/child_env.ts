/**
 * Every process berth starts gets an environment written out here, never berth's own: Deno.Command merges
 * `env` into the parent's environment unless `clearEnv` is set, and berth's environment holds what no child
 * should see (the status token, a proxy URL with its password, whatever the unit file sets). A child gets
 * PATH (to find its own helpers, e.g. the docker CLI its plugins) and what its caller names; the caller reads
 * each value itself, by name, so that every variable berth reads stays visible in the source.
 */

/** The environment of a child: PATH plus `vars`; a variable whose value is undefined is left out. */
function childEnv(vars: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries({ PATH: Deno.env.get("PATH"), ...vars })) {
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Deno.Command's options minus env and clearEnv: a caller names variables, never inherits them. */
export interface ChildOptions extends Omit<Deno.CommandOptions, "env" | "clearEnv"> {
  /** Set for the child besides PATH; undefined values are left out. */
  env?: Record<string, string | undefined>;
}

/** A Deno.Command whose child sees only childEnv(options.env), nothing inherited from berth. */
export function childCommand(program: string, options: ChildOptions = {}): Deno.Command {
  return new Deno.Command(program, { ...options, clearEnv: true, env: childEnv(options.env) });
}

/**
 * The values of variables the operator chose to pass on (the config's composeEnvironment) or a published
 * compose file names (`${VAR}` in images and labels), read by name at run time; unset ones are left out.
 * The only place berth reads a variable whose name is not in its source.
 */
export function operatorVariables(names: readonly string[]): Record<string, string> {
  const values: Record<string, string> = {};
  for (const name of names) {
    const value = Deno.env.get(name);
    if (value !== undefined) values[name] = value;
  }
  return values;
}
