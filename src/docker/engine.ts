/**
 * The Docker Engine API over its unix socket (or tcp://), with the API version negotiated once: berth
 * speaks at most MAX_API_VERSION and less when the engine is older. Only what berth needs: version and
 * info, image inspect and list, and the streamed image load.
 */
import { BerthError, errorMessage } from "../util/errors.ts";
import { UNIX_SOCKET_ORIGIN, unixSocketClient } from "../util/unix_http.ts";

/** The newest Engine API berth is written against (dockerd 20.10). */
const MAX_API_VERSION = "1.41";
/** The oldest berth accepts: image load with `quiet=0` progress, RootFS in image inspect. */
const MIN_API_VERSION = "1.25";

/** What berth reads of an image inspect: Id is the config digest, RootFS.Layers the layers' diff IDs. */
export interface EngineImage {
  Id: string;
  RepoTags: string[] | null;
  RootFS?: { Type: string; Layers?: string[] };
}

/** What berth reads of one entry of the engine's container list. */
export interface EngineContainer {
  Id: string;
  Names: string[];
  Image: string;
  ImageID: string;
  /** "running", "exited", "created", … */
  State: string;
  Status: string;
  Labels: Record<string, string>;
}

/** What berth reads of a container inspect: its state, health and restarts. */
export interface ContainerDetails {
  Id: string;
  Name: string;
  RestartCount: number;
  State: {
    Status: string;
    ExitCode: number;
    Health?: { Status: string };
  };
  HostConfig: { RestartPolicy?: { Name?: string } };
}

/** What berth reads of GET /info; DockerRootDir is the filesystem the space pre-flight checks. */
export interface EngineInfo {
  ServerVersion: string;
  DockerRootDir: string;
  Driver: string;
}

function compareVersions(a: string, b: string): number {
  const [aMajor, aMinor] = a.split(".").map(Number);
  const [bMajor, bMinor] = b.split(".").map(Number);
  return aMajor - bMajor || aMinor - bMinor;
}

/** One engine at one negotiated API version; a failure to reach it is a transient engine_unavailable. */
export class Engine {
  readonly host: string;
  readonly apiVersion: string;
  #client: Deno.HttpClient | undefined;
  #base: string;

  private constructor(host: string, base: string, client: Deno.HttpClient | undefined, apiVersion: string) {
    this.host = host;
    this.#base = base;
    this.#client = client;
    this.apiVersion = apiVersion;
  }

  /** Connects to `host` (unix:///path or tcp://host:port) and negotiates the API version. */
  static async connect(host: string): Promise<Engine> {
    let base: string;
    let client: Deno.HttpClient | undefined;
    if (host.startsWith("unix://")) {
      client = unixSocketClient(host.slice("unix://".length));
      base = UNIX_SOCKET_ORIGIN;
    } else if (host.startsWith("tcp://") || host.startsWith("http://")) {
      base = `http://${host.replace(/^(tcp|http):\/\//, "")}`;
    } else {
      throw new BerthError(
        "invalid_input",
        `docker host "${host}": expected unix:///path or tcp://host:port`,
      );
    }
    try {
      const response = await fetch(`${base}/version`, { client, signal: AbortSignal.timeout(10_000) });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const version = (await response.json()) as { ApiVersion?: string };
      const engineVersion = version.ApiVersion ?? MIN_API_VERSION;
      if (compareVersions(engineVersion, MIN_API_VERSION) < 0) {
        throw new BerthError(
          "engine_unavailable",
          `docker engine at ${host} speaks API ${engineVersion}; berth needs at least ${MIN_API_VERSION}`,
        );
      }
      const apiVersion = compareVersions(engineVersion, MAX_API_VERSION) < 0
        ? engineVersion
        : MAX_API_VERSION;
      return new Engine(host, base, client, apiVersion);
    } catch (error) {
      client?.close();
      if (error instanceof BerthError) throw error;
      throw new BerthError(
        "engine_unavailable",
        `cannot reach the docker engine at ${host}: ${
          errorMessage(error)
        } (set --docker-host or DOCKER_HOST)`,
        { cause: error, transient: true },
      );
    }
  }

  /** Closes the unix socket's client; the Engine is not to be used afterwards. */
  close(): void {
    this.#client?.close();
    this.#client = undefined;
  }

  /**
   * One API call; `what` names it in errors. Non-2xx answers become BerthErrors with the engine's message,
   * except 404 and the statuses in `accept`, which the caller handles.
   */
  async request(path: string, init: RequestInit & { what: string; accept?: number[] }): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(`${this.#base}/v${this.apiVersion}${path}`, { ...init, client: this.#client });
    } catch (error) {
      throw new BerthError(
        "engine_unavailable",
        `docker engine at ${this.host} failed ${init.what}: ${errorMessage(error)}`,
        { cause: error, transient: true },
      );
    }
    if (!response.ok && response.status !== 404 && !init.accept?.includes(response.status)) {
      let detail = `HTTP ${response.status}`;
      try {
        detail = ((await response.json()) as { message?: string }).message ?? detail;
      } catch {
        // not JSON
      }
      throw new BerthError("engine_error", `docker engine refused ${init.what}: ${detail}`, {
        transient: response.status >= 500,
      });
    }
    return response;
  }

  /** The engine's version, data root and storage driver. */
  async info(): Promise<EngineInfo> {
    return (await (await this.request("/info", { what: "info" })).json()) as EngineInfo;
  }

  /** The image with this ID or name, or undefined when the engine does not have it. */
  async inspectImage(idOrName: string): Promise<EngineImage | undefined> {
    const response = await this.request(`/images/${encodeURIComponent(idOrName)}/json`, {
      what: `inspect of image ${idOrName}`,
    });
    if (response.status === 404) {
      await response.body?.cancel();
      return undefined;
    }
    return (await response.json()) as EngineImage;
  }

  /** Every image the engine holds, intermediate ones included; with `filters`, those the engine matches. */
  async listImages(filters?: Record<string, string[]>): Promise<{ Id: string; RepoTags: string[] | null }[]> {
    const query = filters ? `&filters=${encodeURIComponent(JSON.stringify(filters))}` : "";
    const response = await this.request(`/images/json?all=1${query}`, { what: "image list" });
    return (await response.json()) as { Id: string; RepoTags: string[] | null }[];
  }

  /**
   * Removes an image tag (`repo:tag`) or an untagged image (by ID) without force (DELETE /images/{name}): an
   * image with other tags only loses this one; an image with no other tag is deleted with the layers no
   * other image uses. The engine refuses (409) when a container (running or not) uses an image this is the
   * last name of: "in_use", nothing changed. "absent" when the engine has no such tag or image.
   */
  async removeImage(name: string): Promise<"removed" | "absent" | "in_use"> {
    const response = await this.request(`/images/${encodeURIComponent(name)}`, {
      method: "DELETE",
      what: `removal of image ${name}`,
      accept: [409],
    });
    await response.body?.cancel();
    if (response.status === 404) return "absent";
    return response.status === 409 ? "in_use" : "removed";
  }

  /** The containers of a compose project (running or not), from compose's own labels. */
  async projectContainers(project: string): Promise<EngineContainer[]> {
    const filters = JSON.stringify({ label: [`com.docker.compose.project=${project}`] });
    const response = await this.request(`/containers/json?all=1&filters=${encodeURIComponent(filters)}`, {
      what: `container list of ${project}`,
    });
    return (await response.json()) as EngineContainer[];
  }

  /** One container's details (state, health, restart count), or undefined when it is gone. */
  async inspectContainer(id: string): Promise<ContainerDetails | undefined> {
    const response = await this.request(`/containers/${encodeURIComponent(id)}/json`, {
      what: `inspect of container ${id}`,
    });
    if (response.status === 404) {
      await response.body?.cancel();
      return undefined;
    }
    return (await response.json()) as ContainerDetails;
  }

  /**
   * Streams a docker-archive into `POST /images/load?quiet=0` and reads the engine's answer, which reports
   * errors inside a 200 body: any `error` line is a failure. Returns the engine's progress lines.
   */
  async loadImage(archive: ReadableStream<Uint8Array>, what: string): Promise<string[]> {
    const response = await this.request("/images/load?quiet=0", {
      method: "POST",
      headers: { "Content-Type": "application/x-tar" },
      body: archive,
      what: `image load of ${what}`,
    });
    const lines: string[] = [];
    let pending = "";
    const decoder = new TextDecoder();
    const handle = (line: string) => {
      if (!line.trim()) return;
      let message: { stream?: string; error?: string; errorDetail?: { message?: string } };
      try {
        message = JSON.parse(line);
      } catch {
        lines.push(line);
        return;
      }
      if (message.error || message.errorDetail) {
        throw new BerthError(
          "engine_error",
          `docker engine failed to load ${what}: ${message.errorDetail?.message ?? message.error}`,
        );
      }
      if (message.stream) lines.push(message.stream.trim());
    };
    for await (const chunk of response.body ?? new ReadableStream<Uint8Array>()) {
      pending += decoder.decode(chunk, { stream: true });
      const parts = pending.split("\n");
      pending = parts.pop() ?? "";
      for (const part of parts) handle(part);
    }
    handle(pending);
    return lines;
  }
}
