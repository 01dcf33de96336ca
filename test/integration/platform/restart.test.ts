/**
 * The data directory survives a restart: the graph and the metrics are there again when the platform comes back.
 * Each stop is a terminal's Ctrl-C (SIGINT to the supervisor's whole process group): it must be clean — exit 0, no
 * child SIGKILLed, no process left, and nats-server still up while the services drain.
 */
import { expect, test } from "bun:test";
import { alive, expectCleanCtrlC, startStack } from "../../helpers/stack.ts";
import { tempDir, waitFor } from "../../helpers/tmp.ts";

test("stop with Ctrl-C, start again on the same data directory: graph and series are still there", async () => {
  const tmp = tempDir("orrery-restart-");
  try {
    const first = await startStack({ ORRERY_HOST_ID: "restart-host" }, tmp.dir);
    const hosts = await waitFor(async () => {
      const s = await (await fetch(`${first.dashboard}/api/snapshot`)).json();
      const sim = s.nodes.filter((n: { kind: string; id: string }) => n.kind === "host" && n.id.startsWith("host:sim-"));
      // all of them (ORRERY_SIM_HOSTS=20 in the stack helper), so no host can still arrive between this read and the stop
      return sim.length >= 20 ? sim.length : null;
    }, "all simulated hosts in the graph", 60_000);
    const since = Date.now() - 600_000;
    await waitFor(async () => {
      const j = await (await fetch(`${first.dashboard}/api/series?entity=host:sim-db-1&metric=host_load1&from=${since}&to=${Date.now() + 60_000}&step=1`)).json();
      return j.points?.length > 0;
    }, "simulated samples in ClickHouse");
    await expectCleanCtrlC(first);

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
      await expectCleanCtrlC(second);
    } finally {
      if (second.proc.exitCode === null) await second.stop();
    }
  } finally {
    tmp.cleanup();
  }
}, 180_000);

test("a child that ignores SIGTERM is SIGKILLed after the grace period, and stop() reports it", async () => {
  const { Supervisor } = await import("../../../services/supervisor/supervisor.ts");
  const { makeLogger } = await import("../../../services/shared/log.ts");
  const sup = new Supervisor(makeLogger("test", true));
  const stubborn = await sup.start({ name: "stubborn", cmd: ["sh", "-c", `trap '' TERM INT; echo '{"event":"ready","service":"stubborn"}'; while :; do sleep 0.1; done`], env: {} });
  expect(stubborn.service).toBe("stubborn");
  await sup.start({ name: "polite", cmd: ["sh", "-c", `echo '{"event":"ready","service":"polite"}'; exec sleep 60`], env: {} });
  const pids = sup.pids().map((p) => p.pid);
  expect(pids.length).toBe(2);
  const t0 = Date.now();
  expect(await sup.stop(500)).toEqual({ killed: ["stubborn"] });
  expect(Date.now() - t0).toBeLessThan(5000);
  expect(pids.filter(alive)).toEqual([]);
});

test("the supervisor killed with SIGKILL: every child stops on its own (no orphans, nats-server included)", async () => {
  const stack = await startStack({ ORRERY_SIMULATE: "0" });
  try {
    const children = stack.descendants();
    expect(children.length).toBeGreaterThanOrEqual(10);
    process.kill(stack.proc.pid, "SIGKILL");
    await stack.proc.exited;
    // nats-server gets SIGTERM from the kernel (pdeathsig); the services see their parent change. A service whose stop
    // waits on the dead NATS gives up by itself: the agent after its publish timeout (30 s), others after 15 s.
    await waitFor(() => children.every((p) => !alive(p)), "every orphaned child gone", 45_000).catch(() => {
      throw new Error(`left running: ${children.filter(alive).join(", ")}`);
    });
  } finally {
    for (const p of stack.descendants()) process.kill(p, "SIGKILL");
    stack.cleanup();
  }
}, 60_000);
