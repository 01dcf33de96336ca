/**
 * Health on the topology (pure): given the health of entities (from the alerts stage) and the live graph, what is
 * impacted — every entity that depends, transitively, on an unhealthy one (its upstream, pipelines/stages/impact.ts)
 * with the causes and their distance — and which CONNECTS edges carry an unhealthy endpoint's state (edges into an
 * unhealthy listener, or into a listener of an unhealthy process or host).
 *
 * Incremental: each unhealthy entity ("root") keeps its own walk; a health change re-walks only that root, and a
 * topology delta re-walks only the roots whose walk reached one of the delta's endpoints (a new edge can only extend
 * a walk at a node the walk already reached; a removed one can only cut it there). `flush()` returns the net change
 * against what was last returned, so the caller publishes deltas, never the full set.
 * DEPENDS_ON edges (derived process → process shortcuts of CONNECTS) are left out: the CONNECTS/LISTENS path they
 * summarise is walked anyway, and counting them would shorten hops.
 */
import type { EdgeKind, TopoEdge, TopologyDelta } from "../contracts/topology.ts";
import type { EdgeHealth, EntityHealth, ImpactCause, ImpactEntry } from "../contracts/health.ts";
import type { Mirror } from "./apply-delta.ts";
import { ImpactIndex } from "./impact.ts";

/** Causes listed per impacted entity (the nearest ones); `causesTotal` has the full count. */
export const MAX_CAUSES = 50;

const RANK: Record<EntityHealth, number> = { ok: 0, unknown: 1, warning: 2, critical: 3 };
export const worseHealth = (a: EntityHealth, b: EntityHealth): EntityHealth => (RANK[b] > RANK[a] ? b : a);

export interface HealthImpactOptions {
  /** how far the impact of one unhealthy entity reaches, in graph edges */
  hops: number;
  /** at most this many impacted entities per unhealthy entity */
  limit: number;
}
export const DEFAULT_HEALTH_IMPACT: HealthImpactOptions = { hops: 8, limit: 10_000 };

export interface HealthImpactChange {
  impact: ImpactEntry[];
  impactCleared: string[];
  edges: EdgeHealth[];
  edgesCleared: string[];
}

type EdgeEnds = { kind: EdgeKind; src: string; dst: string };

export class HealthImpact {
  readonly opts: HealthImpactOptions;
  #ix = new ImpactIndex();
  #edges = new Map<string, EdgeEnds>();
  #out = new Map<string, Set<string>>();
  #in = new Map<string, Set<string>>();
  /** unhealthy entities and their health */
  #roots = new Map<string, EntityHealth>();
  /** root → (affected id → hops) */
  #reach = new Map<string, Map<string, number>>();
  /** affected id → (root → hops) */
  #by = new Map<string, Map<string, number>>();
  /** root → the CONNECTS edges it colours */
  #rootEdges = new Map<string, Set<string>>();
  /** edge → roots colouring it */
  #edgeRoots = new Map<string, Set<string>>();
  #dirtyRoots = new Set<string>();
  #dirtyImpact = new Set<string>();
  #dirtyEdges = new Set<string>();
  #impact = new Map<string, ImpactEntry>();
  #edgeState = new Map<string, EdgeHealth>();

  constructor(opts: Partial<HealthImpactOptions> = {}) {
    this.opts = { ...DEFAULT_HEALTH_IMPACT, ...opts };
  }

  get rev(): number {
    return this.#ix.rev;
  }

  /** Rebuilds the graph side from a mirror (first sync, resync, gap); every root is walked again at the next flush. */
  reset(m: Pick<Mirror, "rev" | "nodes" | "edges">): void {
    this.#edges.clear();
    this.#out.clear();
    this.#in.clear();
    const edges = new Map<string, TopoEdge>();
    for (const e of m.edges.values()) {
      if (e.kind === "DEPENDS_ON") continue;
      edges.set(e.id, e);
      this.#putEdge(e);
    }
    this.#ix = ImpactIndex.fromMirror({ rev: m.rev, nodes: m.nodes, edges });
    for (const r of this.#roots.keys()) this.#dirtyRoots.add(r);
    // roots that were walked before but are gone from the graph must be un-walked too
    for (const r of this.#reach.keys()) this.#dirtyRoots.add(r);
  }

  /** Applies the next topology delta; false (nothing changed) for an old rev or a gap — then call reset(). */
  applyDelta(d: Pick<TopologyDelta, "rev" | "nodesUpserted" | "nodesRemoved" | "edgesUpserted" | "edgesRemoved">): boolean {
    if (d.rev !== this.#ix.rev + 1) return false;
    const ends: string[] = [];
    for (const e of d.edgesUpserted) ends.push(e.src, e.dst);
    for (const id of d.edgesRemoved) {
      const e = this.#edges.get(id);
      if (e) ends.push(e.src, e.dst);
    }
    for (const n of d.nodesUpserted) ends.push(n.id);
    ends.push(...d.nodesRemoved);
    for (const id of ends) {
      if (this.#roots.has(id) || this.#reach.has(id)) this.#dirtyRoots.add(id);
      for (const r of this.#by.get(id)?.keys() ?? []) this.#dirtyRoots.add(r);
    }
    const edgesUpserted = d.edgesUpserted.filter((e) => e.kind !== "DEPENDS_ON");
    this.#ix.applyDelta({ ...d, edgesUpserted });
    for (const id of d.edgesRemoved) this.#dropEdge(id);
    for (const e of edgesUpserted) this.#putEdge(e);
    for (const n of d.nodesRemoved) for (const id of [...(this.#out.get(n) ?? []), ...(this.#in.get(n) ?? [])]) this.#dropEdge(id);
    return true;
  }

  /** The health of one entity changed ("ok" = no longer a root). */
  setHealth(id: string, health: EntityHealth): void {
    const before = this.#roots.get(id);
    if (health === "ok") {
      if (before === undefined) return;
      this.#roots.delete(id);
    } else {
      if (before === health) return;
      this.#roots.set(id, health);
    }
    this.#dirtyRoots.add(id);
  }

  /** Re-walks what changed and returns the net change since the last flush. */
  flush(): HealthImpactChange {
    for (const r of this.#dirtyRoots) this.#walkRoot(r);
    this.#dirtyRoots.clear();
    const out: HealthImpactChange = { impact: [], impactCleared: [], edges: [], edgesCleared: [] };
    for (const id of this.#dirtyImpact) {
      const next = this.#entryOf(id);
      const prev = this.#impact.get(id);
      if (!next) {
        if (prev) {
          this.#impact.delete(id);
          out.impactCleared.push(id);
        }
      } else if (!prev || !sameImpact(prev, next)) {
        this.#impact.set(id, next);
        out.impact.push(next);
      }
    }
    this.#dirtyImpact.clear();
    for (const id of this.#dirtyEdges) {
      const next = this.#edgeOf(id);
      const prev = this.#edgeState.get(id);
      if (!next) {
        if (prev) {
          this.#edgeState.delete(id);
          out.edgesCleared.push(id);
        }
      } else if (!prev || prev.health !== next.health || prev.cause !== next.cause || prev.src !== next.src || prev.dst !== next.dst) {
        this.#edgeState.set(id, next);
        out.edges.push(next);
      }
    }
    this.#dirtyEdges.clear();
    return out;
  }

  /** Everything currently impacted / coloured, as last flushed. */
  state(): { impact: ImpactEntry[]; edges: EdgeHealth[] } {
    return { impact: [...this.#impact.values()], edges: [...this.#edgeState.values()] };
  }

  impactOf(id: string): ImpactEntry | undefined {
    return this.#impact.get(id);
  }

  #putEdge(e: Pick<TopoEdge, "id" | "kind" | "src" | "dst">) {
    if (this.#edges.has(e.id)) this.#dropEdge(e.id);
    this.#edges.set(e.id, { kind: e.kind, src: e.src, dst: e.dst });
    addTo(this.#out, e.src, e.id);
    addTo(this.#in, e.dst, e.id);
  }

  #dropEdge(id: string) {
    const e = this.#edges.get(id);
    if (!e) return;
    this.#edges.delete(id);
    delFrom(this.#out, e.src, id);
    delFrom(this.#in, e.dst, id);
  }

  #walkRoot(r: string) {
    // undo the old walk
    for (const a of this.#reach.get(r)?.keys() ?? []) {
      const m = this.#by.get(a);
      if (m) {
        m.delete(r);
        if (!m.size) this.#by.delete(a);
      }
      this.#dirtyImpact.add(a);
    }
    this.#reach.delete(r);
    for (const e of this.#rootEdges.get(r) ?? []) {
      const s = this.#edgeRoots.get(e);
      if (s) {
        s.delete(r);
        if (!s.size) this.#edgeRoots.delete(e);
      }
      this.#dirtyEdges.add(e);
    }
    this.#rootEdges.delete(r);

    if (!this.#roots.has(r) || !this.#ix.has(r)) return;
    const { affected } = this.#ix.walk([r], "up", this.opts.hops, null, this.opts.limit);
    const reach = new Map<string, number>();
    for (const a of affected) {
      reach.set(a.id, a.hops);
      let m = this.#by.get(a.id);
      if (!m) this.#by.set(a.id, (m = new Map()));
      m.set(r, a.hops);
      this.#dirtyImpact.add(a.id);
    }
    this.#reach.set(r, reach);
    const edges = this.#servingEdges(r);
    if (edges.size) {
      this.#rootEdges.set(r, edges);
      for (const e of edges) {
        addTo(this.#edgeRoots, e, r);
        this.#dirtyEdges.add(e);
      }
    }
  }

  /** CONNECTS edges into what `r` serves: itself (a listener, an external), its listeners (a process), its processes' listeners (a host). */
  #servingEdges(r: string): Set<string> {
    const kind = this.#ix.kindOf(r);
    const targets: string[] = [];
    const outOf = (id: string, k: EdgeKind) => [...(this.#out.get(id) ?? [])].map((e) => this.#edges.get(e)!).filter((e) => e.kind === k).map((e) => e.dst);
    if (kind === "listener" || kind === "external") targets.push(r);
    else if (kind === "process") targets.push(...outOf(r, "LISTENS"));
    else if (kind === "host") for (const p of outOf(r, "RUNS")) targets.push(...outOf(p, "LISTENS"));
    const out = new Set<string>();
    for (const t of targets) for (const e of this.#in.get(t) ?? []) if (this.#edges.get(e)!.kind === "CONNECTS") out.add(e);
    return out;
  }

  #entryOf(id: string): ImpactEntry | null {
    const m = this.#by.get(id);
    if (!m?.size) return null;
    const causes: ImpactCause[] = [];
    let health: EntityHealth = "ok";
    for (const [r, hops] of m) {
      const h = this.#roots.get(r) ?? "unknown";
      causes.push({ id: r, health: h, hops });
      health = worseHealth(health, h);
    }
    causes.sort((a, b) => a.hops - b.hops || RANK[b.health] - RANK[a.health] || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return { id, health, hops: causes[0]!.hops, causes: causes.slice(0, MAX_CAUSES), causesTotal: causes.length };
  }

  #edgeOf(id: string): EdgeHealth | null {
    const roots = this.#edgeRoots.get(id);
    const e = this.#edges.get(id);
    if (!roots?.size || !e) return null;
    let cause = "";
    let health: EntityHealth = "ok";
    for (const r of [...roots].sort()) {
      const h = this.#roots.get(r) ?? "unknown";
      if (!cause || RANK[h] > RANK[health]) {
        cause = r;
        health = h;
      }
    }
    return { id, src: e.src, dst: e.dst, health, cause };
  }
}

function sameImpact(a: ImpactEntry, b: ImpactEntry): boolean {
  if (a.health !== b.health || a.hops !== b.hops || a.causesTotal !== b.causesTotal || a.causes.length !== b.causes.length) return false;
  return a.causes.every((c, i) => c.id === b.causes[i]!.id && c.hops === b.causes[i]!.hops && c.health === b.causes[i]!.health);
}

function addTo(m: Map<string, Set<string>>, k: string, v: string) {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
}

function delFrom(m: Map<string, Set<string>>, k: string, v: string) {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (!s.size) m.delete(k);
}
