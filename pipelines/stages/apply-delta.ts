/** Pure: fold topology deltas into a mirror of the graph (gateway mirror, dashboard state, tests). */
import type { TopoEdge, TopoNode, TopologyDelta, TopologySnapshot } from "../contracts/topology.ts";

export interface Mirror {
  rev: number;
  nodes: Map<string, TopoNode>;
  edges: Map<string, TopoEdge>;
}

export function emptyMirror(): Mirror {
  return { rev: 0, nodes: new Map(), edges: new Map() };
}

export function mirrorFromSnapshot(s: Pick<TopologySnapshot, "rev" | "nodes" | "edges">): Mirror {
  return {
    rev: s.rev,
    nodes: new Map(s.nodes.map((n) => [n.id, n])),
    edges: new Map(s.edges.map((e) => [e.id, e])),
  };
}

/** Applies a delta if it is the next one; returns false (and changes nothing) for an old or duplicate rev. */
export function applyDelta(m: Mirror, d: Pick<TopologyDelta, "rev" | "nodesUpserted" | "nodesRemoved" | "edgesUpserted" | "edgesRemoved">): boolean {
  if (d.rev <= m.rev) return false;
  for (const n of d.nodesUpserted) m.nodes.set(n.id, n);
  for (const e of d.edgesUpserted) m.edges.set(e.id, e);
  for (const id of d.edgesRemoved) m.edges.delete(id);
  for (const id of d.nodesRemoved) m.nodes.delete(id);
  m.rev = d.rev;
  return true;
}

export function snapshotOf(m: Mirror, at: number): TopologySnapshot {
  return { schema: "topology.snapshot.v1", rev: m.rev, at, nodes: [...m.nodes.values()], edges: [...m.edges.values()] };
}
