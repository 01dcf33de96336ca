/**
 * The topology stage (pure): folds discovery batches into the live model and returns only what changed.
 *
 * Identity — what a thing is, not where it happens to run right now:
 *   host:<host>
 *   service:<host>:<fingerprint>:<ports|client>   (kind "process": every process of one service folds into it)
 *   listener:<host>:<proto>:<ip>:<port>            (IPv6 in brackets)
 *   external:<ip>:<port>                           (named <dns name>:<port> once a resolver reported the ip)
 * A service's fingerprint is its container image repository when the source knows the image (`image:registry/orders`,
 * tag and digest dropped), else its executable's basename (plus the main script/jar/module for interpreters such as
 * java, python or node), and its ports are the sorted listening ports of its processes (ephemeral-range ports left out
 * unless they are all it has; UDP as "53/udp"); a process that listens nowhere is a "client". So a restarted process
 * (new pid, same binary and ports) is the same service, and nginx's or postgres's several processes are one node.
 *
 * Dependencies: a connection is a flow (host, process, proto, remote ip:port); the client's ephemeral port is ignored,
 * and server-side halves (the local end is one of our listeners) are skipped since the client reports the dependency.
 * A flow's remote end resolves to the listener there: loopback and the host's own IPs → the reporting host; any other
 * IP → the host that claims it now. IP ownership is time-scoped: the newest claim wins, an older (late or replayed)
 * claim is ignored, a host that stops listing an IP loses it, and a removed host owns nothing — so an IP reused by
 * another host after a redeploy moves the flows to the new host instead of leaving phantom edges to the old one. Agents
 * are the authority on their host: a job's host.seen or listener.seen never takes an agent's IP, host node or socket.
 * Endpoints nobody here listens on become external nodes, and move onto the listener when it shows up.
 *
 * DEPENDS_ON service → service is derived from each (CONNECTS A → listener, LISTENS B → listener) pair with A ≠ B,
 * reference-counted per listener and kept with the edges it comes from (see deriveAdded).
 *
 * Annotations (entity.annotated: owner, team…) and names (name.seen) are facts a source owns about entities it need not
 * report itself; they are kept beside the entities and laid over them (see annotationSeen, nameSeen).
 *
 * No flicker: a flow becomes a CONNECTS edge once it was open at the end of `confirmScans` scans of its source (2 by
 * default, not necessarily consecutive), and goes only after it was closed through `graceScans` scans (2). A short-lived
 * process with one connection never reaches the graph; a client reconnecting on new ports keeps its edge. Listeners are
 * immediate: a listening socket is a deliberate service.
 *
 * Aging (`ageModel`, called on a timer): a source silent for `staleAfter` intervals has its nodes marked
 * props.health = "stale"; after `removeAfter` intervals everything it reported is removed — only what that source
 * reported (scoped cleanup). A full batch removes at once what its source no longer lists.
 *
 * Hot fields (lastSeen) are refreshed in the model; a change is a new/removed entity or a changed name/props. The store
 * gets lastSeen in a bounded trickle, at most `lastSeenPersistMs` behind (see finish).
 */
import type { ConnectionSeen, DiscoveryBatch, DiscoveryEvent, EntityAnnotated, HostSeen, ListenerSeen, NameSeen } from "../contracts/discovery.ts";
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
  /** input the stage skipped, with the reason (e.g. an annotation of a discovery-owned property); absent when none */
  rejected?: string[];
  /**
   * sources whose declared reporting interval changed (ms; 0 = the source is gone): stores keep them, so a restarted
   * topology service ages a job that runs hourly by its hour, not by the agents' seconds
   */
  sourceIntervals?: Record<string, number>;
}

export interface StageOptions {
  /** scans of its source a flow must be open in before it becomes an edge (1 = at once) */
  confirmScans: number;
  /** scans of its source a closed flow is kept before its edge goes */
  graceScans: number;
  /**
   * lastSeen in the store trails the model by at most this much: an entity whose lastSeen moved since it was last
   * written is re-emitted (an upsert) once this long after that write. 0 = never (lastSeen stays in the model).
   */
  lastSeenPersistMs: number;
  /** at most this many such refreshes per applyDiscovery / ageModel call, the longest unchecked first */
  lastSeenPersistMaxPerBatch: number;
}
export const DEFAULT_STAGE_OPTIONS: StageOptions = { confirmScans: 2, graceScans: 2, lastSeenPersistMs: 3_600_000, lastSeenPersistMaxPerBatch: 200 };

export interface AgingOptions {
  /** the sources' nominal scan interval; a source observed scanning slower is judged by its own pace */
  intervalMs: number;
  /** silent for this many intervals → its nodes get props.health = "stale" */
  staleAfter: number;
  /** silent for this many intervals → everything it reported is removed */
  removeAfter: number;
}
export const DEFAULT_AGING: AgingOptions = { intervalMs: 5000, staleAfter: 3, removeAfter: 12 };

interface ListenerRec {
  id: string;
  source: string;
  host: string;
  proto: string;
  ip: string;
  port: number;
  /** owning process key, or null when the agent could not see the owner (then the host owns it) */
  proc: string | null;
}

interface ProcRec {
  key: string;
  host: string;
  source: string;
  ident: ProcessIdentity;
  fp: string;
  listeners: Bag;
  flows: Bag;
  /** flows of this process that are edges */
  confirmed: number;
  /** the service it is a member of (it has a listener or a confirmed flow), else null */
  service: string | null;
  /** identity ports when it last listened: a process whose listener moved on (a restart) stays what it was */
  ports: string | null;
}

interface FlowRec {
  key: string;
  source: string;
  host: string;
  proc: string | null;
  proto: string;
  remoteIp: string;
  remotePort: number;
  /** its open sockets: mostly one */
  sockets: Slot;
  seenScans: number;
  lastSeenScan: number;
  confirmed: boolean;
  /** when confirmed: the node it points at and the CONNECTS edge that carries it */
  dst: string | null;
  edge: string | null;
}

interface SourceRec {
  id: string;
  host: string;
  /** scans completed (last part seen) */
  scans: number;
  /** undefined for a source recovered from the store and not heard from since (aging starts at the first ageModel) */
  lastBatchAt: number | undefined;
  lastScanId: number;
  lastScanAt: number;
  /** observed spacing of its scans */
  intervalMs: number;
  /** the interval the source says it reports at (DiscoveryBatch.intervalMs, e.g. a job's schedule); 0 = none */
  declaredIntervalMs: number;
  stale: boolean;
  flows: Bag;
  listeners: Bag;
  sockets: Bag;
}

interface FullScan {
  scanId: number;
  partsSeen: Set<number>;
  parts: number;
  listeners: Set<string>;
  sockets: Set<string>;
}

export interface TopologyModel {
  opts: StageOptions;
  nodes: Map<string, TopoNode>;
  edges: Map<string, TopoEdge>;
  listeners: Map<string, ListenerRec>;
  /** `${host}|${proto}|${port}` → listener ids */
  listenerIndex: Map<string, Bag>;
  procs: Map<string, ProcRec>;
  /** service node id → member process keys */
  services: Map<string, Bag>;
  flows: Map<string, FlowRec>;
  /** socket key (host, proto, local, remote) → flow key */
  sockets: Map<string, string>;
  /** how many confirmed flows back a CONNECTS edge */
  edgeRefs: Map<string, number>;
  /** how many confirmed flows keep an external node alive */
  nodeRefs: Map<string, number>;
  /** dst node id (listener or external) → confirmed flows pointing at it */
  dstFlows: Map<string, Bag>;
  /** ip → confirmed flows resolved through its owner (not loopback, not the reporter's own ip) */
  ipFlows: Map<string, Bag>;
  /** ip → the host that claims it now and when it last did */
  ipOwner: Map<string, IpClaim>;
  /** host → the ips of its latest host.seen */
  hostIps: Map<string, Set<string>>;
  /** host → job source → the ips of its latest host.seen (a job's claims are weaker than an agent's) */
  jobIps: Map<string, Map<string, Set<string>>>;
  /** ip → source → the name a resolver reported (the source that last changed its answer wins) */
  names: Map<string, Map<string, { name: string; seq: number; scanId: number }>>;
  /** source → the ips it named */
  namesBy: Map<string, Bag>;
  /** ip → external node ids at it */
  externalsAt: Map<string, Bag>;
  sources: Map<string, SourceRec>;
  /** declared source intervals changed since the last Changes were handed out (0 = source gone) */
  intervalsChanged: Map<string, number>;
  /** source → ids of the nodes it owns */
  bySource: Map<string, Bag>;
  fullScans: Map<string, FullScan>;
  /** Sources whose entities were loaded from the store after a restart and not yet confirmed by a full scan. */
  recovered: Set<string>;
  /** node id → ids of its edges, so removing a node does not scan every edge */
  adjacency: Map<string, Bag>;
  /** listener id → the services with a LISTENS edge to it (DEPENDS_ON derivation) */
  servedBy: Map<string, Bag>;
  /** DEPENDS_ON edge id → its ends and the listeners through which the caller reaches the served service */
  dependsVia: Map<string, DependsRec>;
  /** caller's source → DEPENDS_ON edges the stored pairs imply but the store lacks (made at its first full scan) */
  dependsMissing: Map<string, Bag>;
  /** `${host}|${proto}|${port}` → services with a LISTENS edge to a listener there (and how many) */
  servedAt: Map<string, Counts>;
  /** service id → its `${host}|${proto}|${port}` keys (and how many listeners each) */
  serviceAt: Map<string, Counts>;
  /** annotation target (`host|h`, `svc|h|proto|port`, `id|<entity>` when recovered from the store) → source → key → value */
  annotations: Map<string, Map<string, Map<string, AnnValue>>>;
  /** source → its annotation targets */
  annotationsBy: Map<string, Bag>;
  /** entity id → the annotation props it carries (merged over the discovery props by putNode) */
  annotated: Map<string, Annotated>;
  /** orders annotation writes: on one key, the source that last changed its value wins */
  annSeq: number;
  /**
   * entity or edge id → the lastSeen last written to the store and when it was last checked; in check order (a
   * Map keeps insertion order and every write or check re-inserts), so the longest unchecked are first.
   */
  persisted: Map<string, PersistRec>;
  /** the shared PersistRecs of the latest checkedAt, by lastSeen (see persistRec) */
  persistRecs: { at: number; byLastSeen: Map<number, PersistRec> };
  /** shared, frozen edge props (see edgeProps) */
  edgePropsCache: Map<string, TopoEdge["props"]>;
  /** one copy of strings that repeat across records (hosts, sources, IPs, protocols; see intern) */
  strings: Map<string, string>;
}

interface IpClaim {
  host: string;
  /** when the claim was made (the batch's `at`): among claims of the same standing the newest wins */
  at: number;
  /** made by a host agent: only an agent can take an IP from an agent */
  agent: boolean;
  source: string;
}

interface AnnValue {
  value: string;
  seq: number;
  /** scan of its source that last listed it: a completed full scan drops what it did not list */
  scanId: number;
}

interface Annotated {
  props: Record<string, string>;
  /** JSON {key: source}, stored as props.annotatedBy so a restart knows who owns which prop */
  by: string;
}

interface DependsRec {
  src: string;
  dst: string;
  /** mostly one listener */
  via: Slot;
}

/*
 * Memory: the model holds ~1M small collections at 100k nodes / 500k edges, and a JSC Set costs ~280 bytes with one
 * element and ~3 KB with twenty (a Map the same), against ~60 and ~200 for an array. So small collections are arrays
 * (insertion order kept, as a Set's) and become a Set past BAG_MAX, where a linear scan would start to cost.
 */
type Bag = string[] | Set<string>;
const BAG_MAX = 48;

function bagAdd(b: Bag, v: string): Bag {
  if (!Array.isArray(b)) {
    b.add(v);
    return b;
  }
  if (b.includes(v)) return b;
  if (b.length < BAG_MAX) {
    b.push(v);
    return b;
  }
  const s = new Set(b);
  s.add(v);
  return s;
}
function bagDelete(b: Bag, v: string): boolean {
  if (!Array.isArray(b)) return b.delete(v);
  const i = b.indexOf(v);
  if (i < 0) return false;
  b.splice(i, 1);
  return true;
}
const bagHas = (b: Bag, v: string) => (Array.isArray(b) ? b.includes(v) : b.has(v));
const bagSize = (b: Bag) => (Array.isArray(b) ? b.length : b.size);

/** A Bag that is mostly of one element holds it alone (another ~60 bytes saved on each of ~200k flows and pairs). */
type Slot = undefined | string | Bag;
const slotAdd = (s: Slot, v: string): Slot => (s === undefined ? v : typeof s === "string" ? (s === v ? s : [s, v]) : bagAdd(s, v));
const slotHas = (s: Slot, v: string) => (s === undefined ? false : typeof s === "string" ? s === v : bagHas(s, v));
const slotSize = (s: Slot) => (s === undefined ? 0 : typeof s === "string" ? 1 : bagSize(s));
/** The slot without `v` (the same Bag, changed in place, when it is one). */
function slotDelete(s: Slot, v: string): Slot {
  if (typeof s === "string") return s === v ? undefined : s;
  if (s !== undefined) bagDelete(s, v);
  return s;
}
const slotValues = (s: Slot): Iterable<string> => (s === undefined ? [] : typeof s === "string" ? [s] : s);

/** key → count, as [key, count, key, count …] while small (see Bag), a Map past BAG_MAX keys */
type Counts = (string | number)[] | Map<string, number>;

/** Adds `delta` to `key`'s count (dropping it at 0); returns the new count. */
function countAdd(c: Counts, key: string, delta: number): { c: Counts; n: number } {
  if (!Array.isArray(c)) {
    const n = (c.get(key) ?? 0) + delta;
    if (n > 0) c.set(key, n);
    else c.delete(key);
    return { c, n };
  }
  for (let i = 0; i < c.length; i += 2)
    if (c[i] === key) {
      const n = (c[i + 1] as number) + delta;
      if (n > 0) c[i + 1] = n;
      else c.splice(i, 2);
      return { c, n };
    }
  if (delta <= 0) return { c, n: delta };
  if (c.length < 2 * BAG_MAX) {
    c.push(key, delta);
    return { c, n: delta };
  }
  const m = new Map<string, number>();
  for (let i = 0; i < c.length; i += 2) m.set(c[i] as string, c[i + 1] as number);
  m.set(key, delta);
  return { c: m, n: delta };
}
function* countKeys(c: Counts | undefined): Generator<string> {
  if (!c) return;
  if (!Array.isArray(c)) yield* c.keys();
  else for (let i = 0; i < c.length; i += 2) yield c[i] as string;
}
const countSize = (c: Counts) => (Array.isArray(c) ? c.length / 2 : c.size);

export function emptyModel(opts: Partial<StageOptions> = {}): TopologyModel {
  return {
    opts: { ...DEFAULT_STAGE_OPTIONS, ...opts },
    nodes: new Map(),
    edges: new Map(),
    listeners: new Map(),
    listenerIndex: new Map(),
    procs: new Map(),
    services: new Map(),
    flows: new Map(),
    sockets: new Map(),
    edgeRefs: new Map(),
    nodeRefs: new Map(),
    dstFlows: new Map(),
    ipFlows: new Map(),
    ipOwner: new Map(),
    hostIps: new Map(),
    jobIps: new Map(),
    names: new Map(),
    namesBy: new Map(),
    externalsAt: new Map(),
    sources: new Map(),
    intervalsChanged: new Map(),
    bySource: new Map(),
    fullScans: new Map(),
    recovered: new Set(),
    adjacency: new Map(),
    servedBy: new Map(),
    dependsVia: new Map(),
    dependsMissing: new Map(),
    servedAt: new Map(),
    serviceAt: new Map(),
    annotations: new Map(),
    annotationsBy: new Map(),
    annotated: new Map(),
    annSeq: 0,
    persisted: new Map(),
    persistRecs: { at: NaN, byLastSeen: new Map() },
    edgePropsCache: new Map(),
    strings: new Map(),
  };
}

const WILDCARD = new Set(["0.0.0.0", "::", "*"]);
export const isLoopback = (ip: string) => ip.startsWith("127.") || ip === "::1";
/** Linux's default ip_local_port_range starts here: ports above it are usually picked at random. */
export const EPHEMERAL_START = 32768;

export const hostId = (host: string) => `host:${host}`;
/** ip:port, with IPv6 in brackets ([::1]:53) */
export const hostPort = (ip: string, port: number) => (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);
export const listenerId = (host: string, proto: string, ip: string, port: number) => `listener:${host}:${proto}:${hostPort(ip, port)}`;
export const externalId = (ip: string, port: number) => `external:${hostPort(ip, port)}`;
export const edgeId = (kind: EdgeKind, src: string, dst: string) => `${kind}:${src}->${dst}`;
const procKey = (host: string, p: ProcessIdentity) => `${host}|${p.pid}|${p.startTime}`;
const sockKey = (host: string, e: { proto: string; localIp: string; localPort: number; remoteIp: string; remotePort: number }) =>
  `${host}|${e.proto}|${hostPort(e.localIp, e.localPort)}|${hostPort(e.remoteIp, e.remotePort)}`;

const INTERPRETERS = /^(java|python[0-9.]*|pypy[0-9.]*|node|nodejs|bun|deno|ruby[0-9.]*|perl[0-9.]*|php[0-9.]*|php-fpm[0-9.]*|dotnet|mono|sh|bash|dash|zsh|erl|beam\.smp)$/;
const VALUE_FLAGS = new Set(["-cp", "-classpath", "--class-path", "-p", "--module-path", "-X", "-W", "-r", "--require", "-I"]);
/** Subcommands of runtimes that come before the script (`bun run x.ts`, `deno run x.ts`, `npm exec`). */
const SUBCOMMANDS = new Set(["run", "test", "exec", "x", "start", "serve"]);
const GENERIC = /^(main|index|app|server|__main__)\.[a-z]+$/;
const base = (path: string) => path.replace(/ \(deleted\)$/, "").split("/").pop() ?? "";
/** The script's name; a generic one (main.ts, index.js) with its folder, so services/agent/main.ts is "agent/main.ts". */
const script = (path: string) => {
  const parts = path.split("/").filter(Boolean);
  const last = parts.pop() ?? "";
  return GENERIC.test(last) && parts.length ? `${parts.pop()}/${last}` : last;
};
const clean = (s: string) => s.replace(/[:\s|]/g, "_").slice(0, 96);

/** An image reference without its tag or digest: `registry:5000/orders:1.4@sha256:…` → `registry:5000/orders`. */
export function imageRepository(image: string): string {
  const noDigest = image.split("@")[0]!;
  const slash = noDigest.lastIndexOf("/");
  const colon = noDigest.lastIndexOf(":");
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

/**
 * What a process is, independent of its pid. In a container whose image the source knows: the image repository
 * (`image:registry/orders`), so an image upgrade is the same service. Otherwise the executable's basename, plus for
 * interpreters and VMs the thing they run (`java -jar orders.jar` → "java:orders.jar", `python3 -m celery` →
 * "python3:celery", `bun run api/main.ts` → "bun:api/main.ts").
 */
export function fingerprint(p: ProcessIdentity): string {
  if (p.containerImage) return `image:${clean(imageRepository(p.containerImage))}`;
  const exe = (base(p.exe ?? "") || p.comm || "?").replace(/\.exe$/, "");
  if (!INTERPRETERS.test(exe)) return clean(exe);
  const args = p.cmdline.slice(1);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "-jar" || a === "-m" || a === "-c") {
      const v = args[i + 1];
      if (v !== undefined) return `${clean(exe)}:${a === "-c" ? "inline" : clean(base(v))}`;
      break;
    }
    if (VALUE_FLAGS.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith("-") || (i === 0 && SUBCOMMANDS.has(a))) continue;
    return `${clean(exe)}:${clean(script(a))}`;
  }
  return clean(exe);
}

/** The ports that say which service a process is: its listening ports, ephemeral ones only if that is all it has. */
export function identityPorts(listeners: Iterable<{ proto: string; port: number }>): string {
  const all = new Set<string>();
  const fixed = new Set<string>();
  for (const l of listeners) {
    const p = l.proto === "tcp" ? String(l.port) : `${l.port}/${l.proto}`;
    all.add(p);
    if (l.port < EPHEMERAL_START) fixed.add(p);
  }
  const use = fixed.size ? fixed : all;
  if (!use.size) return "client";
  return [...use].sort((a, b) => parseInt(a) - parseInt(b) || a.localeCompare(b)).join(",");
}

/** The service node id of a process on a host, given the sockets it listens on. */
export function serviceId(host: string, p: ProcessIdentity, listeners: Iterable<{ proto: string; port: number }>): string {
  return `service:${host}:${fingerprint(p)}:${identityPorts(listeners)}`;
}

/** Records the state of every touched id before the batch, to emit net changes only. */
class Tracker {
  private nodesBefore = new Map<string, TopoNode | undefined>();
  private edgesBefore = new Map<string, TopoEdge | undefined>();
  readonly rejected: string[] = [];
  /** ids to emit even though only lastSeen moved */
  private forced = new Set<string>();
  constructor(private m: TopologyModel) {}
  /** the state before this call, for an id touched in it */
  nodeBefore(id: string): TopoNode | undefined {
    return this.nodesBefore.get(id);
  }
  edgeBefore(id: string): TopoEdge | undefined {
    return this.edgesBefore.get(id);
  }
  force(id: string, edge: boolean) {
    if (edge) this.touchEdge(id);
    else this.touchNode(id);
    this.forced.add(id);
  }
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
      } else if (!before || !sameNode(before, now) || this.forced.has(id)) {
        c.nodesUpserted.push(now);
        if (!before) c.created!.add(id);
      }
    }
    for (const [id, before] of this.edgesBefore) {
      const now = this.m.edges.get(id);
      if (!now) {
        if (before) c.edgesRemoved.push({ id, kind: before.kind, src: before.src, dst: before.dst });
      } else if (!before || !sameEdge(before, now) || this.forced.has(id)) {
        c.edgesUpserted.push(now);
        if (!before) c.created!.add(id);
      }
    }
    if (this.rejected.length) c.rejected = this.rejected;
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
  "name.seen": 5,
  "entity.annotated": 6,
};

interface Ctx {
  m: TopologyModel;
  t: Tracker;
  source: string;
  host: string;
  now: number;
}

/** Folds discovery batches into the model (mutating it) and returns the net changes of all of them together. */
export function applyDiscovery(m: TopologyModel, batches: DiscoveryBatch | DiscoveryBatch[], now: number): Changes {
  const t = new Tracker(m);
  for (const b of Array.isArray(batches) ? batches : [batches]) applyOne(m, t, b, now);
  return finish(m, t, now);
}

/**
 * The call's net changes, plus a bounded number of lastSeen refreshes: entities checked longest ago are looked at
 * first (a few times the cap at most); one whose lastSeen moved since it was written is emitted. Every entity is
 * checked once per lastSeenPersistMs as long as calls come often enough (5 × cap per call: ageModel alone, every
 * 5 s with the default cap, covers 720k entities an hour), so the store's lastSeen trails the model by at most
 * about lastSeenPersistMs, at one write per entity per period at most.
 */
function finish(m: TopologyModel, t: Tracker, now: number): Changes {
  const period = m.opts.lastSeenPersistMs;
  if (period > 0) {
    const max = m.opts.lastSeenPersistMaxPerBatch;
    let looked = 0;
    let emitted = 0;
    for (const [id, r] of m.persisted) {
      if (r.checkedAt > now - period || emitted >= max || looked++ >= 5 * max) break;
      m.persisted.delete(id);
      const cur = m.nodes.get(id) ?? m.edges.get(id);
      if (!cur) continue;
      if (LIVE.has(cur.kind)) {
        // These exist only while open connections back them, so they were seen at their source's latest scan
        // (refreshed here, once a period, rather than per flow per scan).
        const at = m.sources.get(cur.source)?.lastBatchAt;
        if (at !== undefined && at > cur.lastSeen) cur.lastSeen = at;
      }
      if (cur.lastSeen > r.lastSeen) {
        t.force(id, !m.nodes.has(id));
        emitted++;
      }
      m.persisted.set(id, persistRec(m, r.lastSeen, now)); // to the back of the queue
    }
  }
  const c = t.result();
  // They ride with the next graph change (a source's first batch always brings one), so a store write always moves
  // the rev: a change set of intervals alone would look like a retried transaction to the Neo4j adapter.
  if (m.intervalsChanged.size && !isEmpty(c)) {
    c.sourceIntervals = Object.fromEntries(m.intervalsChanged);
    m.intervalsChanged.clear();
  }
  for (const n of c.nodesUpserted) written(m, n.id, n.lastSeen, now);
  for (const e of c.edgesUpserted) written(m, e.id, e.lastSeen, now);
  for (const id of c.nodesRemoved) m.persisted.delete(id);
  for (const e of c.edgesRemoved) m.persisted.delete(e.id);
  return c;
}

/** Kinds that exist only while confirmed, open (or just closed, within grace) connections back them. */
const LIVE = new Set<string>(["CONNECTS", "DEPENDS_ON", "external"]);

type PersistRec = Readonly<{ lastSeen: number; checkedAt: number }>;

/**
 * Entities written or checked in one call mostly share one (lastSeen, checkedAt) pair: one frozen record per pair
 * instead of one per entity (~40 bytes each at 600k entities).
 */
function persistRec(m: TopologyModel, lastSeen: number, checkedAt: number): PersistRec {
  const c = m.persistRecs;
  if (c.at !== checkedAt) {
    c.at = checkedAt;
    c.byLastSeen.clear();
  }
  let r = c.byLastSeen.get(lastSeen);
  if (!r) {
    if (c.byLastSeen.size >= 4096) c.byLastSeen.clear(); // a bound on memory, not a correctness matter
    c.byLastSeen.set(lastSeen, (r = Object.freeze({ lastSeen, checkedAt })));
  }
  return r;
}

function written(m: TopologyModel, id: string, lastSeen: number, now: number) {
  m.persisted.delete(id);
  m.persisted.set(id, persistRec(m, lastSeen, now));
}

function sourceOf(m: TopologyModel, id: string, host: string): SourceRec {
  let s = m.sources.get(id);
  if (!s) {
    s = { id, host, scans: 0, lastBatchAt: undefined, lastScanId: -1, lastScanAt: 0, intervalMs: 0, declaredIntervalMs: 0, stale: false, flows: [], listeners: [], sockets: [] };
    m.sources.set(id, s);
  }
  return s;
}

/**
 * Every decoded message brings its own copies of the same host, source, IP and protocol strings; records keep the
 * model's one copy instead (~100 bytes each, several per flow). Bounded: past the cap the table starts over, which
 * costs sharing, never correctness.
 */
function intern(m: TopologyModel, s: string): string {
  const t = m.strings.get(s);
  if (t !== undefined) return t;
  if (m.strings.size >= 500_000) m.strings.clear();
  m.strings.set(s, s);
  return s;
}

function applyOne(m: TopologyModel, t: Tracker, batch: DiscoveryBatch, now: number): void {
  const host = intern(m, batch.host);
  const ctx: Ctx = { m, t, source: intern(m, batch.source), host, now };
  const src = sourceOf(m, ctx.source, host);
  src.host = host;
  src.lastBatchAt = now;
  if (batch.intervalMs !== undefined && batch.intervalMs !== src.declaredIntervalMs) {
    src.declaredIntervalMs = batch.intervalMs;
    m.intervalsChanged.set(src.id, batch.intervalMs);
  }
  if (src.stale) unmarkStale(ctx, src);
  if (batch.scanId !== src.lastScanId) {
    if (src.lastScanAt && batch.at > src.lastScanAt) {
      const gap = batch.at - src.lastScanAt;
      src.intervalMs = src.intervalMs ? Math.round(src.intervalMs * 0.7 + gap * 0.3) : gap;
    }
    src.lastScanId = batch.scanId;
    src.lastScanAt = batch.at;
  }
  const events = [...batch.events].sort((a, b) => ORDER[a.type] - ORDER[b.type]);
  let scan: FullScan | undefined;
  if (batch.full) {
    scan = m.fullScans.get(batch.source);
    if (!scan || scan.scanId !== batch.scanId) {
      scan = { scanId: batch.scanId, partsSeen: new Set(), parts: batch.parts, listeners: new Set(), sockets: new Set() };
      m.fullScans.set(batch.source, scan);
    }
    scan.partsSeen.add(batch.part);
  }
  for (const e of events) {
    switch (e.type) {
      case "host.seen":
        hostSeen(ctx, e, batch.at);
        break;
      case "listener.seen": {
        const id = listenerSeen(ctx, src, e);
        scan?.listeners.add(id);
        break;
      }
      case "listener.gone":
        removeListener(ctx, listenerId(ctx.host, e.proto, e.ip, e.port));
        break;
      case "connection.seen": {
        const k = connectionSeen(ctx, src, e);
        if (k) scan?.sockets.add(k);
        break;
      }
      case "connection.gone":
        closeSocket(m, sockKey(ctx.host, e));
        break;
      case "entity.annotated":
        annotationSeen(ctx, e, batch.scanId);
        break;
      case "name.seen":
        nameSeen(ctx, e, batch.scanId);
        break;
    }
  }
  if (scan && scan.partsSeen.size >= scan.parts) {
    // The whole state of this source has arrived: what it no longer lists is gone (scoped to this source only).
    for (const k of [...src.sockets]) if (!scan.sockets.has(k)) closeSocket(m, k);
    for (const id of [...src.listeners]) if (!scan.listeners.has(id)) removeListener(ctx, id);
    dropAnnotations(ctx, batch.source, (v) => v.scanId !== batch.scanId);
    dropNames(ctx, batch.source, (v) => v.scanId !== batch.scanId);
    m.fullScans.delete(batch.source);
    endScan(ctx, src);
    if (m.recovered.delete(batch.source)) sweepRecovered(ctx);
  } else if (!batch.full && batch.part === batch.parts - 1) endScan(ctx, src);
}

/** End of one scan of a source: flows open now count as seen once more; long-closed ones go. */
function endScan(ctx: Ctx, src: SourceRec) {
  const { confirmScans, graceScans } = ctx.m.opts;
  src.scans++;
  for (const k of [...src.flows]) {
    const f = ctx.m.flows.get(k);
    if (!f) {
      bagDelete(src.flows, k);
      continue;
    }
    if (slotSize(f.sockets)) {
      if (f.lastSeenScan !== src.scans) {
        f.seenScans++;
        f.lastSeenScan = src.scans;
      }
      if (!f.confirmed && f.seenScans >= confirmScans) confirmFlow(ctx, f);
    } else if (src.scans - f.lastSeenScan >= graceScans) removeFlow(ctx, f);
  }
}

function putNode(ctx: Ctx, id: string, kind: TopoNode["kind"], name: string, props: TopoNode["props"], source = ctx.source) {
  const prev = ctx.m.nodes.get(id);
  const ann = ctx.m.annotated.get(id);
  if (ann) props = { ...props, ...ann.props, annotatedBy: ann.by };
  if (prev && prev.name === name && prev.source === source && sameProps(prev.props, props)) {
    prev.lastSeen = ctx.now;
    return;
  }
  ctx.t.touchNode(id);
  if (prev && prev.source !== source) removeFrom(ctx.m.bySource, prev.source, id, false);
  if (!prev || prev.source !== source) indexSource(ctx.m, source, id);
  ctx.m.nodes.set(id, { id: prev?.id ?? id, kind, name, source, props, firstSeen: (prev ?? ctx.t.nodeBefore(id))?.firstSeen ?? ctx.now, lastSeen: ctx.now });
}

function indexSource(m: TopologyModel, source: string, id: string) {
  addTo(m.bySource, source, id);
}

/** Props of edges without any (RUNS, LISTENS): one frozen object for all of them. */
const EMPTY_PROPS: TopoEdge["props"] = Object.freeze({});

/**
 * Edge props repeat across edges (a CONNECTS edge's {proto, port}, a DEPENDS_ON edge's {ports}): one frozen object per
 * distinct value instead of one per edge (~130 bytes each at 500k edges).
 */
function edgeProps(m: TopologyModel, kind: "CONNECTS" | "DEPENDS_ON", s: string, port = 0): TopoEdge["props"] {
  const key = kind === "DEPENDS_ON" ? `D ${s}` : `C ${port} ${s}`;
  let p = m.edgePropsCache.get(key);
  if (!p) {
    if (m.edgePropsCache.size >= 50_000) m.edgePropsCache.clear(); // a bound on memory, not a correctness matter
    const made: TopoEdge["props"] = kind === "DEPENDS_ON" ? { ports: s } : { proto: s, port };
    p = Object.freeze(made);
    m.edgePropsCache.set(key, p);
  }
  return p;
}

/**
 * Returns the edge's id, the model's own copy of the string when it has one (callers keep it: one string per id).
 * `props` are shared between edges (see edgeProps): never changed in place.
 */
function putEdge(ctx: Ctx, kind: EdgeKind, src: string, dst: string, props: TopoEdge["props"] = EMPTY_PROPS, source = ctx.source, knownId?: string): string {
  let id = knownId ?? edgeId(kind, src, dst);
  const prev = ctx.m.edges.get(id);
  if (prev) id = prev.id;
  if (prev && prev.source === source && (prev.props === props || sameProps(prev.props, props))) {
    prev.lastSeen = ctx.now;
    return id;
  }
  ctx.t.touchEdge(id);
  // firstSeen survives a drop and re-creation within one call (a listener changing owner, a restarted server)
  const e: TopoEdge = { id, kind, src, dst, source, props, firstSeen: (prev ?? ctx.t.edgeBefore(id))?.firstSeen ?? ctx.now, lastSeen: ctx.now };
  ctx.m.edges.set(id, e);
  if (!prev) {
    addTo(ctx.m.adjacency, src, id);
    addTo(ctx.m.adjacency, dst, id);
    if (kind === "CONNECTS" || kind === "LISTENS") deriveAdded(ctx.m, e, ctx);
  }
  return id;
}

function dropEdge(ctx: Ctx, id: string) {
  const e = ctx.m.edges.get(id);
  if (!e) return;
  ctx.t.touchEdge(id);
  ctx.m.edges.delete(id);
  removeFrom(ctx.m.adjacency, e.src, id, false);
  removeFrom(ctx.m.adjacency, e.dst, id, false);
  if (e.kind === "CONNECTS" || e.kind === "LISTENS") deriveDropped(ctx, e);
  else if (e.kind === "DEPENDS_ON") ctx.m.dependsVia.delete(id);
}

/*
 * DEPENDS_ON caller → served service is derived from edges, not from flows: it exists while at least one pair
 * (CONNECTS A → L, LISTENS B → L) does, with A and B services and A ≠ B. Hooked on edge creation and removal, so it
 * follows every way those edges come and go (flows closing, listeners moving to another service, nodes removed, a
 * restart recovered from the store) and costs O(edges of the listener that changed), never a scan of the graph. A
 * restarted server keeps its service id, so its LISTENS edge and the DEPENDS_ON edges on it do not move.
 */
const isService = (id: string) => id.startsWith("service:");

/** A new CONNECTS or LISTENS edge: the pairs it makes. `ctx` is absent while a model is rebuilt from the store. */
function deriveAdded(m: TopologyModel, e: TopoEdge, ctx?: Ctx) {
  if (!isService(e.src)) return;
  if (e.kind === "LISTENS") {
    addTo(m.servedBy, e.dst, e.src);
    servedAtChange(m, e.src, e.dst, 1, ctx);
    for (const eid of m.adjacency.get(e.dst) ?? []) {
      const c = m.edges.get(eid);
      if (c?.kind === "CONNECTS" && c.dst === e.dst && isService(c.src) && c.src !== e.src) dependsLink(m, c.src, e.src, e.dst, ctx);
    }
  } else if (e.dst.startsWith("listener:")) {
    for (const b of m.servedBy.get(e.dst) ?? []) if (b !== e.src) dependsLink(m, e.src, b, e.dst, ctx);
  }
}

function deriveDropped(ctx: Ctx, e: TopoEdge) {
  const m = ctx.m;
  if (!isService(e.src)) return;
  if (e.kind === "LISTENS") {
    removeFrom(m.servedBy, e.dst, e.src);
    servedAtChange(m, e.src, e.dst, -1, ctx);
    for (const eid of m.adjacency.get(e.dst) ?? []) {
      const c = m.edges.get(eid);
      if (c?.kind === "CONNECTS" && c.dst === e.dst && isService(c.src) && c.src !== e.src) dependsUnlink(ctx, c.src, e.src, e.dst);
    }
  } else if (e.dst.startsWith("listener:")) {
    for (const b of m.servedBy.get(e.dst) ?? []) if (b !== e.src) dependsUnlink(ctx, e.src, b, e.dst);
  }
}

function dependsLink(m: TopologyModel, a: string, b: string, listener: string, ctx?: Ctx) {
  const id = edgeId("DEPENDS_ON", a, b);
  let r = m.dependsVia.get(id);
  if (!r) m.dependsVia.set(id, (r = { src: a, dst: b, via: undefined }));
  if (slotHas(r.via, listener)) return;
  r.via = slotAdd(r.via, listener);
  if (ctx) putDepends(ctx, id, r);
}

function dependsUnlink(ctx: Ctx, a: string, b: string, listener: string) {
  const id = edgeId("DEPENDS_ON", a, b);
  const r = ctx.m.dependsVia.get(id);
  if (!r || !slotHas(r.via, listener)) return;
  r.via = slotDelete(r.via, listener);
  if (slotSize(r.via)) putDepends(ctx, id, r);
  else {
    ctx.m.dependsVia.delete(id);
    dropEdge(ctx, id);
  }
}

/** The DEPENDS_ON edge as its pairs say: the ports it is reached on ("5432/tcp,5433/tcp"); owned by the caller's source. */
function putDepends(ctx: Ctx, id: string, r: DependsRec) {
  const ports = new Set<string>();
  for (const l of slotValues(r.via)) {
    const n = ctx.m.nodes.get(l);
    if (n) ports.add(`${n.props.port}/${n.props.proto}`);
  }
  const sorted = [...ports].sort((x, y) => parseInt(x) - parseInt(y) || x.localeCompare(y));
  const source = ctx.m.nodes.get(r.src)?.source ?? ctx.source;
  putEdge(ctx, "DEPENDS_ON", r.src, r.dst, edgeProps(ctx.m, "DEPENDS_ON", sorted.join(",")), source, id);
}

function dropNode(ctx: Ctx, id: string) {
  const n = ctx.m.nodes.get(id);
  if (!n) return;
  for (const eid of [...(ctx.m.adjacency.get(id) ?? [])]) dropEdge(ctx, eid);
  ctx.m.adjacency.delete(id);
  ctx.t.touchNode(id);
  ctx.m.nodes.delete(id);
  ctx.m.nodeRefs.delete(id);
  removeFrom(ctx.m.bySource, n.source, id, false);
  if (n.kind === "external") removeFrom(ctx.m.externalsAt, String(n.props.ip), id);
}

export const isAgentSource = (source: string) => source.startsWith("agent:");

/**
 * A host and the IPs it holds. Agents are the authority on their own host: a discovery job's host.seen (a scan, an
 * inventory) neither rewrites an agent-reported host node nor takes or drops an IP an agent claims; it may claim an
 * IP nobody's agent holds (so calls to a host only a job knows resolve to its listeners), until an agent claims it.
 */
function hostSeen(ctx: Ctx, e: HostSeen, at: number) {
  const m = ctx.m;
  const agent = isAgentSource(ctx.source);
  const id = hostId(ctx.host);
  const node = m.nodes.get(id);
  if (agent || !node || !isAgentSource(node.source))
    putNode(ctx, id, "host", e.hostname, {
      hostname: e.hostname,
      os: e.os,
      kernel: e.kernel,
      cpus: e.cpus,
      memTotalBytes: e.memTotalBytes,
      ips: e.ips.join(","),
    });
  const ips = new Set(e.ips.filter((ip) => !isLoopback(ip)));
  let before: Set<string>;
  if (agent) {
    before = m.hostIps.get(ctx.host) ?? new Set<string>();
    m.hostIps.set(ctx.host, ips);
  } else {
    let bySource = m.jobIps.get(ctx.host);
    if (!bySource) m.jobIps.set(ctx.host, (bySource = new Map()));
    before = bySource.get(ctx.source) ?? new Set<string>();
    if (ips.size) bySource.set(ctx.source, ips);
    else bySource.delete(ctx.source);
    if (!bySource.size) m.jobIps.delete(ctx.host);
  }
  const moved: string[] = [];
  for (const ip of before) {
    if (ips.has(ip)) continue;
    // No longer listed: the claim ends (only if it is still this reporter's).
    if (ownsClaim(m.ipOwner.get(ip), ctx.source, ctx.host)) {
      m.ipOwner.delete(ip);
      moved.push(ip);
    }
  }
  for (const ip of ips) {
    const o = m.ipOwner.get(ip);
    if (o) {
      if (o.agent && !agent) continue; // a job never takes an IP from an agent
      if (o.agent === agent && o.host !== ctx.host && o.at > at) continue; // a newer claim of the same standing wins over this late one
    }
    if (!o || o.host !== ctx.host) moved.push(ip);
    m.ipOwner.set(ip, { host: ctx.host, at, agent, source: ctx.source });
  }
  for (const ip of moved) reresolveIp(ctx, ip);
}

/** Whether `source` (reporting for `host`) made this claim: an agent's claims are its host's; a job's are its own. */
function ownsClaim(o: IpClaim | undefined, source: string, host: string): boolean {
  if (!o || o.host !== host) return false;
  return isAgentSource(source) ? o.agent : !o.agent && o.source === source;
}

/** The IPs a host is known by: its agent's, and any job's. */
function ipsOfHost(m: TopologyModel, host: string): string[] {
  const out = [...(m.hostIps.get(host) ?? [])];
  for (const ips of m.jobIps.get(host)?.values() ?? []) out.push(...ips);
  return out;
}

function ensureHost(ctx: Ctx): string {
  const id = hostId(ctx.host);
  if (!ctx.m.nodes.has(id)) putNode(ctx, id, "host", ctx.host, { hostname: ctx.host });
  return id;
}

function procOf(ctx: Ctx, p: ProcessIdentity): ProcRec {
  const key = procKey(ctx.host, p);
  let r = ctx.m.procs.get(key);
  if (!r) {
    r = { key, host: ctx.host, source: ctx.source, ident: p, fp: fingerprint(p), listeners: [], flows: [], confirmed: 0, service: null, ports: null };
    ctx.m.procs.set(key, r);
  } else r.ident = p;
  return r;
}

function desiredService(m: TopologyModel, p: ProcRec): string {
  const ls: ListenerRec[] = [];
  for (const id of p.listeners) {
    const l = m.listeners.get(id);
    if (l) ls.push(l);
  }
  if (ls.length) p.ports = identityPorts(ls);
  return `service:${p.host}:${p.fp}:${p.ports ?? "client"}`;
}

/**
 * Puts a process where it belongs: in the service its fingerprint and ports say (when it has a listener or a
 * confirmed flow), moving its LISTENS and CONNECTS edges along when that changes; forgets it when nothing holds it.
 */
function syncProc(ctx: Ctx, p: ProcRec) {
  const active = bagSize(p.listeners) > 0 || p.confirmed > 0;
  let want = active ? desiredService(ctx.m, p) : null;
  // the one string per service id the model already holds, not a fresh copy per sync
  if (want !== null) want = want === p.service ? p.service : (ctx.m.nodes.get(want)?.id ?? want);
  const old = p.service;
  if (old && old !== want) {
    for (const id of p.listeners) dropEdge(ctx, edgeId("LISTENS", old, id));
    removeFrom(ctx.m.services, old, p.key, false);
    p.service = null;
    refreshService(ctx, old, p.host, p.source);
  }
  if (want) {
    p.service = want;
    addTo(ctx.m.services, want, p.key);
    refreshService(ctx, want, p.host, p.source);
    for (const id of p.listeners) putEdge(ctx, "LISTENS", want, id, EMPTY_PROPS, p.source);
  }
  // Confirmed flows follow their process's service.
  for (const k of p.flows) {
    const f = ctx.m.flows.get(k);
    if (f?.confirmed && f.dst && f.edge !== edgeId("CONNECTS", want ?? hostId(p.host), f.dst)) {
      unrefEdge(ctx, f.edge!);
      f.edge = refEdge(ctx, f, f.dst);
    }
  }
  if (!active && !bagSize(p.flows)) ctx.m.procs.delete(p.key);
}

/** A service node mirrors its members: the lowest pid speaks for it; without members it goes. */
function refreshService(ctx: Ctx, id: string, host: string, source: string) {
  const members = ctx.m.services.get(id);
  let lead: ProcRec | undefined;
  let count = 0;
  for (const k of members ?? []) {
    const p = ctx.m.procs.get(k);
    if (!p) continue;
    count++;
    if (!lead || p.ident.pid < lead.ident.pid) lead = p;
  }
  if (!lead) {
    ctx.m.services.delete(id);
    dropNode(ctx, id);
    return;
  }
  const p = lead.ident;
  const ports = id.slice(id.lastIndexOf(":") + 1);
  putNode(
    ctx,
    id,
    "process",
    lead.fp,
    {
      host,
      service: lead.fp,
      ports,
      pid: p.pid,
      processes: count,
      exe: p.exe,
      comm: p.comm,
      cmdline: p.cmdline.join(" ").slice(0, 2048),
      user: p.user,
      startTime: p.startTime,
      containerId: p.containerId,
      ...(p.containerImage ? { containerImage: p.containerImage } : {}),
    },
    source,
  );
  putEdge(ctx, "RUNS", hostId(host), id, EMPTY_PROPS, source);
}

function listenerSeen(ctx: Ctx, src: SourceRec, e: ListenerSeen): string {
  const id = listenerId(ctx.host, e.proto, e.ip, e.port);
  const prev = ctx.m.listeners.get(id);
  // A job seeing a socket an agent reports (with its process) learns nothing new and must not take it over.
  if (prev && prev.source !== ctx.source && isAgentSource(prev.source) && !isAgentSource(ctx.source)) return id;
  const host = ensureHost(ctx);
  const proc = e.process ? procOf(ctx, e.process) : null;
  const pk = proc?.key ?? null;
  putNode(ctx, id, "listener", `${e.proto}/${e.port}`, { host: ctx.host, proto: e.proto, ip: e.ip, port: e.port });
  if (prev && prev.proc === pk) {
    if (proc) syncProc(ctx, proc); // the identity may have changed (cmdline, user)
    else putEdge(ctx, "LISTENS", host, id);
    return id;
  }
  if (prev) detachListener(ctx, prev);
  const rec: ListenerRec = { id, source: ctx.source, host: ctx.host, proto: intern(ctx.m, e.proto), ip: intern(ctx.m, e.ip), port: e.port, proc: pk };
  ctx.m.listeners.set(id, rec);
  src.listeners = bagAdd(src.listeners, id);
  if (!prev) addTo(ctx.m.listenerIndex, `${ctx.host}|${e.proto}|${e.port}`, id);
  if (proc) {
    proc.listeners = bagAdd(proc.listeners, id);
    syncProc(ctx, proc);
  } else putEdge(ctx, "LISTENS", host, id);
  if (!prev) adoptExternals(ctx, e);
  return id;
}

/** Takes a listener away from its owner (restart under a new pid, or removal). */
function detachListener(ctx: Ctx, l: ListenerRec) {
  if (!l.proc) {
    dropEdge(ctx, edgeId("LISTENS", hostId(l.host), l.id));
    return;
  }
  const p = ctx.m.procs.get(l.proc);
  if (!p) return;
  if (p.service) dropEdge(ctx, edgeId("LISTENS", p.service, l.id));
  bagDelete(p.listeners, l.id);
  syncProc(ctx, p);
}

/** A new listener may be what earlier flows were calling: move them off their external nodes. */
function adoptExternals(ctx: Ctx, e: ListenerSeen) {
  const ips = WILDCARD.has(e.ip) ? [...new Set(ipsOfHost(ctx.m, ctx.host)), e.ip === "::" ? "::1" : "127.0.0.1"] : [e.ip];
  for (const ip of ips) {
    const keys = ctx.m.dstFlows.get(externalId(ip, e.port));
    if (keys) for (const k of [...keys]) reresolve(ctx, k);
  }
}

function removeListener(ctx: Ctx, id: string) {
  const l = ctx.m.listeners.get(id);
  if (!l) return;
  ctx.m.listeners.delete(id);
  const owner = ctx.m.sources.get(l.source);
  if (owner) bagDelete(owner.listeners, id);
  removeFrom(ctx.m.listenerIndex, `${l.host}|${l.proto}|${l.port}`, id, false);
  detachListener(ctx, l);
  // Flows that pointed at it now point wherever resolution says (another listener, or an external node).
  const keys = ctx.m.dstFlows.get(id);
  if (keys) for (const k of [...keys]) reresolve(ctx, k);
  dropNode(ctx, id);
}

/**
 * The listener a connection to ip:port on a host reaches: the one bound to that ip, else a wildcard (or loopback for
 * loopback). An agent's listener comes before one a job inferred (a port scan or an inventory sees an open port, the
 * agent sees the process serving it).
 */
function findListener(m: TopologyModel, host: string, proto: string, ip: string, port: number): string | undefined {
  const set = m.listenerIndex.get(`${host}|${proto}|${port}`);
  if (!set) return undefined;
  let best: string | undefined;
  let bestScore = -1;
  for (const id of set) {
    const l = m.listeners.get(id);
    if (!l) continue;
    const exact = l.ip === ip;
    if (!exact && !WILDCARD.has(l.ip) && !(isLoopback(ip) && isLoopback(l.ip))) continue;
    const score = (isAgentSource(l.source) ? 2 : 0) + (exact ? 1 : 0);
    if (score > bestScore) {
      best = id;
      bestScore = score;
    }
  }
  return best;
}

/** Where a flow's remote end is, and whether that answer hangs on who owns the IP. */
function resolveRemote(m: TopologyModel, host: string, proto: string, ip: string, port: number): { dst: string; viaOwner: boolean } {
  let target: string | undefined;
  let viaOwner = false;
  if (isLoopback(ip) || m.hostIps.get(host)?.has(ip)) target = host;
  else {
    viaOwner = true;
    target = m.ipOwner.get(ip)?.host;
  }
  const found = target ? findListener(m, target, proto, ip, port) : undefined;
  return { dst: found ?? externalId(ip, port), viaOwner };
}

function connectionSeen(ctx: Ctx, src: SourceRec, e: ConnectionSeen): string | null {
  // Server side of a connection: the client reports the dependency; ephemeral client ports never become nodes.
  if (findListener(ctx.m, ctx.host, e.proto, e.localIp, e.localPort)) return null;
  const sk = sockKey(ctx.host, e);
  const proc = e.process ? procOf(ctx, e.process) : null;
  const fk = `${ctx.host}|${proc?.key ?? "host"}|${e.proto}|${hostPort(e.remoteIp, e.remotePort)}`;
  const had = ctx.m.sockets.get(sk);
  if (had === fk) return sk;
  if (had) closeSocket(ctx.m, sk);
  let f = ctx.m.flows.get(fk);
  if (!f) {
    f = {
      key: fk,
      source: ctx.source,
      host: ctx.host,
      proc: proc?.key ?? null,
      proto: intern(ctx.m, e.proto),
      remoteIp: intern(ctx.m, e.remoteIp),
      remotePort: e.remotePort,
      sockets: undefined,
      seenScans: 0,
      lastSeenScan: src.scans,
      confirmed: false,
      dst: null,
      edge: null,
    };
    ctx.m.flows.set(fk, f);
    src.flows = bagAdd(src.flows, fk);
    if (proc) proc.flows = bagAdd(proc.flows, fk);
    // A dependency the graph already holds (another process of the service, or recovered from the store) needs no
    // second look.
    const owner = proc ? desiredService(ctx.m, proc) : hostId(ctx.host);
    const { dst } = resolveRemote(ctx.m, ctx.host, e.proto, e.remoteIp, e.remotePort);
    if (ctx.m.opts.confirmScans <= 1 || ctx.m.edges.has(edgeId("CONNECTS", owner, dst))) confirmFlow(ctx, f);
  }
  f.sockets = slotAdd(f.sockets, sk);
  ctx.m.sockets.set(sk, fk);
  src.sockets = bagAdd(src.sockets, sk);
  return sk;
}

function closeSocket(m: TopologyModel, sk: string) {
  const fk = m.sockets.get(sk);
  if (fk === undefined) return;
  m.sockets.delete(sk);
  const f = m.flows.get(fk);
  if (!f) return;
  f.sockets = slotDelete(f.sockets, sk);
  const src = m.sources.get(f.source);
  if (src) bagDelete(src.sockets, sk);
}

function addTo(map: Map<string, Bag>, k: string, v: string) {
  const s = map.get(k);
  if (!s) map.set(k, [v]);
  else {
    const t = bagAdd(s, v);
    if (t !== s) map.set(k, t);
  }
}
/** `dropEmpty` false keeps an emptied entry (as the Sets it replaces were kept), so iteration order does not move. */
function removeFrom(map: Map<string, Bag>, k: string, v: string, dropEmpty = true) {
  const s = map.get(k);
  if (!s) return;
  bagDelete(s, v);
  if (dropEmpty && !bagSize(s)) map.delete(k);
}

function confirmFlow(ctx: Ctx, f: FlowRec) {
  f.confirmed = true;
  const p = f.proc ? ctx.m.procs.get(f.proc) : undefined;
  if (p) {
    p.confirmed++;
    syncProc(ctx, p); // makes the service (it may have had no node yet); does not touch this flow (no dst yet)
  } else ensureHost({ ...ctx, host: f.host, source: f.source });
  attachFlow(ctx, f);
}

/** Resolves a confirmed flow and hangs it on its CONNECTS edge. */
function attachFlow(ctx: Ctx, f: FlowRec) {
  const r = resolveRemote(ctx.m, f.host, f.proto, f.remoteIp, f.remotePort);
  f.dst = r.dst;
  if (r.viaOwner) addTo(ctx.m.ipFlows, f.remoteIp, f.key);
  addTo(ctx.m.dstFlows, r.dst, f.key);
  if (r.dst.startsWith("external:")) {
    if (!ctx.m.nodes.has(r.dst)) putExternal(ctx, r.dst, { ip: f.remoteIp, port: f.remotePort, proto: f.proto }, f.source);
    ctx.m.nodeRefs.set(r.dst, (ctx.m.nodeRefs.get(r.dst) ?? 0) + 1);
  }
  f.edge = refEdge(ctx, f, r.dst);
}

function detachFlow(ctx: Ctx, f: FlowRec) {
  if (!f.dst) return;
  removeFrom(ctx.m.ipFlows, f.remoteIp, f.key);
  removeFrom(ctx.m.dstFlows, f.dst, f.key);
  if (f.edge) unrefEdge(ctx, f.edge);
  if (f.dst.startsWith("external:")) {
    const n = (ctx.m.nodeRefs.get(f.dst) ?? 1) - 1;
    if (n > 0) ctx.m.nodeRefs.set(f.dst, n);
    else dropNode(ctx, f.dst);
  }
  f.dst = null;
  f.edge = null;
}

function refEdge(ctx: Ctx, f: FlowRec, dst: string): string {
  const p = f.proc ? ctx.m.procs.get(f.proc) : undefined;
  const owner = p?.service ?? hostId(f.host);
  const id = putEdge(ctx, "CONNECTS", owner, dst, edgeProps(ctx.m, "CONNECTS", f.proto, f.remotePort), f.source);
  ctx.m.edgeRefs.set(id, (ctx.m.edgeRefs.get(id) ?? 0) + 1);
  return id;
}

function unrefEdge(ctx: Ctx, id: string) {
  const n = (ctx.m.edgeRefs.get(id) ?? 1) - 1;
  if (n > 0) ctx.m.edgeRefs.set(id, n);
  else {
    ctx.m.edgeRefs.delete(id);
    dropEdge(ctx, id);
  }
}

function reresolve(ctx: Ctx, fk: string) {
  const f = ctx.m.flows.get(fk);
  if (!f?.confirmed) return;
  const r = resolveRemote(ctx.m, f.host, f.proto, f.remoteIp, f.remotePort);
  if (r.dst === f.dst) return;
  detachFlow(ctx, f);
  attachFlow(ctx, f);
}

function reresolveIp(ctx: Ctx, ip: string) {
  const keys = ctx.m.ipFlows.get(ip);
  if (keys) for (const k of [...keys]) reresolve(ctx, k);
}

function removeFlow(ctx: Ctx, f: FlowRec) {
  for (const sk of slotValues(f.sockets)) ctx.m.sockets.delete(sk);
  ctx.m.flows.delete(f.key);
  const src = ctx.m.sources.get(f.source);
  if (src) bagDelete(src.flows, f.key);
  detachFlow(ctx, f);
  const p = f.proc ? ctx.m.procs.get(f.proc) : undefined;
  if (p) {
    bagDelete(p.flows, f.key);
    if (f.confirmed) p.confirmed--;
    syncProc(ctx, p);
  }
}

export function isEmpty(c: Changes): boolean {
  return !c.nodesUpserted.length && !c.nodesRemoved.length && !c.edgesUpserted.length && !c.edgesRemoved.length;
}

function markStale(ctx: Ctx, src: SourceRec) {
  src.stale = true;
  for (const id of ctx.m.bySource.get(src.id) ?? []) {
    const n = ctx.m.nodes.get(id);
    if (!n || n.props.health === "stale") continue;
    ctx.t.touchNode(id);
    ctx.m.nodes.set(id, { ...n, props: { ...n.props, health: "stale", staleSince: ctx.now } });
  }
}

function unmarkStale(ctx: Ctx, src: SourceRec) {
  src.stale = false;
  for (const id of ctx.m.bySource.get(src.id) ?? []) {
    const n = ctx.m.nodes.get(id);
    if (!n || n.props.health !== "stale") continue;
    const { health: _h, staleSince: _s, ...props } = n.props;
    ctx.t.touchNode(id);
    ctx.m.nodes.set(id, { ...n, props });
  }
}

/** Everything a source reported goes (its flows, listeners, services, host and IP claims) — nothing of anyone else. */
function removeSource(ctx: Ctx, src: SourceRec) {
  for (const k of [...src.flows]) {
    const f = ctx.m.flows.get(k);
    if (f) removeFlow(ctx, f);
  }
  for (const id of [...src.listeners]) removeListener(ctx, id);
  const agent = isAgentSource(src.id);
  const claimed = agent ? src.host && ctx.m.hostIps.get(src.host) : ctx.m.jobIps.get(src.host)?.get(src.id);
  for (const ip of claimed || []) {
    if (!ownsClaim(ctx.m.ipOwner.get(ip), src.id, src.host)) continue;
    ctx.m.ipOwner.delete(ip);
    reresolveIp(ctx, ip);
  }
  if (agent) ctx.m.hostIps.delete(src.host);
  else {
    const bySource = ctx.m.jobIps.get(src.host);
    bySource?.delete(src.id);
    if (bySource && !bySource.size) ctx.m.jobIps.delete(src.host);
  }
  dropNames(ctx, src.id, () => true);
  for (const id of [...(ctx.m.bySource.get(src.id) ?? [])]) {
    const n = ctx.m.nodes.get(id);
    // External nodes other sources still call stay (their refs say so).
    if (n?.kind === "external" && ctx.m.nodeRefs.has(id)) continue;
    dropNode(ctx, id);
  }
  dropAnnotations(ctx, src.id, () => true);
  ctx.m.sources.delete(src.id);
  if (src.declaredIntervalMs) ctx.m.intervalsChanged.set(src.id, 0);
  ctx.m.fullScans.delete(src.id);
  ctx.m.recovered.delete(src.id);
  const owned = ctx.m.bySource.get(src.id);
  if (!owned || !bagSize(owned)) ctx.m.bySource.delete(src.id);
}

/**
 * Ages the model at `now` (pure apart from mutating the model, like applyDiscovery): a source silent for `staleAfter`
 * of its intervals is marked stale, for `removeAfter` it is removed with everything it reported. Returns the changes.
 */
export function ageModel(m: TopologyModel, now: number, opts: Partial<AgingOptions> = {}): Changes {
  const o = { ...DEFAULT_AGING, ...opts };
  const t = new Tracker(m);
  for (const src of [...m.sources.values()]) {
    if (src.lastBatchAt === undefined) {
      src.lastBatchAt = now; // recovered from the store: the clock starts now
      continue;
    }
    const interval = Math.max(o.intervalMs, src.intervalMs, src.declaredIntervalMs);
    const silent = now - src.lastBatchAt;
    const ctx: Ctx = { m, t, source: src.id, host: src.host, now };
    if (silent >= o.removeAfter * interval) removeSource(ctx, src);
    else if (silent >= o.staleAfter * interval && !src.stale) markStale(ctx, src);
  }
  return finish(m, t, now);
}

/** Rebuilds a model from stored nodes and edges (after a restart); listeners and flows are re-learned from the next full scan. */
export function modelFromGraph(nodes: TopoNode[], edges: TopoEdge[], opts: Partial<StageOptions> = {}, sourceIntervals: Record<string, number> = {}): TopologyModel {
  const m = emptyModel(opts);
  for (const n of nodes) {
    compactNode(m, n);
    m.nodes.set(n.id, n);
    indexSource(m, n.source, n.id);
    m.recovered.add(n.source);
    const src = sourceOf(m, n.source, n.kind === "host" ? n.id.slice("host:".length) : String(n.props.host ?? ""));
    if (n.props.health === "stale") src.stale = true;
    if (n.kind === "host") {
      const host = n.id.slice("host:".length);
      src.host = host;
      const ips = new Set<string>();
      if (typeof n.props.ips === "string") for (const ip of n.props.ips.split(",")) if (ip && !isLoopback(ip)) ips.add(ip);
      const agent = isAgentSource(n.source);
      if (agent) m.hostIps.set(host, ips);
      else if (ips.size) m.jobIps.set(host, new Map([[n.source, ips]]));
      for (const ip of ips) {
        const o = m.ipOwner.get(ip);
        if (!o || (agent && !o.agent) || (o.agent === agent && o.at < n.lastSeen)) m.ipOwner.set(ip, { host, at: n.lastSeen, agent, source: n.source });
      }
    } else if (n.kind === "external" && typeof n.props.ip === "string") {
      addTo(m.externalsAt, n.props.ip, n.id);
    } else if (n.kind === "listener") {
      // Listeners are resolvable at once, so a caller whose full scan comes before its server's keeps its edges
      // (no flicker). Who serves them is learned from the server's next scan; its full scan drops those it no longer lists.
      const { host, proto, ip, port } = n.props;
      if (typeof host === "string" && typeof proto === "string" && typeof ip === "string" && typeof port === "number") {
        m.listeners.set(n.id, { id: n.id, source: n.source, host, proto, ip, port, proc: null });
        addTo(m.listenerIndex, `${host}|${proto}|${port}`, n.id);
        src.listeners = bagAdd(src.listeners, n.id);
      }
    }
  }
  for (const e of edges) {
    compactEdge(m, e);
    m.edges.set(e.id, e);
    addTo(m.adjacency, e.src, e.id);
    addTo(m.adjacency, e.dst, e.id);
  }
  // Annotations the store carries (props.annotatedBy says whose): kept, owned by their sources, until those sources'
  // next full scan (which re-lists them under their real targets) or aging says otherwise.
  for (const n of nodes) if (typeof n.props.annotatedBy === "string") recoverAnnotations(m, n);
  // DEPENDS_ON bookkeeping from the stored CONNECTS and LISTENS edges (LISTENS first: CONNECTS pair with them).
  for (const e of edges) if (e.kind === "LISTENS") deriveAdded(m, e);
  for (const e of edges) if (e.kind === "CONNECTS") deriveAdded(m, e);
  for (const [id, r] of m.dependsVia) if (!m.edges.has(id)) addTo(m.dependsMissing, m.nodes.get(r.src)?.source ?? "", id);
  for (const [id, ms] of Object.entries(sourceIntervals)) {
    const src = m.sources.get(id);
    if (src && ms > 0) src.declaredIntervalMs = ms;
  }
  // What the store holds is what was written; the oldest are checked first.
  const stored: (TopoNode | TopoEdge)[] = [...nodes, ...edges];
  stored.sort((a, b) => a.lastSeen - b.lastSeen);
  for (const x of stored) m.persisted.set(x.id, persistRec(m, x.lastSeen, x.lastSeen));
  return m;
}

/**
 * A stored entity as the model keeps its own (see Bag, edgeProps, intern): every row read back from a store carries
 * its own copies of ids, sources, kinds and props, ~3× the memory of a model built from discovery.
 */
function compactNode(m: TopologyModel, n: TopoNode) {
  n.source = intern(m, n.source);
  n.kind = intern(m, n.kind) as TopoNode["kind"];
  for (const [k, v] of Object.entries(n.props)) if (typeof v === "string" && v.length <= 64) n.props[k] = intern(m, v);
}
function compactEdge(m: TopologyModel, e: TopoEdge) {
  e.src = m.nodes.get(e.src)?.id ?? e.src;
  e.dst = m.nodes.get(e.dst)?.id ?? e.dst;
  e.source = intern(m, e.source);
  const p = e.props;
  const keys = Object.keys(p);
  if (!keys.length) e.props = EMPTY_PROPS;
  else if (e.kind === "CONNECTS" && keys.length === 2 && typeof p.proto === "string" && typeof p.port === "number") e.props = edgeProps(m, "CONNECTS", p.proto, p.port);
  else if (e.kind === "DEPENDS_ON" && keys.length === 1 && typeof p.ports === "string") e.props = edgeProps(m, "DEPENDS_ON", p.ports);
}

/** After a restart, the first full scan of a source confirms what still exists; the rest of its entities go. */
function sweepRecovered(ctx: Ctx) {
  const m = ctx.m;
  // The source's edges, found through its nodes (a CONNECTS or DEPENDS_ON edge starts at a node of its source), so
  // each source's first full scan after a restart costs its own part of the graph, not the whole graph.
  const own = new Set<string>();
  for (const id of m.bySource.get(ctx.source) ?? [])
    for (const eid of m.adjacency.get(id) ?? []) if (m.edges.get(eid)?.source === ctx.source) own.add(eid);
  for (const id of own) if (m.edges.get(id)?.kind === "CONNECTS" && !m.edgeRefs.has(id)) dropEdge(ctx, id);
  // DEPENDS_ON as the surviving pairs say: stored ones nothing backs go, the ports summary is brought up to date, and
  // missing ones (a store written before DEPENDS_ON existed) are made.
  for (const id of own) {
    if (m.edges.get(id)?.kind !== "DEPENDS_ON") continue;
    const r = m.dependsVia.get(id);
    if (r) putDepends(ctx, id, r);
    else dropEdge(ctx, id);
  }
  for (const id of m.dependsMissing.get(ctx.source) ?? []) {
    const r = m.dependsVia.get(id);
    if (r && !m.edges.has(id)) putDepends(ctx, id, r);
  }
  m.dependsMissing.delete(ctx.source);
  for (const id of [...(ctx.m.bySource.get(ctx.source) ?? [])]) {
    const n = ctx.m.nodes.get(id);
    if (!n || n.kind === "host") continue;
    const alive = n.kind === "listener" ? ctx.m.listeners.has(id) : n.kind === "external" ? ctx.m.nodeRefs.has(id) : ctx.m.services.has(id);
    if (!alive) dropNode(ctx, id);
  }
}

/*
 * Annotations: CMDB facts (owner, team, tier…) a source attaches to a host (`match: {host}`) or to the service
 * listening on host:port (`match: {host, port, proto = tcp}`). They live beside the entity, not in it: putNode lays
 * them over the discovery props, so discovery rewriting a node keeps them, and an annotation that arrives before its
 * entity exists is applied when it appears. The source owns them: a delta batch adds or changes keys, a completed full
 * scan drops the keys it did not list, aging of the source drops all of them. When two sources set one key, the one
 * that last changed its value wins; when that one drops it, the other's value comes back.
 */

/** Props discovery (and aging) owns: an annotation may not set them. */
export const RESERVED_PROPS: ReadonlySet<string> = new Set([
  "id", "kind", "name", "source", "props", "firstSeen", "lastSeen",
  "hostname", "os", "kernel", "cpus", "memTotalBytes", "ips",
  "host", "service", "ports", "pid", "processes", "exe", "comm", "cmdline", "user", "startTime", "containerId", "containerImage",
  "proto", "ip", "port", "dnsName", "health", "staleSince", "annotatedBy",
]);

const portKey = (host: string, proto: string, port: number) => `${host}|${proto}|${port}`;

function annotationTarget(e: EntityAnnotated): string {
  const { host, port, proto } = e.match;
  return port === undefined ? `host|${host}` : `svc|${portKey(host, proto ?? "tcp", port)}`;
}

function annotationSeen(ctx: Ctx, e: EntityAnnotated, scanId: number) {
  const m = ctx.m;
  const target = annotationTarget(e);
  let bySource = m.annotations.get(target);
  if (!bySource) m.annotations.set(target, (bySource = new Map()));
  let rec = bySource.get(ctx.source);
  if (!rec) bySource.set(ctx.source, (rec = new Map()));
  addTo(m.annotationsBy, ctx.source, target);
  let changed = false;
  for (const [k, value] of Object.entries(e.props)) {
    if (RESERVED_PROPS.has(k)) {
      ctx.t.rejected.push(`${ctx.source}: entity.annotated ${JSON.stringify(e.match)}: "${k}" is a discovery-owned property; skipped`);
      continue;
    }
    const old = rec.get(k);
    if (old && old.value === value) old.scanId = scanId;
    else {
      rec.set(k, { value, seq: ++m.annSeq, scanId });
      changed = true;
    }
  }
  if (!rec.size) bySource.delete(ctx.source);
  if (!bySource.size) m.annotations.delete(target);
  if (changed) refreshTarget(ctx, target);
}

/** Drops a source's annotation keys that `drop` selects, and updates the entities they were on. */
function dropAnnotations(ctx: Ctx, source: string, drop: (v: AnnValue) => boolean) {
  const m = ctx.m;
  const targets = m.annotationsBy.get(source);
  if (!targets) return;
  for (const target of [...targets]) {
    const bySource = m.annotations.get(target);
    const rec = bySource?.get(source);
    let changed = false;
    if (rec)
      for (const [k, v] of rec)
        if (drop(v)) {
          rec.delete(k);
          changed = true;
        }
    if (!rec?.size) {
      bySource?.delete(source);
      bagDelete(targets, target);
    }
    if (bySource && !bySource.size) m.annotations.delete(target);
    if (changed) refreshTarget(ctx, target);
  }
  if (!bagSize(targets)) m.annotationsBy.delete(source);
}

function refreshTarget(ctx: Ctx, target: string) {
  if (target.startsWith("host|")) refreshAnnotations(ctx, hostId(target.slice(5)));
  else if (target.startsWith("id|")) refreshAnnotations(ctx, target.slice(3));
  else for (const svc of [...countKeys(ctx.m.servedAt.get(target.slice(4)))]) refreshAnnotations(ctx, svc);
}

/** The annotation props an entity should carry now: per key, the value of the source that last changed it. */
function effectiveAnnotations(m: TopologyModel, id: string): Annotated | undefined {
  const targets = [`id|${id}`];
  if (id.startsWith("host:")) targets.push(`host|${id.slice(5)}`);
  else for (const k of countKeys(m.serviceAt.get(id))) targets.push(`svc|${k}`);
  const best = new Map<string, { value: string; seq: number; source: string }>();
  for (const t of targets)
    for (const [source, rec] of m.annotations.get(t) ?? [])
      for (const [k, v] of rec) {
        const b = best.get(k);
        if (!b || v.seq > b.seq) best.set(k, { value: v.value, seq: v.seq, source });
      }
  if (!best.size) return undefined;
  const props: Record<string, string> = {};
  const by: Record<string, string> = {};
  for (const k of [...best.keys()].sort()) {
    props[k] = best.get(k)!.value;
    by[k] = best.get(k)!.source;
  }
  return { props, by: JSON.stringify(by) };
}

const sameAnnotated = (a: Annotated | undefined, b: Annotated | undefined) => (!a || !b ? a === b : a.by === b.by && sameProps(a.props, b.props));

function refreshAnnotations(ctx: Ctx, id: string) {
  const m = ctx.m;
  const want = effectiveAnnotations(m, id);
  const had = m.annotated.get(id);
  if (sameAnnotated(want, had)) return;
  if (want) m.annotated.set(id, want);
  else m.annotated.delete(id);
  const n = m.nodes.get(id);
  if (!n) return; // applied when the entity appears (putNode)
  const props = { ...n.props };
  if (had) {
    for (const k of Object.keys(had.props)) delete props[k];
    delete props.annotatedBy;
  }
  if (want) Object.assign(props, want.props, { annotatedBy: want.by });
  ctx.t.touchNode(id);
  m.nodes.set(id, { ...n, props });
}

/** A service starts or stops serving a listener at host|proto|port: annotations of that place follow it. */
function servedAtChange(m: TopologyModel, svc: string, listener: string, delta: 1 | -1, ctx?: Ctx) {
  const l = m.listeners.get(listener);
  const n = m.nodes.get(listener);
  const host = l?.host ?? n?.props.host;
  const proto = l?.proto ?? n?.props.proto;
  const port = l?.port ?? n?.props.port;
  if (typeof host !== "string" || typeof proto !== "string" || typeof port !== "number") return;
  const key = portKey(host, proto, port);
  const bump = (map: Map<string, Counts>, a: string, b: string) => {
    const inner = map.get(a) ?? [];
    const r = countAdd(inner, b, delta);
    if (!countSize(r.c)) map.delete(a);
    else if (r.c !== inner || !map.has(a)) map.set(a, r.c);
    return r.n;
  };
  bump(m.servedAt, key, svc);
  const c = bump(m.serviceAt, svc, key);
  if (ctx && ((delta > 0 && c === 1) || (delta < 0 && c === 0)) && m.annotations.has(`svc|${key}`)) refreshAnnotations(ctx, svc);
}

function recoverAnnotations(m: TopologyModel, n: TopoNode) {
  let by: unknown;
  try {
    by = JSON.parse(String(n.props.annotatedBy));
  } catch {
    return;
  }
  if (!by || typeof by !== "object") return;
  const target = `id|${n.id}`;
  for (const [k, source] of Object.entries(by as Record<string, unknown>)) {
    const value = n.props[k];
    if (typeof source !== "string" || typeof value !== "string") continue;
    let bySource = m.annotations.get(target);
    if (!bySource) m.annotations.set(target, (bySource = new Map()));
    let rec = bySource.get(source);
    if (!rec) bySource.set(source, (rec = new Map()));
    rec.set(k, { value, seq: 0, scanId: -1 });
    addTo(m.annotationsBy, source, target);
    sourceOf(m, source, m.sources.get(source)?.host ?? "");
  }
  const eff = effectiveAnnotations(m, n.id);
  if (eff) m.annotated.set(n.id, eff);
}

/*
 * Names: a resolver (the DNS job, an inventory) says which name an IP has. External nodes at that IP are named
 * `<name>:<port>` with props.dnsName (their id stays external:<ip>:<port>). Per source, its latest answer; across
 * sources, the one that last changed its answer. Scoped like everything else: a completed full scan drops the names
 * its source did not list again, aging drops them all.
 */
function nameSeen(ctx: Ctx, e: NameSeen, scanId: number) {
  const m = ctx.m;
  let bySource = m.names.get(e.ip);
  if (!bySource) m.names.set(e.ip, (bySource = new Map()));
  addTo(m.namesBy, ctx.source, e.ip);
  const old = bySource.get(ctx.source);
  if (old && old.name === e.name) {
    old.scanId = scanId;
    return;
  }
  bySource.set(ctx.source, { name: e.name, seq: ++m.annSeq, scanId });
  renameExternals(ctx, e.ip);
}

function dropNames(ctx: Ctx, source: string, drop: (v: { scanId: number }) => boolean) {
  const ips = ctx.m.namesBy.get(source);
  if (!ips) return;
  for (const ip of [...ips]) {
    const bySource = ctx.m.names.get(ip);
    const v = bySource?.get(source);
    if (v && !drop(v)) continue;
    bySource?.delete(source);
    if (bySource && !bySource.size) ctx.m.names.delete(ip);
    bagDelete(ips, ip);
    renameExternals(ctx, ip);
  }
  if (!bagSize(ips)) ctx.m.namesBy.delete(source);
}

function dnsNameOf(m: TopologyModel, ip: string): string | undefined {
  let best: { name: string; seq: number } | undefined;
  for (const v of m.names.get(ip)?.values() ?? []) if (!best || v.seq > best.seq) best = v;
  return best?.name;
}

function putExternal(ctx: Ctx, id: string, at: { ip: string; port: number; proto: string }, source: string) {
  const dns = dnsNameOf(ctx.m, at.ip);
  const props: TopoNode["props"] = { ip: at.ip, port: at.port, proto: at.proto };
  if (dns) props.dnsName = dns;
  putNode(ctx, id, "external", dns ? `${dns}:${at.port}` : hostPort(at.ip, at.port), props, source);
  addTo(ctx.m.externalsAt, at.ip, id);
}

function renameExternals(ctx: Ctx, ip: string) {
  for (const id of [...(ctx.m.externalsAt.get(ip) ?? [])]) {
    const n = ctx.m.nodes.get(id);
    if (n) putExternal(ctx, id, { ip, port: Number(n.props.port), proto: String(n.props.proto) }, n.source);
  }
}
