/**
 * Node and edge writes: every change to m.nodes and m.edges goes through here, so the tracker sees it and the
 * indexes and the DEPENDS_ON derivation follow.
 */
import type { EdgeKind, TopoEdge, TopoNode } from "../../contracts/topology.ts";
import { addTo, removeFrom, slotValues } from "./bags.ts";
import { deriveAdded, deriveDropped } from "./depends.ts";
import { edgeId } from "./ids.ts";
import { type DependsRec, EMPTY_PROPS, type TopologyModel, edgeProps, sameProps } from "./model.ts";
import type { Ctx } from "./tracker.ts";

export function putNode(ctx: Ctx, id: string, kind: TopoNode["kind"], name: string, props: TopoNode["props"], source = ctx.source) {
  const prev = ctx.m.nodes.get(id);
  const ann = ctx.m.annotated.get(id);
  if (ann) props = { ...props, ...ann.props, annotatedBy: ann.by };
  if (prev && prev.name === name && prev.source === source && sameProps(prev.props, props)) {
    prev.lastSeen = ctx.now;
    return;
  }
  ctx.t.touchNode(id);
  if (prev && prev.source !== source) removeFrom(ctx.m.bySource, prev.source, id, false);
  if (!prev || prev.source !== source) indexSource(ctx.m, source, id);
  ctx.m.nodes.set(id, { id: prev?.id ?? id, kind, name, source, props, firstSeen: (prev ?? ctx.t.nodeBefore(id))?.firstSeen ?? ctx.now, lastSeen: ctx.now });
}

export function indexSource(m: TopologyModel, source: string, id: string) {
  addTo(m.bySource, source, id);
}

/**
 * Returns the edge's id, the model's own copy of the string when it has one (callers keep it: one string per id).
 * `props` are shared between edges (see edgeProps): never changed in place.
 */
export function putEdge(ctx: Ctx, kind: EdgeKind, src: string, dst: string, props: TopoEdge["props"] = EMPTY_PROPS, source = ctx.source, knownId?: string): string {
  let id = knownId ?? edgeId(kind, src, dst);
  const prev = ctx.m.edges.get(id);
  if (prev) id = prev.id;
  if (prev && prev.source === source && (prev.props === props || sameProps(prev.props, props))) {
    prev.lastSeen = ctx.now;
    return id;
  }
  ctx.t.touchEdge(id);
  // firstSeen survives a drop and re-creation within one call (a listener changing owner, a restarted server)
  const e: TopoEdge = { id, kind, src, dst, source, props, firstSeen: (prev ?? ctx.t.edgeBefore(id))?.firstSeen ?? ctx.now, lastSeen: ctx.now };
  ctx.m.edges.set(id, e);
  if (!prev) {
    addTo(ctx.m.adjacency, src, id);
    addTo(ctx.m.adjacency, dst, id);
    if (kind === "CONNECTS" || kind === "LISTENS") for (const d of deriveAdded(ctx.m, e, ctx)) putDepends(ctx, d, ctx.m.dependsVia.get(d)!);
  }
  return id;
}

export function dropEdge(ctx: Ctx, id: string) {
  const e = ctx.m.edges.get(id);
  if (!e) return;
  ctx.t.touchEdge(id);
  ctx.m.edges.delete(id);
  ctx.t.dropped.edges++;
  removeFrom(ctx.m.adjacency, e.src, id, false);
  removeFrom(ctx.m.adjacency, e.dst, id, false);
  if (e.kind === "CONNECTS" || e.kind === "LISTENS")
    for (const d of deriveDropped(ctx, e)) {
      const r = ctx.m.dependsVia.get(d);
      if (r) putDepends(ctx, d, r);
      else dropEdge(ctx, d);
    }
  else if (e.kind === "DEPENDS_ON") ctx.m.dependsVia.delete(id);
}

/** The DEPENDS_ON edge as its pairs say: the ports it is reached on ("5432/tcp,5433/tcp"); owned by the caller's source. */
export function putDepends(ctx: Ctx, id: string, r: DependsRec) {
  const ports = new Set<string>();
  for (const l of slotValues(r.via)) {
    const n = ctx.m.nodes.get(l);
    if (n) ports.add(`${n.props.port}/${n.props.proto}`);
  }
  const sorted = [...ports].sort((x, y) => parseInt(x) - parseInt(y) || x.localeCompare(y));
  const source = ctx.m.nodes.get(r.src)?.source ?? ctx.source;
  putEdge(ctx, "DEPENDS_ON", r.src, r.dst, edgeProps(ctx.m, "DEPENDS_ON", sorted.join(",")), source, id);
}

export function dropNode(ctx: Ctx, id: string) {
  const n = ctx.m.nodes.get(id);
  if (!n) return;
  for (const eid of [...(ctx.m.adjacency.get(id) ?? [])]) dropEdge(ctx, eid);
  ctx.m.adjacency.delete(id);
  ctx.t.touchNode(id);
  ctx.m.nodes.delete(id);
  ctx.t.dropped.nodes++;
  ctx.m.nodeRefs.delete(id);
  removeFrom(ctx.m.bySource, n.source, id, false);
  if (n.kind === "external") removeFrom(ctx.m.externalsAt, String(n.props.ip), id);
}
