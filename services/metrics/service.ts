/**
 * Metrics service: metric batches from JetStream → SeriesStore; each message acked once ClickHouse has its samples.
 *
 * Its own consume loop rather than the shared micro-batcher, because metric messages are large (up to 900 KiB) and
 * the store is the bottleneck:
 * - what is fetched and not yet inserted is bounded in bytes (the client's prefetch, and the local queue), so messages
 *   never wait here past their ack deadline and a backlog stays in JetStream;
 * - a fixed number of inserts is in flight (the owner runs one query per chDB connection; more only queue);
 * - each insert takes whatever messages are waiting, up to `maxInsertSamples` (store.insertMany: one part for many
 *   messages; at 5000-sample messages chDB spent more on making parts than on rows). The store finds batches that
 *   were stored before by their markers, so a redelivered message is a no-op in any combination; a message whose
 *   batchId is already in an insert in flight waits for it (then it is found stored), never rides along.
 * A failed insert is settled like any consumer's (failureHandler in shared/bus.ts): ClickHouse unavailable → the
 * insert is held and retried in place with capped backoff until it is back (no new inserts start meanwhile, and
 * nothing is ever given up for being delivered too often); samples ClickHouse refuses, messages that fail
 * validation, or a batch whose body does not match its subject (batch.ts originMismatch) → the dead-letter stream
 * with the reason.
 *
 * Beside the inserts, a loop folds what was inserted into the 1m/1h rollups every `rollupIntervalMs` (store.rollup():
 * one step for many batches instead of a materialized view per insert; reads stay exact in between). A failed step
 * is retried at the next tick, and stop() runs a last step so a clean shutdown leaves the rollups current.
 */
import type { JsMsg } from "@nats-io/jetstream";
import { ContractError, MAX_MESSAGE_BYTES } from "../../pipelines/codec.ts";
import type { MetricBatch } from "../../pipelines/contracts/metrics.ts";
import { failureHandler, type Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import { decodeMetricBatch, originMismatch } from "./batch.ts";
import type { SeriesStore } from "./port.ts";

export interface MetricsServiceOptions {
  /** inserts in flight (default 2) */
  concurrency?: number;
  /**
   * bytes decoded and waiting for an insert, and (as a count of largest messages) what the client pulls ahead
   * (default: room for two full inserts in flight and a third waiting, ≥ 16 MiB)
   */
  prefetchBytes?: number;
  /** most samples one insert combines (default 100 000; a single larger message still goes alone) */
  maxInsertSamples?: number;
  /** how often the rollups are brought up to date, ms (default 15 000; reads are exact in between) */
  rollupIntervalMs?: number;
}

interface Pending {
  msg: JsMsg;
  batch: MetricBatch;
}

export async function startMetricsService(deps: { bus: Bus; store: SeriesStore; log: Logger; options?: MetricsServiceOptions }) {
  const concurrency = deps.options?.concurrency ?? 2;
  const maxInsertSamples = deps.options?.maxInsertSamples ?? 100_000;
  // a 5000-sample message is ~500 KB; at ~30 messages/s a full buffer waits ~2 s, far inside ack_wait (30 s)
  const prefetchBytes = deps.options?.prefetchBytes ?? Math.max(16 * 1024 * 1024, Math.ceil(maxInsertSamples / 5000) * 3 * 600 * 1024);
  const rollupIntervalMs = deps.options?.rollupIntervalMs ?? 15_000;
  if (!(Number.isFinite(rollupIntervalMs) && rollupIntervalMs > 0)) throw new Error(`rollupIntervalMs must be > 0, got ${rollupIntervalMs}`);
  await deps.store.init();
  const { bus, log } = deps;
  const spec = bus.topo.consumers.metrics;
  const consumer = await bus.js.consumers.get(spec.stream, spec.durable);
  // Pulled by count, never by bytes. With @nats-io/jetstream 3.4's `max_bytes`, a pull request that ends on its
  // message count (100) leaves its unused bytes counted as outstanding; the top-up pulls then ask for a few KiB, the
  // server answers a near-limit message with 409 (exceeds max_bytes), and with nothing buffered the client pulls again
  // only after two missed heartbeats: a burst of malformed near-1 MiB messages drained in bursts ~30 s apart
  // (test/integration/metrics/hostile-burst.test.ts). A window of prefetchBytes / MAX_MESSAGE_BYTES messages bounds
  // the client's buffer in bytes all the same; short pulls (5 s, as runConsumer's) bound any other stall.
  const pullWindow = Math.max(8, Math.ceil(prefetchBytes / MAX_MESSAGE_BYTES));
  const messages = await consumer.consume({ max_messages: pullWindow, expires: 5000 });
  let written = 0;
  let inflight = 0;
  const queue: Pending[] = [];
  let queuedBytes = 0;
  const waiters: (() => void)[] = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  let ended = false;
  /** inserts held because the store is unavailable: no new insert starts while one is */
  let held = 0;
  let stopping = false;

  const failures = failureHandler<Pending>(bus, spec, {
    retry: async (group) => {
      await deps.store.insertMany(group.map((p) => p.batch));
      for (const p of group) written += p.batch.samples.length;
    },
    keepAlive: () => {
      for (const p of queue) p.msg.working();
    },
    onError: (e) => log.warn("metric insert failed", { error: String(e) }),
    onHold: (attempt, e) => {
      log.warn("metric store unavailable; holding the insert and retrying", { attempt, error: String(e) });
    },
  });

  // batchIds in inserts now in flight: a message with one of these waits until that insert is done
  const inFlight = new Set<string>();
  const insert = async (group: Pending[]) => {
    for (const p of group) inFlight.add(p.batch.batchId);
    try {
      await deps.store.insertMany(group.map((p) => p.batch));
      for (const p of group) {
        p.msg.ack();
        written += p.batch.samples.length;
      }
    } catch (e) {
      held++;
      try {
        await failures.resolve(group, e);
      } finally {
        held--;
      }
    } finally {
      for (const p of group) inFlight.delete(p.batch.batchId);
    }
  };

  /** The next insert: waiting messages in arrival order up to maxInsertSamples, skipping batchIds in flight. */
  const takeGroup = (): Pending[] => {
    const group: Pending[] = [];
    const ids = new Set<string>();
    let n = 0;
    for (let i = 0; i < queue.length; ) {
      const p = queue[i]!;
      const id = p.batch.batchId;
      if (inFlight.has(id) || ids.has(id) || (group.length > 0 && n + p.batch.samples.length > maxInsertSamples)) {
        i++;
        if (group.length > 0 && n + p.batch.samples.length > maxInsertSamples) break;
        continue;
      }
      group.push(p);
      ids.add(id);
      n += p.batch.samples.length;
      queue.splice(i, 1);
      queuedBytes -= p.msg.data.byteLength;
    }
    return group;
  };

  // Pump: decode as messages arrive; invalid ones, and batches from the wrong subject, go to the DLQ. It stops taking
  // messages while the queue holds prefetchBytes (the client pulls again only as we take): while inserts are slow or
  // held, the backlog stays in JetStream instead of in memory.
  const room: { free: (() => void) | null } = { free: null };
  const pump = (async () => {
    for await (const m of messages) {
      let batch: MetricBatch | undefined;
      try {
        batch = decodeMetricBatch(m.data);
      } catch (e) {
        await failures.terminate(m, e instanceof ContractError ? `${e.code}: ${e.message}` : `decode failed: ${String(e)}`);
      }
      const mismatch = batch && originMismatch(bus.topo, m.subject, batch);
      if (mismatch) await failures.terminate(m, mismatch);
      else if (batch) {
        queue.push({ msg: m, batch });
        queuedBytes += m.data.byteLength;
        wake();
      }
      while (queuedBytes >= prefetchBytes && !ended) await new Promise<void>((r) => (room.free = r));
    }
    ended = true;
    wake();
  })();

  // Writer: up to `concurrency` inserts in flight, in arrival order; none started while one is held.
  const work = (async () => {
    const running = new Set<Promise<void>>();
    while (true) {
      if (stopping) {
        // what is queued and not in an insert goes back to JetStream (redelivered to the next run)
        for (const p of queue.splice(0)) p.msg.nak();
        queuedBytes = 0;
      }
      const group = !stopping && queue.length && inflight < concurrency && held === 0 ? takeGroup() : [];
      if (!group.length) {
        if (ended && !queue.length && !running.size) break;
        await new Promise<void>((r) => waiters.push(r));
        continue;
      }
      room.free?.();
      room.free = null;
      inflight++;
      const p = insert(group).finally(() => {
        inflight--;
        running.delete(p);
        wake();
      });
      running.add(p);
    }
    await Promise.all(running);
  })();

  // Rollup steps, one at a time; `rolledUp` is the newest block the rollups are complete to.
  let rolledUp = 0;
  let stepping: Promise<void> = Promise.resolve();
  const step = () =>
    (stepping = stepping.then(async () => {
      try {
        rolledUp = (await deps.store.rollup()).done;
      } catch (e) {
        deps.log.warn("rollup step failed; will be retried", { error: String(e) });
      }
    }));
  const ticker = setInterval(step, rollupIntervalMs);

  const done = Promise.all([pump, work]).then(() => undefined);
  return {
    written: () => written,
    /** Run a rollup step now (after any in progress); resolves to the block the rollups are complete to. */
    rollupNow: async () => {
      await step();
      return rolledUp;
    },
    done,
    stop: async () => {
      clearInterval(ticker);
      stopping = true;
      failures.stop();
      await messages.close();
      ended = true;
      room.free?.();
      wake();
      await done;
      await step();
    },
  };
}
