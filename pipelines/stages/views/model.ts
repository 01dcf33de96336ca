/**
 * What a view is computed from: the topology graph as a mirror holds it (nodes and edges by id, shared with the
 * mirror, not copied), plus the few adjacencies views walk — a service's host (RUNS), a listener's owner (LISTENS),
 * calls in and out (CONNECTS) — kept up to date delta by delta, so a view never scans all edges to find them. And the
 * health overlay (alerts service) as maps, folded from health.state.v1 / health.delta.v1 frames.
 */
import type { EdgeHealth, HealthDelta, HealthEntry, HealthState, ImpactEntry } from "../../contracts/health.ts";
import type { TopoEdge, TopoNode, TopologyDelta } from "../../contracts/topology.ts";
import type { Mirror } from "../apply-delta.ts";
import type { GroupBy } from "../../contracts/view.ts";
import { type NodeRef, PathIndex } from "./keys.ts";

/** A call (CONNECTS) with its ends as NodeRefs: a view reads each end's path entry without a map lookup. */
export interface CallRef {
  edge: TopoEdge;
  src: NodeRef;
  dst: NodeRef;
}

type Bag = Map<string, Set<string>>;
const add = (b: Bag, k: string, v: string) => {
  let s = b.get(k);
  if (!s) b.set(k, (s = new Set()));
  s.add(v);
};
const del = (b: Bag, k: string, v: string) => {
  const s = b.get(k);
  if (!s) return;
  s.delete(v);
  if (!s.size) b.delete(k);
};

export class ViewGraph {
  readonly nodes: ReadonlyMap<string, TopoNode>;
  rev: number;
  edgeCount: () => number;
  /** service → host (RUNS) */
  readonly hostOf = new Map<string, string>();
  /** host → services (RUNS) */
  readonly servicesOf: Bag = new Map();
  /** listener → the service (or host) serving it (LISTENS) */
  readonly ownerOf = new Map<string, string>();
  /** service or host → its listeners (LISTENS) */
  readonly listenersOf: Bag = new Map();
  /** CONNECTS edges by id, and by caller and by callee */
  readonly calls = new Map<string, TopoEdge>();
  readonly callsOut: Bag = new Map();
  readonly callsIn: Bag = new Map();
  /** the same calls with their ends' NodeRefs (what a view's link pass walks) */
  readonly callRefs = new Map<string, CallRef>();
  readonly #refs = new Map<string, NodeRef>();
  /** the edges this graph indexed (a removal names only the id) */
  readonly #kinds = new Map<string, TopoEdge>();
  /** bumped on every change: views compare it to know whether to recompute */
  version = 0;
  readonly #paths = new Map<GroupBy, PathIndex>();
  readonly #pathsUsed = new Map<GroupBy, number>();

  constructor(nodes: ReadonlyMap<string, TopoNode>, edges: Iterable<TopoEdge>, rev: number, edgeCount: () => number) {
    this.nodes = nodes;
    this.rev = rev;
    this.edgeCount = edgeCount;
    for (const e of edges) this.#add(e);
  }

  /** Over a mirror's maps (the mirror applies deltas; call applyDelta with each one after it did). */
  static fromMirror(m: Mirror): ViewGraph {
    return new ViewGraph(m.nodes, m.edges.values(), m.rev, () => m.edges.size);
  }

  /** Follows a delta the mirror (whose node map this shares) has applied. */
  applyDelta(d: Pick<TopologyDelta, "rev" | "edgesUpserted" | "edgesRemoved" | "nodesUpserted" | "nodesRemoved">): void {
    const touched = new Set<string>();
    const placed = (e: TopoEdge | undefined) => {
      if (e && (e.kind === "RUNS" || e.kind === "LISTENS")) touched.add(e.dst);
    };
    for (const id of d.edgesRemoved) {
      placed(this.#kinds.get(id));
      this.#remove(id);
    }
    for (const e of d.edgesUpserted) {
      placed(this.#kinds.get(e.id));
      if (this.#kinds.has(e.id)) this.#remove(e.id);
      this.#add(e);
      placed(e);
    }
    for (const n of d.nodesUpserted) touched.add(n.id);
    for (const id of d.nodesRemoved) {
      touched.add(id);
      const r = this.#refs.get(id);
      if (r) this.#release(r);
    }
    if (this.#paths.size) {
      // what sits under a touched entity is placed through it (a service by its host's tier, a listener by its service's team)
      const dirty = new Set<string>();
      const down = (id: string) => {
        if (dirty.has(id)) return;
        dirty.add(id);
        for (const s of this.servicesOf.get(id) ?? []) down(s);
        for (const l of this.listenersOf.get(id) ?? []) down(l);
      };
      for (const id of touched) down(id);
      for (const p of this.#paths.values()) for (const id of dirty) p.dirty.add(id);
    }
    this.rev = d.rev;
    this.version++;
  }

  #counts: { version: number; hosts: number; services: number; listeners: number; externals: number; stale: number } | null = null;

  /** Entities by kind and stale ones in the graph (counted once per version, whatever the number of views). */
  counts(): { hosts: number; services: number; listeners: number; externals: number; stale: number } {
    if (this.#counts?.version === this.version) return this.#counts;
    let hosts = 0;
    let services = 0;
    let listeners = 0;
    let externals = 0;
    let stale = 0;
    for (const n of this.nodes.values()) {
      if (n.kind === "host") hosts++;
      else if (n.kind === "process") services++;
      else if (n.kind === "listener") listeners++;
      else if (n.kind === "external") externals++;
      if (n.props.health === "stale") stale++;
    }
    this.#counts = { version: this.version, hosts, services, listeners, externals, stale };
    return this.#counts;
  }

  /** The cached entity paths of a grouping (made on first use, kept up to date by applyDelta). */
  paths(by: GroupBy, now = Date.now()): PathIndex {
    let p = this.#paths.get(by);
    if (!p) this.#paths.set(by, (p = new PathIndex(this, by)));
    this.#pathsUsed.set(by, now);
    p.flush();
    return p;
  }

  /** Forgets the groupings no view asked for since `before` (each holds an entry per entity). */
  prunePaths(before: number): void {
    for (const [by, at] of this.#pathsUsed) {
      if (at >= before) continue;
      this.#paths.get(by)?.dispose();
      this.#paths.delete(by);
      this.#pathsUsed.delete(by);
    }
  }

  #add(e: TopoEdge) {
    switch (e.kind) {
      case "RUNS":
        this.hostOf.set(e.dst, e.src);
        add(this.servicesOf, e.src, e.dst);
        break;
      case "LISTENS":
        this.ownerOf.set(e.dst, e.src);
        add(this.listenersOf, e.src, e.dst);
        break;
      case "CONNECTS": {
        this.calls.set(e.id, e);
        add(this.callsOut, e.src, e.id);
        add(this.callsIn, e.dst, e.id);
        const src = this.ref(e.src);
        const dst = this.ref(e.dst);
        src.calls++;
        dst.calls++;
        this.callRefs.set(e.id, { edge: e, src, dst });
        break;
      }
      default:
        return; // DEPENDS_ON is derived from CONNECTS + LISTENS: views walk those
    }
    this.#kinds.set(e.id, e);
  }

  #remove(id: string) {
    const e = this.#kinds.get(id);
    if (!e) return;
    this.#kinds.delete(id);
    switch (e.kind) {
      case "RUNS":
        if (this.hostOf.get(e.dst) === e.src) this.hostOf.delete(e.dst);
        del(this.servicesOf, e.src, e.dst);
        break;
      case "LISTENS":
        if (this.ownerOf.get(e.dst) === e.src) this.ownerOf.delete(e.dst);
        del(this.listenersOf, e.src, e.dst);
        break;
      case "CONNECTS": {
        this.calls.delete(id);
        del(this.callsOut, e.src, id);
        del(this.callsIn, e.dst, id);
        const c = this.callRefs.get(id);
        this.callRefs.delete(id);
        if (c) {
          c.src.calls--;
          c.dst.calls--;
          this.#release(c.src);
          this.#release(c.dst);
        }
        break;
      }
    }
  }

  /** The NodeRef of an id (made on first use; dropped once its node is gone and no call names it). */
  ref(id: string): NodeRef {
    let r = this.#refs.get(id);
    if (!r) this.#refs.set(id, (r = { id, calls: 0, entries: [] }));
    return r;
  }

  #release(r: NodeRef) {
    if (r.calls === 0 && !this.nodes.has(r.id) && this.#refs.get(r.id) === r) this.#refs.delete(r.id);
  }

  /** The name of the host a node runs on (the host node's name, else the id's). */
  readonly hostName = (n: TopoNode): string | undefined => {
    const h = this.hostIdOf(n.id, n);
    return h ? (this.nodes.get(h)?.name ?? h.replace(/^host:/, "")) : undefined;
  };

  /** The host a service, listener or host belongs to (by edge, else by its `host` prop). */
  hostIdOf(id: string, n: TopoNode | undefined = this.nodes.get(id)): string | undefined {
    if (!n) return undefined;
    if (n.kind === "host") return id;
    if (n.kind === "process") return this.hostOf.get(id) ?? (typeof n.props.host === "string" ? `host:${n.props.host}` : undefined);
    if (n.kind === "listener") {
      const o = this.ownerOf.get(id);
      if (o?.startsWith("host:")) return o;
      if (o) return this.hostIdOf(o);
      return typeof n.props.host === "string" ? `host:${n.props.host}` : undefined;
    }
    return undefined;
  }
}

/** The health overlay as maps (gateway: folded from the overlay's frames; time travel: empty). */
export class HealthMaps {
  readonly entities = new Map<string, HealthEntry>();
  readonly edges = new Map<string, EdgeHealth>();
  readonly impact = new Map<string, ImpactEntry>();
  synced = false;
  seq = 0;
  version = 0;

  apply(f: HealthState | HealthDelta): void {
    if (f.schema === "health.state.v1") {
      this.entities.clear();
      this.edges.clear();
      this.impact.clear();
      for (const e of f.entities) this.#fold(e);
      for (const e of f.edges) this.edges.set(e.id, e);
      for (const e of f.impact) this.impact.set(e.id, e);
      this.synced = true;
    } else {
      for (const e of f.entities) this.#fold(e);
      for (const id of f.edgesCleared) this.edges.delete(id);
      for (const e of f.edges) this.edges.set(e.id, e);
      for (const id of f.impactCleared) this.impact.delete(id);
      for (const e of f.impact) this.impact.set(e.id, e);
    }
    this.seq = f.seq;
    this.version++;
  }

  #fold(e: HealthEntry) {
    if (e.health === "ok" && e.alerts.length === 0) this.entities.delete(e.id);
    else this.entities.set(e.id, e);
  }
}
