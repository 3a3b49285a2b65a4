/**
 * systemd's notify protocol (sd_notify(3)): newline-separated `KEY=VALUE` lines in one datagram to the unix
 * socket named by $NOTIFY_SOCKET. berth sends them itself, from its own process, through a datagram socket
 * (Deno.listenDatagram, behind --unstable-net in Deno 2.9), rather than by running `systemd-notify`:
 * systemd accepts messages only from the unit's main process unless told `NotifyAccess=all` (which would let
 * any child, compose included, send READY), it attributes a message from a short-lived `systemd-notify` to
 * the unit only if that process still exists when it reads it, and a process per watchdog ping is waste on
 * a small device.
 */

/** What the service manager asked for, read from the environment systemd gives a `Type=notify` service. */
export interface NotifySettings {
  /** The socket's path. */
  socket: string;
  /** How often systemd expects WATCHDOG=1, in ms, when `WatchdogSec=` is set for this process. */
  watchdogMs?: number;
}

/** The variables systemd sets for a `Type=notify` service (sd_notify(3), sd_watchdog_enabled(3)). */
export interface NotifyEnvironment {
  NOTIFY_SOCKET?: string;
  WATCHDOG_USEC?: string;
  WATCHDOG_PID?: string;
}

/**
 * The notify settings from `env` (a process's environment), undefined when not started by systemd with
 * `Type=notify`. An abstract socket (`@name`), which Deno cannot address, is an error naming it.
 */
export function notifySettings(env: NotifyEnvironment, pid: number): NotifySettings | undefined {
  const socket = env.NOTIFY_SOCKET;
  if (!socket) return undefined;
  if (!socket.startsWith("/")) {
    throw new Error(`NOTIFY_SOCKET=${socket}: only a socket path is supported, not an abstract socket`);
  }
  const usec = Number(env.WATCHDOG_USEC);
  const forPid = env.WATCHDOG_PID;
  // WATCHDOG_PID names the process the watchdog is for; a child that inherited the variables is not it.
  const ours = forPid === undefined || forPid === "" || Number(forPid) === pid;
  const watchdogMs = Number.isFinite(usec) && usec > 0 && ours
    ? Math.max(1, Math.floor(usec / 1000))
    : undefined;
  return { socket, ...(watchdogMs ? { watchdogMs } : {}) };
}

/** Sends notify messages to systemd from this process; `close` removes the sending socket. */
export class SystemdNotifier {
  readonly settings: NotifySettings;
  readonly #conn: Deno.DatagramConn;
  readonly #dir: string;

  private constructor(settings: NotifySettings, conn: Deno.DatagramConn, dir: string) {
    this.settings = settings;
    this.#conn = conn;
    this.#dir = dir;
  }

  /**
   * A notifier on a socket of its own in a private temporary directory (a unix datagram socket must be bound
   * to be sent from in Deno). Throws when this Deno has no unix datagram sockets (run without --unstable-net).
   */
  static async open(settings: NotifySettings): Promise<SystemdNotifier> {
    if (typeof Deno.listenDatagram !== "function") {
      throw new Error("this build has no unix datagram sockets (--unstable-net): cannot notify systemd");
    }
    const dir = await Deno.makeTempDir({ prefix: "berth-notify-" });
    try {
      const conn = Deno.listenDatagram({ transport: "unixpacket", path: `${dir}/notify.sock` });
      return new SystemdNotifier(settings, conn, dir);
    } catch (error) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw error;
    }
  }

  /** Sends one message: `fields` as KEY=VALUE lines (values are made one line). */
  async send(fields: Record<string, string | number>): Promise<void> {
    const text = Object.entries(fields)
      .map(([key, value]) => `${key}=${String(value).replace(/[\r\n]+/g, " ")}`)
      .join("\n");
    await this.#conn.send(new TextEncoder().encode(text), {
      transport: "unixpacket",
      path: this.settings.socket,
    });
  }

  /** Closes and removes the sending socket. */
  async close(): Promise<void> {
    try {
      this.#conn.close();
    } catch {
      // closed already
    }
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
