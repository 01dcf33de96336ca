/**
 * Rebuilding the model from the store after a restart, and the sweep that a source's first full scan does after it.
 */
import type { TopoEdge, TopoNode } from "../../contracts/topology.ts";
import { recoverAnnotations } from "./annotations.ts";
import { addTo, bagAdd } from "./bags.ts";
import { deriveAdded } from "./depends.ts";
import { dropEdge, dropNode, indexSource, putDepends } from "./graph.ts";
import { isAgentSource, isLoopback } from "./ids.ts";
import { persistRec } from "./lastseen.ts";
import { EMPTY_PROPS, type StageOptions, type TopologyModel, edgeProps, emptyModel, intern, sourceOf } from "./model.ts";
import type { Ctx } from "./tracker.ts";

/** Rebuilds a model from stored nodes and edges (after a restart); listeners and flows are re-learned from the next full scan. */
export function modelFromGraph(nodes: TopoNode[], edges: TopoEdge[], opts: Partial<StageOptions> = {}, sourceIntervals: Record<string, number> = {}): TopologyModel {
  const m = emptyModel(opts);
  for (const n of nodes) {
    compactNode(m, n);
    m.nodes.set(n.id, n);
    indexSource(m, n.source, n.id);
    m.recovered.add(n.source);
    const src = sourceOf(m, n.source, n.kind === "host" ? n.id.slice("host:".length) : String(n.props.host ?? ""));
    if (n.props.health === "stale") src.stale = true;
    if (n.kind === "host") {
      const host = n.id.slice("host:".length);
      src.host = host;
      const ips = new Set<string>();
      if (typeof n.props.ips === "string") for (const ip of n.props.ips.split(",")) if (ip && !isLoopback(ip)) ips.add(ip);
      const agent = isAgentSource(n.source);
      if (agent) m.hostIps.set(host, ips);
      else if (ips.size) m.jobIps.set(host, new Map([[n.source, ips]]));
      for (const ip of ips) {
        const o = m.ipOwner.get(ip);
        if (!o || (agent && !o.agent) || (o.agent === agent && o.at < n.lastSeen)) m.ipOwner.set(ip, { host, at: n.lastSeen, agent, source: n.source });
      }
    } else if (n.kind === "external" && typeof n.props.ip === "string") {
      addTo(m.externalsAt, n.props.ip, n.id);
    } else if (n.kind === "listener") {
      // Listeners are resolvable at once, so a caller whose full scan comes before its server's keeps its edges
      // (no flicker). Who serves them is learned from the server's next scan; its full scan drops those it no longer lists.
      const { host, proto, ip, port } = n.props;
      if (typeof host === "string" && typeof proto === "string" && typeof ip === "string" && typeof port === "number") {
        m.listeners.set(n.id, { id: n.id, source: n.source, host, proto, ip, port, proc: null });
        addTo(m.listenerIndex, `${host}|${proto}|${port}`, n.id);
        src.listeners = bagAdd(src.listeners, n.id);
      }
    }
  }
  for (const e of edges) {
    compactEdge(m, e);
    m.edges.set(e.id, e);
    addTo(m.adjacency, e.src, e.id);
    addTo(m.adjacency, e.dst, e.id);
  }
  // Annotations the store carries (props.annotatedBy says whose): kept, owned by their sources, until those sources'
  // next full scan (which re-lists them under their real targets) or aging says otherwise.
  for (const n of nodes) if (typeof n.props.annotatedBy === "string") recoverAnnotations(m, n);
  // DEPENDS_ON bookkeeping from the stored CONNECTS and LISTENS edges (LISTENS first: CONNECTS pair with them).
  for (const e of edges) if (e.kind === "LISTENS") deriveAdded(m, e);
  for (const e of edges) if (e.kind === "CONNECTS") deriveAdded(m, e);
  for (const [id, r] of m.dependsVia) if (!m.edges.has(id)) addTo(m.dependsMissing, m.nodes.get(r.src)?.source ?? "", id);
  for (const [id, ms] of Object.entries(sourceIntervals)) {
    const src = m.sources.get(id);
    if (src && ms > 0) src.declaredIntervalMs = ms;
  }
  // What the store holds is what was written; the oldest are checked first.
  const stored: (TopoNode | TopoEdge)[] = [...nodes, ...edges];
  stored.sort((a, b) => a.lastSeen - b.lastSeen);
  for (const x of stored) m.persisted.set(x.id, persistRec(m, x.lastSeen, x.lastSeen));
  return m;
}

/**
 * A stored entity as the model keeps its own (see Bag, edgeProps, intern): every row read back from a store carries
 * its own copies of ids, sources, kinds and props, ~3× the memory of a model built from discovery.
 */
function compactNode(m: TopologyModel, n: TopoNode) {
  n.source = intern(m, n.source);
  n.kind = intern(m, n.kind) as TopoNode["kind"];
  for (const [k, v] of Object.entries(n.props)) if (typeof v === "string" && v.length <= 64) n.props[k] = intern(m, v);
}

function compactEdge(m: TopologyModel, e: TopoEdge) {
  e.src = m.nodes.get(e.src)?.id ?? e.src;
  e.dst = m.nodes.get(e.dst)?.id ?? e.dst;
  e.source = intern(m, e.source);
  const p = e.props;
  const keys = Object.keys(p);
  if (!keys.length) e.props = EMPTY_PROPS;
  else if (e.kind === "CONNECTS" && keys.length === 2 && typeof p.proto === "string" && typeof p.port === "number") e.props = edgeProps(m, "CONNECTS", p.proto, p.port);
  else if (e.kind === "DEPENDS_ON" && keys.length === 1 && typeof p.ports === "string") e.props = edgeProps(m, "DEPENDS_ON", p.ports);
}

/** After a restart, the first full scan of a source confirms what still exists; the rest of its entities go. */
export function sweepRecovered(ctx: Ctx) {
  const m = ctx.m;
  // The source's edges, found through its nodes (a CONNECTS or DEPENDS_ON edge starts at a node of its source), so
  // each source's first full scan after a restart costs its own part of the graph, not the whole graph.
  const own = new Set<string>();
  for (const id of m.bySource.get(ctx.source) ?? [])
    for (const eid of m.adjacency.get(id) ?? []) if (m.edges.get(eid)?.source === ctx.source) own.add(eid);
  for (const id of own) if (m.edges.get(id)?.kind === "CONNECTS" && !m.edgeRefs.has(id)) dropEdge(ctx, id);
  // DEPENDS_ON as the surviving pairs say: stored ones nothing backs go, the ports summary is brought up to date, and
  // missing ones (a store written before DEPENDS_ON existed) are made.
  for (const id of own) {
    if (m.edges.get(id)?.kind !== "DEPENDS_ON") continue;
    const r = m.dependsVia.get(id);
    if (r) putDepends(ctx, id, r);
    else dropEdge(ctx, id);
  }
  for (const id of m.dependsMissing.get(ctx.source) ?? []) {
    const r = m.dependsVia.get(id);
    if (r && !m.edges.has(id)) putDepends(ctx, id, r);
  }
  m.dependsMissing.delete(ctx.source);
  for (const id of [...(ctx.m.bySource.get(ctx.source) ?? [])]) {
    const n = ctx.m.nodes.get(id);
    if (!n || n.kind === "host") continue;
    const alive = n.kind === "listener" ? ctx.m.listeners.has(id) : n.kind === "external" ? ctx.m.nodeRefs.has(id) : ctx.m.services.has(id);
    if (!alive) dropNode(ctx, id);
  }
}
