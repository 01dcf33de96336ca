/**
 * A view (pure): marks and links for a ViewSpec from the topology graph and the health overlay.
 *
 * Every entity (host, service, listener, external) has a path of marks from its group down to itself:
 *   tier / site   group → host → service → listener      (a listener a host serves directly: group → host → listener)
 *   host          group (the host itself) → service → listener
 *   team / owner / component   group → service → listener,  group → host
 *   externals     group:external → external
 * A mark on the path is drawn when every mark above it is open; the entity is counted in the deepest drawn mark (its
 * representative) and in the open marks above it, so a group shows the counts and the worst health of all it holds.
 * An open service shows a process mark (the service's processes, which calls leave from) and its listeners (which
 * calls arrive at); closed, its listeners fold into it (`ports`).
 *
 * Opening is bounded: the view holds at most VIEW_MAX_MARKS marks. Opens are tried in order — the spec's `open` ids
 * first (with the marks above them), then those the level implies, smallest first — and one that would pass the bound
 * stays closed with a note. Calls (CONNECTS) between two representatives are one link with a count and the worst
 * health of its edges. Layers are the longest call path to a mark among the view's marks (callers at 0), so
 * load balancers come before web, app, then databases; a cycle is cut where the walk meets it (deterministically).
 *
 * Cost: one pass over the entities (or only those the filters keep) and one over the CONNECTS edges; at a 10k-host
 * estate (100k nodes / 120k calls) a few tens of milliseconds. Objects are made only for the marks drawn.
 */
import {
  HEALTH_RANK,
  type Link,
  type Mark,
  type MarkHealth,
  VIEW_MAX_LINKS,
  VIEW_MAX_MARKS,
  type ViewSpec,
  type ViewSummary,
} from "../../contracts/view.ts";
import type { TopoNode } from "../../contracts/topology.ts";
import { annotationOf, EXTERNAL_GROUP, groupId, groupKeyOf, MarkTree, type PathEntry } from "./keys.ts";
import type { HealthMaps, ViewGraph } from "./model.ts";
import { nodeLabel } from "./names.ts";

/** Marks carry lastSeen to this grain, so the store's lastSeen trickle does not rewrite every mark each period. */
export const LASTSEEN_GRAIN_MS = 60_000;

export interface ViewInput {
  graph: ViewGraph;
  health: HealthMaps;
  spec: ViewSpec;
  now: number;
  /** when the feeds last said something (summary.dataAgeMs); default now */
  dataAt?: number;
  maxMarks?: number;
  maxLinks?: number;
}

export interface ViewResult {
  marks: Mark[];
  links: Link[];
  summary: ViewSummary;
}

const HEALTH_BY_RANK: MarkHealth[] = ["ok", "unknown", "stale", "warning", "critical"];
/** an open service's process mark (not a node id prefix: node ids are `service:`…, tests use others) */
const PROCESS_PREFIX = "processes-of:";
let stampCounter = 0;
const LEVEL_DEPTH = { groups: 0, hosts: 1, services: 2, detail: 3 } as const;

interface Agg {
  count: number;
  host: number;
  process: number;
  listener: number;
  external: number;
  worst: number;
  critical: number;
  warning: number;
  stale: number;
  impacted: number;
  lastSeen: number;
}
const newAgg = (): Agg => ({ count: 0, host: 0, process: 0, listener: 0, external: 0, worst: 0, critical: 0, warning: 0, stale: 0, impacted: 0, lastSeen: 0 });

/** An entity's own health: the alerts overlay's, or stale when its source went silent (whichever is worse). */
export function healthRank(h: HealthMaps, id: string, n: TopoNode): number {
  const e = h.entities.get(id);
  const a = e ? HEALTH_RANK[e.health] : 0;
  return n.props.health === "stale" ? Math.max(a, HEALTH_RANK.stale) : a;
}

export function computeView(input: ViewInput): ViewResult {
  const { graph: g, health: h, spec, now } = input;
  const maxMarks = input.maxMarks ?? VIEW_MAX_MARKS;
  const maxLinks = input.maxLinks ?? VIEW_MAX_LINKS;
  const by = spec.groupBy;
  const summary = summarize(g, h, now, input.dataAt ?? now);

  // Which entities the view holds: all of them, or those the filters and the focus keep (with what contains them).
  const kept = keptEntities(g, h, spec);

  // Pass 1: the mark tree (parent of each mark, children of each): the grouping's own, kept up to date delta by
  // delta, when the view holds everything; else one made from what the filters keep.
  const paths = g.paths(by, now);
  const stamp = ++stampCounter;
  let tree = paths.tree;
  let list: Iterable<PathEntry> = paths.entries();
  if (kept) {
    tree = new MarkTree();
    const l: PathEntry[] = [];
    for (const id of kept) {
      const n = g.nodes.get(id);
      if (!n) continue;
      const e = paths.get(id, n);
      l.push(e);
      tree.add(e);
    }
    list = l;
  }
  const { parent, kids, groupEntity } = tree;
  const tops = [...tree.tops.keys()];

  // Pass 2: which marks open, within the bound.
  const open = new Set<string>();
  const notes = new Map<string, string>();
  let total = tops.length;
  const isService = (id: string) => g.nodes.get(id)?.kind === "process";
  const childCount = (id: string) => (kids.get(id)?.size ?? 0) + (isService(id) ? 1 : 0);
  const tryOpen = (id: string, explicit: boolean): boolean => {
    if (open.has(id)) return true;
    if (!tree.tops.has(id)) {
      const p = parent.get(id);
      if (p === undefined) return false; // not in this view
      if (!open.has(p) && (!explicit || !tryOpen(p, true))) return false;
    }
    const n = childCount(id);
    if (n === 0) return false;
    if (total + n > maxMarks) {
      notes.set(id, `${n.toLocaleString("en")} marks inside: too many to open here (the view holds ${maxMarks.toLocaleString("en")}); filter, focus or open a smaller group`);
      return false;
    }
    open.add(id);
    total += n;
    return true;
  };
  for (const id of spec.open) tryOpen(id, true);
  const depth = LEVEL_DEPTH[spec.level];
  let layer = [...tops];
  for (let d = 0; d < depth && layer.length; d++) {
    const next: string[] = [];
    const candidates = layer
      .map((id) => ({ id, n: childCount(id) }))
      .filter((c) => c.n > 0)
      .sort((a, b) => a.n - b.n || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const { id } of candidates) {
      if (tryOpen(id, false)) for (const k of kids.get(id) ?? []) next.push(k);
    }
    layer = next;
  }

  // Pass 3: each entity's representative, and the aggregates of the drawn marks. Drawn marks are numbered here, so
  // the links below are keyed by numbers, not by strings built per edge.
  const markIdx = new Map<string, number>();
  const markIds: string[] = [];
  const aggs: Agg[] = [];
  const idx = (m: string) => {
    let i = markIdx.get(m);
    if (i === undefined) {
      i = markIds.length;
      markIdx.set(m, i);
      markIds.push(m);
      aggs.push(newAgg());
    }
    return i;
  };
  const addTo = (a: Agg, n: TopoNode, rank: number, impacted: boolean) => {
    a.count++;
    a[n.kind]++;
    if (rank > a.worst) a.worst = rank;
    if (rank === HEALTH_RANK.critical) a.critical++;
    else if (rank === HEALTH_RANK.warning) a.warning++;
    if (n.props.health === "stale") a.stale++;
    if (impacted) a.impacted++;
    if (n.lastSeen > a.lastSeen) a.lastSeen = n.lastSeen;
  };
  const anyHealth = h.entities.size > 0 || h.impact.size > 0;
  for (const e of list) {
    const p = e.path;
    const n = e.node;
    let i = 0;
    while (i < p.length - 1 && open.has(p[i]!)) i++;
    const rank = anyHealth ? healthRank(h, e.id, n) : n.props.health === "stale" ? HEALTH_RANK.stale : 0;
    const imp = anyHealth && h.impact.has(e.id);
    let rep = 0;
    for (let j = 0; j <= i; j++) addTo(aggs[(rep = idx(p[j]!))]!, n, rank, imp);
    if (n.kind === "process" && i === p.length - 1 && open.has(p[i]!)) {
      rep = idx(PROCESS_PREFIX + p[i]!);
      addTo(aggs[rep]!, n, rank, imp);
    }
    e.rep = rep;
    e.stamp = stamp;
  }

  // Pass 4: links — calls between representatives (one per pair, counted), and an open service's listeners.
  interface Acc {
    a: number;
    b: number;
    kind: "calls" | "listens";
    count: number;
    rank: number;
  }
  // Each call as one number (pair, then health rank in the low 3 bits), sorted: a run of equal pairs is one link,
  // its last entry carries the worst health. A typed-array sort is far cheaper than a map entry per pair.
  const accs: Acc[] = [];
  const anyEdgeHealth = h.edges.size > 0;
  const M = markIds.length + 1;
  const keys = new Float64Array(g.callRefs.size);
  const ord = paths.ordinal;
  let nk = 0;
  for (const c of g.callRefs.values()) {
    const ea = c.src.entries[ord];
    if (ea === undefined || ea.stamp !== stamp) continue;
    const eb = c.dst.entries[ord];
    if (eb === undefined || eb.stamp !== stamp) continue;
    const a = ea.rep;
    const b = eb.rep;
    if (a === b) continue;
    const eh = anyEdgeHealth ? h.edges.get(c.edge.id) : undefined;
    keys[nk++] = (a * M + b) * 8 + (eh ? HEALTH_RANK[eh.health] : 0);
  }
  const sortedKeys = keys.subarray(0, nk).sort();
  for (let i = 0; i < nk; ) {
    const pair = Math.floor(sortedKeys[i]! / 8);
    let j = i;
    while (j + 1 < nk && Math.floor(sortedKeys[j + 1]! / 8) === pair) j++;
    accs.push({ a: Math.floor(pair / M), b: pair % M, kind: "calls", count: j - i + 1, rank: sortedKeys[j]! - pair * 8 });
    i = j + 1;
  }
  for (const s of open) {
    if (!isService(s)) continue;
    const a = idx(PROCESS_PREFIX + s);
    for (const l of kids.get(s) ?? []) accs.push({ a, b: idx(l), kind: "listens", count: 1, rank: 0 });
  }
  let kept_ = accs;
  let linksDropped = 0;
  if (accs.length > maxLinks) {
    const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
    kept_ = [...accs].sort((x, y) => y.rank - x.rank || y.count - x.count || cmp(markIds[x.a]!, markIds[y.a]!) || cmp(markIds[x.b]!, markIds[y.b]!));
    linksDropped = accs.length - maxLinks;
    kept_ = kept_.slice(0, maxLinks);
  }
  const linkList: Link[] = kept_.map((l) => {
    const src = markIds[l.a]!;
    const dst = markIds[l.b]!;
    return { id: `${l.kind}:${src}->${dst}`, src, dst, kind: l.kind, count: l.count, health: HEALTH_BY_RANK[l.rank]! };
  });
  // in id order, so the same graph gives the same frame whatever order its entities arrived in
  linkList.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  const callPairs = kept_.filter((l) => l.kind === "calls");

  // Pass 5: the drawn marks, top-down, with layers from the call links.
  const drawn: { id: string; parent?: string }[] = [];
  const walk = (id: string, par: string | undefined) => {
    drawn.push({ id, parent: par });
    if (!open.has(id)) return;
    if (isService(id)) drawn.push({ id: PROCESS_PREFIX + id, parent: id });
    for (const k of [...(kids.get(id) ?? [])].sort()) walk(k, id);
  };
  for (const t of [...tops].sort()) walk(t, undefined);
  const layerByIdx = layerIndices(markIds, callPairs);
  const layers = new Map<string, number>();
  for (const d of drawn) {
    const i = markIdx.get(d.id);
    layers.set(d.id, i === undefined ? 0 : layerByIdx[i]!);
  }
  // an open mark sits where its leftmost content sits
  for (const id of open) layers.delete(id);
  for (let i = drawn.length - 1; i >= 0; i--) {
    const d = drawn[i]!;
    if (!d.parent) continue;
    const mine = layers.get(d.id) ?? 0;
    if (open.has(d.parent) && (!layers.has(d.parent) || mine < layers.get(d.parent)!)) layers.set(d.parent, mine);
  }

  const hostName = g.hostName;
  const marks: Mark[] = drawn.map(({ id, parent: par }) => {
    const ai = markIdx.get(id);
    const a = ai === undefined ? newAgg() : aggs[ai]!;
    const base = {
      id,
      ...(par ? { parent: par } : {}),
      count: a.count,
      counts: countsOf(a),
      health: HEALTH_BY_RANK[a.worst]!,
      healthCounts: { critical: a.critical, warning: a.warning, stale: a.stale, impacted: a.impacted },
      impacted: a.impacted > 0,
      layer: layers.get(id) ?? 0,
      lastSeen: Math.floor(a.lastSeen / LASTSEEN_GRAIN_MS) * LASTSEEN_GRAIN_MS,
      ...(open.has(id) ? { open: true } : {}),
      ...(notes.has(id) ? { note: notes.get(id)! } : {}),
    };
    if (id.startsWith(PROCESS_PREFIX)) {
      const sid = id.slice(PROCESS_PREFIX.length);
      const n = g.nodes.get(sid)!;
      const procs = typeof n.props.processes === "number" ? n.props.processes : 1;
      const comm = typeof n.props.comm === "string" ? n.props.comm : nodeLabel(n, hostName).label;
      return { ...base, kind: "process", label: `${comm} pid ${n.props.pid ?? "?"}${procs > 1 ? ` +${procs - 1}` : ""}`, sublabel: nodeLabel(n, hostName).sublabel, entityId: sid } as Mark;
    }
    const n = g.nodes.get(id);
    const ge = groupEntity.get(id);
    if (!n) {
      // a group (or a host the graph no longer has, still named by its services' path)
      const label = id === EXTERNAL_GROUP ? "external" : id.startsWith("group:") ? id.slice(id.indexOf(":", 6) + 1) : id.replace(/^host:/, "");
      const extra: Partial<Mark> = {};
      if (by === "team" || by === "owner") extra[by] = label;
      if (ge) {
        const hn = g.nodes.get(ge);
        if (hn) Object.assign(extra, annotations(g, ge, hn));
      }
      return { ...base, kind: "group", label: ge ? (g.nodes.get(ge)?.name ?? label) : label, sublabel: id === EXTERNAL_GROUP ? "outside the estate" : by, ...extra, ...(ge ? { entityId: ge } : {}) } as Mark;
    }
    const kind = n.kind === "process" ? "service" : n.kind;
    const { label, sublabel } = nodeLabel(n, hostName);
    const ports = portsOf(g, id, n);
    return {
      ...base,
      kind,
      label,
      ...(sublabel ? { sublabel } : {}),
      ...(ports.length ? { ports } : {}),
      ...annotations(g, id, n),
      entityId: id,
    } as Mark;
  });

  summary.marks = marks.length;
  summary.links = linkList.length;
  summary.linksDropped = linksDropped;
  return {
    marks,
    links: linkList,
    summary,
  };
}

function countsOf(a: Agg): Record<string, number> {
  const c: Record<string, number> = {};
  if (a.host) c.host = a.host;
  if (a.process) c.process = a.process;
  if (a.listener) c.listener = a.listener;
  if (a.external) c.external = a.external;
  return c;
}

function annotations(g: ViewGraph, id: string, n: TopoNode): { team?: string; owner?: string } {
  if (n.kind === "external") return {};
  const team = annotationOf(g, id, n, "team");
  const owner = annotationOf(g, id, n, "owner");
  return { ...(team !== "unowned" ? { team } : {}), ...(owner !== "unowned" ? { owner } : {}) };
}

/** A service's listening ports (its listeners folded into it), a listener's or an external's port. */
export function portsOf(g: ViewGraph, id: string, n: TopoNode): number[] {
  if (n.kind === "listener" || n.kind === "external") return typeof n.props.port === "number" ? [n.props.port] : [];
  if (n.kind !== "process") return [];
  const ports = new Set<number>();
  for (const l of g.listenersOf.get(id) ?? []) {
    const p = g.nodes.get(l)?.props.port;
    if (typeof p === "number") ports.add(p);
  }
  return [...ports].sort((a, b) => a - b).slice(0, 64);
}

/**
 * Longest-path layers over the call links: a mark is one right of the furthest-right mark calling it; marks nobody
 * calls sit at 0. Cycles are cut at the edge the depth-first walk (in id order) meets closing them.
 */
export function layerMarks(ids: readonly string[], calls: readonly { src: string; dst: string }[]): Map<string, number> {
  const all = [...new Set([...ids, ...calls.flatMap((c) => [c.src, c.dst])])];
  const at = new Map(all.map((id, i) => [id, i]));
  const layer = layerIndices(all, calls.map((c) => ({ a: at.get(c.src)!, b: at.get(c.dst)! })));
  return new Map(all.map((id, i) => [id, layer[i]!]));
}

/** layerMarks over numbered marks (`ids[i]` names mark i; it orders the walk). */
function layerIndices(ids: readonly string[], calls: readonly { a: number; b: number }[]): Int32Array {
  const n = ids.length;
  // out-edges as one sorted array per mark (CSR), targets in id order
  const deg = new Int32Array(n + 1);
  for (const c of calls) deg[c.a + 1]!++;
  for (let i = 0; i < n; i++) deg[i + 1]! += deg[i]!;
  const out = new Int32Array(calls.length);
  const fill = deg.slice(0, n);
  for (const c of calls) out[fill[c.a]!++] = c.b;
  const byId = (x: number, y: number) => (ids[x]! < ids[y]! ? -1 : ids[x]! > ids[y]! ? 1 : 0);
  for (let i = 0; i < n; i++) if (deg[i + 1]! - deg[i]! > 1) out.subarray(deg[i]!, deg[i + 1]!).sort(byId);
  const state = new Uint8Array(n); // 0 new, 1 on the stack, 2 done
  const back = new Uint8Array(calls.length);
  const order: number[] = [];
  const roots = Array.from({ length: n }, (_, i) => i).sort(byId);
  const stack: number[] = [];
  const pos: number[] = [];
  for (const root of roots) {
    if (state[root]) continue;
    stack.push(root);
    pos.push(deg[root]!);
    state[root] = 1;
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      const k = pos[pos.length - 1]!;
      if (k >= deg[top + 1]!) {
        state[top] = 2;
        order.push(top);
        stack.pop();
        pos.pop();
        continue;
      }
      pos[pos.length - 1] = k + 1;
      const next = out[k]!;
      if (state[next] === 1) back[k] = 1;
      else if (state[next] === 0) {
        state[next] = 1;
        stack.push(next);
        pos.push(deg[next]!);
      }
    }
  }
  const layer = new Int32Array(n);
  for (let i = order.length - 1; i >= 0; i--) {
    const v = order[i]!;
    for (let k = deg[v]!; k < deg[v + 1]!; k++) {
      if (back[k]) continue;
      const d = out[k]!;
      if (layer[d]! < layer[v]! + 1) layer[d] = layer[v]! + 1;
    }
  }
  return layer;
}

/** The whole estate at a glance (not filtered). */
export function summarize(g: ViewGraph, h: HealthMaps, now: number, dataAt: number): ViewSummary {
  const { hosts, services, listeners, externals, stale } = g.counts();
  let worst = stale ? HEALTH_RANK.stale : 0;
  let criticals = 0;
  let warnings = 0;
  for (const [id, e] of h.entities) {
    if (!g.nodes.has(id)) continue;
    const r = HEALTH_RANK[e.health];
    if (r > worst) worst = r;
    if (e.health === "critical") criticals++;
    else if (e.health === "warning") warnings++;
  }
  let impactedServices = 0;
  for (const id of h.impact.keys()) if (g.nodes.get(id)?.kind === "process") impactedServices++;
  return {
    worst: HEALTH_BY_RANK[worst]!,
    criticals,
    warnings,
    impactedServices,
    stale,
    hosts,
    services,
    listeners,
    externals,
    nodes: g.nodes.size,
    edges: g.edgeCount(),
    dataAgeMs: Math.max(0, Math.round(now - dataAt)),
    marks: 0,
    links: 0,
    linksDropped: 0,
    healthKnown: h.synced,
  };
}

// ---- filters and focus ----

const KIND_OF: Record<string, TopoNode["kind"]> = { host: "host", service: "process", process: "process", listener: "listener", external: "external" };

/** The entities a spec's filters and focus keep, with every entity containing one; null when it keeps everything. */
export function keptEntities(g: ViewGraph, h: HealthMaps, spec: ViewSpec): Set<string> | null {
  const f = spec.filters;
  const hasFilter = !!(f.kinds?.length || f.health?.length || f.team || f.tag || f.port !== undefined || f.q);
  if (!hasFilter && !spec.focus) return null;
  const candidates: Iterable<string> = spec.focus ? focusSet(g, spec) : g.nodes.keys();
  const match = hasFilter ? matcher(g, h, spec) : () => true;
  const kept = new Set<string>();
  for (const id of candidates) {
    const n = g.nodes.get(id);
    if (!n || !match(id, n)) continue;
    kept.add(id);
    // what contains it: a listener's service, a service's host
    let cur: string | undefined = id;
    let cn: TopoNode | undefined = n;
    while (cur && cn) {
      const up: string | undefined = cn.kind === "listener" ? g.ownerOf.get(cur) : cn.kind === "process" ? g.hostIdOf(cur, cn) : undefined;
      if (!up || kept.has(up)) break;
      cn = g.nodes.get(up);
      if (cn) kept.add(up);
      cur = up;
    }
  }
  return kept;
}

function matcher(g: ViewGraph, h: HealthMaps, spec: ViewSpec): (id: string, n: TopoNode) => boolean {
  const f = spec.filters;
  const kinds = f.kinds?.length ? new Set(f.kinds.map((k) => KIND_OF[k])) : null;
  const healths = f.health?.length ? new Set<string>(f.health) : null;
  const [tagKey, tagValue] = f.tag ? (f.tag.includes("=") ? [f.tag.slice(0, f.tag.indexOf("=")), f.tag.slice(f.tag.indexOf("=") + 1)] : [f.tag, undefined]) : [undefined, undefined];
  const q = f.q?.toLowerCase();
  const hostName = g.hostName;
  return (id, n) => {
    if (kinds && !kinds.has(n.kind)) return false;
    if (healths) {
      const rank = healthRank(h, id, n);
      const ok = healths.has(HEALTH_BY_RANK[rank]!) || (healths.has("impacted") && h.impact.has(id));
      if (!ok) return false;
    }
    if (f.team && annotationOf(g, id, n, "team") !== f.team && annotationOf(g, id, n, "owner") !== f.team) return false;
    if (tagKey !== undefined) {
      const v = n.props[tagKey];
      if (v === undefined || v === null) return false;
      if (tagValue !== undefined && String(v) !== tagValue) return false;
    }
    if (f.port !== undefined && !portsOf(g, id, n).includes(f.port)) return false;
    if (q) {
      const { label, sublabel } = nodeLabel(n, hostName);
      const dns = typeof n.props.dnsName === "string" ? n.props.dnsName : "";
      if (!label.toLowerCase().includes(q) && !(sublabel ?? "").toLowerCase().includes(q) && !id.toLowerCase().includes(q) && !dns.toLowerCase().includes(q)) return false;
    }
    return true;
  };
}

/**
 * The neighbourhood of the focus: entities within `hops` calls of it, upstream (what calls it, transitively) and/or
 * downstream (what it calls), walked on CONNECTS and LISTENS (a call reaches a listener, which its service serves). A
 * group focuses on all it holds. Listeners of the services reached come along (calls arrive at them).
 */
export function focusSet(g: ViewGraph, spec: ViewSpec): Set<string> {
  const focus = spec.focus!;
  const roots = new Set<string>();
  const callable = (id: string): string => {
    const n = g.nodes.get(id);
    if (n?.kind === "listener") return g.ownerOf.get(id) ?? id;
    return id;
  };
  const n = g.nodes.get(focus.id);
  if (n) {
    roots.add(callable(focus.id));
    if (n.kind === "host") for (const s of g.servicesOf.get(focus.id) ?? []) roots.add(s);
  } else if (focus.id.startsWith("group:")) {
    for (const [id, m] of g.nodes) {
      const gid = m.kind === "external" ? EXTERNAL_GROUP : groupId(spec.groupBy, groupKeyOf(g, spec.groupBy, id, m));
      if (gid === focus.id) roots.add(callable(id));
    }
  }
  const seen = new Set<string>(roots);
  const walk = (dir: "up" | "down") => {
    let frontier = [...roots];
    for (let hop = 0; hop < focus.hops && frontier.length; hop++) {
      const next: string[] = [];
      for (const x of frontier) {
        const reach = (y: string) => {
          if (seen.has(y)) return;
          seen.add(y);
          next.push(y);
        };
        if (dir === "down") {
          for (const eid of g.callsOut.get(x) ?? []) {
            const e = g.calls.get(eid);
            if (e) reach(callable(e.dst));
          }
        } else {
          const targets = [x, ...(g.listenersOf.get(x) ?? [])];
          for (const t of targets) for (const eid of g.callsIn.get(t) ?? []) {
            const e = g.calls.get(eid);
            if (e) reach(e.src);
          }
        }
      }
      frontier = next;
    }
  };
  if (focus.dir !== "down") walk("up");
  if (focus.dir !== "up") walk("down");
  for (const id of [...seen]) for (const l of g.listenersOf.get(id) ?? []) seen.add(l);
  return seen;
}
