/**
 * Flows: connections folded by (host, process, proto, remote ip:port), confirmed after confirmScans scans of their
 * source, resolved to a listener or an external node, and carried by a reference-counted CONNECTS edge.
 */
import type { ConnectionSeen } from "../../contracts/discovery.ts";
import { addTo, bagAdd, bagDelete, removeFrom, slotAdd, slotDelete, slotSize, slotValues } from "./bags.ts";
import { dropNode } from "./graph.ts";
import { ensureHost, findListener, resolveRemote } from "./hosts.ts";
import { edgeId, hostId, hostPort, sockKey } from "./ids.ts";
import { type FlowRec, type SourceRec, type TopologyModel, intern } from "./model.ts";
import { putExternal } from "./names.ts";
import { desiredService, procOf, refEdge, syncProc, unrefEdge } from "./processes.ts";
import type { Ctx } from "./tracker.ts";

/** End of one scan of a source: flows open now count as seen once more; long-closed ones go. */
export function endScan(ctx: Ctx, src: SourceRec) {
  const { confirmScans, graceScans } = ctx.m.opts;
  src.scans++;
  for (const k of [...src.flows]) {
    const f = ctx.m.flows.get(k);
    if (!f) {
      bagDelete(src.flows, k);
      continue;
    }
    if (slotSize(f.sockets)) {
      if (f.lastSeenScan !== src.scans) {
        f.seenScans++;
        f.lastSeenScan = src.scans;
      }
      if (!f.confirmed && f.seenScans >= confirmScans && !src.awaitingFull) confirmFlow(ctx, f);
    } else if (src.scans - f.lastSeenScan >= graceScans) removeFlow(ctx, f);
  }
}

export function connectionSeen(ctx: Ctx, src: SourceRec, e: ConnectionSeen): string | null {
  // Server side of a connection: the client reports the dependency; ephemeral client ports never become nodes.
  if (findListener(ctx.m, ctx.host, e.proto, e.localIp, e.localPort)) return null;
  const sk = sockKey(ctx.host, e);
  const proc = e.process ? procOf(ctx, e.process) : null;
  const fk = `${ctx.host}|${proc?.key ?? "host"}|${e.proto}|${hostPort(e.remoteIp, e.remotePort)}`;
  const had = ctx.m.sockets.get(sk);
  if (had === fk) return sk;
  if (had) closeSocket(ctx.m, sk);
  let f = ctx.m.flows.get(fk);
  if (!f) {
    f = {
      key: fk,
      source: ctx.source,
      host: ctx.host,
      proc: proc?.key ?? null,
      proto: intern(ctx.m, e.proto),
      remoteIp: intern(ctx.m, e.remoteIp),
      remotePort: e.remotePort,
      sockets: undefined,
      seenScans: 0,
      lastSeenScan: src.scans,
      confirmed: false,
      dst: null,
      edge: null,
    };
    ctx.m.flows.set(fk, f);
    src.flows = bagAdd(src.flows, fk);
    if (proc) proc.flows = bagAdd(proc.flows, fk);
    // A dependency the graph already holds (another process of the service, or recovered from the store) needs no
    // second look.
    const owner = proc ? desiredService(ctx.m, proc) : hostId(ctx.host);
    const { dst } = resolveRemote(ctx.m, ctx.host, e.proto, e.remoteIp, e.remotePort);
    if (!src.awaitingFull && (ctx.m.opts.confirmScans <= 1 || (dst !== null && ctx.m.edges.has(edgeId("CONNECTS", owner, dst))))) confirmFlow(ctx, f);
  }
  f.sockets = slotAdd(f.sockets, sk);
  ctx.m.sockets.set(sk, fk);
  src.sockets = bagAdd(src.sockets, sk);
  return sk;
}

export function closeSocket(m: TopologyModel, sk: string) {
  const fk = m.sockets.get(sk);
  if (fk === undefined) return;
  m.sockets.delete(sk);
  const f = m.flows.get(fk);
  if (!f) return;
  f.sockets = slotDelete(f.sockets, sk);
  const src = m.sources.get(f.source);
  if (src) bagDelete(src.sockets, sk);
}

function confirmFlow(ctx: Ctx, f: FlowRec) {
  f.confirmed = true;
  const p = f.proc ? ctx.m.procs.get(f.proc) : undefined;
  if (p) {
    p.confirmed++;
    syncProc(ctx, p); // makes the service (it may have had no node yet); does not touch this flow (no dst yet)
  } else ensureHost({ ...ctx, host: f.host, source: f.source });
  attachFlow(ctx, f);
}

/** Resolves a confirmed flow and hangs it on its CONNECTS edge (or leaves it waiting on its IP's owner: no edge yet). */
function attachFlow(ctx: Ctx, f: FlowRec) {
  const r = resolveRemote(ctx.m, f.host, f.proto, f.remoteIp, f.remotePort);
  f.dst = r.dst;
  if (r.viaOwner) addTo(ctx.m.ipFlows, f.remoteIp, f.key);
  if (r.dst === null) return;
  addTo(ctx.m.dstFlows, r.dst, f.key);
  if (r.dst.startsWith("external:")) {
    if (!ctx.m.nodes.has(r.dst)) putExternal(ctx, r.dst, { ip: f.remoteIp, port: f.remotePort, proto: f.proto }, f.source);
    ctx.m.nodeRefs.set(r.dst, (ctx.m.nodeRefs.get(r.dst) ?? 0) + 1);
  }
  f.edge = refEdge(ctx, f, r.dst);
}

function detachFlow(ctx: Ctx, f: FlowRec) {
  removeFrom(ctx.m.ipFlows, f.remoteIp, f.key);
  if (!f.dst) return;
  removeFrom(ctx.m.dstFlows, f.dst, f.key);
  if (f.edge) unrefEdge(ctx, f.edge);
  if (f.dst.startsWith("external:")) {
    const n = (ctx.m.nodeRefs.get(f.dst) ?? 1) - 1;
    if (n > 0) ctx.m.nodeRefs.set(f.dst, n);
    else dropNode(ctx, f.dst);
  }
  f.dst = null;
  f.edge = null;
}

export function reresolve(ctx: Ctx, fk: string) {
  const f = ctx.m.flows.get(fk);
  if (!f?.confirmed) return;
  const r = resolveRemote(ctx.m, f.host, f.proto, f.remoteIp, f.remotePort);
  if (r.dst === f.dst) return;
  detachFlow(ctx, f);
  attachFlow(ctx, f);
}

export function reresolveIp(ctx: Ctx, ip: string) {
  const keys = ctx.m.ipFlows.get(ip);
  if (keys) for (const k of [...keys]) reresolve(ctx, k);
}

export function removeFlow(ctx: Ctx, f: FlowRec) {
  for (const sk of slotValues(f.sockets)) ctx.m.sockets.delete(sk);
  ctx.m.flows.delete(f.key);
  const src = ctx.m.sources.get(f.source);
  if (src) bagDelete(src.flows, f.key);
  detachFlow(ctx, f);
  const p = f.proc ? ctx.m.procs.get(f.proc) : undefined;
  if (p) {
    bagDelete(p.flows, f.key);
    if (f.confirmed) p.confirmed--;
    syncProc(ctx, p);
  }
}
