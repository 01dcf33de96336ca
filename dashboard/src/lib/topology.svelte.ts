/**
 * Live topology state: a mirror of the gateway's graph, folded from WebSocket frames with the shared applyDelta.
 *
 * The mirror itself is plain (no deep $state proxies over 10k+ node maps); readers depend on `version`, which is
 * bumped at most once per flush, so a burst of deltas costs one re-render of lists and one layout sync.
 */
import { WsFrame, type NodeKind, type TopoEdge, type TopologyDelta, type TopoNode } from "../../../pipelines/contracts/topology.ts";
import type { EdgeHealth, HealthDelta, HealthEntry, ImpactEntry } from "../../../pipelines/contracts/health.ts";
import { applyDelta, emptyMirror, mirrorFromSnapshot, type Mirror } from "../../../pipelines/stages/apply-delta.ts";
import { healthOf, type HealthState } from "./colors.ts";
import { z } from "zod";

/**
 * The frame contract compiled by zod (generated parser, as the services' hot paths do): at 10k hosts a snapshot is
 * ~130 MB of frames, which zod's runtime parser takes several times longer to check than the network to deliver.
 */
const WsFrameCompiled = z.compile(WsFrame);

/** "history": a past state loaded by the time slider (lib/timetravel.svelte.ts), not a socket. */
export type ConnStatus = "connecting" | "live" | "reconnecting" | "closed" | "history";

/**
 * What became of one frame; the socket handler and tests act on it. "loading": a part of a snapshot or health state
 * streamed in chunks; "held": a delta that arrived while one was loading, applied when it completes.
 */
export type IngestOutcome = "snapshot" | "applied" | "stale" | "ignored" | "rejected" | "loading" | "held";

/** A snapshot being received in chunks: how far along it is. */
export interface LoadProgress {
  received: number;
  total: number;
}

export interface Neighbour {
  edge: TopoEdge;
  /** The node at the other end, undefined when the edge dangles. */
  node: TopoNode | undefined;
  otherId: string;
  dir: "out" | "in";
}

/** An entity an unhealthy one affects (it depends on it), for the details panel. */
export interface Affected {
  id: string;
  node: TopoNode | undefined;
  hops: number;
}

export interface ConnectOptions {
  WebSocket?: typeof WebSocket;
  minDelayMs?: number;
  maxDelayMs?: number;
}

/** Coalesce delta bursts into one reactive update per this many ms. */
const FLUSH_MS = 50;

const zeroKinds = (): Record<NodeKind, number> => ({ host: 0, process: 0, listener: 0, external: 0 });
const zeroHealth = (): Record<HealthState, number> => ({ ok: 0, warning: 0, critical: 0, stale: 0, unknown: 0 });

/** A topology snapshot arriving in chunks, built aside while the last complete graph stays on screen. */
interface PendingSnapshot {
  mirror: Mirror;
  total: number;
  chunks: number;
  /** topology deltas that arrived meanwhile: those past the snapshot's rev are applied at its end */
  held: TopologyDelta[];
}

/** A health state arriving in chunks. */
interface PendingHealth {
  seq: number;
  chunks: number;
  entities: HealthEntry[];
  edges: EdgeHealth[];
  impact: ImpactEntry[];
  held: HealthDelta[];
}

export class TopologyState {
  #mirror: Mirror = emptyMirror();
  #awaitingSnapshot = true;
  #pending: PendingSnapshot | null = null;
  #pendingHealth: PendingHealth | null = null;
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  #focusSeq = 0;

  /** Bumped when the mirror changes; read `mirror` (or this) to depend on the graph. */
  version = $state(0);
  status = $state<ConnStatus>("connecting");
  rev = $state(0);
  nodeCount = $state(0);
  edgeCount = $state(0);
  kindCounts = $state.raw(zeroKinds());
  healthCounts = $state.raw(zeroHealth());
  /** Entities impacted by an unhealthy one they depend on, and CONNECTS edges carrying an unhealthy end's state. */
  impactedCount = $state(0);
  unhealthyEdgeCount = $state(0);
  /** Epoch ms of the last applied frame. */
  updatedAt = $state<number | null>(null);
  /** Epoch ms of the next reconnect attempt while reconnecting. */
  retryAt = $state<number | null>(null);
  rejectedFrames = $state(0);
  /** Set while a snapshot streams in chunks (the page shows it); null otherwise. */
  loading = $state.raw<LoadProgress | null>(null);
  lastError = $state<string | null>(null);
  selectedId = $state<string | null>(null);
  /** Asks the graph view to centre on a node (a new object per request, so repeated requests re-trigger). */
  focusRequest = $state.raw<{ id: string; seq: number } | null>(null);

  get mirror(): Mirror {
    void this.version;
    return this.#mirror;
  }

  selected = $derived.by((): TopoNode | null => {
    void this.version;
    const id = this.selectedId;
    return id === null ? null : (this.#mirror.nodes.get(id) ?? null);
  });

  /** Edges touching the selection, each with the node at its other end. O(edges), recomputed per flush. */
  neighbours = $derived.by((): Neighbour[] => {
    void this.version;
    const id = this.selectedId;
    if (id === null) return [];
    const out: Neighbour[] = [];
    for (const e of this.#mirror.edges.values()) {
      if (e.src === id) out.push({ edge: e, node: this.#mirror.nodes.get(e.dst), otherId: e.dst, dir: "out" });
      else if (e.dst === id) out.push({ edge: e, node: this.#mirror.nodes.get(e.src), otherId: e.src, dir: "in" });
    }
    return out;
  });

  /** Why the selection is impacted: the unhealthy entities it depends on, nearest first. */
  impactOfSelected = $derived.by((): ImpactEntry | null => {
    void this.version;
    const id = this.selectedId;
    return id === null ? null : (this.#impact.get(id) ?? null);
  });

  /** What the selection affects when it is unhealthy: every impacted entity that lists it as a cause. O(impacted). */
  affectedBySelected = $derived.by((): Affected[] => {
    void this.version;
    const id = this.selectedId;
    if (id === null) return [];
    const out: Affected[] = [];
    for (const e of this.#impact.values()) {
      const c = e.causes.find((x) => x.id === id);
      if (c) out.push({ id: e.id, node: this.#mirror.nodes.get(e.id), hops: c.hops });
    }
    return out.sort((a, b) => a.hops - b.hops || (a.node?.name ?? a.id).localeCompare(b.node?.name ?? b.id));
  });

  select(id: string | null, opts: { focus?: boolean } = {}): void {
    this.selectedId = id;
    if (id !== null && opts.focus) this.focusRequest = { id, seq: ++this.#focusSeq };
  }

  /**
   * Folds one frame (raw text or parsed JSON) into the mirror. Frames are validated with the WsFrame contract;
   * a bad frame is counted and dropped, never thrown. Deltas before this connection's snapshot are ignored.
   */
  ingest(data: unknown): IngestOutcome {
    let json: unknown = data;
    if (typeof data === "string") {
      try {
        json = JSON.parse(data);
      } catch {
        return this.#reject("frame is not JSON");
      }
    }
    const parsed = WsFrameCompiled.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return this.#reject(`invalid frame: ${issue ? `${issue.path.join(".")} ${issue.message}` : "unknown"}`);
    }
    const frame = parsed.data;
    switch (frame.schema) {
      case "topology.snapshot.v1":
        this.#pending = null;
        this.loading = null;
        this.#mirror = mirrorFromSnapshot(frame);
        this.#awaitingSnapshot = false;
        this.#healthDirty = true;
        this.#flush();
        return "snapshot";
      case "topology.snapshot.begin.v1":
        // a new begin abandons a snapshot still arriving (the gateway resynced)
        this.#pending = { mirror: { ...emptyMirror(), rev: frame.rev }, total: frame.nodes + frame.edges, chunks: 0, held: [] };
        this.loading = { received: 0, total: frame.nodes + frame.edges };
        return "loading";
      case "topology.snapshot.chunk.v1": {
        const p = this.#pending;
        if (!p || p.mirror.rev !== frame.rev) return this.#reject(`snapshot chunk for rev ${frame.rev} without its begin`);
        for (const n of frame.nodes) p.mirror.nodes.set(n.id, n);
        for (const e of frame.edges) p.mirror.edges.set(e.id, e);
        p.chunks++;
        this.loading = { received: p.mirror.nodes.size + p.mirror.edges.size, total: p.total };
        return "loading";
      }
      case "topology.snapshot.end.v1": {
        const p = this.#pending;
        this.#pending = null;
        this.loading = null;
        if (!p || p.mirror.rev !== frame.rev || p.chunks !== frame.chunks) {
          return this.#reject(`snapshot rev ${frame.rev} ended with ${p?.chunks ?? 0} of its ${frame.chunks} chunks`);
        }
        // the deltas that crossed the snapshot on the wire: those past its rev, once each, in rev order
        for (const d of p.held.sort((a, b) => a.rev - b.rev)) applyDelta(p.mirror, d);
        this.#mirror = p.mirror;
        this.#awaitingSnapshot = false;
        this.#healthDirty = true;
        this.#flush();
        return "snapshot";
      }
      case "health.state.begin.v1":
        this.#pendingHealth = { seq: frame.seq, chunks: 0, entities: [], edges: [], impact: [], held: [] };
        return "loading";
      case "health.state.chunk.v1": {
        const p = this.#pendingHealth;
        if (!p || p.seq !== frame.seq) return this.#reject(`health state chunk for seq ${frame.seq} without its begin`);
        p.entities.push(...frame.entities);
        p.edges.push(...frame.edges);
        p.impact.push(...frame.impact);
        p.chunks++;
        return "loading";
      }
      case "health.state.end.v1": {
        const p = this.#pendingHealth;
        this.#pendingHealth = null;
        if (!p || p.seq !== frame.seq || p.chunks !== frame.chunks) {
          return this.#reject(`health state seq ${frame.seq} ended with ${p?.chunks ?? 0} of its ${frame.chunks} chunks`);
        }
        this.#foldHealth({ ...p, cleared: true });
        for (const d of p.held) if (d.seq > p.seq) this.#foldHealth({ ...d, cleared: false });
        return "applied";
      }
      case "health.state.v1":
        this.#pendingHealth = null;
        this.#foldHealth({ ...frame, cleared: true });
        return "applied";
      case "health.delta.v1":
        if (this.#pendingHealth) {
          this.#pendingHealth.held.push(frame);
          return "held";
        }
        this.#foldHealth({ ...frame, cleared: false });
        return "applied";
    }
    if (this.#pending) {
      this.#pending.held.push(frame);
      return "held";
    }
    if (this.#awaitingSnapshot) return "ignored";
    if (!applyDelta(this.#mirror, frame)) return "stale";
    if (this.#health.size || this.#impact.size || this.#edgeHealth.size) this.#healthDirty = true;
    this.#flushTimer ??= setTimeout(() => this.#flush(), FLUSH_MS);
    return "applied";
  }

  /** Folds a health state (`cleared`: it replaces all health) or a delta into the health maps. */
  #foldHealth(f: { cleared: true; entities: HealthEntry[]; edges: EdgeHealth[]; impact: ImpactEntry[] } | (HealthDelta & { cleared: false })): void {
    if (f.cleared) {
      this.#health.clear();
      this.#impact.clear();
      this.#edgeHealth.clear();
    } else {
      for (const id of f.impactCleared) this.#impact.delete(id);
      for (const id of f.edgesCleared) this.#edgeHealth.delete(id);
    }
    for (const e of f.entities) {
      if (e.health === "ok" && e.alerts.length === 0) this.#health.delete(e.id);
      else this.#health.set(e.id, e.health);
    }
    for (const e of f.impact) this.#impact.set(e.id, e);
    for (const e of f.edges) this.#edgeHealth.set(e.id, e);
    this.#healthDirty = true;
    this.#flushTimer ??= setTimeout(() => this.#flush(), FLUSH_MS);
  }

  /**
   * Keeps a WebSocket to the gateway open: every (re)connection starts from the snapshot the gateway sends first;
   * drops reconnect with capped, jittered exponential backoff. Returns a function that closes it for good.
   */
  connect(url: string, opts: ConnectOptions = {}): () => void {
    const WS = opts.WebSocket ?? WebSocket;
    const minDelay = opts.minDelayMs ?? 500;
    const maxDelay = opts.maxDelayMs ?? 15_000;
    let attempt = 0;
    let stopped = false;
    let socket: WebSocket | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;

    const open = () => {
      timer = undefined;
      this.retryAt = null;
      this.#awaitingSnapshot = true;
      this.#pending = null;
      this.#pendingHealth = null;
      this.loading = null;
      const ws = new WS(url);
      socket = ws;
      ws.onmessage = (ev: MessageEvent) => {
        if (socket !== ws) return;
        if (this.ingest(ev.data) === "snapshot") {
          attempt = 0;
          this.status = "live";
          this.lastError = null;
        }
      };
      ws.onerror = () => {
        if (socket === ws) this.lastError = "WebSocket error";
      };
      ws.onclose = () => {
        if (socket !== ws) return;
        socket = null;
        this.loading = null;
        if (stopped) return;
        this.status = "reconnecting";
        const ceiling = Math.min(maxDelay, minDelay * 2 ** attempt++);
        const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
        this.retryAt = Date.now() + delay;
        timer = setTimeout(open, delay);
      };
    };

    this.status = "connecting";
    open();
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      socket?.close();
      socket = null;
      this.status = "closed";
      this.retryAt = null;
      this.loading = null;
    };
  }

  #reject(reason: string): IngestOutcome {
    this.rejectedFrames++;
    this.lastError = reason;
    return "rejected";
  }

  /** Alert health per entity id, from health frames; shown as props.alertHealth on the nodes. */
  #health = new Map<string, string>();
  /** Impact per entity id (props.impactHops / impactHealth on the nodes) and edge state (props.alertHealth on edges). */
  #impact = new Map<string, ImpactEntry>();
  #edgeHealth = new Map<string, EdgeHealth>();
  #healthDirty = false;

  #flush(): void {
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const m = this.#mirror;
    if (this.#healthDirty) {
      this.#healthDirty = false;
      for (const n of m.nodes.values()) {
        const h = this.#health.get(n.id);
        if (h !== undefined) {
          if (n.props.alertHealth !== h) n.props = { ...n.props, alertHealth: h };
        } else if ("alertHealth" in n.props) {
          const { alertHealth: _, ...rest } = n.props;
          n.props = rest;
        }
        const imp = this.#impact.get(n.id);
        if (imp) {
          if (n.props.impactHops !== imp.hops || n.props.impactHealth !== imp.health) n.props = { ...n.props, impactHops: imp.hops, impactHealth: imp.health };
        } else if ("impactHops" in n.props) {
          const { impactHops: _h, impactHealth: _i, ...rest } = n.props;
          n.props = rest;
        }
      }
      for (const e of m.edges.values()) {
        const h = this.#edgeHealth.get(e.id)?.health;
        if (h !== undefined) {
          if (e.props.alertHealth !== h) e.props = { ...e.props, alertHealth: h };
        } else if ("alertHealth" in e.props) {
          const { alertHealth: _, ...rest } = e.props;
          e.props = rest;
        }
      }
      let impacted = 0;
      for (const id of this.#impact.keys()) if (m.nodes.has(id)) impacted++;
      let edges = 0;
      for (const id of this.#edgeHealth.keys()) if (m.edges.has(id)) edges++;
      this.impactedCount = impacted;
      this.unhealthyEdgeCount = edges;
    }
    const kinds = zeroKinds();
    const health = zeroHealth();
    for (const n of m.nodes.values()) {
      kinds[n.kind]++;
      const h = healthOf(n);
      if (h) health[h]++;
    }
    this.rev = m.rev;
    this.nodeCount = m.nodes.size;
    this.edgeCount = m.edges.size;
    this.kindCounts = kinds;
    this.healthCounts = health;
    this.updatedAt = Date.now();
    this.version++;
  }
}

/** The gateway's WebSocket on the page's own origin. */
export function gatewaySocketUrl(loc: Pick<Location, "protocol" | "host">): string {
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}/ws`;
}
