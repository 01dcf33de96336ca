/**
 * Placement on real workers: a scheduler with a 1:1 strategy places a scheduled job on one worker with a standby in
 * the other pool; the active worker is SIGKILLed in the middle of an on-demand run; within a bounded time its standby
 * is the active, a new standby stands in the other pool, and both the current slot's run and the on-demand run are
 * finished by the new active (same run ids, so nothing is stored twice).
 *
 * The restore time is printed. What bounds it: the scheduler declares a worker dead ORRERY_WORKER_DEAD_MS after its
 * last heartbeat, then needs at most one tick to recompute and publish. So from the last heartbeat: ≤ DEAD_MS + tick
 * + a small processing allowance; from the SIGKILL it is less (the last heartbeat came before the kill).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { decode, encode } from "../../../pipelines/codec.ts";
import { JobStatus, PlacementTable, SubmitReply, SubmitRequest, WorkerHeartbeat } from "../../../pipelines/contracts/jobs.ts";
import { checkStrategy } from "../../../pipelines/strategy/schema.ts";
import { loadPackages } from "../../../services/jobs/packages.ts";
import { startScheduler, type Scheduler } from "../../../services/jobs/scheduler.ts";
import { jobsTopology } from "../../../pipelines/streams.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { spawnJobsProcess, writeSlowJob, type WorkerProc } from "../../helpers/jobs.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

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
  const TICK_MS = 100;
  // what the scheduler may add after the worker is due dead: one tick, plus placing, publishing and delivery on a
  // busy 2-core machine (measured here: see the printed numbers)
  const ALLOWANCE_MS = 400;
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
  scheduler = await startScheduler(bus, makeLogger("test", true), { packages, strategy: checked.strategy, deadAfterMs: DEAD_MS, tickMs: TICK_MS });

  const placed = await waitFor(() => tables.find((t) => t.workers.length === 3 && t.placements[0]?.active.length), "first placement");
  expect(placed.placements).toEqual([{ job: "slow-items", workerType: "place", active: ["wa1"], standby: ["wb1"], degraded: null }]);
  const first = await waitFor(() => statuses.find((s) => s.state === "finished"), "the scheduled run finished");
  expect(first.workerId).toBe("wa1");
  expect(first.runId).toMatch(/^slow-items@\d+#0$/);

  // The placement table is also served on request.
  const served = decode(PlacementTable, "placement.v1", (await bus.nc.request(jt.subjects.placementsRpc, new Uint8Array(), { timeout: 2000 })).data);
  expect(served.placements[0]!.active).toEqual(["wa1"]);

  // An on-demand run through the scheduler goes where the strategy puts the job: wa1. Kill wa1 in the middle of it.
  let lastHeartbeat = 0;
  bus.nc.subscribe(jt.subjects.heartbeat("wa1"), { callback: (_e, m) => void (decode(WorkerHeartbeat, "worker.heartbeat.v1", m.data), (lastHeartbeat = Date.now())) });
  const req: SubmitRequest = { schema: "job.submit.v1", job: "slow-items", params: { items: 8, delayMs: 250, host: "restore-adhoc" } };
  const reply = decode(SubmitReply, "job.submitted.v1", (await bus.nc.request(jt.subjects.submitRpc, encode(SubmitRequest, "job.submit.v1", req), { timeout: 5000 })).data);
  if (!reply.ok) throw new Error(reply.error);
  expect(reply).toMatchObject({ via: "placement", runs: [{ assignee: "wa1" }] });
  const adhocId = reply.runs[0]!.runId;
  await waitFor(() => statuses.find((s) => s.runId === adhocId && s.state === "started" && s.workerId === "wa1"), "on-demand run started on wa1");
  await waitFor(async () => (await bus.jsm.streams.info(bus.topo.streams.discovery.name)).state.messages >= 3 + 2, "two on-demand items published");

  const wa1 = procs.find((p) => p.id === "wa1")!;
  const killedAt = Date.now();
  wa1.proc.kill("SIGKILL");
  await wa1.proc.exited;

  const restored = await waitFor(() => tables.find((t) => !t.workers.includes("wa1")), "placements recomputed without wa1", 10_000, 10);
  const restoredAt = Date.now();
  const restoreMs = restoredAt - killedAt;
  const sinceHeartbeat = restoredAt - lastHeartbeat;
  expect(restored.placements).toEqual([{ job: "slow-items", workerType: "place", active: ["wb1"], standby: ["wa2"], degraded: null }]);
  console.log(
    `restore: ${restoreMs} ms after SIGKILL, ${sinceHeartbeat} ms after wa1's last heartbeat, ${sinceHeartbeat - DEAD_MS} ms after wa1 was due dead (DEAD_MS ${DEAD_MS}, heartbeat ${HEARTBEAT_MS}, tick ${TICK_MS})`,
  );
  expect(lastHeartbeat).toBeGreaterThan(0);
  expect(sinceHeartbeat).toBeGreaterThanOrEqual(DEAD_MS - 20); // both callbacks run on one connection, within a ms
  expect(sinceHeartbeat).toBeLessThanOrEqual(DEAD_MS + TICK_MS + ALLOWANCE_MS);
  expect(restoreMs).toBeLessThanOrEqual(DEAD_MS + TICK_MS + ALLOWANCE_MS);

  // The on-demand run is moved to the new active and finished there, each item stored once.
  const moved = await waitFor(() => statuses.find((s) => s.runId === adhocId && s.state === "finished"), "the on-demand run finished after the kill", 20_000);
  expect(moved).toMatchObject({ workerId: "wb1", items: 8 });
  const adhocMsgs = async () => (await bus.jsm.streams.info(bus.topo.streams.discovery.name, { subjects_filter: bus.topo.subjects.discovery("restore-adhoc") })).state.subjects?.[bus.topo.subjects.discovery("restore-adhoc")] ?? 0;
  expect(await adhocMsgs()).toBe(8);

  // The new active gets the current slot's run (same run id: what wa1 published is not stored again).
  const second = await waitFor(() => statuses.find((s) => s.state === "finished" && s.workerId === "wb1" && s.runId === first.runId), "the run finished by the new active", 15_000);
  expect(second.runId).toBe(first.runId);
  expect((await bus.jsm.streams.info(bus.topo.streams.discovery.name)).state.messages).toBe(3 + 8);
  // The dead worker's own queue is gone.
  await waitFor(async () => !(await bus.jsm.consumers.list(jt.stream).next()).some((c) => c.name === jt.durable.placed("place", "wa1")), "wa1's queue deleted");
}, 60_000);
