/**
 * Processes folded into services: a process's service node, its LISTENS edges, and the CONNECTS edges of its
 * confirmed flows, which follow the service.
 */
import type { ProcessIdentity } from "../../contracts/common.ts";
import { addTo, bagSize, removeFrom } from "./bags.ts";
import { dropEdge, dropNode, putEdge, putNode } from "./graph.ts";
import { fingerprint, identityPorts } from "./identity.ts";
import { edgeId, hostId, procKey } from "./ids.ts";
import { EMPTY_PROPS, type FlowRec, type ListenerRec, type ProcRec, type TopologyModel, edgeProps } from "./model.ts";
import type { Ctx } from "./tracker.ts";

export function procOf(ctx: Ctx, p: ProcessIdentity): ProcRec {
  const key = procKey(ctx.host, p);
  let r = ctx.m.procs.get(key);
  if (!r) {
    r = { key, host: ctx.host, source: ctx.source, ident: p, fp: fingerprint(p), listeners: [], flows: [], confirmed: 0, service: null, ports: null };
    ctx.m.procs.set(key, r);
  } else r.ident = p;
  return r;
}

export function desiredService(m: TopologyModel, p: ProcRec, keepPorts = false): string {
  if (keepPorts && p.ports !== null) return `service:${p.host}:${p.fp}:${p.ports}`;
  const ls: ListenerRec[] = [];
  for (const id of p.listeners) {
    const l = m.listeners.get(id);
    if (l) ls.push(l);
  }
  if (ls.length) p.ports = identityPorts(ls);
  return `service:${p.host}:${p.fp}:${p.ports ?? "client"}`;
}

/**
 * Puts a process where it belongs: in the service its fingerprint and ports say (when it has a listener or a
 * confirmed flow), moving its LISTENS and CONNECTS edges along when that changes; forgets it when nothing holds it.
 * `keepPorts`: a listener was taken over by another process (a restart, its ports moving one by one), which does not
 * make the old process a service of the ports it has left.
 */
export function syncProc(ctx: Ctx, p: ProcRec, keepPorts = false) {
  const active = bagSize(p.listeners) > 0 || p.confirmed > 0;
  let want = active ? desiredService(ctx.m, p, keepPorts) : null;
  // the one string per service id the model already holds, not a fresh copy per sync
  if (want !== null) want = want === p.service ? p.service : (ctx.m.nodes.get(want)?.id ?? want);
  const old = p.service;
  if (old && old !== want) {
    for (const id of p.listeners) dropEdge(ctx, edgeId("LISTENS", old, id));
    removeFrom(ctx.m.services, old, p.key, false);
    p.service = null;
    refreshService(ctx, old, p.host, p.source);
  }
  if (want) {
    p.service = want;
    addTo(ctx.m.services, want, p.key);
    refreshService(ctx, want, p.host, p.source);
    for (const id of p.listeners) putEdge(ctx, "LISTENS", want, id, EMPTY_PROPS, p.source);
  }
  // Confirmed flows follow their process's service.
  for (const k of p.flows) {
    const f = ctx.m.flows.get(k);
    if (f?.confirmed && f.dst && f.edge !== edgeId("CONNECTS", want ?? hostId(p.host), f.dst)) {
      unrefEdge(ctx, f.edge!);
      f.edge = refEdge(ctx, f, f.dst);
    }
  }
  if (!active && !bagSize(p.flows)) ctx.m.procs.delete(p.key);
}

/** A service node mirrors its members: the lowest pid speaks for it; without members it goes. */
function refreshService(ctx: Ctx, id: string, host: string, source: string) {
  const members = ctx.m.services.get(id);
  let lead: ProcRec | undefined;
  let count = 0;
  for (const k of members ?? []) {
    const p = ctx.m.procs.get(k);
    if (!p) continue;
    count++;
    if (!lead || p.ident.pid < lead.ident.pid) lead = p;
  }
  if (!lead) {
    ctx.m.services.delete(id);
    dropNode(ctx, id);
    return;
  }
  const p = lead.ident;
  const ports = id.slice(id.lastIndexOf(":") + 1);
  putNode(
    ctx,
    id,
    "process",
    lead.fp,
    {
      host,
      service: lead.fp,
      ports,
      pid: p.pid,
      processes: count,
      exe: p.exe,
      comm: p.comm,
      cmdline: p.cmdline.join(" ").slice(0, 2048),
      user: p.user,
      startTime: p.startTime,
      containerId: p.containerId,
      ...(p.containerImage ? { containerImage: p.containerImage } : {}),
    },
    source,
  );
  putEdge(ctx, "RUNS", hostId(host), id, EMPTY_PROPS, source);
}

export function refEdge(ctx: Ctx, f: FlowRec, dst: string): string {
  const p = f.proc ? ctx.m.procs.get(f.proc) : undefined;
  const owner = p?.service ?? hostId(f.host);
  const id = putEdge(ctx, "CONNECTS", owner, dst, edgeProps(ctx.m, "CONNECTS", f.proto, f.remotePort), f.source);
  ctx.m.edgeRefs.set(id, (ctx.m.edgeRefs.get(id) ?? 0) + 1);
  return id;
}

export function unrefEdge(ctx: Ctx, id: string) {
  const n = (ctx.m.edgeRefs.get(id) ?? 1) - 1;
  if (n > 0) ctx.m.edgeRefs.set(id, n);
  else {
    ctx.m.edgeRefs.delete(id);
    dropEdge(ctx, id);
  }
}
