/**
 * The agent through mirrors (hosts.toml): a mirror that is down and one that serves, in front of the real
 * registry; the app comes from the serving one without a byte from the origin, and /status and /metrics
 * show each host's bytes, errors and back-off.
 */
import assert from "node:assert/strict";
import { scratchDir, withServices } from "../harness/env.ts";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { freePort } from "../harness/services.ts";
import { getStatus, inScene, publish, status, waitFor, writeConfig } from "./agent_harness.ts";

Deno.test({
  name:
    "agent: pulls through the mirror that serves; /status and /metrics show bytes, errors and back-off per host",
  ...withServices,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start }) => {
      const mirror = await startFaultProxy(env.registry);
      try {
        const tag = `${proxy.host}/fleet/mirrored:stable`;
        await publish(tag, { web: via(env.images.appA.ref) });
        const down = `127.0.0.1:${freePort()}`;
        const certsDir = await scratchDir("agent-mirrors-");
        await Deno.mkdir(`${certsDir}/${proxy.host}`);
        await Deno.writeTextFile(
          `${certsDir}/${proxy.host}/hosts.toml`,
          `[host."http://${down}"]\n[host."http://${mirror.host}"]\n`,
        );
        await writeConfig(device, [tag], [`registries: { certsDir: ${certsDir} }`]);
        proxy.resetStats();
        const agent = start();
        const running = await waitFor(
          "the app running",
          async () => {
            const current = await status(device);
            return current?.apps.find((app) => app.name === "mirrored")?.state === "running"
              ? current
              : undefined;
          },
          90_000,
          200,
          agent.log,
        );
        assert.equal(proxy.stats.requests.length, 0, "the origin was never asked");
        const byHost = new Map(running.registryHosts.map((host) => [host.host, host]));
        assert.ok(byHost.get(mirror.host)!.bytesServed >= mirror.totalBlobBytes(), JSON.stringify(byHost));
        assert.equal(byHost.get(mirror.host)!.mirror, true);
        assert.ok(byHost.get(down)!.errors >= 1);
        assert.ok(byHost.get(down)!.backoffUntil, "the host that failed is in back-off");
        const metrics = await (await getStatus(device, "/metrics")).text();
        assert.match(
          metrics,
          new RegExp(
            `berth_registry_host_backoff\\{host="${down}",registry="${proxy.host}",mirror="true"\\} 1`,
          ),
        );
        assert.match(metrics, new RegExp(`berth_registry_host_served_bytes_total\\{host="${mirror.host}"`));

        // hosts.toml edited and the agent reloaded: the next version comes from the mirror named now.
        const second = await startFaultProxy(env.registry);
        try {
          await Deno.writeTextFile(
            `${certsDir}/${proxy.host}/hosts.toml`,
            `[host."http://${second.host}"]\n`,
          );
          const v2 = await publish(tag, { web: via(env.images.appB.ref) });
          proxy.resetStats();
          mirror.resetStats();
          agent.process.kill("SIGHUP");
          await waitFor(
            "v2 running",
            async () => {
              const current = await status(device);
              const app = current?.apps.find((candidate) => candidate.name === "mirrored");
              return app?.state === "running" && app.currentDigest === v2.digest;
            },
            90_000,
            200,
            agent.log,
          );
          assert.ok(second.totalBlobBytes() > 0, "the new mirror served v2");
          assert.equal(mirror.totalBlobBytes(), 0, "the mirror no longer named served nothing");
          assert.equal(proxy.stats.requests.length, 0, "nor did the origin");
        } finally {
          await second.close();
        }
      } finally {
        await mirror.close();
      }
    }),
});
