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
}
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
  node: TopoNode;
  path: readonly string[];
  /** the entity is a host standing for its own group (groupBy host) */
  hostGroup: boolean;
  /** set while a view is computed: the drawn mark it is counted in (valid when `stamp` is that computation's) */
  rep: string;
  stamp: number;
}

/**
 * Paths of entities for one grouping, cached between views: building a path costs a few lookups and string
 * concatenations, and most entities keep theirs from one delta to the next. An entry is rebuilt when its node object
 * changed (a delta replaces it) or the graph marked it dirty (its host or service changed, or the edges placing it).
 * Group ids are interned so the maps hashing them hash each once.
 */
export class PathIndex {
  readonly by: GroupBy;
  readonly #g: GraphLike;
  readonly #entries = new Map<string, PathEntry>();
  readonly #groupIds = new Map<string, string>();
  readonly dirty = new Set<string>();

  constructor(g: GraphLike, by: GroupBy) {
    this.#g = g;
    this.by = by;
  }

  /** Drops the entries the graph marked dirty (rebuilt when next asked for). */
  flush(): void {
    for (const id of this.dirty) this.#entries.delete(id);
    this.dirty.clear();
  }

  /** The entry as it is (a view reads its `rep` after computing it). */
  peek(id: string): PathEntry | undefined {
    return this.#entries.get(id);
  }

  get(id: string, n: TopoNode): PathEntry {
    const e = this.#entries.get(id);
    if (e && e.node === n) return e;
    const fresh = this.#build(id, n);
    this.#entries.set(id, fresh);
    return fresh;
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
    const entry = (path: string[], hostGroup = false): PathEntry => ({ node: n, path, hostGroup, rep: "", stamp: -1 });
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
