/**
 * The model the stage keeps between calls (compact: shared strings and props, small collections as arrays), its
 * options, and the Changes a call hands out.
 */
import type { ProcessIdentity } from "../../contracts/common.ts";
import type { EdgeKind, TopoEdge, TopoNode } from "../../contracts/topology.ts";
import type { Bag, Counts, Slot } from "./bags.ts";

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
  /** what removed entities in bulk, by source (aging, a full state); absent when nothing did (see summarizeRemovals) */
  removals?: Removal[];
}

/** Entities one cause removed in one call (as removed: a few may come back in the same call, e.g. an external). */
export interface Removal {
  /**
   * "aging": the source fell silent and everything it reported went; "full-state": its full scan no longer listed
   * them; "resolved": external nodes taken over by the host or listener the source reported (their callers moved on)
   */
  cause: "aging" | "full-state" | "resolved";
  source: string;
  nodes: number;
  edges: number;
  /** aging: how long the source had been silent, and the interval it was judged by */
  silentMs?: number;
  intervalMs?: number;
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

export interface ListenerRec {
  id: string;
  source: string;
  host: string;
  proto: string;
  ip: string;
  port: number;
  /** owning process key, or null when the agent could not see the owner (then the host owns it) */
  proc: string | null;
}

export interface ProcRec {
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

export interface FlowRec {
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

export interface SourceRec {
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
  /**
   * Removed by aging and back before its next full scan: its deltas name only what changed, so the listeners (and the
   * sockets) it had are unknown. Until its full state arrives its connections are not confirmed (a server half would
   * look like a call to its client's ephemeral port) and calls to it wait rather than become external nodes.
   */
  awaitingFull: boolean;
  flows: Bag;
  listeners: Bag;
  sockets: Bag;
}

export interface FullScan {
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
  /** sources removed by aging and not heard from since (bounded; see SourceRec.awaitingFull) */
  agedOut: Set<string>;
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

export interface IpClaim {
  host: string;
  /** when the claim was made (the batch's `at`): among claims of the same standing the newest wins */
  at: number;
  /** made by a host agent: only an agent can take an IP from an agent */
  agent: boolean;
  source: string;
}

export interface AnnValue {
  value: string;
  seq: number;
  /** scan of its source that last listed it: a completed full scan drops what it did not list */
  scanId: number;
}

export interface Annotated {
  props: Record<string, string>;
  /** JSON {key: source}, stored as props.annotatedBy so a restart knows who owns which prop */
  by: string;
}

export interface DependsRec {
  src: string;
  dst: string;
  /** mostly one listener */
  via: Slot;
}

export type PersistRec = Readonly<{ lastSeen: number; checkedAt: number }>;

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
    agedOut: new Set(),
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

export function isEmpty(c: Changes): boolean {
  return !c.nodesUpserted.length && !c.nodesRemoved.length && !c.edgesUpserted.length && !c.edgesRemoved.length;
}

export function sourceOf(m: TopologyModel, id: string, host: string): SourceRec {
  let s = m.sources.get(id);
  if (!s) {
    s = { id, host, scans: 0, lastBatchAt: undefined, lastScanId: -1, lastScanAt: 0, intervalMs: 0, declaredIntervalMs: 0, stale: false, awaitingFull: false, flows: [], listeners: [], sockets: [] };
    m.sources.set(id, s);
  }
  return s;
}

/**
 * Every decoded message brings its own copies of the same host, source, IP and protocol strings; records keep the
 * model's one copy instead (~100 bytes each, several per flow). Bounded: past the cap the table starts over, which
 * costs sharing, never correctness.
 */
export function intern(m: TopologyModel, s: string): string {
  const t = m.strings.get(s);
  if (t !== undefined) return t;
  if (m.strings.size >= 500_000) m.strings.clear();
  m.strings.set(s, s);
  return s;
}

export function sameProps(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => a[k] === b[k]);
}

/** Props of edges without any (RUNS, LISTENS): one frozen object for all of them. */
export const EMPTY_PROPS: TopoEdge["props"] = Object.freeze({});

/**
 * Edge props repeat across edges (a CONNECTS edge's {proto, port}, a DEPENDS_ON edge's {ports}): one frozen object per
 * distinct value instead of one per edge (~130 bytes each at 500k edges).
 */
export function edgeProps(m: TopologyModel, kind: "CONNECTS" | "DEPENDS_ON", s: string, port = 0): TopoEdge["props"] {
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
