/**
 * The registry's part of the graph, written by the topology service (the graph store's only writer): it follows
 * registry.graph.v1 (the registry service publishes its whole part whenever it or its matches change) and makes the
 * store's Component nodes, MATCHES and DECLARES_DEPENDENCY equal to the last event, writing only the difference.
 *
 * Discovery never touches this part (it is not a discovery source, so aging and rebuilds leave it alone); removing an
 * entity removes the MATCHES edges to it. At start the last event is applied again, so a store rebuilt from scratch
 * gets the registry back. A match whose entity the store does not hold yet is retried once discovery writes it.
 */
import { RegistryGraph } from "../../pipelines/contracts/registry.ts";
import type { Changes } from "../../pipelines/stages/topology/index.ts";
import { runConsumer, type Bus, type ConsumerHandle } from "../shared/bus.ts";
import { isLastPart, lastRegistryGraph, readRegistryGraphAt } from "../registry/client.ts";
import type { GraphStore, RegistryGraphRows } from "../graph/port.ts";
import type { Logger } from "../shared/log.ts";

export const rowsOf = (g: RegistryGraph): RegistryGraphRows => ({ components: g.components, matches: g.matches, declares: g.declares });

export interface RegistryFollower {
  /** after a discovery write: entities a pending match was waiting for are now stored */
  afterCommit(c: Changes): void;
  stop(): Promise<void>;
}

export async function followRegistryGraph(deps: {
  bus: Bus;
  store: GraphStore;
  log: Logger;
  /** the service's write serializer: registry writes queue behind discovery writes, never beside them */
  serial: <T>(f: () => Promise<T>) => Promise<T>;
}): Promise<RegistryFollower> {
  const { bus, store, log, serial } = deps;
  let applied = 0;
  let wanted: RegistryGraphRows | undefined;
  /** entity ids of wanted matches the store could not write yet (the entity was not there) */
  let waiting = new Set<string>();

  const put = async (rows: RegistryGraphRows, why: string) => {
    const w = await store.putRegistry(rows);
    wanted = rows;
    const stored = new Set((await store.loadRegistry()).matches.map((m) => `${m.component}\u0000${m.entity}`));
    waiting = new Set(rows.matches.filter((m) => !stored.has(`${m.component}\u0000${m.entity}`)).map((m) => m.entity));
    if (Object.values(w).some((n) => n > 0)) log.info("registry written to the graph", { why, ...w, waiting: waiting.size });
  };

  // The last event again: a no-op diff normally, the whole registry part for a store rebuilt from scratch.
  const last = await lastRegistryGraph(bus);
  if (last) {
    await serial(() => put(rowsOf(last.graph), "replay"));
    applied = last.seq;
  }

  const consumer: ConsumerHandle = await runConsumer(
    bus,
    bus.topo.consumers.registryGraph,
    RegistryGraph,
    "registry.graph.v1",
    // each state is the whole registry part: only the newest complete one of a batch is written (its earlier parts
    // are read back from the stream, whichever batch they came in)
    (batch) =>
      serial(async () => {
        const last = batch.findLast((b) => isLastPart(b.value));
        if (!last || last.msg.seq <= applied) return;
        const whole = await readRegistryGraphAt(bus, last.msg.seq, last.value);
        if (!whole) {
          log.warn("registry graph state incomplete on the stream; waiting for the next one", { seq: last.msg.seq, generation: last.value.generation });
          return;
        }
        await put(rowsOf(whole), "registry.graph.v1");
        applied = last.msg.seq;
      }),
    {
      maxBatch: 100,
      onError: (e) => log.warn("registry graph write failed", { error: String(e) }),
      onHold: (attempt, e) => log.warn("graph store unavailable; holding the registry graph event", { attempt, error: String(e) }),
    },
  );

  let retrying = false;
  return {
    afterCommit(c) {
      if (!waiting.size || retrying || !wanted) return;
      if (!c.nodesUpserted.some((n) => waiting.has(n.id))) return;
      retrying = true;
      const rows = wanted;
      // queued behind the write that called this (not awaited: that would wait for itself)
      void serial(() => put(rows, "entities arrived"))
        .catch((e) => log.warn("registry graph retry failed; retried with the next event", { error: String(e) }))
        .finally(() => (retrying = false));
    },
    stop: () => consumer.stop(),
  };
}
