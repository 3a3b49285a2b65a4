/** berth's version, printed by `berth version` and recorded by the agent. */
export const VERSION = "0.1.0";
