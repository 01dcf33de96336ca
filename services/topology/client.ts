/**
 * The topology service's client, for other processes: its snapshot RPC, a live mirror of the graph (the gateway's
 * and the alerts service's view of it), and the environment the service is launched with.
 * The mirror: a snapshot from the topology service, then every delta in rev order from the TOPOLOGY stream. Deltas that arrive while a snapshot is being fetched are buffered; a gap in revs triggers a
 * fresh snapshot. Listeners get the frames to forward to browsers.
 */
import { createInbox } from "@nats-io/transport-node";
import { DeliverPolicy } from "@nats-io/jetstream";
import { decode } from "../../pipelines/codec.ts";
import { TopologyDelta, TopologySnapshot } from "../../pipelines/contracts/topology.ts";
import { applyDelta, emptyMirror, mirrorFromSnapshot, snapshotOf, type Mirror } from "../../pipelines/stages/apply-delta.ts";
import type { Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import { z } from "zod";

const SnapshotChunk = TopologySnapshot.extend({ part: z.number().int().nonnegative(), parts: z.number().int().positive() });

export interface TopologyMirror {
  mirror(): Mirror;
  synced(): boolean;
  /** called with a delta after it is applied, or with a snapshot after a resync */
  onFrame(f: (frame: TopologyDelta | TopologySnapshot) => void): void;
  stop(): Promise<void>;
}

export async function fetchSnapshot(bus: Bus, timeoutMs = 15_000): Promise<TopologySnapshot> {
  const inbox = createInbox();
  const sub = bus.nc.subscribe(inbox);
  try {
    bus.nc.publish(bus.topo.subjects.snapshotRpc, new Uint8Array(), { reply: inbox });
    const parts: z.infer<typeof SnapshotChunk>[] = [];
    const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
    for await (const m of sub) {
      const c = decode(SnapshotChunk, "topology.snapshot.v1", m.data, 64 * 1024 * 1024);
      parts.push(c);
      if (parts.length === c.parts) break;
    }
    clearTimeout(timer);
    if (!parts.length || parts.length !== parts[0]!.parts) throw new Error(`no complete topology snapshot within ${timeoutMs} ms (is the topology service running?)`);
    return {
      schema: "topology.snapshot.v1",
      rev: parts[0]!.rev,
      at: parts[0]!.at,
      nodes: parts.flatMap((p) => p.nodes),
      edges: parts.flatMap((p) => p.edges),
    };
  } finally {
    sub.unsubscribe();
  }
}

export async function startMirror(bus: Bus, log: Logger): Promise<TopologyMirror> {
  let mirror = emptyMirror();
  let synced = false;
  let buffer: TopologyDelta[] = [];
  const listeners: ((f: TopologyDelta | TopologySnapshot) => void)[] = [];
  const emit = (f: TopologyDelta | TopologySnapshot) => listeners.forEach((l) => l(f));

  let resyncing: Promise<void> | null = null;
  const resync = () =>
    (resyncing ??= (async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          const snap = await fetchSnapshot(bus);
          mirror = mirrorFromSnapshot(snap);
          const pending = buffer;
          buffer = [];
          for (const d of pending.sort((a, b) => a.rev - b.rev)) applyDelta(mirror, d);
          synced = true;
          emit(snapshotOf(mirror, Date.now()));
          log.info("mirror synced", { rev: mirror.rev, nodes: mirror.nodes.size });
          return;
        } catch (e) {
          if (attempt % 10 === 0) log.warn("snapshot fetch failed; retrying", { error: String(e) });
          await Bun.sleep(Math.min(5000, 200 * 2 ** Math.min(attempt, 5)));
        }
      }
    })().finally(() => (resyncing = null)));

  const consumer = await bus.js.consumers.get(bus.topo.streams.topology.name, { deliver_policy: DeliverPolicy.New });
  const messages = await consumer.consume();
  const loop = (async () => {
    for await (const m of messages) {
      let d: TopologyDelta;
      try {
        d = decode(TopologyDelta, "topology.delta.v1", m.data, 64 * 1024 * 1024);
      } catch (e) {
        log.warn("bad delta skipped", { error: String(e) });
        continue;
      }
      if (!synced) {
        buffer.push(d);
        continue;
      }
      if (d.rev <= mirror.rev) continue;
      if (d.rev > mirror.rev + 1) {
        log.warn("gap in topology revs; resyncing", { have: mirror.rev, got: d.rev });
        synced = false;
        buffer = [d];
        void resync();
        continue;
      }
      applyDelta(mirror, d);
      emit(d);
    }
  })();
  void resync();

  return {
    mirror: () => mirror,
    synced: () => synced,
    onFrame: (f) => listeners.push(f),
    stop: async () => {
      await messages.close();
      await loop;
    },
  };
}

/**
 * The environment the topology service is launched with (by services/supervisor/main.ts and bench/graph.ts). Its
 * memory budget is 1 GiB (the goal of issue 4): the JS heap is told half of it, Kuzu's buffer pool takes the other
 * half by default (ORRERY_KUZU_BUFFER_MIB, 512).
 * - BUN_JSC_forceRAMSize: JSC sizes heap growth by the machine's RAM: on a 24 GiB machine it lets the ~450 MB model
 *   heap of a 100k-node estate grow to about twice that before a full collection; told a budget, it collects sooner.
 * - GLIBC_TUNABLES: Kuzu's native code allocates with glibc malloc (Bun's own allocator, mimalloc, is not exported to
 *   addons). glibc raises its mmap threshold each time a large block is freed, so the large, short-lived buffers of a
 *   Kuzu commit soon come from the heap and stay resident after it. A fixed 128 KiB threshold (which also turns the
 *   dynamic raising off) and trimming the heap top at 128 KiB hand them back when freed.
 * `bench graph` (100k nodes / 311k edges) measures the resulting peak RSS against the 1 GiB goal.
 */
export const TOPOLOGY_LAUNCH_ENV: Readonly<Record<string, string>> = {
  BUN_JSC_forceRAMSize: String(512 * 1024 * 1024),
  GLIBC_TUNABLES: "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072",
};

/** TOPOLOGY_LAUNCH_ENV, where the operator's own environment does not set the same variable (theirs wins). */
export function topologyLaunchEnv(env: Record<string, string | undefined> = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(TOPOLOGY_LAUNCH_ENV)) out[k] = env[k] || v;
  return out;
}

/** The lease one active instance of a service holds while its peers stand by (the alerts service uses it too). */
export { acquireLease, LeaseStopped, leaseTiming, type HeldLease } from "./lease.ts";
