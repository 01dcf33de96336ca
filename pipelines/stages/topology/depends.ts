/**
 * DEPENDS_ON service → service, derived from CONNECTS and LISTENS edge pairs.
 */
import type { TopoEdge } from "../../contracts/topology.ts";
import { servedAtChange } from "./annotations.ts";
import { addTo, removeFrom, slotAdd, slotDelete, slotHas, slotSize } from "./bags.ts";
import { edgeId } from "./ids.ts";
import type { TopologyModel } from "./model.ts";
import type { Ctx } from "./tracker.ts";

/*
 * DEPENDS_ON caller → served service is derived from edges, not from flows: it exists while at least one pair
 * (CONNECTS A → L, LISTENS B → L) does, with A and B services and A ≠ B. Hooked on edge creation and removal, so it
 * follows every way those edges come and go (flows closing, listeners moving to another service, nodes removed, a
 * restart recovered from the store) and costs O(edges of the listener that changed), never a scan of the graph. A
 * restarted server keeps its service id, so its LISTENS edge and the DEPENDS_ON edges on it do not move.
 *
 * This module keeps the pairs (servedBy, dependsVia) and says which DEPENDS_ON edges a change touched; graph.ts, which
 * calls it from putEdge and dropEdge, writes those edges, so the derivation and the edge writes need not import each other.
 */
const isService = (id: string) => id.startsWith("service:");
const NONE: readonly string[] = Object.freeze([]);

/**
 * A new CONNECTS or LISTENS edge: the pairs it makes. Returns the DEPENDS_ON ids that gained a pair, for the caller to
 * write (putDepends), in order. `ctx` is absent while a model is rebuilt from the store (nothing is written then).
 */
export function deriveAdded(m: TopologyModel, e: TopoEdge, ctx?: Ctx): readonly string[] {
  if (!isService(e.src)) return NONE;
  const grew: string[] = [];
  if (e.kind === "LISTENS") {
    addTo(m.servedBy, e.dst, e.src);
    servedAtChange(m, e.src, e.dst, 1, ctx);
    for (const eid of m.adjacency.get(e.dst) ?? []) {
      const c = m.edges.get(eid);
      if (c?.kind === "CONNECTS" && c.dst === e.dst && isService(c.src) && c.src !== e.src) dependsLink(m, c.src, e.src, e.dst, grew);
    }
  } else if (e.dst.startsWith("listener:")) {
    for (const b of m.servedBy.get(e.dst) ?? []) if (b !== e.src) dependsLink(m, e.src, b, e.dst, grew);
  }
  return grew.length ? grew : NONE;
}

/**
 * A removed CONNECTS or LISTENS edge: the pairs it takes away. Returns the DEPENDS_ON ids that lost a pair, in order:
 * the caller rewrites those that still have one (in m.dependsVia) and drops the others.
 */
export function deriveDropped(ctx: Ctx, e: TopoEdge): readonly string[] {
  const m = ctx.m;
  if (!isService(e.src)) return NONE;
  const shrank: string[] = [];
  if (e.kind === "LISTENS") {
    removeFrom(m.servedBy, e.dst, e.src);
    servedAtChange(m, e.src, e.dst, -1, ctx);
    for (const eid of m.adjacency.get(e.dst) ?? []) {
      const c = m.edges.get(eid);
      if (c?.kind === "CONNECTS" && c.dst === e.dst && isService(c.src) && c.src !== e.src) dependsUnlink(m, c.src, e.src, e.dst, shrank);
    }
  } else if (e.dst.startsWith("listener:")) {
    for (const b of m.servedBy.get(e.dst) ?? []) if (b !== e.src) dependsUnlink(m, e.src, b, e.dst, shrank);
  }
  return shrank.length ? shrank : NONE;
}

function dependsLink(m: TopologyModel, a: string, b: string, listener: string, grew: string[]) {
  const id = edgeId("DEPENDS_ON", a, b);
  let r = m.dependsVia.get(id);
  if (!r) m.dependsVia.set(id, (r = { src: a, dst: b, via: undefined }));
  if (slotHas(r.via, listener)) return;
  r.via = slotAdd(r.via, listener);
  grew.push(id);
}

function dependsUnlink(m: TopologyModel, a: string, b: string, listener: string, shrank: string[]) {
  const id = edgeId("DEPENDS_ON", a, b);
  const r = m.dependsVia.get(id);
  if (!r || !slotHas(r.via, listener)) return;
  r.via = slotDelete(r.via, listener);
  if (!slotSize(r.via)) m.dependsVia.delete(id);
  shrank.push(id);
}
