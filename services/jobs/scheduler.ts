/**
 * The job scheduler: publishes a run of every scheduled job per interval slot, and — when a placement strategy is
 * given — keeps the placement table (which workers run each job, which stand by) up to date from worker heartbeats.
 *
 * - Slots: slot = floor(now / interval). The run of (job, slot) is published with Nats-Msg-Id `run:<job>:<slot>[:<i>]`,
 *   so a second scheduler (or a restarted one) publishing the same slot is stored once.
 * - Schedules come from the packages' manifests and the ORRERY_JOB_SCHEDULES file (schedules.ts); each schedule is
 *   placed on its own (the strategy's `jobs` rules apply by schedule name, else by job name).
 * - Without a strategy a run goes to the worker type's shared queue (any worker takes it). With one, each active
 *   worker of the job gets the run on its own queue.
 * - On-demand runs (`orrery jobs run`) come as requests on `<prefix>.rpc.jobs.submit` and take the same path: checked
 *   against the job's parameter schema, then queued per the strategy (the schedule's placement when one has that
 *   name, else a placement computed for the request) or on the shared queue.
 * - A worker is dead when no heartbeat came for `deadAfterMs` (or it said it is leaving). Its placements are
 *   recomputed at once (its standby takes over, a new standby is chosen), the current slot's run is sent to the new
 *   active (same run id, so results the dead worker already published are not stored twice), and its queue is purged.
 */
import type { Msg, Subscription } from "@nats-io/transport-node";
import { decode, encode } from "../../pipelines/codec.ts";
import { JobRun, JobStatus, PlacementTable, SubmitReply, SubmitRequest, WorkerHeartbeat, type PlacementEntry } from "../../pipelines/contracts/jobs.ts";
import { place, type Placement } from "../../pipelines/strategy/place.ts";
import type { Strategy } from "../../pipelines/strategy/schema.ts";
import { JsApiCode, jsApiCode, publishEvent, type Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { JobPackage } from "./packages.ts";
import { manifestSchedules, type Schedule } from "./schedules.ts";
import { adhocRunId } from "./client.ts";

export interface SchedulerOptions {
  packages: Map<string, JobPackage>;
  /** default: the packages' own schedules */
  schedules?: Schedule[];
  strategy: Strategy | null;
  /** a worker without a heartbeat for this long is dead */
  deadAfterMs: number;
  tickMs?: number;
  now?: () => number;
  random?: () => number;
}

export interface Scheduler {
  table(): PlacementTable;
  schedules(): Schedule[];
  /** live workers as last heard */
  workers(): WorkerHeartbeat[];
  stop(): Promise<void>;
}

const MAX_PENDING_ADHOC = 10_000;

export async function startScheduler(bus: Bus, log: Logger, o: SchedulerOptions): Promise<Scheduler> {
  const subjects = bus.topo.subjects.jobs;
  const queueStream = bus.topo.streams.jobs.name;
  const now = o.now ?? Date.now;
  const startedAt = now();
  const seen = new Map<string, { hb: WorkerHeartbeat; lastSeen: number }>();
  const lastSlot = new Map<string, number>();
  let placements: Placement[] = [];
  let table: PlacementTable = { schema: "placement.v1", generation: 0, at: startedAt, workers: [], placements: [] };
  const scheduled: Schedule[] = o.schedules ?? manifestSchedules(o.packages);
  const byName = new Map(scheduled.map((sc) => [sc.name, sc]));
  const requests = () => scheduled.map((sc) => ({ job: sc.name, workerType: sc.workerType, rule: sc.job }));
  const liveWorkers = (t: number) =>
    [...seen.values()].filter((x) => x.lastSeen >= t - o.deadAfterMs).map((x) => ({ id: x.hb.workerId, types: x.hb.workerTypes, pool: x.hb.pool, labels: x.hb.labels }));

  const hbSub: Subscription = bus.nc.subscribe(subjects.heartbeats, {
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
  const rpcSub = bus.nc.subscribe(subjects.placementsRpc, { callback: (_e, m) => void m.respond(encode(PlacementTable, "placement.v1", table)) });

  const runFor = (sc: Schedule, slot: number, i: number | null, assignee: string | null): JobRun => ({
    schema: "job.run.v1",
    runId: i === null ? `${sc.name}@${slot}` : `${sc.name}@${slot}#${i}`,
    job: sc.job,
    workerType: sc.workerType,
    params: sc.params,
    slot,
    requestedAt: slot * sc.intervalMs,
    everyMs: sc.intervalMs,
    assignee,
  });

  /** Publishes the slot's runs; false when nobody can take them yet (retried next tick). */
  const publishSlot = async (sc: Schedule, slot: number): Promise<boolean> => {
    if (!o.strategy) {
      await publishEvent(bus, subjects.queue(sc.workerType), JobRun, "job.run.v1", runFor(sc, slot, null, null), `run:${sc.name}:${slot}`);
      return true;
    }
    const p = placements.find((x) => x.job === sc.name);
    if (!p?.active.length) return false;
    for (const [i, w] of p.active.entries())
      await publishEvent(bus, subjects.placed(sc.workerType, w), JobRun, "job.run.v1", runFor(sc, slot, i, w), `run:${sc.name}:${slot}:${i}`);
    return true;
  };

  /** An on-demand run: checked, then queued the way a scheduled run of the same job would be. */
  const submit = async (req: SubmitRequest): Promise<SubmitReply> => {
    const fail = (code: "unknown_job" | "bad_params" | "not_placed", error: string): SubmitReply => ({ schema: "job.submitted.v1", ok: false, code, error });
    // `job` names a package, or a schedule (run now with its job, its placement and, unless given, its parameters)
    const name = req.job;
    const sc = byName.get(name);
    const pkg = o.packages.get(name) ?? (sc ? o.packages.get(sc.job) : undefined);
    if (!pkg)
      return fail("unknown_job", `unknown job "${name}" (the scheduler has: ${[...o.packages.keys()].sort().join(", ")}${scheduled.length ? `; schedules: ${scheduled.map((x) => x.name).join(", ")}` : ""})`);
    const params = req.params ?? (sc ? sc.params : {});
    const bad = pkg.validateParams(params);
    if (bad.length) return fail("bad_params", bad.join("; "));
    const t = now();
    const runId = req.runId ?? adhocRunId(name, t);
    const job = pkg.manifest.name;
    const base: JobRun = { schema: "job.run.v1", runId, job, workerType: pkg.manifest.workerType, params, slot: 0, requestedAt: t, assignee: null };
    if (!o.strategy) {
      await publishEvent(bus, subjects.queue(base.workerType), JobRun, "job.run.v1", base, `run:${runId}`);
      return { schema: "job.submitted.v1", ok: true, via: "queue", runs: [{ runId, job, workerType: base.workerType, assignee: null }] };
    }
    // The schedule's placement when one has this name, else one computed with the current load (not kept).
    let p = placements.find((x) => x.job === name);
    if (!p?.active.length) {
      const all = place({
        strategy: o.strategy,
        workers: liveWorkers(t),
        requests: [...requests().filter((r) => r.job !== name), { job: name, workerType: base.workerType, rule: job }],
        previous: placements,
        random: o.random,
      });
      p = all.find((x) => x.job === name);
    }
    if (!p?.active.length) return fail("not_placed", `no worker of type ${base.workerType} can take it under the strategy: ${p?.degraded ?? "no live workers"}`);
    const runs: { runId: string; job: string; workerType: string; assignee: string }[] = [];
    for (const [i, w] of p.active.entries()) {
      const run: JobRun = { ...base, runId: p.active.length > 1 ? `${runId}#${i}` : runId, assignee: w };
      await publishEvent(bus, subjects.placed(run.workerType, w), JobRun, "job.run.v1", run, `run:${run.runId}`);
      runs.push({ runId: run.runId, job, workerType: run.workerType, assignee: w });
      pendingAdhoc.set(run.runId, { run, placeAs: name });
      if (pendingAdhoc.size > MAX_PENDING_ADHOC) pendingAdhoc.delete(pendingAdhoc.keys().next().value!);
    }
    return { schema: "job.submitted.v1", ok: true, via: "placement", runs };
  };
  // Placed on-demand runs not yet finished: a dead assignee's queue is purged, so they are re-sent to a new active.
  const pendingAdhoc = new Map<string, { run: JobRun; placeAs: string }>();
  const statusSub = bus.nc.subscribe(subjects.statuses, {
    callback: (_e, m) => {
      try {
        const st = decode(JobStatus, "job.status.v1", m.data);
        // a failed run is either retried by the same worker or dead-lettered: either way no longer ours to move
        if (st.state !== "started") pendingAdhoc.delete(st.runId);
      } catch {
        /* not ours to judge: workers validate their own statuses */
      }
    },
  });
  const resendAdhoc = async (t: number) => {
    if (!o.strategy || !pendingAdhoc.size) return;
    const live = new Set(liveWorkers(t).map((w) => w.id));
    for (const { run, placeAs } of [...pendingAdhoc.values()]) {
      if (!run.assignee || live.has(run.assignee)) continue;
      const p = place({
        strategy: o.strategy,
        workers: liveWorkers(t),
        requests: [...requests().filter((r) => r.job !== placeAs), { job: placeAs, workerType: run.workerType, rule: run.job }],
        previous: placements,
        random: o.random,
      }).find((x) => x.job === placeAs);
      const w = p?.active[0];
      if (!w) continue; // tried again next tick
      const moved: JobRun = { ...run, assignee: w };
      await publishEvent(bus, subjects.placed(run.workerType, w), JobRun, "job.run.v1", moved, `run:${run.runId}:${w}`);
      pendingAdhoc.set(run.runId, { run: moved, placeAs });
      log.info("on-demand run moved", { runId: run.runId, from: run.assignee, to: w });
    }
  };
  const submitSub = bus.nc.subscribe(subjects.submitRpc, {
    callback: (_e, m) => {
      void (async () => {
        let reply: SubmitReply;
        try {
          reply = await submit(decode(SubmitRequest, "job.submit.v1", m.data));
        } catch (e) {
          reply = { schema: "job.submitted.v1", ok: false, code: "bad_request", error: e instanceof Error ? e.message : String(e) };
        }
        m.respond(encode(SubmitReply, "job.submitted.v1", reply));
      })();
    },
  });

  const forget = async (hb: WorkerHeartbeat) => {
    for (const type of hb.workerTypes) {
      // already gone (another scheduler did it, or the worker never made its queue) is fine; anything else is logged
      const durable = bus.topo.jobConsumers.durable.placed(type, hb.workerId);
      await bus.jsm.consumers.delete(queueStream, durable).catch((e) => {
        if (jsApiCode(e) !== JsApiCode.ConsumerNotFound) log.warn("dead worker's queue not deleted", { durable, error: String(e) });
      });
      await bus.jsm.streams.purge(queueStream, { filter: subjects.placed(type, hb.workerId) }).catch((e) => log.warn("dead worker's runs not purged", { worker: hb.workerId, error: String(e) }));
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
      requests: requests(),
      previous: placements,
      random: o.random,
    });
    const workers = live.map((s) => s.hb.workerId).sort();
    const changed = JSON.stringify(next) !== JSON.stringify(placements) || JSON.stringify(workers) !== JSON.stringify(table.workers);
    const before = new Map(placements.map((p) => [p.job, p]));
    placements = next;
    if (changed) {
      table = { schema: "placement.v1", generation: table.generation + 1, at: t, workers, placements: next.map((p): PlacementEntry => ({ ...p })) };
      bus.nc.publish(subjects.placements, encode(PlacementTable, "placement.v1", table));
      log.info("placements changed", { generation: table.generation, dead: dead.map((d) => d.hb.workerId), degraded: next.filter((p) => p.degraded).map((p) => `${p.job}: ${p.degraded}`) });
      // A new active of a job gets the run of the current slot (if that slot was already published to someone else).
      for (const p of next) {
        const sc = byName.get(p.job)!;
        const slot = lastSlot.get(p.job);
        if (slot === undefined) continue;
        const prevActive = before.get(p.job)?.active ?? [];
        for (const [i, w] of p.active.entries())
          if (prevActive[i] !== w)
            await publishEvent(bus, subjects.placed(sc.workerType, w), JobRun, "job.run.v1", runFor(sc, slot, i, w), `run:${p.job}:${slot}:${i}:${w}`);
      }
    }
    for (const d of dead) await forget(d.hb);
    await resendAdhoc(t);
  };

  const tick = async () => {
    const t = now();
    await replace(t);
    for (const sc of scheduled) {
      const slot = Math.floor(t / sc.intervalMs);
      if (lastSlot.get(sc.name) === slot) continue;
      if (await publishSlot(sc, slot)) lastSlot.set(sc.name, slot);
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
    schedules: () => scheduled,
    workers: () => [...seen.values()].map((s) => s.hb),
    stop: async () => {
      stopped = true;
      await loop;
      hbSub.unsubscribe();
      rpcSub.unsubscribe();
      submitSub.unsubscribe();
      statusSub.unsubscribe();
    },
  };
}
