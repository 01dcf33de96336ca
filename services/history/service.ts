/**
 * History service: topology delta stream → change rows in ClickHouse (HistoryStore). A durable consumer "history" of
 * its own reads every delta; a batch is acked once ClickHouse has it, and a redelivered delta is stored once. A
 * checkpoint every `checkpointEveryMs` keeps "state at T" exact when TTL retention drops old rows. Several instances
 * share the durable (each delta goes to one of them; one redelivered to another is deduplicated by its insert token)
 * and write the same checkpoint once.
 */
import { TopologyDelta } from "../../pipelines/contracts/topology.ts";
import type { ConsumerSpec, Topology } from "../../pipelines/streams.ts";
import { ensureConsumer, runConsumer, type Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { HistoryStore } from "./port.ts";

/** The history service's durable consumer of the TOPOLOGY stream (declared in pipelines/streams.ts). */
export function historyConsumer(topo: Topology): ConsumerSpec {
  return topo.consumers.history;
}

export const DAY_MS = 24 * 3600 * 1000;

export interface HistoryService {
  /** change rows sent to the store since start */
  written(): number;
  /** highest rev stored since start */
  rev(): number;
  stop(): Promise<void>;
}

export async function startHistoryService(deps: {
  bus: Bus;
  store: HistoryStore;
  log: Logger;
  now?: () => number;
  /** how often live entities are re-stamped for retention; default one day */
  checkpointEveryMs?: number;
}): Promise<HistoryService> {
  const { bus, store, log } = deps;
  const now = deps.now ?? Date.now;
  const every = deps.checkpointEveryMs ?? DAY_MS;
  await store.init();
  const spec = historyConsumer(bus.topo);
  await ensureConsumer(bus.jsm, spec);

  let written = 0;
  let rev = 0;
  const consumer = await runConsumer(
    bus,
    spec,
    TopologyDelta,
    "topology.delta.v1",
    async (batch) => {
      written += await store.insert(batch.map((b) => b.value));
      for (const b of batch) rev = Math.max(rev, b.value.rev);
    },
    // Small batches: each delta (up to ~1500 changes) is decoded and inserted on its own anyway, and a small batch keeps
    // the event loop free between them.
    {
      maxBatch: 32,
      onError: (e) => log.warn("delta batch not stored", { error: String(e) }),
      onHold: (attempt, e) => {
        log.warn("history store unavailable; holding the delta batch and retrying", { attempt, error: String(e) });
      },
    },
  );

  let checkpointing: Promise<void> | null = null;
  const checkpointIfDue = () =>
    (checkpointing ??= (async () => {
      try {
        // Stamped at the start of the current period, not at "now": every instance of the service computes the same
        // time, so two that checkpoint at once write the same checkpoint (one insert token), stored once.
        const t = now();
        const at = t - (t % every);
        const last = await store.lastCheckpoint();
        if (last !== null && at <= last) return;
        const rows = await store.checkpoint(at);
        log.info("history checkpoint", { at, rows });
      } catch (e) {
        log.warn("history checkpoint failed; will retry", { error: String(e) });
      }
    })().finally(() => (checkpointing = null)));
  const timer = setInterval(() => void checkpointIfDue(), Math.min(every, 3600_000));

  return {
    written: () => written,
    rev: () => rev,
    stop: async () => {
      clearInterval(timer);
      await consumer.stop();
      await checkpointing;
    },
  };
}
