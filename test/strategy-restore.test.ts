/**
 * Placement on real workers: a scheduler with a 1:1 strategy places a scheduled job on one worker with a standby in
 * the other pool; the active worker is SIGKILLed; within a bounded time its standby is the active, a new standby
 * stands in the other pool, and the current slot's run is finished by the new active.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { decode } from "../pipelines/codec.ts";
import { JobStatus, PlacementTable } from "../pipelines/contracts/jobs.ts";
import { checkStrategy } from "../pipelines/strategy/schema.ts";
import { loadPackages } from "../services/jobs/packages.ts";
import { startScheduler, type Scheduler } from "../services/jobs/scheduler.ts";
import { jobsTopology } from "../services/jobs/streams.ts";
import { connectBus, type Bus } from "../services/shared/bus.ts";
import { makeLogger } from "../services/shared/log.ts";
import { spawnJobsProcess, writeSlowJob, type WorkerProc } from "./helpers/jobs.ts";
import { startNats, type NatsServer } from "./helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "./helpers/tmp.ts";

let nats: NatsServer;
let bus: Bus;
let scheduler: Scheduler | undefined;
const tmp = tempDir();
const procs: WorkerProc[] = [];
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await scheduler?.stop();
  for (const p of procs) if (p.proc.exitCode === null) p.proc.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.proc.exited));
  await bus?.close();
  await nats.stop();
  tmp.cleanup();
});

test("a dead worker's placements are restored (standby promoted, new standby) within a bounded time", async () => {
  const prefix = uniquePrefix("place");
  bus = await connectBus({ url: nats.url, prefix, name: "test" });
  const jt = jobsTopology(prefix);
  const HEARTBEAT_MS = 300;
  const DEAD_MS = 900;
  const pkgs = writeSlowJob(join(tmp.dir, "pkgs"), "place", { every: "1h", params: { items: 3, delayMs: 100, host: "restore" } });
  const strategyFile = join(tmp.dir, "strategy.json");
  writeFileSync(
    strategyFile,
    JSON.stringify({
      version: 1,
      pick: "first",
      redundancy: "1:1",
      pools: [
        { name: "pa", site: "s1", provider: "onprem", cost: 1, capacity: 5 },
        { name: "pb", site: "s2", provider: "cloud", cost: 2, capacity: 5 },
      ],
    }),
  );
  const checked = checkStrategy(JSON.parse(await Bun.file(strategyFile).text()));
  if (!checked.ok) throw new Error(JSON.stringify(checked.errors));

  const env = (pool: string) => ({
    NATS_URL: nats.url,
    ORRERY_PREFIX: prefix,
    ORRERY_JOBS_MODE: "worker",
    ORRERY_WORKER_TYPES: "place",
    ORRERY_WORKER_POOL: pool,
    ORRERY_JOB_PACKAGES: pkgs,
    ORRERY_HEARTBEAT_MS: String(HEARTBEAT_MS),
    ORRERY_JOB_ACK_WAIT_MS: "3000",
  });
  procs.push(...(await Promise.all([spawnJobsProcess("wa1", env("pa")), spawnJobsProcess("wa2", env("pa")), spawnJobsProcess("wb1", env("pb"))])));

  const statuses: JobStatus[] = [];
  const tables: PlacementTable[] = [];
  bus.nc.subscribe(jt.subjects.statuses, { callback: (_e, m) => void statuses.push(decode(JobStatus, "job.status.v1", m.data)) });
  bus.nc.subscribe(jt.subjects.placements, { callback: (_e, m) => void tables.push(decode(PlacementTable, "placement.v1", m.data)) });

  const { packages, problems } = await loadPackages([pkgs]);
  expect(problems).toEqual([]);
  scheduler = await startScheduler(bus, makeLogger("test", true), { packages, strategy: checked.strategy, deadAfterMs: DEAD_MS, tickMs: 100 });

  const placed = await waitFor(() => tables.find((t) => t.workers.length === 3 && t.placements[0]?.active.length), "first placement");
  expect(placed.placements).toEqual([{ job: "slow-items", workerType: "place", active: ["wa1"], standby: ["wb1"], degraded: null }]);
  const first = await waitFor(() => statuses.find((s) => s.state === "finished"), "the scheduled run finished");
  expect(first.workerId).toBe("wa1");
  expect(first.runId).toMatch(/^slow-items@\d+#0$/);

  // The placement table is also served on request.
  const served = decode(PlacementTable, "placement.v1", (await bus.nc.request(jt.subjects.placementsRpc, new Uint8Array(), { timeout: 2000 })).data);
  expect(served.placements[0]!.active).toEqual(["wa1"]);

  const wa1 = procs.find((p) => p.id === "wa1")!;
  const killedAt = Date.now();
  wa1.proc.kill("SIGKILL");
  await wa1.proc.exited;

  const restored = await waitFor(() => tables.find((t) => !t.workers.includes("wa1")), "placements recomputed without wa1", 10_000, 20);
  const restoreMs = Date.now() - killedAt;
  expect(restored.placements).toEqual([{ job: "slow-items", workerType: "place", active: ["wb1"], standby: ["wa2"], degraded: null }]);
  // bounded: detection (DEAD_MS after the last heartbeat) + one tick, with room for a busy machine
  expect(restoreMs).toBeLessThan(DEAD_MS + HEARTBEAT_MS + 2000);

  // The new active gets the current slot's run (same run id: what wa1 published is not stored again).
  const second = await waitFor(() => statuses.find((s) => s.state === "finished" && s.workerId === "wb1"), "the run finished by the new active", 15_000);
  expect(second.runId).toBe(first.runId);
  expect((await bus.jsm.streams.info(bus.topo.streams.discovery.name)).state.messages).toBe(3);
  // The dead worker's own queue is gone.
  await waitFor(async () => !(await bus.jsm.consumers.list(jt.stream).next()).some((c) => c.name === jt.durable.placed("place", "wa1")), "wa1's queue deleted");
  console.log(`restored placement ${restoreMs} ms after SIGKILL (dead after ${DEAD_MS} ms without heartbeat)`);
}, 60_000);
