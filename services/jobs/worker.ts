/**
 * A discovery worker: pulls job runs for its worker types from the shared work queue (one durable consumer per type,
 * shared by every worker of that type) and from its own placed queue, runs them, publishes the results, and acks.
 * While a run is going it sends in-progress acks (`working()`), so only a worker that died loses its runs — to the
 * next worker, after ack_wait. It heartbeats so the scheduler knows it is alive.
 */
import type { Consumer, JsMsg } from "@nats-io/jetstream";
import { ContractError, decode, encode } from "../../pipelines/codec.ts";
import { DiscoveryBatch } from "../../pipelines/contracts/discovery.ts";
import { JobRun, JobStatus, WorkerHeartbeat } from "../../pipelines/contracts/jobs.ts";
import { MetricBatch } from "../../pipelines/contracts/metrics.ts";
import type { ConsumerSpec } from "../../pipelines/streams.ts";
import { deadLetter, DEFAULT_MAX_ATTEMPTS, ensureConsumer, JsApiCode, jsApiCode, publishEvent, type Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { JobPackage } from "./packages.ts";
import { JobInputError } from "./sdk.ts";
import { itemToMessages } from "./results.ts";

export interface WorkerOptions {
  workerId: string;
  workerTypes: string[];
  pool: string;
  labels: Record<string, string>;
  packages: Map<string, JobPackage>;
  concurrency: number;
  ackWaitMs: number;
  heartbeatMs: number;
  /**
   * deliveries of a run before it is given up (default 5): a run that fails on its last one, or comes back once more
   * because its worker died with it, is dead-lettered with the reason and reported failed (final)
   */
  maxAttempts?: number;
}

export interface Worker {
  running(): number;
  stop(): Promise<void>;
}

/** A run that cannot succeed on any worker (unknown job, bad parameters): dead-lettered, not retried. */
export class RunRejected extends Error {
  override readonly name = "RunRejected";
}

export async function startWorker(bus: Bus, log: Logger, o: WorkerOptions): Promise<Worker> {
  const subjects = bus.topo.subjects.jobs;
  const maxAttempts = o.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  const copts = { ackWaitMs: o.ackWaitMs, maxAttempts };
  const consumers: { spec: ConsumerSpec; c: Consumer; loops: number }[] = [];
  const open = async (spec: ConsumerSpec) => {
    await ensureConsumer(bus.jsm, spec);
    return bus.js.consumers.get(spec.stream, spec.durable);
  };
  for (const type of o.workerTypes)
    for (const [spec, loops] of [
      // the shared queue gets one pull loop per slot; a worker's own queue (a few placed runs per slot) gets one, so
      // an idle pull on it (which holds a slot for up to 1 s) never starves the shared queue
      [bus.topo.jobConsumers.shared(type, copts), o.concurrency],
      [bus.topo.jobConsumers.placed(type, o.workerId, copts), 1],
    ] as const)
      consumers.push({ spec, c: await open(spec), loops });

  const startedAt = Date.now();
  const active = new Map<JsMsg, AbortController>();
  let stopped = false;
  // A fair semaphore over the pull loops: a released slot goes to the loop that waited longest, so with more queues
  // than slots every queue gets its turn (an unfair one let the same loops re-take the slots forever).
  let free = o.concurrency;
  let waiters: (() => void)[] = [];
  const acquire = () => (free > 0 ? (free--, Promise.resolve()) : new Promise<void>((r) => waiters.push(r)));
  const release = () => {
    const next = waiters.shift();
    if (next) next();
    else free++;
  };
  const wakeAll = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };

  const heartbeat = (leaving = false) =>
    bus.nc.publish(
      subjects.heartbeat(o.workerId),
      encode(WorkerHeartbeat, "worker.heartbeat.v1", {
        schema: "worker.heartbeat.v1",
        workerId: o.workerId,
        workerTypes: o.workerTypes,
        pool: o.pool,
        labels: o.labels,
        running: active.size,
        startedAt,
        at: Date.now(),
        leaving,
      }),
    );
  heartbeat();
  const hbTimer = setInterval(() => heartbeat(), o.heartbeatMs);

  const status = (run: JobRun, state: JobStatus["state"], attempt: number, items = 0, error: string | null = null, final?: boolean) =>
    bus.nc.publish(
      subjects.status(run.job),
      encode(JobStatus, "job.status.v1", { schema: "job.status.v1", runId: run.runId, job: run.job, workerId: o.workerId, state, at: Date.now(), attempt, items, error, ...(final === undefined ? {} : { final }) }),
    );

  /**
   * Dead-lettered first, then acked (a WorkQueue stream keeps termed messages): the run is kept, with its reason. With
   * the dead-letter stream unreachable the run stays queued and comes back (and is given up) later: false.
   */
  const giveUp = async (m: JsMsg, run: JobRun, reason: string): Promise<boolean> => {
    try {
      await deadLetter(bus, m, `jobs-${run.workerType}`, reason);
      await m.ackAck();
      return true;
    } catch (err) {
      log.error("dead-letter failed; the run stays queued", { runId: run.runId, error: String(err) });
      m.nak(5000);
      return false;
    }
  };

  const execute = async (m: JsMsg) => {
    let run: JobRun;
    try {
      run = decode(JobRun, "job.run.v1", m.data);
    } catch (e) {
      try {
        await deadLetter(bus, m, `jobs-${o.workerId}`, e instanceof ContractError ? `${e.code}: ${e.message}` : String(e));
        await m.ackAck();
      } catch (err) {
        log.error("dead-letter failed", { error: String(err) });
        m.nak(5000);
      }
      return;
    }
    const attempt = m.info.deliveryCount;
    // Every delivery ends in an ack or a nak from here, except when the worker holding it dies (or is stopped): one
    // delivery past the last is such a run coming back. JetStream would redeliver it forever (max_deliver -1), so
    // it is given up here, where the reason can be recorded.
    if (attempt > maxAttempts) {
      const reason = `run given up: no outcome after ${maxAttempts} deliveries (its worker died or stopped with it each time)`;
      if (await giveUp(m, run, reason)) {
        status(run, "failed", attempt, 0, reason, true);
        log.warn("run given up", { runId: run.runId, job: run.job, attempt, error: reason });
      }
      return;
    }
    const ac = new AbortController();
    active.set(m, ac);
    // In-progress acks well inside ack_wait: a live worker keeps its run, a dead one loses it after ack_wait.
    const keepAlive = setInterval(() => m.working(), Math.max(200, Math.floor(o.ackWaitMs / 3)));
    let items = 0;
    try {
      const pkg = o.packages.get(run.job);
      if (!pkg) throw new RunRejected(`no job package "${run.job}" on worker ${o.workerId} (loaded: ${[...o.packages.keys()].join(", ")})`);
      const bad = pkg.validateParams(run.params);
      if (bad.length) throw new RunRejected(`job ${run.job}: bad parameters: ${bad.join("; ")}`);
      status(run, "started", attempt);
      log.info("run started", { runId: run.runId, job: run.job, attempt });
      const timeout = setTimeout(() => ac.abort(new Error(`run timed out after ${pkg.timeoutMs} ms`)), pkg.timeoutMs);
      try {
        const it = pkg.module.run({ runId: run.runId, job: run.job, workerId: o.workerId, params: run.params, signal: ac.signal, log })[Symbol.asyncIterator]();
        // A job that ignores its signal must not hold the run (and keep it alive with working()) forever.
        const aborted = new Promise<never>((_, reject) => ac.signal.addEventListener("abort", () => reject(ac.signal.reason), { once: true }));
        aborted.catch(() => undefined);
        for (;;) {
          const next = await Promise.race([it.next(), aborted]);
          if (next.done) break;
          const item = next.value;
          const r = itemToMessages(run, item, Date.now());
          for (const d of r.discovery) await publishEvent(bus, bus.topo.subjects.discovery(d.host), DiscoveryBatch, "discovery.v1", d.batch, d.msgId);
          for (const x of r.metrics) await publishEvent(bus, bus.topo.subjects.metrics(x.batch.source), MetricBatch, "metrics.v1", x.batch, x.msgId);
          items++;
          m.working();
        }
      } finally {
        clearTimeout(timeout);
      }
      if (ac.signal.aborted) throw ac.signal.reason instanceof Error ? ac.signal.reason : new Error("aborted");
      // The run is done only once JetStream has the ack; results are already stored (and deduplicated by id).
      await m.ackAck();
      status(run, "finished", attempt, items);
      log.info("run finished", { runId: run.runId, job: run.job, items });
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      const hopeless = e instanceof RunRejected || e instanceof JobInputError || e instanceof ContractError || attempt >= maxAttempts;
      // Cannot succeed anywhere (or out of attempts): keep the run with its reason, take it off the queue.
      let final = false;
      if (hopeless) final = await giveUp(m, run, reason);
      else if (stopped) m.nak(0);
      else m.nak(Math.min(60_000, 2000 * attempt));
      status(run, "failed", attempt, items, reason, final);
      log.warn("run failed", { runId: run.runId, job: run.job, attempt, error: reason });
    } finally {
      clearInterval(keepAlive);
      active.delete(m);
    }
  };

  // Pull loops share the slots; a run is pulled only when a slot is free, so a busy worker leaves work to the others.
  const pullers = consumers.flatMap((entry) => Array.from({ length: entry.loops }, () => entry));
  const loops = pullers.map(async (entry) => {
    const { spec } = entry;
    while (!stopped) {
      // Take a slot before pulling: a worker never holds more runs than its concurrency, leaving the rest to others.
      await acquire();
      if (stopped) break;
      let m: JsMsg | null = null;
      try {
        m = await entry.c.next({ expires: 1000 });
      } catch (e) {
        if (!stopped) {
          log.warn("pull failed", { consumer: spec.durable, error: String(e) });
          await Bun.sleep(500);
          // The scheduler deletes the queue of a worker it declared dead; if we were only slow, make it again. A pull
          // on a deleted durable fails as missed heartbeats, not as "not found": the server is asked.
          const gone = await bus.jsm.consumers.info(spec.stream, spec.durable).then(
            () => false,
            (err) => jsApiCode(err) === JsApiCode.ConsumerNotFound,
          );
          if (gone) entry.c = await open(spec).catch(() => entry.c);
        }
      }
      if (!m || stopped) {
        if (m) m.nak(0);
        release();
        continue;
      }
      void execute(m).finally(release);
    }
  });

  return {
    running: () => active.size,
    stop: async () => {
      stopped = true;
      wakeAll();
      clearInterval(hbTimer);
      for (const ac of active.values()) ac.abort(new Error("worker stopping"));
      await Promise.race([Promise.all(loops), Bun.sleep(3000)]);
      const deadline = Date.now() + 5000;
      while (active.size && Date.now() < deadline) await Bun.sleep(50);
      heartbeat(true);
      await bus.nc.flush().catch(() => undefined);
    },
  };
}
