/**
 * One active topology writer, any number of standbys: each instance waits for the writer lease (lease.ts), and only
 * the holder opens the graph store and runs the topology service (load the model, re-publish the outbox, consume the
 * durable). The store is opened only on taking over: Kuzu admits one process per directory, and a standby on Neo4j
 * has nothing to hold open. An instance that loses its lease fences itself (the service's write in flight is
 * abandoned, its consumer stopped, its store closed) and goes back to standing by.
 */
import type { GraphStore } from "../graph/port.ts";
import type { Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import { acquireLease, LeaseStopped, leaseTiming, openLeaseBucket, type HeldLease } from "./lease.ts";
import { startTopologyService, type TopologyService } from "./service.ts";

/** fenced: the lease was lost and nothing is written any more; the service is still stopping (its NATS may be gone) */
export type WriterState = "standby" | "starting" | "active" | "fenced" | "stopped";

export interface TopologyWriter {
  state(): WriterState;
  /** the running service while active */
  service(): TopologyService | undefined;
  /** stops the service (if active), closes the store and releases the lease; a standby just stops waiting */
  stop(): Promise<void>;
}

/** The lease key of the topology writer within the bucket. */
export const WRITER_KEY = "topology.writer";

type ServiceOptions = Omit<Parameters<typeof startTopologyService>[0], "bus" | "store" | "log" | "fence">;

export async function runTopologyWriter(deps: {
  bus: Bus;
  log: Logger;
  /** a new, unopened store; called on each takeover */
  openStore: () => GraphStore;
  holder: string;
  ttlMs: number;
  service?: ServiceOptions;
  /** told of each state change (main.ts: readiness, the ready line) */
  onState?: (s: WriterState, info: { rev?: number; holder?: string }) => void;
}): Promise<TopologyWriter> {
  const { bus, log } = deps;
  // the bucket exists before the first standby polls it
  await openLeaseBucket(bus);
  const timing = leaseTiming(deps.ttlMs);
  const stopping = new AbortController();
  let state: WriterState = "standby";
  let svc: TopologyService | undefined;
  const set = (s: WriterState, info: { rev?: number; holder?: string } = {}) => {
    state = s;
    deps.onState?.(s, info);
  };

  /** One term as the writer: from taking the lease to losing or releasing it. */
  const term = async (lease: HeldLease) => {
    set("starting");
    const store = deps.openStore();
    try {
      svc = await startTopologyService({ ...deps.service, bus, store, log, fence: lease.lost, stillWriter: lease.check });
    } catch (e) {
      // e.g. the store is still held by a predecessor that has not exited yet: give the lease up and try again
      log.error("topology service did not start; giving the lease up", { error: String(e) });
      await store.close().catch(() => undefined);
      await lease.release();
      await Bun.sleep(timing.pollMs);
      return;
    }
    set("active", { rev: svc.rev() });
    const ended = Promise.withResolvers<void>();
    const end = () => ended.resolve();
    lease.lost.addEventListener("abort", end, { once: true });
    stopping.signal.addEventListener("abort", end, { once: true });
    if (lease.lost.aborted || stopping.signal.aborted) end();
    await ended.promise;
    lease.lost.removeEventListener("abort", end);
    stopping.signal.removeEventListener("abort", end);
    if (lease.lost.aborted) set("fenced");
    const s = svc;
    svc = undefined;
    // the service is already fenced when the lease is lost (its abort signal); this ends its consumer and timers
    await s.stop().catch((e) => log.warn("topology service stop failed", { error: String(e) }));
    await store.close().catch((e) => log.warn("graph store close failed", { error: String(e) }));
    await lease.release();
  };

  const loop = (async () => {
    while (!stopping.signal.aborted) {
      set("standby");
      let lease: HeldLease;
      try {
        lease = await acquireLease({ bus, key: WRITER_KEY, holder: deps.holder, timing, log, signal: stopping.signal, onWaiting: (holder) => set("standby", { holder }) });
      } catch (e) {
        if (e instanceof LeaseStopped) break;
        throw e;
      }
      await term(lease);
    }
    set("stopped");
  })();
  loop.catch((e) => log.error("topology writer loop failed", { error: String(e) }));

  return {
    state: () => state,
    service: () => svc,
    stop: async () => {
      stopping.abort();
      await loop.catch(() => undefined);
    },
  };
}
