/**
 * The topology stage (pure): folds discovery batches into the live model and returns only what changed.
 *
 * Identity: host:<host>, process:<host>:<pid>:<startTime>, listener:<host>:<proto>:<ip>:<port>,
 * external:<ip>:<port>. A connection's remote end is resolved to the listener that owns it (loopback → the reporting
 * host; other IPs → the host that announced that IP); server-side halves (local port is one of our listeners) are
 * skipped, since the client side reports the dependency. Connections that reach nobody we know become external nodes,
 * and move onto the listener when it shows up later.
 *
 * Hot fields (lastSeen) are refreshed in the model only: a change is a new/removed entity or changed name/props.
 */
import type { ConnectionGone, ConnectionSeen, DiscoveryBatch, DiscoveryEvent, HostSeen, ListenerGone, ListenerSeen } from "../contracts/discovery.ts";
import type { ProcessIdentity } from "../contracts/common.ts";
import type { EdgeKind, TopoEdge, TopoNode } from "../contracts/topology.ts";

export interface RemovedEdge {
  id: string;
  kind: EdgeKind;
  src: string;
  dst: string;
}

export interface Changes {
  nodesUpserted: TopoNode[];
  nodesRemoved: string[];
  edgesUpserted: TopoEdge[];
  edgesRemoved: RemovedEdge[];
  /** ids (nodes and edges) among the upserts that did not exist before: stores may bulk-insert these */
  created?: Set<string>;
}

interface ListenerRec {
  id: string;
  source: string;
  host: string;
  proto: string;
  ip: string;
  port: number;
  owner: string; // process or host node id
}

interface ConnRec {
  source: string;
  host: string;
  owner: string;
  dst: string;
  edgeId: string;
  remoteIp: string;
  remotePort: number;
  proto: string;
}

interface FullScan {
  scanId: number;
  partsSeen: Set<number>;
  parts: number;
  listeners: Set<string>;
  conns: Set<string>;
}

export interface TopologyModel {
  nodes: Map<string, TopoNode>;
  edges: Map<string, TopoEdge>;
  listeners: Map<string, ListenerRec>;
  /** `${host}|${proto}|${port}` → listener ids */
  listenerIndex: Map<string, Set<string>>;
  conns: Map<string, ConnRec>;
  /** how many connections back an edge */
  edgeRefs: Map<string, number>;
  /** how many listeners/connections keep a process or external node alive */
  nodeRefs: Map<string, number>;
  /** external node id → connection keys pointing at it */
  externalConns: Map<string, Set<string>>;
  ipOwner: Map<string, string>;
  fullScans: Map<string, FullScan>;
  /** Sources whose entities were loaded from the store after a restart and not yet confirmed by a full scan. */
  recovered: Set<string>;
  /** node id → ids of its edges, so removing a node does not scan every edge */
  adjacency: Map<string, Set<string>>;
}

export function emptyModel(): TopologyModel {
  return {
    nodes: new Map(),
    edges: new Map(),
    listeners: new Map(),
    listenerIndex: new Map(),
    conns: new Map(),
    edgeRefs: new Map(),
    nodeRefs: new Map(),
    externalConns: new Map(),
    ipOwner: new Map(),
    fullScans: new Map(),
    recovered: new Set(),
    adjacency: new Map(),
  };
}

const WILDCARD = new Set(["0.0.0.0", "::", "*"]);
export const isLoopback = (ip: string) => ip.startsWith("127.") || ip === "::1";

export const hostId = (host: string) => `host:${host}`;
/** ip:port, with IPv6 in brackets ([::1]:53) */
export const hostPort = (ip: string, port: number) => (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);
export const listenerId = (host: string, proto: string, ip: string, port: number) => `listener:${host}:${proto}:${hostPort(ip, port)}`;
export const externalId = (ip: string, port: number) => `external:${hostPort(ip, port)}`;
export const processId = (host: string, p: ProcessIdentity) => `process:${host}:${p.pid}:${p.startTime}`;
export const edgeId = (kind: EdgeKind, src: string, dst: string) => `${kind}:${src}->${dst}`;
const connKey = (host: string, e: { proto: string; localIp: string; localPort: number; remoteIp: string; remotePort: number }) =>
  `${host}|${e.proto}|${e.localIp}:${e.localPort}|${e.remoteIp}:${e.remotePort}`;

/** Records the state of every touched id before the batch, to emit net changes only. */
class Tracker {
  private nodesBefore = new Map<string, TopoNode | undefined>();
  private edgesBefore = new Map<string, TopoEdge | undefined>();
  constructor(private m: TopologyModel) {}
  touchNode(id: string) {
    if (!this.nodesBefore.has(id)) this.nodesBefore.set(id, this.m.nodes.get(id));
  }
  touchEdge(id: string) {
    if (!this.edgesBefore.has(id)) this.edgesBefore.set(id, this.m.edges.get(id));
  }
  result(): Changes {
    const c: Changes = { nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [], created: new Set() };
    for (const [id, before] of this.nodesBefore) {
      const now = this.m.nodes.get(id);
      if (!now) {
        if (before) c.nodesRemoved.push(id);
      } else if (!before || !sameNode(before, now)) {
        c.nodesUpserted.push(now);
        if (!before) c.created!.add(id);
      }
    }
    for (const [id, before] of this.edgesBefore) {
      const now = this.m.edges.get(id);
      if (!now) {
        if (before) c.edgesRemoved.push({ id, kind: before.kind, src: before.src, dst: before.dst });
      } else if (!before || !sameEdge(before, now)) {
        c.edgesUpserted.push(now);
        if (!before) c.created!.add(id);
      }
    }
    return c;
  }
}

function sameProps(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => a[k] === b[k]);
}
const sameNode = (a: TopoNode, b: TopoNode) => a.name === b.name && a.kind === b.kind && a.source === b.source && sameProps(a.props, b.props);
const sameEdge = (a: TopoEdge, b: TopoEdge) => a.src === b.src && a.dst === b.dst && a.source === b.source && sameProps(a.props, b.props);

const ORDER: Record<DiscoveryEvent["type"], number> = {
  "host.seen": 0,
  "listener.gone": 1,
  "listener.seen": 2,
  "connection.gone": 3,
  "connection.seen": 4,
};

/** Folds discovery batches into the model (mutating it) and returns the net changes of all of them together. */
export function applyDiscovery(m: TopologyModel, batches: DiscoveryBatch | DiscoveryBatch[], now: number): Changes {
  const t = new Tracker(m);
  for (const b of Array.isArray(batches) ? batches : [batches]) applyOne(m, t, b, now);
  return t.result();
}

function applyOne(m: TopologyModel, t: Tracker, batch: DiscoveryBatch, now: number): void {
  const ctx: Ctx = { m, t, source: batch.source, host: batch.host, now };
  const events = [...batch.events].sort((a, b) => ORDER[a.type] - ORDER[b.type]);
  let scan: FullScan | undefined;
  if (batch.full) {
    scan = m.fullScans.get(batch.source);
    if (!scan || scan.scanId !== batch.scanId) {
      scan = { scanId: batch.scanId, partsSeen: new Set(), parts: batch.parts, listeners: new Set(), conns: new Set() };
      m.fullScans.set(batch.source, scan);
    }
    scan.partsSeen.add(batch.part);
  }
  for (const e of events) {
    switch (e.type) {
      case "host.seen":
        hostSeen(ctx, e);
        break;
      case "listener.seen": {
        const id = listenerSeen(ctx, e);
        scan?.listeners.add(id);
        break;
      }
      case "listener.gone":
        removeListener(ctx, listenerId(ctx.host, e.proto, e.ip, e.port));
        break;
      case "connection.seen": {
        const k = connectionSeen(ctx, e);
        scan?.conns.add(k);
        break;
      }
      case "connection.gone":
        removeConn(ctx, connKey(ctx.host, e));
        break;
    }
  }
  if (scan && scan.partsSeen.size >= scan.parts) {
    // The whole state of this source has arrived: what it no longer lists is gone (scoped to this source only).
    for (const [k, c] of m.conns) if (c.source === batch.source && !scan.conns.has(k)) removeConn(ctx, k);
    for (const [id, l] of m.listeners) if (l.source === batch.source && !scan.listeners.has(id)) removeListener(ctx, id);
    m.fullScans.delete(batch.source);
    if (m.recovered.delete(batch.source)) sweepRecovered(ctx);
  }
}

interface Ctx {
  m: TopologyModel;
  t: Tracker;
  source: string;
  host: string;
  now: number;
}

function putNode(ctx: Ctx, id: string, kind: TopoNode["kind"], name: string, props: TopoNode["props"]) {
  const prev = ctx.m.nodes.get(id);
  if (prev && prev.name === name && prev.source === ctx.source && sameProps(prev.props, props)) {
    prev.lastSeen = ctx.now;
    return;
  }
  ctx.t.touchNode(id);
  ctx.m.nodes.set(id, { id, kind, name, source: ctx.source, props, firstSeen: prev?.firstSeen ?? ctx.now, lastSeen: ctx.now });
}

function putEdge(ctx: Ctx, kind: EdgeKind, src: string, dst: string, props: TopoEdge["props"] = {}): string {
  const id = edgeId(kind, src, dst);
  const prev = ctx.m.edges.get(id);
  if (prev && prev.source === ctx.source && sameProps(prev.props, props)) {
    prev.lastSeen = ctx.now;
    return id;
  }
  ctx.t.touchEdge(id);
  ctx.m.edges.set(id, { id, kind, src, dst, source: ctx.source, props, firstSeen: prev?.firstSeen ?? ctx.now, lastSeen: ctx.now });
  if (!prev) {
    adj(ctx.m, src).add(id);
    adj(ctx.m, dst).add(id);
  }
  return id;
}

function adj(m: TopologyModel, node: string): Set<string> {
  let s = m.adjacency.get(node);
  if (!s) m.adjacency.set(node, (s = new Set()));
  return s;
}

function dropEdge(ctx: Ctx, id: string) {
  const e = ctx.m.edges.get(id);
  if (!e) return;
  ctx.t.touchEdge(id);
  ctx.m.edges.delete(id);
  ctx.m.adjacency.get(e.src)?.delete(id);
  ctx.m.adjacency.get(e.dst)?.delete(id);
}

function dropNode(ctx: Ctx, id: string) {
  if (!ctx.m.nodes.has(id)) return;
  for (const eid of [...(ctx.m.adjacency.get(id) ?? [])]) dropEdge(ctx, eid);
  ctx.m.adjacency.delete(id);
  ctx.t.touchNode(id);
  ctx.m.nodes.delete(id);
  ctx.m.nodeRefs.delete(id);
}

function ref(ctx: Ctx, id: string, by: number) {
  const n = (ctx.m.nodeRefs.get(id) ?? 0) + by;
  if (n > 0) {
    ctx.m.nodeRefs.set(id, n);
    return;
  }
  ctx.m.nodeRefs.delete(id);
  // Processes and externals live only as long as something keeps them; hosts stay until their source drops them.
  const node = ctx.m.nodes.get(id);
  if (node && (node.kind === "process" || node.kind === "external")) dropNode(ctx, id);
}

function hostSeen(ctx: Ctx, e: HostSeen) {
  const id = hostId(ctx.host);
  putNode(ctx, id, "host", e.hostname, {
    hostname: e.hostname,
    os: e.os,
    kernel: e.kernel,
    cpus: e.cpus,
    memTotalBytes: e.memTotalBytes,
    ips: e.ips.join(","),
  });
  for (const ip of e.ips) if (!isLoopback(ip)) ctx.m.ipOwner.set(ip, ctx.host);
}

function ensureHost(ctx: Ctx): string {
  const id = hostId(ctx.host);
  if (!ctx.m.nodes.has(id)) putNode(ctx, id, "host", ctx.host, { hostname: ctx.host });
  return id;
}

/** The node that owns a socket: its process when the agent could see it, else the host itself. */
function ownerOf(ctx: Ctx, p: ProcessIdentity | null): string {
  const host = ensureHost(ctx);
  if (!p) return host;
  const id = processId(ctx.host, p);
  putNode(ctx, id, "process", p.comm || (p.exe ?? "?").split("/").pop() || "?", {
    host: ctx.host,
    pid: p.pid,
    exe: p.exe,
    cmdline: p.cmdline.join(" ").slice(0, 2048),
    user: p.user,
    containerId: p.containerId,
  });
  putEdge(ctx, "RUNS", host, id);
  return id;
}

function listenerSeen(ctx: Ctx, e: ListenerSeen): string {
  const id = listenerId(ctx.host, e.proto, e.ip, e.port);
  const prev = ctx.m.listeners.get(id);
  const owner = ownerOf(ctx, e.process);
  if (prev && prev.owner !== owner) {
    // Same socket address, new owner (restart): move it.
    dropEdge(ctx, edgeId("LISTENS", prev.owner, id));
    ref(ctx, prev.owner, -1);
  }
  putNode(ctx, id, "listener", `${e.proto}/${e.port}`, { host: ctx.host, proto: e.proto, ip: e.ip, port: e.port });
  putEdge(ctx, "LISTENS", owner, id);
  if (!prev || prev.owner !== owner) ref(ctx, owner, +1);
  if (!prev) {
    const ik = `${ctx.host}|${e.proto}|${e.port}`;
    let set = ctx.m.listenerIndex.get(ik);
    if (!set) ctx.m.listenerIndex.set(ik, (set = new Set()));
    set.add(id);
  }
  ctx.m.listeners.set(id, { id, source: ctx.source, host: ctx.host, proto: e.proto, ip: e.ip, port: e.port, owner });
  if (!prev) adoptExternals(ctx, e);
  return id;
}

/** A new listener may be what earlier connections were calling: move them off their external nodes. */
function adoptExternals(ctx: Ctx, e: ListenerSeen) {
  const ips = WILDCARD.has(e.ip) ? [...ctx.m.ipOwner].filter(([, h]) => h === ctx.host).map(([ip]) => ip) : [e.ip];
  for (const ip of ips) {
    const ext = externalId(ip, e.port);
    const keys = ctx.m.externalConns.get(ext);
    if (!keys) continue;
    for (const k of [...keys]) {
      const c = ctx.m.conns.get(k);
      if (!c || c.proto !== e.proto) continue;
      const saved = { ...c };
      removeConn(ctx, k);
      addConn(ctx, k, saved.source, saved.host, saved.owner, saved.proto, saved.remoteIp, saved.remotePort);
    }
  }
}

function removeListener(ctx: Ctx, id: string) {
  const l = ctx.m.listeners.get(id);
  if (!l) return;
  ctx.m.listeners.delete(id);
  ctx.m.listenerIndex.get(`${l.host}|${l.proto}|${l.port}`)?.delete(id);
  // Connections that pointed at it now point nowhere we know.
  for (const [k, c] of ctx.m.conns) {
    if (c.dst !== id) continue;
    const saved = { ...c };
    removeConn(ctx, k);
    addConn(ctx, k, saved.source, saved.host, saved.owner, saved.proto, saved.remoteIp, saved.remotePort);
  }
  dropNode(ctx, id);
  ref(ctx, l.owner, -1);
}

function findListener(m: TopologyModel, host: string, proto: string, ip: string, port: number): string | undefined {
  const set = m.listenerIndex.get(`${host}|${proto}|${port}`);
  if (!set) return undefined;
  let wildcard: string | undefined;
  for (const id of set) {
    const l = m.listeners.get(id);
    if (!l) continue;
    if (l.ip === ip) return id;
    if (WILDCARD.has(l.ip) || (isLoopback(ip) && isLoopback(l.ip))) wildcard = id;
  }
  return wildcard;
}

function resolveRemote(ctx: Ctx, proto: string, ip: string, port: number): string {
  const targetHost = isLoopback(ip) ? ctx.host : ctx.m.ipOwner.get(ip);
  const found = targetHost ? findListener(ctx.m, targetHost, proto, ip, port) : undefined;
  return found ?? externalId(ip, port);
}

function connectionSeen(ctx: Ctx, e: ConnectionSeen): string {
  const k = connKey(ctx.host, e);
  if (ctx.m.conns.has(k)) {
    const c = ctx.m.conns.get(k)!;
    const e2 = ctx.m.edges.get(c.edgeId);
    if (e2) e2.lastSeen = ctx.now;
    return k;
  }
  // Server side of a connection: the client reports the dependency; ephemeral client ports never become nodes.
  if (findListener(ctx.m, ctx.host, e.proto, e.localIp, e.localPort)) return k;
  const owner = ownerOf(ctx, e.process);
  addConn(ctx, k, ctx.source, ctx.host, owner, e.proto, e.remoteIp, e.remotePort);
  return k;
}

function addConn(ctx: Ctx, k: string, source: string, host: string, owner: string, proto: string, remoteIp: string, remotePort: number) {
  const dst = resolveRemote({ ...ctx, host }, proto, remoteIp, remotePort);
  if (dst.startsWith("external:")) {
    if (!ctx.m.nodes.has(dst)) putNode(ctx, dst, "external", hostPort(remoteIp, remotePort), { ip: remoteIp, port: remotePort, proto });
    let set = ctx.m.externalConns.get(dst);
    if (!set) ctx.m.externalConns.set(dst, (set = new Set()));
    set.add(k);
    ref(ctx, dst, +1);
  }
  const eid = putEdge(ctx, "CONNECTS", owner, dst, { proto, port: remotePort });
  ctx.m.edgeRefs.set(eid, (ctx.m.edgeRefs.get(eid) ?? 0) + 1);
  ctx.m.conns.set(k, { source, host, owner, dst, edgeId: eid, remoteIp, remotePort, proto });
  ref(ctx, owner, +1);
}

function removeConn(ctx: Ctx, k: string) {
  const c = ctx.m.conns.get(k);
  if (!c) return;
  ctx.m.conns.delete(k);
  const n = (ctx.m.edgeRefs.get(c.edgeId) ?? 1) - 1;
  if (n <= 0) {
    ctx.m.edgeRefs.delete(c.edgeId);
    dropEdge(ctx, c.edgeId);
  } else ctx.m.edgeRefs.set(c.edgeId, n);
  if (c.dst.startsWith("external:")) {
    ctx.m.externalConns.get(c.dst)?.delete(k);
    if (ctx.m.externalConns.get(c.dst)?.size === 0) ctx.m.externalConns.delete(c.dst);
    ref(ctx, c.dst, -1);
  }
  ref(ctx, c.owner, -1);
}

export function isEmpty(c: Changes): boolean {
  return !c.nodesUpserted.length && !c.nodesRemoved.length && !c.edgesUpserted.length && !c.edgesRemoved.length;
}

/** Rebuilds a model from stored nodes and edges (after a restart); connections are re-learned from the next full scan. */
export function modelFromGraph(nodes: TopoNode[], edges: TopoEdge[]): TopologyModel {
  const m = emptyModel();
  for (const n of nodes) {
    m.nodes.set(n.id, n);
    m.recovered.add(n.source);
    if (n.kind === "host" && typeof n.props.ips === "string")
      for (const ip of n.props.ips.split(",")) if (ip && !isLoopback(ip)) m.ipOwner.set(ip, n.id.slice("host:".length));
  }
  for (const e of edges) {
    m.edges.set(e.id, e);
    adj(m, e.src).add(e.id);
    adj(m, e.dst).add(e.id);
  }
  return m;
}

/** After a restart, the first full scan of a source confirms what still exists; the rest of its entities go. */
function sweepRecovered(ctx: Ctx) {
  for (const [id, e] of ctx.m.edges)
    if (e.source === ctx.source && e.kind === "CONNECTS" && !ctx.m.edgeRefs.has(id)) dropEdge(ctx, id);
  for (const [id, n] of ctx.m.nodes) {
    if (n.source !== ctx.source || n.kind === "host") continue;
    if (n.kind === "listener" ? !ctx.m.listeners.has(id) : !ctx.m.nodeRefs.has(id)) dropNode(ctx, id);
  }
}
