/**
 * The job scheduler: publishes a run of every scheduled job per interval slot, and — when a placement strategy is
 * given — keeps the placement table (which workers run each job, which stand by) up to date from worker heartbeats.
 *
 * - Slots: slot = floor(now / interval). The run of (job, slot) is published with Nats-Msg-Id `run:<job>:<slot>[:<i>]`,
 *   so a second scheduler (or a restarted one) publishing the same slot is stored once.
 * - Without a strategy a run goes to the worker type's shared queue (any worker takes it). With one, each active
 *   worker of the job gets the run on its own queue.
 * - A worker is dead when no heartbeat came for `deadAfterMs` (or it said it is leaving). Its placements are
 *   recomputed at once (its standby takes over, a new standby is chosen), the current slot's run is sent to the new
 *   active (same run id, so results the dead worker already published are not stored twice), and its queue is purged.
 */
import type { Msg, Subscription } from "@nats-io/transport-node";
import { decode, encode } from "../../pipelines/codec.ts";
import { JobRun, PlacementTable, WorkerHeartbeat, type PlacementEntry } from "../../pipelines/contracts/jobs.ts";
import { place, type Placement } from "../../pipelines/strategy/place.ts";
import type { Strategy } from "../../pipelines/strategy/schema.ts";
import { publishEvent, type Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { JobPackage } from "./packages.ts";
import { ensureJobStream, jobsTopology, type JobsTopology } from "./streams.ts";

export interface SchedulerOptions {
  packages: Map<string, JobPackage>;
  strategy: Strategy | null;
  /** a worker without a heartbeat for this long is dead */
  deadAfterMs: number;
  tickMs?: number;
  now?: () => number;
  random?: () => number;
}

export interface Scheduler {
  table(): PlacementTable;
  /** live workers as last heard */
  workers(): WorkerHeartbeat[];
  stop(): Promise<void>;
}

/** Publishes an on-demand run to the shared queue of its worker type. The run id doubles as the message id. */
export async function submitRun(bus: Bus, r: { job: string; workerType: string; params: Record<string, unknown>; runId?: string }): Promise<JobRun> {
  const jt = jobsTopology(bus.topo.prefix);
  await ensureJobStream(bus.jsm, jt);
  const now = Date.now();
  const run: JobRun = { schema: "job.run.v1", runId: r.runId ?? `${r.job}@adhoc-${now.toString(36)}-${Math.random().toString(36).slice(2, 8)}`, job: r.job, workerType: r.workerType, params: r.params, slot: 0, requestedAt: now, assignee: null };
  await publishEvent(bus, jt.subjects.queue(r.workerType), JobRun, "job.run.v1", run, `run:${run.runId}`);
  return run;
}

export async function startScheduler(bus: Bus, log: Logger, o: SchedulerOptions): Promise<Scheduler> {
  const jt: JobsTopology = jobsTopology(bus.topo.prefix);
  await ensureJobStream(bus.jsm, jt);
  const now = o.now ?? Date.now;
  const startedAt = now();
  const seen = new Map<string, { hb: WorkerHeartbeat; lastSeen: number }>();
  const lastSlot = new Map<string, number>();
  let placements: Placement[] = [];
  let table: PlacementTable = { schema: "placement.v1", generation: 0, at: startedAt, workers: [], placements: [] };
  const scheduled = [...o.packages.values()].filter((p) => p.intervalMs !== null);

  const hbSub: Subscription = bus.nc.subscribe(jt.subjects.heartbeats, {
    callback: (err, m: Msg) => {
      if (err) return;
      try {
        const hb = decode(WorkerHeartbeat, "worker.heartbeat.v1", m.data);
        if (hb.leaving) seen.set(hb.workerId, { hb, lastSeen: -Infinity });
        else seen.set(hb.workerId, { hb, lastSeen: now() });
      } catch (e) {
        log.warn("bad heartbeat", { subject: m.subject, error: String(e) });
      }
    },
  });
  const rpcSub = bus.nc.subscribe(jt.subjects.placementsRpc, { callback: (_e, m) => void m.respond(encode(PlacementTable, "placement.v1", table)) });

  const runFor = (pkg: JobPackage, slot: number, i: number | null, assignee: string | null): JobRun => ({
    schema: "job.run.v1",
    runId: i === null ? `${pkg.manifest.name}@${slot}` : `${pkg.manifest.name}@${slot}#${i}`,
    job: pkg.manifest.name,
    workerType: pkg.manifest.workerType,
    params: pkg.manifest.schedule?.params ?? {},
    slot,
    requestedAt: slot * pkg.intervalMs!,
    assignee,
  });

  /** Publishes the slot's runs; false when nobody can take them yet (retried next tick). */
  const publishSlot = async (pkg: JobPackage, slot: number): Promise<boolean> => {
    const job = pkg.manifest.name;
    if (!o.strategy) {
      await publishEvent(bus, jt.subjects.queue(pkg.manifest.workerType), JobRun, "job.run.v1", runFor(pkg, slot, null, null), `run:${job}:${slot}`);
      return true;
    }
    const p = placements.find((x) => x.job === job);
    if (!p?.active.length) return false;
    for (const [i, w] of p.active.entries())
      await publishEvent(bus, jt.subjects.placed(pkg.manifest.workerType, w), JobRun, "job.run.v1", runFor(pkg, slot, i, w), `run:${job}:${slot}:${i}`);
    return true;
  };

  const forget = async (hb: WorkerHeartbeat) => {
    for (const type of hb.workerTypes) {
      await bus.jsm.consumers.delete(jt.stream, jt.durable.placed(type, hb.workerId)).catch(() => undefined);
      await bus.jsm.streams.purge(jt.stream, { filter: jt.subjects.placed(type, hb.workerId) }).catch(() => undefined);
    }
  };

  const replace = async (t: number) => {
    const live = [...seen.values()].filter((s) => s.lastSeen >= t - o.deadAfterMs);
    const dead = [...seen.values()].filter((s) => s.lastSeen < t - o.deadAfterMs);
    for (const d of dead) seen.delete(d.hb.workerId);
    if (!o.strategy) return;
    // Give every worker one heartbeat period to be heard before the first placement, so it is not all on the first.
    if (t - startedAt < o.deadAfterMs / 2) return;
    const next = place({
      strategy: o.strategy,
      workers: live.map((s) => ({ id: s.hb.workerId, types: s.hb.workerTypes, pool: s.hb.pool, labels: s.hb.labels })),
      requests: scheduled.map((p) => ({ job: p.manifest.name, workerType: p.manifest.workerType })),
      previous: placements,
      random: o.random,
    });
    const workers = live.map((s) => s.hb.workerId).sort();
    const changed = JSON.stringify(next) !== JSON.stringify(placements) || JSON.stringify(workers) !== JSON.stringify(table.workers);
    const before = new Map(placements.map((p) => [p.job, p]));
    placements = next;
    if (changed) {
      table = { schema: "placement.v1", generation: table.generation + 1, at: t, workers, placements: next.map((p): PlacementEntry => ({ ...p })) };
      bus.nc.publish(jt.subjects.placements, encode(PlacementTable, "placement.v1", table));
      log.info("placements changed", { generation: table.generation, dead: dead.map((d) => d.hb.workerId), degraded: next.filter((p) => p.degraded).map((p) => `${p.job}: ${p.degraded}`) });
      // A new active of a job gets the run of the current slot (if that slot was already published to someone else).
      for (const p of next) {
        const pkg = o.packages.get(p.job)!;
        const slot = lastSlot.get(p.job);
        if (slot === undefined) continue;
        const prevActive = before.get(p.job)?.active ?? [];
        for (const [i, w] of p.active.entries())
          if (prevActive[i] !== w)
            await publishEvent(bus, jt.subjects.placed(pkg.manifest.workerType, w), JobRun, "job.run.v1", runFor(pkg, slot, i, w), `run:${p.job}:${slot}:${i}:${w}`);
      }
    }
    for (const d of dead) await forget(d.hb);
  };

  const tick = async () => {
    const t = now();
    await replace(t);
    for (const pkg of scheduled) {
      const slot = Math.floor(t / pkg.intervalMs!);
      if (lastSlot.get(pkg.manifest.name) === slot) continue;
      if (await publishSlot(pkg, slot)) lastSlot.set(pkg.manifest.name, slot);
    }
  };

  let stopped = false;
  let current: Promise<void> = Promise.resolve();
  const loop = (async () => {
    while (!stopped) {
      current = tick().catch((e) => log.warn("scheduler tick failed", { error: String(e) }));
      await current;
      await Bun.sleep(o.tickMs ?? 250);
    }
  })();

  return {
    table: () => table,
    workers: () => [...seen.values()].map((s) => s.hb),
    stop: async () => {
      stopped = true;
      await loop;
      hbSub.unsubscribe();
      rpcSub.unsubscribe();
    },
  };
}
