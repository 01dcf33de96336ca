/**
 * Metrics service: metric batches from JetStream → SeriesStore; each message acked once ClickHouse has its samples.
 *
 * Its own consume loop rather than the shared micro-batcher, because metric messages are large (up to 900 KiB) and
 * the store is the bottleneck:
 * - the client-side prefetch is bounded in bytes, so messages never wait in our buffer past their ack deadline (a
 *   buffer of 1000 large messages outlived ack_wait, got redelivered over and over, and hit max_deliver — lost);
 * - a fixed number of inserts is in flight (the owner runs one query per chDB connection; more only queue);
 * - one insert per message, with the message's batchId as ClickHouse's deduplication token, so a redelivery is a
 *   no-op. Combining messages into one insert would be faster for tiny messages (each insert makes a part in the raw
 *   table and in each rollup) but a redelivered message then arrives in another combination and is written twice;
 *   producers batch instead (the agent per scan, remote_write per request, up to MAX_SAMPLES_PER_BATCH).
 * Messages that fail validation go to the dead-letter stream with the reason; a failed insert is nak'ed and retried.
 *
 * Beside the inserts, a loop folds what was inserted into the 1m/1h rollups every `rollupIntervalMs` (store.rollup():
 * one step for many batches instead of a materialized view per insert; reads stay exact in between). A failed step
 * is retried at the next tick, and stop() runs a last step so a clean shutdown leaves the rollups current.
 */
import type { JsMsg } from "@nats-io/jetstream";
import { ContractError, decode } from "../../pipelines/codec.ts";
import { MetricBatch } from "../../pipelines/contracts/metrics.ts";
import { deadLetter, type Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { SeriesStore } from "./port.ts";

export interface MetricsServiceOptions {
  /** inserts in flight (default 2) */
  concurrency?: number;
  /** client-side prefetch, bytes (default 4 MiB) */
  prefetchBytes?: number;
  /** how often the rollups are brought up to date, ms (default 5000) */
  rollupIntervalMs?: number;
}

interface Pending {
  msg: JsMsg;
  batch: MetricBatch;
}

export async function startMetricsService(deps: { bus: Bus; store: SeriesStore; log: Logger; options?: MetricsServiceOptions }) {
  const concurrency = deps.options?.concurrency ?? 2;
  const prefetchBytes = deps.options?.prefetchBytes ?? 4 * 1024 * 1024;
  const rollupIntervalMs = deps.options?.rollupIntervalMs ?? 5000;
  if (!(Number.isFinite(rollupIntervalMs) && rollupIntervalMs > 0)) throw new Error(`rollupIntervalMs must be > 0, got ${rollupIntervalMs}`);
  await deps.store.init();
  const { bus } = deps;
  const spec = bus.topo.consumers.metrics;
  const consumer = await bus.js.consumers.get(spec.stream, spec.durable);
  const messages = await consumer.consume({ max_bytes: prefetchBytes });
  let written = 0;
  let inflight = 0;
  const queue: Pending[] = [];
  const waiters: (() => void)[] = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  let ended = false;

  const insert = async ({ msg, batch }: Pending) => {
    try {
      await deps.store.insert(batch.samples, batch.batchId);
      msg.ack();
      written += batch.samples.length;
    } catch (e) {
      deps.log.warn("metric insert failed; will be redelivered", { error: String(e), batchId: batch.batchId });
      msg.nak(2000);
    }
  };

  // Pump: decode as messages arrive; invalid ones go to the DLQ.
  const pump = (async () => {
    for await (const m of messages) {
      try {
        queue.push({ msg: m, batch: decode(MetricBatch, "metrics.v1", m.data) });
        wake();
      } catch (e) {
        const reason = e instanceof ContractError ? `${e.code}: ${e.message}` : `decode failed: ${String(e)}`;
        try {
          await deadLetter(bus, m, spec.durable, reason);
          m.ack();
        } catch (dlqErr) {
          deps.log.warn("dead-lettering failed; will be redelivered", { error: String(dlqErr) });
          m.nak(1000);
        }
      }
    }
    ended = true;
    wake();
  })();

  // Writer: up to `concurrency` inserts in flight, in arrival order.
  const work = (async () => {
    const running = new Set<Promise<void>>();
    while (true) {
      if (!queue.length || inflight >= concurrency) {
        if (ended && !queue.length) break;
        await new Promise<void>((r) => waiters.push(r));
        continue;
      }
      inflight++;
      const p = insert(queue.shift()!).finally(() => {
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
      await messages.close();
      await done;
      await step();
    },
  };
}
