/**
 * What a WebSocket client of the gateway holds, reduced to what a bench counts: every node's and edge's kind and
 * whether it is in scope (the simulated estate, by its source), kept from the frames as a dashboard keeps them —
 * a snapshot (one frame, or begin / chunks / end) built aside while deltas are held, then the held deltas past its
 * rev applied at its end. Ids and kinds only, so it holds a 10k-host estate in little memory.
 */

interface Item {
  id: string;
  kind: string;
  source: string;
}
interface Delta {
  rev: number;
  nodesUpserted: Item[];
  nodesRemoved: string[];
  edgesUpserted: Item[];
  edgesRemoved: string[];
}

/** Node and edge counts per kind. */
export interface KindCounts {
  nodes: Record<string, number>;
  edges: Record<string, number>;
}

class Side {
  /** id → kind, and whether in scope (a one-character prefix: "+" in scope, "-" not) */
  readonly items = new Map<string, string>();
  readonly all: Record<string, number> = {};
  readonly scoped: Record<string, number> = {};
  constructor(private readonly inScope: (source: string) => boolean) {}
  upsert(x: Item) {
    const tag = (this.inScope(x.source) ? "+" : "-") + x.kind;
    const old = this.items.get(x.id);
    if (old === tag) return;
    if (old !== undefined) this.count(old, -1);
    this.items.set(x.id, tag);
    this.count(tag, 1);
  }
  remove(id: string) {
    const old = this.items.get(id);
    if (old === undefined) return;
    this.items.delete(id);
    this.count(old, -1);
  }
  private count(tag: string, by: number) {
    const kind = tag.slice(1);
    this.all[kind] = (this.all[kind] ?? 0) + by;
    if (tag[0] === "+") this.scoped[kind] = (this.scoped[kind] ?? 0) + by;
  }
}

export class TopologyCount {
  private nodes: Side;
  private edges: Side;
  rev = -1;
  /** a snapshot being received: built aside, with the deltas that arrived meanwhile */
  private pending: { rev: number; nodes: Side; edges: Side; held: Delta[]; chunks: number } | null = null;
  /** complete snapshots received (the first, and one per resync) */
  snapshots = 0;
  /** items (node and edge upserts and removals) in the deltas applied */
  deltaItems = 0;
  deltas = 0;
  /** frames out of order: a chunk or end without its begin, an end whose chunk count differs */
  anomalies: string[] = [];

  constructor(private readonly inScope: (source: string) => boolean) {
    this.nodes = new Side(inScope);
    this.edges = new Side(inScope);
  }

  /**
   * One parsed frame. Returns "snapshot" when it completed a snapshot (a whole `topology.snapshot.v1`, or the `end`
   * of a streamed one), "delta" for a topology delta, null for anything else (health frames).
   */
  apply(f: { schema: string } & Record<string, unknown>): "snapshot" | "delta" | null {
    switch (f.schema) {
      case "topology.snapshot.v1": {
        this.pending = null;
        this.install(f.rev as number, f.nodes as Item[], f.edges as Item[]);
        return "snapshot";
      }
      case "topology.snapshot.begin.v1":
        this.pending = { rev: f.rev as number, nodes: new Side(this.inScope), edges: new Side(this.inScope), held: [], chunks: 0 };
        return null;
      case "topology.snapshot.chunk.v1": {
        const p = this.pending;
        if (!p || p.rev !== f.rev) {
          this.anomalies.push(`chunk of rev ${String(f.rev)} without its begin`);
          return null;
        }
        p.chunks++;
        for (const n of (f.nodes as Item[] | undefined) ?? []) p.nodes.upsert(n);
        for (const e of (f.edges as Item[] | undefined) ?? []) p.edges.upsert(e);
        return null;
      }
      case "topology.snapshot.end.v1": {
        const p = this.pending;
        if (!p || p.rev !== f.rev) {
          this.anomalies.push(`end of rev ${String(f.rev)} without its begin`);
          return null;
        }
        if (p.chunks !== f.chunks) this.anomalies.push(`snapshot rev ${p.rev}: ${p.chunks} chunks received, end says ${String(f.chunks)}`);
        this.pending = null;
        this.nodes = p.nodes;
        this.edges = p.edges;
        this.rev = p.rev;
        this.snapshots++;
        for (const d of p.held) if (d.rev > this.rev) this.applyDelta(d);
        return "snapshot";
      }
      case "topology.delta.v1": {
        const d = f as unknown as Delta;
        if (this.pending) this.pending.held.push(d);
        else if (d.rev > this.rev) this.applyDelta(d);
        return "delta";
      }
      default:
        return null;
    }
  }

  private install(rev: number, nodes: Item[], edges: Item[]) {
    this.nodes = new Side(this.inScope);
    this.edges = new Side(this.inScope);
    for (const n of nodes) this.nodes.upsert(n);
    for (const e of edges) this.edges.upsert(e);
    this.rev = rev;
    this.snapshots++;
  }

  private applyDelta(d: Delta) {
    for (const n of d.nodesUpserted) this.nodes.upsert(n);
    for (const e of d.edgesUpserted) this.edges.upsert(e);
    for (const id of d.edgesRemoved) this.edges.remove(id);
    for (const id of d.nodesRemoved) this.nodes.remove(id);
    this.deltaItems += d.nodesUpserted.length + d.nodesRemoved.length + d.edgesUpserted.length + d.edgesRemoved.length;
    this.deltas++;
    this.rev = d.rev;
  }

  /** Counts per kind: everything, or only what is in scope. */
  counts(scope: "all" | "scoped" = "scoped"): KindCounts {
    const pick = (s: Side) => Object.fromEntries(Object.entries(scope === "all" ? s.all : s.scoped).filter(([, n]) => n !== 0));
    return { nodes: pick(this.nodes), edges: pick(this.edges) };
  }

  /** Node ids of a kind, in scope, that `test` picks (e.g. externals on a simulated host's address). */
  nodeIds(kind: string, test: (id: string) => boolean = () => true): string[] {
    const out: string[] = [];
    for (const [id, tag] of this.nodes.items) if (tag === `+${kind}` && test(id)) out.push(id);
    return out;
  }
}
