/**
 * Impact analysis (pure): what is affected when an entity fails (upstream) and what it relies on (downstream).
 *
 * Dependency semantics on the graph model — "A depends on B" (A fails when B fails):
 *   - CONNECTS  src → dst : the caller (process, or host when the process was not visible) depends on what it calls
 *                           (a listener or an external endpoint).                       A = src, B = dst
 *   - LISTENS   src → dst : a listener depends on the process (or host) that serves it.  A = dst, B = src
 *   - RUNS      src → dst : a process depends on the host it runs on.                    A = dst, B = src
 * So a client process -CONNECTS-> listener <-LISTENS- server process <-RUNS- host reads "client depends on listener,
 * listener on server, server on host". DEPENDS_ON (service → service) is derived from exactly such CONNECTS + LISTENS
 * pairs, so it is not indexed: it would add nothing reachable, only shorten hop counts.
 *
 * upstream(X)   = everything that depends on X, transitively (callers of callers …): the blast radius of X failing.
 * downstream(X) = everything X depends on, transitively: where to look for X's root cause.
 * `hops` counts graph edges along the shortest dependency path (client process → its server process is 2 hops:
 * through the listener). Kind filters select which affected nodes are reported; traversal always passes through every
 * kind, since a process reaches its callers only through its listeners.
 *
 * ImpactIndex keeps both directions as adjacency maps and is updated from deltas, so a query walks only the edges it
 * reaches (no scan of all edges): breadth-first search from the roots, bounded by hops and by a result limit.
 */
import type { EdgeKind, NodeKind, TopoEdge, TopologyDelta } from "../contracts/topology.ts";
import type { Mirror } from "./apply-delta.ts";

export type Direction = "up" | "down" | "both";

export interface ImpactQuery {
  /** one entity, or several (e.g. the entities an alert maps to); hops are counted from the nearest root */
  ids: string[];
  direction: Direction;
  /** maximum path length in edges (≥ 1) */
  hops: number;
  /** report only these node kinds (all when empty or absent) */
  kinds?: NodeKind[];
  /** stop after this many affected nodes per direction */
  limit?: number;
}

export interface Affected {
  id: string;
  kind: NodeKind | "unknown";
  hops: number;
  /** the node it was reached through (the previous step on a shortest path) */
  via: string;
}

export interface ImpactResult {
  rev: number;
  roots: string[];
  /** root ids that are not in the graph */
  missing: string[];
  upstream: Affected[];
  downstream: Affected[];
  /** true when a direction hit `limit` before exhausting `hops` */
  truncated: boolean;
}

/** Which end depends on which, per edge kind (see the header). */
export function dependencyOf(e: Pick<TopoEdge, "kind" | "src" | "dst">): { dependant: string; dependency: string } {
  return e.kind === "CONNECTS" ? { dependant: e.src, dependency: e.dst } : { dependant: e.dst, dependency: e.src };
}

type Adj = Map<string, Map<string, string>>; // node → (edge id → neighbour)

export class ImpactIndex {
  rev = 0;
  private kinds = new Map<string, NodeKind>();
  /** dependant → its dependencies */
  private dependsOn: Adj = new Map();
  /** dependency → its dependants */
  private dependedBy: Adj = new Map();
  private ends = new Map<string, { dependant: string; dependency: string }>();

  static fromMirror(m: Pick<Mirror, "rev" | "nodes" | "edges">): ImpactIndex {
    const ix = new ImpactIndex();
    ix.rev = m.rev;
    for (const n of m.nodes.values()) ix.kinds.set(n.id, n.kind);
    for (const e of m.edges.values()) ix.putEdge(e);
    return ix;
  }

  get size(): { nodes: number; edges: number } {
    return { nodes: this.kinds.size, edges: this.ends.size };
  }

  /**
   * Applies the next delta. Returns false (changing nothing) for an old rev, and for a gap — the caller then rebuilds
   * from its mirror, as the gateway does on a gap.
   */
  applyDelta(d: Pick<TopologyDelta, "rev" | "nodesUpserted" | "nodesRemoved" | "edgesUpserted" | "edgesRemoved">): boolean {
    if (d.rev !== this.rev + 1) return false;
    for (const n of d.nodesUpserted) this.kinds.set(n.id, n.kind);
    for (const e of d.edgesUpserted) this.putEdge(e);
    for (const id of d.edgesRemoved) this.dropEdge(id);
    for (const id of d.nodesRemoved) this.dropNode(id);
    this.rev = d.rev;
    return true;
  }

  private putEdge(e: Pick<TopoEdge, "id" | "kind" | "src" | "dst">) {
    if (e.kind === "DEPENDS_ON") return; // derived from CONNECTS + LISTENS (see the header)
    if (this.ends.has(e.id)) this.dropEdge(e.id);
    const d = dependencyOf(e);
    this.ends.set(e.id, d);
    link(this.dependsOn, d.dependant, e.id, d.dependency);
    link(this.dependedBy, d.dependency, e.id, d.dependant);
  }

  private dropEdge(id: string) {
    const d = this.ends.get(id);
    if (!d) return;
    this.ends.delete(id);
    unlink(this.dependsOn, d.dependant, id);
    unlink(this.dependedBy, d.dependency, id);
  }

  private dropNode(id: string) {
    // The topology stage removes a node's edges first; a node removed alone must not leave dangling adjacency.
    for (const eid of [...(this.dependsOn.get(id)?.keys() ?? []), ...(this.dependedBy.get(id)?.keys() ?? [])]) this.dropEdge(eid);
    this.kinds.delete(id);
  }

  has(id: string): boolean {
    return this.kinds.has(id);
  }

  kindOf(id: string): NodeKind | "unknown" {
    return this.kinds.get(id) ?? "unknown";
  }

  /** The affected set in one direction: breadth-first, so each node's hops is its shortest path length. */
  walk(roots: string[], dir: "up" | "down", hops: number, kinds: ReadonlySet<string> | null, limit: number): { affected: Affected[]; truncated: boolean } {
    const adj = dir === "up" ? this.dependedBy : this.dependsOn;
    const seen = new Set<string>(roots);
    const out: Affected[] = [];
    let frontier = roots;
    for (let h = 1; h <= hops && frontier.length; h++) {
      const next: string[] = [];
      for (const n of frontier) {
        const nbrs = adj.get(n);
        if (!nbrs) continue;
        for (const m of nbrs.values()) {
          if (seen.has(m)) continue;
          seen.add(m);
          next.push(m);
          const kind = this.kindOf(m);
          if (kinds && !kinds.has(kind)) continue;
          out.push({ id: m, kind, hops: h, via: n });
          if (out.length >= limit) return { affected: out, truncated: true };
        }
      }
      frontier = next;
    }
    return { affected: out, truncated: false };
  }
}

function link(adj: Adj, from: string, edge: string, to: string) {
  let m = adj.get(from);
  if (!m) adj.set(from, (m = new Map()));
  m.set(edge, to);
}

function unlink(adj: Adj, from: string, edge: string) {
  const m = adj.get(from);
  if (!m) return;
  m.delete(edge);
  if (!m.size) adj.delete(from);
}

export const DEFAULT_IMPACT_LIMIT = 10_000;

/** Upstream and/or downstream of the roots, up to `hops` edges away. */
export function impact(ix: ImpactIndex, q: ImpactQuery): ImpactResult {
  const roots = [...new Set(q.ids)];
  const present = roots.filter((id) => ix.has(id));
  const kinds = q.kinds?.length ? new Set<string>(q.kinds) : null;
  const limit = q.limit ?? DEFAULT_IMPACT_LIMIT;
  const up = q.direction === "down" ? { affected: [], truncated: false } : ix.walk(present, "up", q.hops, kinds, limit);
  const down = q.direction === "up" ? { affected: [], truncated: false } : ix.walk(present, "down", q.hops, kinds, limit);
  return {
    rev: ix.rev,
    roots: present,
    missing: roots.filter((id) => !ix.has(id)),
    upstream: up.affected,
    downstream: down.affected,
    truncated: up.truncated || down.truncated,
  };
}

/** Edge kinds, for callers that list the semantics (API docs, dashboard legend). */
export const DEPENDENCY_RULES: Record<EdgeKind, string> = {
  CONNECTS: "src depends on dst (a caller depends on what it calls)",
  LISTENS: "dst depends on src (a listener depends on its serving process)",
  RUNS: "dst depends on src (a process depends on its host)",
  DEPENDS_ON: "src depends on dst (derived from CONNECTS: a service depends on the service it calls; impact walks the CONNECTS path instead)",
};
