/**
 * The agent under systemd (`Type=notify`): READY=1 once the start-up audit is done — or its first attempt
 * failed (an engine that is down: berth then runs, reports it and keeps trying; a unit that never became
 * ready would hold up the boot). A restore after a factory reset takes minutes, so while the audit makes
 * progress the start timeout is extended with EXTEND_TIMEOUT_USEC. Then WATCHDOG=1 for as long as the agent is alive by the same measure as `/healthz`:
 * the phase in hand makes progress within its timeout. An agent that truly hangs (or whose event loop
 * stops) stops pinging, and systemd restarts it after `WatchdogSec=`; a busy one is never restarted.
 */
import { errorMessage } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { notifySettings, SystemdNotifier } from "../util/sd_notify.ts";
import type { StatusModel } from "./model.ts";

/** How often the state is told when systemd set no watchdog (STATUS=, and the start-up extension). */
const TICK_MS = 10_000;
/** How far each EXTEND_TIMEOUT_USEC pushes the start timeout while the audit makes progress. */
const START_EXTENSION_MS = 90_000;

/** Tells systemd how the agent is doing; see the module comment. */
export class SystemdSupervision {
  readonly #notifier: SystemdNotifier;
  readonly #model: StatusModel;
  readonly #log: Logger;
  readonly #timer: ReturnType<typeof setInterval>;
  #ready = false;
  #unhealthySaid = false;
  #failedSaid = false;

  private constructor(notifier: SystemdNotifier, model: StatusModel, log: Logger) {
    this.#notifier = notifier;
    this.#model = model;
    this.#log = log;
    const watchdogMs = notifier.settings.watchdogMs;
    // Twice per watchdog period, as sd_watchdog_enabled(3) advises, and at least as often as the tick.
    this.#timer = setInterval(() => this.#tick(), watchdogMs ? Math.min(TICK_MS, watchdogMs / 2) : TICK_MS);
  }

  /**
   * Supervision when this process was started by systemd with `Type=notify`, else undefined. A notify
   * socket berth cannot use is logged (systemd will then time the start out, which the log explains).
   */
  static async start(model: StatusModel, log: Logger): Promise<SystemdSupervision | undefined> {
    try {
      const env = {
        NOTIFY_SOCKET: Deno.env.get("NOTIFY_SOCKET"),
        WATCHDOG_USEC: Deno.env.get("WATCHDOG_USEC"),
        WATCHDOG_PID: Deno.env.get("WATCHDOG_PID"),
      };
      const settings = notifySettings(env, Deno.pid);
      if (!settings) return undefined;
      const supervision = new SystemdSupervision(await SystemdNotifier.open(settings), model, log);
      log.info("notifying systemd", {
        socket: settings.socket,
        watchdogSeconds: settings.watchdogMs ? settings.watchdogMs / 1000 : "off",
      });
      await supervision.#send({ STATUS: "auditing the installed apps" });
      return supervision;
    } catch (error) {
      log.error(`systemd notify: ${errorMessage(error)}`);
      return undefined;
    }
  }

  /** The start-up audit is done: the service is up. */
  async ready(): Promise<void> {
    this.#ready = true;
    await this.#send({ READY: 1, STATUS: this.#summary("start-up audit done") });
  }

  /** The agent is stopping: said to systemd, and the ticks end. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#send({ STOPPING: 1, STATUS: "stopping" });
    await this.#notifier.close();
  }

  async #tick(): Promise<void> {
    const health = this.#model.health();
    if (!health.ok) {
      // No ping: if this lasts beyond WatchdogSec, systemd restarts the agent, as a supervisor trusting
      // /healthz would.
      if (!this.#unhealthySaid) this.#log.warn(`not pinging the systemd watchdog: ${health.reason}`);
      this.#unhealthySaid = true;
      await this.#send({ STATUS: `not making progress: ${health.reason}` });
      return;
    }
    this.#unhealthySaid = false;
    const status = this.#summary();
    if (!this.#ready) {
      await this.#send({ EXTEND_TIMEOUT_USEC: START_EXTENSION_MS * 1000, STATUS: status });
    } else if (this.#notifier.settings.watchdogMs) await this.#send({ WATCHDOG: 1, STATUS: status });
    else await this.#send({ STATUS: status });
  }

  /** STATUS= for `systemctl status`: what the agent does (or `doing`), and how many apps run. */
  #summary(doing?: string): string {
    const status = this.#model.snapshot();
    const running = status.apps.filter((app) => app.state === "running").length;
    return `${doing ?? status.agent.state}: ${running} of ${status.apps.length} apps running`;
  }

  async #send(fields: Record<string, string | number>): Promise<void> {
    try {
      await this.#notifier.send(fields);
      this.#failedSaid = false;
    } catch (error) {
      // Said once per run of failures: a ping every few seconds must not flood the journal.
      if (!this.#failedSaid) this.#log.warn(`systemd notify failed: ${errorMessage(error)}`);
      this.#failedSaid = true;
    }
  }
}
