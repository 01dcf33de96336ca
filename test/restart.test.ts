/** The data directory survives a restart: the graph and the metrics are there again when the platform comes back. */
import { expect, test } from "bun:test";
import { startStack } from "./helpers/stack.ts";
import { tempDir, waitFor } from "./helpers/tmp.ts";

test("stop with Ctrl-C, start again on the same data directory: graph and series are still there", async () => {
  const tmp = tempDir("orrery-restart-");
  try {
    const first = await startStack({ ORRERY_HOST_ID: "restart-host" }, tmp.dir);
    const hosts = await waitFor(async () => {
      const s = await (await fetch(`${first.dashboard}/api/snapshot`)).json();
      const sim = s.nodes.filter((n: { kind: string; id: string }) => n.kind === "host" && n.id.startsWith("host:sim-"));
      return sim.length >= 10 ? sim.length : null;
    }, "simulated hosts in the graph", 60_000);
    const since = Date.now() - 600_000;
    await waitFor(async () => {
      const j = await (await fetch(`${first.dashboard}/api/series?entity=host:sim-db-1&metric=host_load1&from=${since}&to=${Date.now() + 60_000}&step=1`)).json();
      return j.points?.length > 0;
    }, "simulated samples in ClickHouse");
    expect(await first.stop()).toBe(0);

    // Second start: no simulator, so whatever sim-* data shows up was read back from disk.
    const second = await startStack({ ORRERY_HOST_ID: "restart-host", ORRERY_SIMULATE: "0" }, tmp.dir);
    try {
      await waitFor(async () => (await fetch(`${second.dashboard}/healthz`)).ok, "gateway synced");
      const s = await (await fetch(`${second.dashboard}/api/snapshot`)).json();
      expect(s.rev).toBeGreaterThan(0);
      const sim = s.nodes.filter((n: { kind: string; id: string }) => n.kind === "host" && n.id.startsWith("host:sim-"));
      expect(sim.length).toBe(hosts);
      const j = await (await fetch(`${second.dashboard}/api/series?entity=host:sim-db-1&metric=host_load1&from=${since}&to=${Date.now() + 60_000}&step=1`)).json();
      expect(j.points.length).toBeGreaterThan(0);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  } finally {
    tmp.cleanup();
  }
}, 180_000);
