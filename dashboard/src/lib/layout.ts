/**
 * Incremental force layout for the topology canvas. d3-force computes positions; the canvas component draws.
 * The simulation is never driven by d3's own timer: the caller ticks it inside requestAnimationFrame with a time
 * budget, so a 10k-node graph settles over several frames instead of freezing the page.
 */
import {
  forceLink,
  forceManyBody,
  forceSimulation,
  forceX,
  forceY,
  type Simulation,
  type SimulationLinkDatum,
  type SimulationNodeDatum,
} from "d3-force";
import type { EdgeKind, NodeKind } from "../../../pipelines/contracts/topology.ts";
import type { Mirror } from "../../../pipelines/stages/apply-delta.ts";
import { EDGE_KINDS, KIND_RANK, NODE_KINDS, healthOf, type HealthState } from "./colors.ts";

export interface SimNode extends SimulationNodeDatum {
  id: string;
  kind: NodeKind;
  name: string;
  health: HealthState | null;
  /** hops to the nearest unhealthy entity this one depends on (null: not impacted) */
  impactHops: number | null;
  impactHealth: HealthState | null;
  r: number;
  x: number;
  y: number;
}

export interface SimLink extends SimulationLinkDatum<SimNode> {
  id: string;
  kind: EdgeKind;
  source: SimNode;
  target: SimNode;
  /** a CONNECTS edge into an unhealthy listener carries its health */
  health: HealthState | null;
}

const impactOf = (n: { props: Record<string, unknown> }): { hops: number | null; health: HealthState | null } => {
  const hops = n.props.impactHops;
  const h = n.props.impactHealth;
  return { hops: typeof hops === "number" ? hops : null, health: typeof h === "string" ? (h as HealthState) : null };
};
const edgeHealthOf = (e: { props: Record<string, unknown> }): HealthState | null => {
  const h = e.props.alertHealth;
  return h === "critical" || h === "warning" || h === "unknown" ? h : null;
};

export const NODE_RADIUS: Record<NodeKind, number> = { host: 9, process: 4.5, listener: 3, external: 5 };
const LINK_DISTANCE: Record<EdgeKind, number> = { RUNS: 28, LISTENS: 10, CONNECTS: 70, DEPENDS_ON: 90 };
const LINK_STRENGTH: Record<EdgeKind, number> = { RUNS: 0.7, LISTENS: 0.9, CONNECTS: 0.05, DEPENDS_ON: 0 };
const ALL_EDGE_KINDS: readonly EdgeKind[] = [...EDGE_KINDS, "DEPENDS_ON"];
const GOLDEN_ANGLE = Math.PI * (3 - Math.sqrt(5));
/** Reheat cap for incremental changes: a delta nudges the layout, it does not reshuffle it. */
const MAX_INCREMENTAL_ALPHA = 0.3;
/** Up to this many nodes a tick costs a few ms, so every structural delta may nudge the whole layout. */
const SMALL_GRAPH = 3000;

export interface SyncResult {
  added: number;
  removed: number;
  /** The node or link set changed (the simulation was reheated). */
  structural: boolean;
}

export interface LayoutOptions {
  /**
   * Lay out and draw DEPENDS_ON edges too. Off by default: they are derived from CONNECTS (a caller → the service
   * listening where it calls) and would draw every call twice.
   */
  dependsOn?: boolean;
}

export class ForceLayout {
  readonly sim: Simulation<SimNode, SimLink>;
  readonly opts: Required<LayoutOptions>;
  nodes: SimNode[] = [];
  links: SimLink[] = [];
  nodesByKind: Record<NodeKind, SimNode[]> = { host: [], process: [], listener: [], external: [] };
  linksByKind: Record<EdgeKind, SimLink[]> = { RUNS: [], LISTENS: [], CONNECTS: [], DEPENDS_ON: [] };
  #byId = new Map<string, SimNode>();
  #linkById = new Map<string, SimLink>();
  #spiral = 0;
  #spacing = 0;

  constructor(opts: LayoutOptions = {}) {
    this.opts = { dependsOn: opts.dependsOn ?? false };
    this.sim = forceSimulation<SimNode, SimLink>()
      .stop()
      .velocityDecay(0.45)
      .force(
        "link",
        forceLink<SimNode, SimLink>()
          .id((d) => d.id)
          .distance((l) => LINK_DISTANCE[l.kind])
          .strength((l) => LINK_STRENGTH[l.kind]),
      )
      .force(
        "charge",
        forceManyBody<SimNode>()
          .strength((d) => (d.kind === "host" ? -160 : -14))
          .theta(0.95)
          .distanceMax(600),
      )
      // Weak pull to the origin keeps disconnected islands (lone hosts, externals) on screen.
      .force("x", forceX<SimNode>(0).strength(0.02))
      .force("y", forceY<SimNode>(0).strength(0.02));
  }

  node(id: string): SimNode | undefined {
    return this.#byId.get(id);
  }

  /** Brings the simulation in line with the mirror: existing nodes keep their positions, new ones start near a neighbour. */
  sync(m: Mirror): SyncResult {
    const first = this.#byId.size === 0;
    const nextById = new Map<string, SimNode>();
    const nodes: SimNode[] = [];
    const fresh: SimNode[] = [];
    for (const n of m.nodes.values()) {
      let s = this.#byId.get(n.id);
      const imp = impactOf(n);
      if (s) {
        s.kind = n.kind;
        s.name = n.name;
        s.health = healthOf(n);
        s.impactHops = imp.hops;
        s.impactHealth = imp.health;
        s.r = NODE_RADIUS[n.kind];
      } else {
        s = { id: n.id, kind: n.kind, name: n.name, health: healthOf(n), impactHops: imp.hops, impactHealth: imp.health, r: NODE_RADIUS[n.kind], x: NaN, y: NaN };
        fresh.push(s);
      }
      nodes.push(s);
      nextById.set(n.id, s);
    }
    const removed = this.#byId.size - (nodes.length - fresh.length);

    const links: SimLink[] = [];
    const nextLinks = new Map<string, SimLink>();
    let linksChanged = false;
    const anchors = fresh.length ? new Map<SimNode, SimNode[]>() : null;
    for (const e of m.edges.values()) {
      if (e.kind === "DEPENDS_ON" && !this.opts.dependsOn) continue;
      const a = nextById.get(e.src);
      const b = nextById.get(e.dst);
      if (!a || !b || a === b) continue;
      let l = this.#linkById.get(e.id);
      if (!l || l.source !== a || l.target !== b || l.kind !== e.kind) {
        l = { id: e.id, kind: e.kind, source: a, target: b, health: null };
        linksChanged = true;
      }
      l.health = edgeHealthOf(e);
      links.push(l);
      nextLinks.set(e.id, l);
      if (anchors) {
        if (Number.isNaN(a.x)) push(anchors, a, b);
        if (Number.isNaN(b.x)) push(anchors, b, a);
      }
    }
    if (nextLinks.size !== this.#linkById.size) linksChanged = true;

    if (fresh.length) this.#place(fresh, anchors!, first, nodes.length);

    this.nodes = nodes;
    this.links = links;
    this.#byId = nextById;
    this.#linkById = nextLinks;
    this.nodesByKind = bucket(nodes, NODE_KINDS, (n) => n.kind);
    this.linksByKind = bucket(links, ALL_EDGE_KINDS, (l) => l.kind);

    const structural = fresh.length > 0 || removed > 0 || linksChanged;
    if (structural) {
      // Bigger graphs cool faster; a tick over 10k nodes is the expensive part.
      const big = nodes.length > SMALL_GRAPH;
      this.sim.alphaDecay(big ? 0.05 : 0.0228);
      this.sim.force<ReturnType<typeof forceManyBody<SimNode>>>("charge")!.theta(big ? 1.2 : 0.9);
      this.sim.nodes(nodes);
      this.sim.force<ReturnType<typeof forceLink<SimNode, SimLink>>>("link")!.links(links);
      // A few new nodes start beside their neighbours and need no global relaxation; reheating a 10k-node layout
      // for every delta would keep the main thread ticking forever under a steady stream. Small graphs tick cheaply.
      const churn = fresh.length + removed;
      const target = first
        ? 1
        : churn > Math.max(50, nodes.length * 0.02)
          ? MAX_INCREMENTAL_ALPHA
          : nodes.length <= SMALL_GRAPH
            ? 0.05
            : 0;
      if (this.sim.alpha() < target) this.sim.alpha(target);
    }
    return { added: fresh.length, removed, structural };
  }

  /** Runs ticks for up to `budgetMs`; returns whether the layout is still moving. */
  step(budgetMs: number): boolean {
    const sim = this.sim;
    if (sim.alpha() < sim.alphaMin() || this.nodes.length === 0) return false;
    const t0 = performance.now();
    do sim.tick();
    while (performance.now() - t0 < budgetMs && sim.alpha() >= sim.alphaMin());
    return sim.alpha() >= sim.alphaMin();
  }

  /** Large-scale motion (a snapshot or a big change settling), as opposed to the gentle nudges deltas cause. */
  get settling(): boolean {
    return this.nodes.length > 0 && this.sim.alpha() > 0.1;
  }

  /** Nearest node within `radius` (world units) of a world point. */
  find(x: number, y: number, radius: number): SimNode | undefined {
    let best: SimNode | undefined;
    let bestD = Infinity;
    for (const n of this.nodes) {
      const dx = n.x - x;
      const dy = n.y - y;
      const d = Math.sqrt(dx * dx + dy * dy) - n.r;
      if (d < radius && d < bestD) {
        best = n;
        bestD = d;
      }
    }
    return best;
  }

  bounds(): { x0: number; y0: number; x1: number; y1: number } | null {
    if (!this.nodes.length) return null;
    let x0 = Infinity,
      y0 = Infinity,
      x1 = -Infinity,
      y1 = -Infinity;
    for (const n of this.nodes) {
      if (n.x < x0) x0 = n.x;
      if (n.x > x1) x1 = n.x;
      if (n.y < y0) y0 = n.y;
      if (n.y > y1) y1 = n.y;
    }
    return { x0, y0, x1, y1 };
  }

  #place(fresh: SimNode[], anchors: Map<SimNode, SimNode[]>, first: boolean, total: number): void {
    // Parents before children (host → process → listener → external), so each can start beside its parent.
    fresh.sort((a, b) => KIND_RANK[a.kind] - KIND_RANK[b.kind]);
    if (first || this.#spacing === 0) {
      const roots = fresh.filter((n) => !anchors.get(n)?.length).length || 1;
      // Lay roots on a sunflower spiral sized so each root has room for its share of the graph.
      this.#spacing = Math.max(40, 14 * Math.sqrt(total / roots));
    }
    for (const s of fresh) {
      const anchor = anchors.get(s)?.find((o) => !Number.isNaN(o.x));
      if (anchor) {
        const a = Math.random() * 2 * Math.PI;
        const d = anchor.r + s.r + 6 + Math.random() * 14;
        s.x = anchor.x + Math.cos(a) * d;
        s.y = anchor.y + Math.sin(a) * d;
      } else {
        const i = this.#spiral++;
        const r = this.#spacing * Math.sqrt(i + 0.5);
        s.x = r * Math.cos(i * GOLDEN_ANGLE);
        s.y = r * Math.sin(i * GOLDEN_ANGLE);
      }
      s.vx = 0;
      s.vy = 0;
    }
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const a = m.get(k);
  if (a) a.push(v);
  else m.set(k, [v]);
}

function bucket<T, K extends string>(items: T[], keys: readonly K[], key: (t: T) => K): Record<K, T[]> {
  const out = Object.fromEntries(keys.map((k) => [k, [] as T[]])) as Record<K, T[]>;
  for (const it of items) out[key(it)].push(it);
  return out;
}
