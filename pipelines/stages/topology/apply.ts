/**
 * applyDiscovery: folds batches into the model, the events of each in a fixed order.
 */
import type { DiscoveryBatch, DiscoveryEvent } from "../../contracts/discovery.ts";
import { unmarkStale } from "./aging.ts";
import { annotationSeen, dropAnnotations } from "./annotations.ts";
import { closeSocket, connectionSeen, endScan, reresolveIp } from "./flows.ts";
import { hostSeen, ipsOfHost } from "./hosts.ts";
import { listenerId, sockKey } from "./ids.ts";
import { finish } from "./lastseen.ts";
import { listenerSeen, removeListener } from "./listeners.ts";
import { type Changes, type FullScan, type TopologyModel, intern, sourceOf } from "./model.ts";
import { dropNames, nameSeen } from "./names.ts";
import { sweepRecovered } from "./rebuild.ts";
import { type Ctx, Tracker } from "./tracker.ts";

const ORDER: Record<DiscoveryEvent["type"], number> = {
  "host.seen": 0,
  "listener.gone": 1,
  "listener.seen": 2,
  "connection.gone": 3,
  "connection.seen": 4,
  "name.seen": 5,
  "entity.annotated": 6,
};

/** Folds discovery batches into the model (mutating it) and returns the net changes of all of them together. */
export function applyDiscovery(m: TopologyModel, batches: DiscoveryBatch | DiscoveryBatch[], now: number): Changes {
  const steps = applyDiscoverySteps(m, Array.isArray(batches) ? batches : [batches], now, Infinity);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * The same fold, paused after every `every` batches: the caller may let other work run between steps (the topology
 * service answers RPCs there, so a 3000-message fold does not hold them for seconds). The model is mid-fold while
 * paused; the changes are those of all the batches together, returned when the generator is done.
 */
export function* applyDiscoverySteps(m: TopologyModel, batches: DiscoveryBatch[], now: number, every: number): Generator<void, Changes, void> {
  const t = new Tracker(m);
  let n = 0;
  for (const b of batches) {
    applyOne(m, t, b, now);
    if (++n % every === 0 && n < batches.length) yield;
  }
  return finish(m, t, now);
}

function applyOne(m: TopologyModel, t: Tracker, batch: DiscoveryBatch, now: number): void {
  const host = intern(m, batch.host);
  const ctx: Ctx = { m, t, source: intern(m, batch.source), host, now };
  const fresh = !m.sources.has(ctx.source);
  const src = sourceOf(m, ctx.source, host);
  if (fresh && m.agedOut.delete(ctx.source)) src.awaitingFull = true;
  src.host = host;
  src.lastBatchAt = now;
  if (batch.intervalMs !== undefined && batch.intervalMs !== src.declaredIntervalMs) {
    src.declaredIntervalMs = batch.intervalMs;
    m.intervalsChanged.set(src.id, batch.intervalMs);
  }
  if (src.stale) unmarkStale(ctx, src);
  if (batch.scanId !== src.lastScanId) {
    if (src.lastScanAt && batch.at > src.lastScanAt) {
      const gap = batch.at - src.lastScanAt;
      src.intervalMs = src.intervalMs ? Math.round(src.intervalMs * 0.7 + gap * 0.3) : gap;
    }
    src.lastScanId = batch.scanId;
    src.lastScanAt = batch.at;
  }
  const events = [...batch.events].sort((a, b) => ORDER[a.type] - ORDER[b.type]);
  let scan: FullScan | undefined;
  if (batch.full) {
    scan = m.fullScans.get(batch.source);
    if (!scan || scan.scanId !== batch.scanId) {
      scan = { scanId: batch.scanId, partsSeen: new Set(), parts: batch.parts, listeners: new Set(), sockets: new Set() };
      m.fullScans.set(batch.source, scan);
    }
    scan.partsSeen.add(batch.part);
  }
  for (const e of events) {
    switch (e.type) {
      case "host.seen": {
        const { nodes, edges } = t.dropped;
        for (const ip of hostSeen(ctx, e, batch.at)) reresolveIp(ctx, ip);
        if (t.dropped.nodes > nodes) t.removals.push({ cause: "resolved", source: src.id, nodes: t.dropped.nodes - nodes, edges: t.dropped.edges - edges });
        break;
      }
      case "listener.seen": {
        const id = listenerSeen(ctx, src, e);
        scan?.listeners.add(id);
        break;
      }
      case "listener.gone":
        removeListener(ctx, listenerId(ctx.host, e.proto, e.ip, e.port));
        break;
      case "connection.seen": {
        const k = connectionSeen(ctx, src, e);
        if (k) scan?.sockets.add(k);
        break;
      }
      case "connection.gone":
        closeSocket(m, sockKey(ctx.host, e));
        break;
      case "entity.annotated":
        annotationSeen(ctx, e, batch.scanId);
        break;
      case "name.seen":
        nameSeen(ctx, e, batch.scanId);
        break;
    }
  }
  if (scan && scan.partsSeen.size >= scan.parts) {
    // The whole state of this source has arrived: what it no longer lists is gone (scoped to this source only).
    const { nodes, edges } = t.dropped;
    for (const k of [...src.sockets]) if (!scan.sockets.has(k)) closeSocket(m, k);
    for (const id of [...src.listeners]) if (!scan.listeners.has(id)) removeListener(ctx, id);
    dropAnnotations(ctx, batch.source, (v) => v.scanId !== batch.scanId);
    dropNames(ctx, batch.source, (v) => v.scanId !== batch.scanId);
    m.fullScans.delete(batch.source);
    if (src.awaitingFull) {
      // back from aging with its state known again: calls to it that waited resolve now (a listener, or an external)
      src.awaitingFull = false;
      for (const ip of ipsOfHost(m, host)) reresolveIp(ctx, ip);
    }
    endScan(ctx, src);
    if (m.recovered.delete(batch.source)) sweepRecovered(ctx);
    if (t.dropped.nodes > nodes || t.dropped.edges > edges) t.removals.push({ cause: "full-state", source: src.id, nodes: t.dropped.nodes - nodes, edges: t.dropped.edges - edges });
  } else if (!batch.full && batch.part === batch.parts - 1) endScan(ctx, src);
}
