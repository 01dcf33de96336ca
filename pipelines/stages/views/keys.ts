/**
 * Which group an entity falls in, for each grouping. tier, site and host group hosts (a service or listener goes with
 * its host); team, owner and component group services (a listener goes with the service serving it, a host by its
 * own annotation). Annotations (`entity.annotated`: owner, team) on a service win; a service without one takes its
 * host's, so node-local agents (sshd, node_exporter) sit with their host's owners instead of one huge "unowned" group.
 */
import type { GroupBy } from "../../contracts/view.ts";
import type { TopoNode } from "../../contracts/topology.ts";

/** What placing an entity needs of the graph (model.ts's ViewGraph). */
export interface GraphLike {
  readonly nodes: ReadonlyMap<string, TopoNode>;
  readonly ownerOf: ReadonlyMap<string, string>;
  hostIdOf(id: string, n?: TopoNode): string | undefined;
  ref(id: string): NodeRef;
}

/**
 * One holder per node id, shared by the calls that name it and by each grouping's path entry for it (`entries`, by
 * the grouping's ordinal), so a view walks calls to path entries through object fields instead of map lookups.
 */
export interface NodeRef {
  readonly id: string;
  /** calls naming it */
  calls: number;
  entries: (PathEntry | undefined)[];
}

const ORDINAL: Readonly<Record<GroupBy, number>> = { tier: 0, team: 1, owner: 2, site: 3, component: 4, host: 5 };
import { shortServiceName, siteOf, strProp, tierOf } from "./names.ts";

export const EXTERNAL_GROUP = "group:external";
export const UNOWNED = "unowned";
export const groupId = (by: GroupBy, key: string) => `group:${by}:${key}`;
export const HOST_KEYED: ReadonlySet<GroupBy> = new Set(["tier", "site", "host"]);

const tierCache = new WeakMap<TopoNode, string>();
const componentCache = new WeakMap<TopoNode, string>();

export function cachedTier(host: TopoNode): string {
  let t = tierCache.get(host);
  if (t === undefined) tierCache.set(host, (t = tierOf(host)));
  return t;
}

/** A service's component: its `component` prop, else its short name. */
export function componentOf(svc: TopoNode): string {
  let c = componentCache.get(svc);
  if (c === undefined) {
    c = strProp(svc, "component") ?? shortServiceName(strProp(svc, "service") ?? svc.name);
    componentCache.set(svc, c);
  }
  return c;
}

/** The service (or host) whose annotations speak for an entity: a listener's owner, else the entity itself. */
export function ownerEntity(g: GraphLike, id: string, n: TopoNode): { id: string; node: TopoNode | undefined } {
  if (n.kind !== "listener") return { id, node: n };
  const o = g.ownerOf.get(id);
  return o ? { id: o, node: g.nodes.get(o) } : { id, node: n };
}

/** team or owner of an entity: its own (or its service's) annotation, else its host's, else "unowned". */
export function annotationOf(g: GraphLike, id: string, n: TopoNode, key: "team" | "owner"): string {
  if (n.kind === "external") return UNOWNED;
  const o = ownerEntity(g, id, n);
  const own = strProp(o.node, key);
  if (own) return own;
  const h = g.hostIdOf(o.id, o.node);
  return strProp(h ? g.nodes.get(h) : undefined, key) ?? UNOWNED;
}

/** The group key of an entity (externals have their own group, EXTERNAL_GROUP). */
export function groupKeyOf(g: GraphLike, by: GroupBy, id: string, n: TopoNode): string {
  switch (by) {
    case "tier":
    case "site":
    case "host": {
      const h = g.hostIdOf(id, n);
      const hn = h ? g.nodes.get(h) : undefined;
      if (by === "site") return siteOf(hn);
      if (!hn) return h ? h.slice(5) : "unknown";
      return by === "tier" ? cachedTier(hn) : hn.name;
    }
    case "team":
    case "owner":
      return annotationOf(g, id, n, by);
    case "component": {
      if (n.kind === "host") return strProp(n, "component") ?? "hosts";
      const o = ownerEntity(g, id, n);
      if (o.node?.kind === "process") return componentOf(o.node);
      return "listeners without a process";
    }
  }
}

/** An entity's marks from its group down to itself, and its representative in the view being computed. */
export interface PathEntry {
  id: string;
  ref: NodeRef;
  node: TopoNode;
  path: readonly string[];
  /** the entity is a host standing for its own group (groupBy host) */
  hostGroup: boolean;
  /** set while a view is computed: the number of the drawn mark it is counted in (valid when `stamp` is that computation's) */
  rep: number;
  stamp: number;
}

/**
 * The marks entities' paths make: each mark's parent and children, the top marks (groups), and the host a groupBy-host
 * group stands for. Reference-counted, so entries come and go one at a time (a mark stays while a path holds it).
 */
export class MarkTree {
  readonly parent = new Map<string, string>();
  readonly kids = new Map<string, Set<string>>();
  /** top marks, with how many entities are under each */
  readonly tops = new Map<string, number>();
  readonly groupEntity = new Map<string, string>();
  readonly #refs = new Map<string, number>();

  add(e: PathEntry): void {
    const p = e.path;
    const top = p[0]!;
    this.tops.set(top, (this.tops.get(top) ?? 0) + 1);
    if (e.hostGroup) this.groupEntity.set(top, e.id);
    for (let i = 1; i < p.length; i++) {
      const m = p[i]!;
      const r = this.#refs.get(m);
      if (r !== undefined && this.parent.get(m) === p[i - 1]) {
        this.#refs.set(m, r + 1);
        continue;
      }
      if (r !== undefined) this.#detach(m); // (a path moving under another parent: the newest placement wins)
      this.#refs.set(m, 1);
      this.parent.set(m, p[i - 1]!);
      const k = this.kids.get(p[i - 1]!);
      if (k) k.add(m);
      else this.kids.set(p[i - 1]!, new Set([m]));
    }
  }

  remove(e: PathEntry): void {
    const p = e.path;
    const top = p[0]!;
    const t = (this.tops.get(top) ?? 0) - 1;
    if (t > 0) this.tops.set(top, t);
    else this.tops.delete(top);
    if (e.hostGroup && this.groupEntity.get(top) === e.id) this.groupEntity.delete(top);
    for (let i = 1; i < p.length; i++) {
      const m = p[i]!;
      if (this.parent.get(m) !== p[i - 1]) continue;
      const r = (this.#refs.get(m) ?? 0) - 1;
      if (r > 0) this.#refs.set(m, r);
      else this.#detach(m);
    }
  }

  #detach(m: string) {
    const par = this.parent.get(m);
    this.#refs.delete(m);
    this.parent.delete(m);
    if (par === undefined) return;
    const k = this.kids.get(par);
    k?.delete(m);
    if (k && !k.size) this.kids.delete(par);
  }
}

/**
 * Paths of entities for one grouping, kept between views with the tree they make: building a path costs a few
 * lookups and string concatenations, and most entities keep theirs from one delta to the next. The graph marks
 * entries dirty (a node replaced or removed, its host or service changed, the edges placing it); `flush` rebuilds
 * those, so a view of the whole estate starts from a complete, current tree. Group ids are interned, so the maps
 * hashing them hash each once.
 */
export class PathIndex {
  readonly by: GroupBy;
  /** where this grouping's entries sit in NodeRef.entries */
  readonly ordinal: number;
  readonly #g: GraphLike;
  readonly #entries = new Map<string, PathEntry>();
  readonly #groupIds = new Map<string, string>();
  readonly dirty = new Set<string>();
  readonly tree = new MarkTree();

  constructor(g: GraphLike, by: GroupBy) {
    this.#g = g;
    this.by = by;
    this.ordinal = ORDINAL[by];
    for (const n of g.nodes.values()) this.#put(n.id, n);
  }

  /** Lets go of every entry (the grouping is no longer kept). */
  dispose(): void {
    for (const e of this.#entries.values()) if (e.ref.entries[this.ordinal] === e) e.ref.entries[this.ordinal] = undefined;
    this.#entries.clear();
  }

  /** Rebuilds the entries the graph marked dirty. */
  flush(): void {
    for (const id of this.dirty) {
      const old = this.#entries.get(id);
      if (old) {
        this.#drop(old);
        this.#entries.delete(id);
      }
      const n = this.#g.nodes.get(id);
      if (n) this.#put(id, n);
    }
    this.dirty.clear();
  }

  /** Every entity's entry (complete after flush). */
  entries(): IterableIterator<PathEntry> {
    return this.#entries.values();
  }

  peek(id: string): PathEntry | undefined {
    return this.#entries.get(id);
  }

  get(id: string, n: TopoNode): PathEntry {
    const e = this.#entries.get(id);
    if (e && e.node === n) return e;
    if (e) this.#drop(e);
    return this.#put(id, n);
  }

  #put(id: string, n: TopoNode): PathEntry {
    const e = this.#build(id, n);
    this.#entries.set(id, e);
    this.tree.add(e);
    e.ref.entries[this.ordinal] = e;
    return e;
  }

  #drop(e: PathEntry) {
    this.tree.remove(e);
    if (e.ref.entries[this.ordinal] === e) e.ref.entries[this.ordinal] = undefined;
  }

  #group(key: string): string {
    let gid = this.#groupIds.get(key);
    if (gid === undefined) {
      gid = groupId(this.by, key);
      this.#groupIds.set(key, gid);
    }
    return gid;
  }

  #build(id: string, n: TopoNode): PathEntry {
    const g = this.#g;
    const by = this.by;
    const ref = g.ref(id);
    const entry = (path: string[], hostGroup = false): PathEntry => ({ id, ref, node: n, path, hostGroup, rep: -1, stamp: -1 });
    if (n.kind === "external") return entry([EXTERNAL_GROUP, id]);
    const path = [this.#group(groupKeyOf(g, by, id, n))];
    if (by === "host") {
      if (n.kind === "host") return entry(path, true);
    } else if (HOST_KEYED.has(by) || n.kind === "host") {
      const hid = g.hostIdOf(id, n);
      if (hid) path.push(hid);
      if (n.kind === "host") return entry(path);
    }
    if (n.kind === "listener") {
      const o = g.ownerOf.get(id);
      if (o && !o.startsWith("host:")) path.push(o);
    }
    path.push(id);
    return entry(path);
  }
}
