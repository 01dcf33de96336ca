/**
 * Listeners: a listening socket is a node at once, served by its process's service (or by its host).
 */
import type { ListenerSeen } from "../../contracts/discovery.ts";
import { addTo, bagAdd, bagDelete, removeFrom } from "./bags.ts";
import { reresolve } from "./flows.ts";
import { dropEdge, dropNode, putEdge, putNode } from "./graph.ts";
import { WILDCARD, ensureHost, ipsOfHost } from "./hosts.ts";
import { edgeId, externalId, hostId, isAgentSource, listenerId } from "./ids.ts";
import { type ListenerRec, type SourceRec, intern } from "./model.ts";
import { procOf, syncProc } from "./processes.ts";
import type { Ctx } from "./tracker.ts";

export function listenerSeen(ctx: Ctx, src: SourceRec, e: ListenerSeen): string {
  const id = listenerId(ctx.host, e.proto, e.ip, e.port);
  const prev = ctx.m.listeners.get(id);
  // A job seeing a socket an agent reports (with its process) learns nothing new and must not take it over.
  if (prev && prev.source !== ctx.source && isAgentSource(prev.source) && !isAgentSource(ctx.source)) return id;
  const host = ensureHost(ctx);
  const proc = e.process ? procOf(ctx, e.process) : null;
  const pk = proc?.key ?? null;
  putNode(ctx, id, "listener", `${e.proto}/${e.port}`, { host: ctx.host, proto: e.proto, ip: e.ip, port: e.port });
  if (prev && prev.proc === pk) {
    if (proc) syncProc(ctx, proc); // the identity may have changed (cmdline, user)
    else putEdge(ctx, "LISTENS", host, id);
    return id;
  }
  if (prev) detachListener(ctx, prev, true);
  const rec: ListenerRec = { id, source: ctx.source, host: ctx.host, proto: intern(ctx.m, e.proto), ip: intern(ctx.m, e.ip), port: e.port, proc: pk };
  ctx.m.listeners.set(id, rec);
  src.listeners = bagAdd(src.listeners, id);
  if (!prev) addTo(ctx.m.listenerIndex, `${ctx.host}|${e.proto}|${e.port}`, id);
  if (proc) {
    proc.listeners = bagAdd(proc.listeners, id);
    syncProc(ctx, proc);
  } else putEdge(ctx, "LISTENS", host, id);
  if (!prev) {
    const { nodes, edges } = ctx.t.dropped;
    adoptExternals(ctx, e);
    if (ctx.t.dropped.nodes > nodes) ctx.t.removals.push({ cause: "resolved", source: ctx.source, nodes: ctx.t.dropped.nodes - nodes, edges: ctx.t.dropped.edges - edges });
  }
  return id;
}

/** Takes a listener away from its owner: `takenOver` by another process (a restart under a new pid), or removed. */
function detachListener(ctx: Ctx, l: ListenerRec, takenOver = false) {
  if (!l.proc) {
    dropEdge(ctx, edgeId("LISTENS", hostId(l.host), l.id));
    return;
  }
  const p = ctx.m.procs.get(l.proc);
  if (!p) return;
  if (p.service) dropEdge(ctx, edgeId("LISTENS", p.service, l.id));
  bagDelete(p.listeners, l.id);
  syncProc(ctx, p, takenOver);
}

/** A new listener may be what earlier flows were calling: move them off their external nodes, or end their wait. */
function adoptExternals(ctx: Ctx, e: ListenerSeen) {
  const ips = WILDCARD.has(e.ip) ? [...new Set(ipsOfHost(ctx.m, ctx.host)), e.ip === "::" ? "::1" : "127.0.0.1"] : [e.ip];
  for (const ip of ips) {
    const keys = ctx.m.dstFlows.get(externalId(ip, e.port));
    if (keys) for (const k of [...keys]) reresolve(ctx, k);
    // flows waiting on this host (resolveRemote's null): those to this port resolve now, the rest stay as they are
    for (const k of [...(ctx.m.ipFlows.get(ip) ?? [])]) {
      const f = ctx.m.flows.get(k);
      if (f && f.dst === null && f.remotePort === e.port && f.proto === e.proto) reresolve(ctx, k);
    }
  }
}

export function removeListener(ctx: Ctx, id: string) {
  const l = ctx.m.listeners.get(id);
  if (!l) return;
  ctx.m.listeners.delete(id);
  const owner = ctx.m.sources.get(l.source);
  if (owner) bagDelete(owner.listeners, id);
  removeFrom(ctx.m.listenerIndex, `${l.host}|${l.proto}|${l.port}`, id, false);
  detachListener(ctx, l);
  // Flows that pointed at it now point wherever resolution says (another listener, or an external node).
  const keys = ctx.m.dstFlows.get(id);
  if (keys) for (const k of [...keys]) reresolve(ctx, k);
  dropNode(ctx, id);
}
