/**
 * The gateway's mirror of the live graph: a snapshot from the topology service, then every delta in rev order from
 * the TOPOLOGY stream. Deltas that arrive while a snapshot is being fetched are buffered; a gap in revs triggers a
 * fresh snapshot. Listeners get the frames to forward to browsers.
 */
import { createInbox } from "@nats-io/transport-node";
import { DeliverPolicy } from "@nats-io/jetstream";
import { decode, validate } from "../../pipelines/codec.ts";
import { TopologyDelta, TopologySnapshot } from "../../pipelines/contracts/topology.ts";
import { applyDelta, emptyMirror, mirrorFromSnapshot, snapshotOf, type Mirror } from "../../pipelines/stages/apply-delta.ts";
import type { Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import { z } from "zod";

const SnapshotChunk = TopologySnapshot.extend({ part: z.number().int().nonnegative(), parts: z.number().int().positive() });

export interface GatewayMirror {
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

export async function startMirror(bus: Bus, log: Logger): Promise<GatewayMirror> {
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

export { validate };
