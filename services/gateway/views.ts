/**
 * View subscriptions on the gateway's WebSocket (pipelines/contracts/view.ts): a socket that sends
 * `{"type":"view.subscribe","spec":…}` gets view.snapshot.v1, then view.delta.v1 frames with only the marks and links
 * that changed, and no raw topology or health frame (http.ts takes it off the raw stream); `view.unsubscribe` puts it
 * back. A bad message gets a view.error.v1 frame; the socket stays open.
 *
 * One ViewGraph follows the gateway's mirror delta by delta, built as soon as the mirror is synced (and again after a
 * resync) with the default grouping's paths, so the first wallboard to connect does not wait the second or two that
 * takes at 10k hosts; HealthMaps follow the health overlay. Deltas are coalesced: every `intervalMs` (250: at most 4
 * frames a second per view) each view whose inputs changed is computed again, once per distinct spec however many
 * sockets share it, and the diff is serialised once and sent to each of them. A view that did not change for
 * `heartbeatMs` sends a summary-only delta, so a wallboard can tell a quiet estate from a dead feed (dataAgeMs).
 * A spec with `at` (time travel) is computed once from the history store's state at that time, without deltas.
 */
import { ClientMessage, type ViewEntity, type ViewSearch, type ViewSnapshot, type ViewSpec } from "../../pipelines/contracts/view.ts";
import type { TopologySnapshot } from "../../pipelines/contracts/topology.ts";
import { mirrorFromSnapshot } from "../../pipelines/stages/apply-delta.ts";
import { computeView, entityOf, HealthMaps, searchEntities, ViewDiffer, ViewGraph, type ViewResult } from "../../pipelines/stages/views/index.ts";
import type { HistoryStore } from "../history/port.ts";
import type { Logger } from "../shared/log.ts";
import type { TopologyMirror } from "../topology/client.ts";
import type { HealthOverlay } from "./health.ts";

/** The part of a socket's SocketSender a subscription uses (snapshot-stream.ts). */
export interface ViewSocket {
  send(frame: string): void;
  readonly closed: boolean;
}

/** What a client message did: the socket now gets views, raw frames again, or nothing changed (an error was sent). */
export type ViewMode = "view" | "raw" | null;

export class ViewUnavailable extends Error {
  override readonly name = "ViewUnavailable";
  constructor(
    readonly code: "not_synced" | "unavailable",
    message: string,
  ) {
    super(message);
  }
}

interface Shared {
  key: string;
  spec: ViewSpec;
  result: ViewResult | null;
  graphVersion: number;
  healthVersion: number;
  differ: ViewDiffer;
  subs: Set<Sub>;
  lastFrameAt: number;
}

interface Sub {
  socket: ViewSocket;
  id?: string;
  seq: number;
  /** null until its snapshot went out */
  shared: Shared | null;
  /** a time-travel view: its one snapshot, no deltas */
  frozen: boolean;
  /** bumped per subscribe, so an answer from history that comes after a newer subscribe is dropped */
  gen: number;
}

/** How long a grouping's cached paths outlive the last view that used them. */
const PATHS_IDLE_MS = 10 * 60_000;

export interface ViewHubOptions {
  mirror: TopologyMirror;
  health?: HealthOverlay;
  history?: HistoryStore;
  log: Logger;
  intervalMs?: number;
  heartbeatMs?: number;
  now?: () => number;
}

export class ViewHub {
  readonly #o: Required<Pick<ViewHubOptions, "intervalMs" | "heartbeatMs" | "now">> & ViewHubOptions;
  #graph: ViewGraph | null = null;
  readonly #health = new HealthMaps();
  readonly #subs = new Map<ViewSocket, Sub>();
  readonly #shared = new Map<string, Shared>();
  #feedAt: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** the last few time-travel graphs (a slider dragged back and forth asks for the same times again) */
  #past: { at: number; graph: ViewGraph }[] = [];
  /** subscriptions that came before the mirror was synced */
  readonly #specOfPending = new WeakMap<Sub, ViewSpec>();
  /** compute times, for the log and the bench */
  readonly stats = { computes: 0, computeMs: 0, frames: 0, bytes: 0 };

  constructor(o: ViewHubOptions) {
    this.#o = { intervalMs: 250, heartbeatMs: 5000, now: Date.now, ...o };
    this.#feedAt = this.#o.now();
    o.mirror.onFrame((f) => {
      this.#feedAt = this.#o.now();
      if (f.schema === "topology.snapshot.v1") {
        // a resync: a new mirror
        this.#graph = null;
        this.#warm();
      } else this.#graph?.applyDelta(f);
    });
    this.#warm();
    if (o.health) {
      if (o.health.synced()) this.#health.apply(o.health.state());
      o.health.onFrame((f) => {
        this.#feedAt = this.#o.now();
        this.#health.apply(f);
      });
    }
  }

  /** The live graph's view (GET /api/view without `at`). */
  compute(spec: ViewSpec): ViewResult {
    const g = this.#live();
    return this.#run(g, this.#health, spec, this.#feedAt);
  }

  /** A view of the graph as it was at `at`, from the history store (health then is not known: none is shown). */
  async computeAt(spec: ViewSpec, at: number): Promise<{ result: ViewResult; rev: number }> {
    const g = await this.#graphAt(at);
    return { result: this.#run(g, new HealthMaps(), spec, at), rev: g.rev };
  }

  /** A snapshot frame's body for GET /api/view. */
  async snapshot(spec: ViewSpec): Promise<ViewSnapshot> {
    const now = this.#o.now();
    if (spec.at !== undefined) {
      const { result, rev } = await this.computeAt(spec, spec.at);
      return { schema: "view.snapshot.v1", seq: 0, rev, at: now, spec, ...result };
    }
    const result = this.compute(spec);
    return { schema: "view.snapshot.v1", seq: 0, rev: this.#graph!.rev, at: now, spec, ...result };
  }

  /** One entity for a drawer (null: no such node in the live graph). */
  entity(id: string): ViewEntity | null {
    return entityOf(this.#live(), this.#health, id);
  }

  search(q: string, limit: number): ViewSearch {
    return searchEntities(this.#live(), this.#health, q, limit);
  }

  /** A client message on a socket: subscribe (again), unsubscribe, or an error frame for anything else. */
  message(socket: ViewSocket, raw: string | Buffer): ViewMode {
    let json: unknown;
    try {
      json = JSON.parse(typeof raw === "string" ? raw : raw.toString("utf8"));
    } catch (e) {
      this.#error(socket, undefined, "bad_request", `message is not JSON: ${(e as Error).message}`);
      return null;
    }
    const r = ClientMessage.safeParse(json);
    if (!r.success) {
      const id = typeof (json as { id?: unknown })?.id === "string" ? (json as { id: string }).id.slice(0, 128) : undefined;
      const issues = r.error.issues.map((i) => `${i.path.join(".") || "message"}: ${i.message}`).join("; ");
      this.#error(socket, id, "bad_request", `expected {"type":"view.subscribe","spec":{…}} or {"type":"view.unsubscribe"}: ${issues}`);
      return null;
    }
    const m = r.data;
    if (m.type === "view.unsubscribe") {
      if (!this.#subs.has(socket)) return null;
      this.close(socket);
      return "raw";
    }
    this.#subscribe(socket, m.spec, m.id);
    return "view";
  }

  /** The socket is gone (or back on the raw stream). */
  close(socket: ViewSocket): void {
    const sub = this.#subs.get(socket);
    if (!sub) return;
    this.#subs.delete(socket);
    this.#leave(sub);
    if (!this.#subs.size) this.#stopTimer();
  }

  get subscriptions(): number {
    return this.#subs.size;
  }

  stop(): void {
    this.#stopTimer();
    this.#subs.clear();
    this.#shared.clear();
  }

  #subscribe(socket: ViewSocket, spec: ViewSpec, id: string | undefined): void {
    const prev = this.#subs.get(socket);
    if (prev) this.#leave(prev);
    const sub: Sub = { socket, id, seq: prev ? prev.seq + 1 : 0, shared: null, frozen: spec.at !== undefined, gen: (prev?.gen ?? 0) + 1 };
    this.#subs.set(socket, sub);
    if (sub.frozen) {
      void this.#sendAt(sub, spec);
      return;
    }
    this.#startTimer();
    try {
      this.#join(sub, spec);
    } catch (e) {
      this.#o.log.error("view failed", { error: e instanceof Error ? `${e.name}: ${e.message}` : String(e), stack: e instanceof Error ? e.stack : undefined });
      this.#error(socket, id, "unavailable", `view failed: ${(e as Error).message}`);
    }
  }

  async #sendAt(sub: Sub, spec: ViewSpec): Promise<void> {
    const gen = sub.gen;
    try {
      const { result, rev } = await this.computeAt(spec, spec.at!);
      if (this.#subs.get(sub.socket) !== sub || sub.gen !== gen) return;
      this.#send(sub, snapshotFrame(sub, rev, this.#o.now(), spec, result));
    } catch (e) {
      if (this.#subs.get(sub.socket) !== sub || sub.gen !== gen) return;
      this.#error(sub.socket, sub.id, "unavailable", `topology history at ${spec.at}: ${(e as Error).message}`);
    }
  }

  /** Joins the shared view of its spec and sends it a snapshot (now, or once the mirror is synced). */
  #join(sub: Sub, spec: ViewSpec): void {
    if (!this.#o.mirror.synced()) {
      this.#specOfPending.set(sub, spec); // the tick sends it once synced
      return;
    }
    const key = JSON.stringify(spec);
    let sh = this.#shared.get(key);
    if (!sh) {
      sh = { key, spec, result: null, graphVersion: -1, healthVersion: -1, differ: new ViewDiffer(), subs: new Set(), lastFrameAt: this.#o.now() };
      this.#shared.set(key, sh);
    }
    // bring the shared view up to date first: its other sockets get that change as a delta, this one the result
    this.#refresh(sh, false);
    sh.subs.add(sub);
    sub.shared = sh;
    const now = this.#o.now();
    const result = { ...sh.result!, summary: { ...sh.result!.summary, dataAgeMs: Math.max(0, now - this.#feedAt) } };
    this.#send(sub, snapshotFrame(sub, this.#graph!.rev, now, spec, result));
  }

  #leave(sub: Sub): void {
    const sh = sub.shared;
    sub.shared = null;
    if (!sh) return;
    sh.subs.delete(sub);
    if (!sh.subs.size) this.#shared.delete(sh.key);
  }

  /** Computes a shared view again if its inputs changed, and sends its subscribers the diff (or a heartbeat). */
  #refresh(sh: Shared, heartbeat: boolean): void {
    const g = this.#live();
    const now = this.#o.now();
    if (sh.result && sh.graphVersion === g.version && sh.healthVersion === this.#health.version) {
      if (heartbeat && now - sh.lastFrameAt >= this.#o.heartbeatMs) {
        sh.result.summary.dataAgeMs = Math.max(0, now - this.#feedAt);
        this.#broadcast(sh, { marksUpserted: [], marksRemoved: [], linksUpserted: [], linksRemoved: [], summary: sh.result.summary });
      }
      return;
    }
    const result = this.#run(g, this.#health, sh.spec, this.#feedAt);
    sh.graphVersion = g.version;
    sh.healthVersion = this.#health.version;
    if (!sh.result) {
      sh.differ.reset(result);
      sh.result = result;
      return;
    }
    sh.result = result;
    const change = sh.differ.diff(result);
    if (change) this.#broadcast(sh, change);
    else if (heartbeat && now - sh.lastFrameAt >= this.#o.heartbeatMs) this.#broadcast(sh, { marksUpserted: [], marksRemoved: [], linksUpserted: [], linksRemoved: [], summary: result.summary });
  }

  /** One serialisation of a delta's body for every socket of a shared view; each frame gets its own sub and seq. */
  #broadcast(sh: Shared, change: object): void {
    if (!sh.subs.size) return;
    sh.lastFrameAt = this.#o.now();
    const body = JSON.stringify({ rev: this.#graph!.rev, at: sh.lastFrameAt, ...change }).slice(1);
    for (const sub of sh.subs) {
      sub.seq++;
      const head = `{"schema":"view.delta.v1",${sub.id !== undefined ? `"sub":${JSON.stringify(sub.id)},` : ""}"seq":${sub.seq},`;
      this.#send(sub, head + body);
    }
  }

  #tick(): void {
    if (!this.#o.mirror.synced()) return;
    for (const sub of this.#subs.values()) {
      // subscribed before the mirror was synced (or before a resync finished): its snapshot goes now
      if (!sub.frozen && !sub.shared) {
        const spec = this.#specOfPending.get(sub);
        if (spec) {
          this.#specOfPending.delete(sub);
          this.#join(sub, spec);
        }
      }
    }
    for (const sh of this.#shared.values()) {
      try {
        this.#refresh(sh, true);
      } catch (e) {
        // a view that cannot be computed must not stop the others; its sockets keep their last frame
        this.#o.log.error("view refresh failed", { spec: sh.key, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e), stack: e instanceof Error ? e.stack : undefined });
      }
    }
    // a grouping no view has used for a while gives its per-entity paths back
    this.#graph?.prunePaths(this.#o.now() - PATHS_IDLE_MS);
  }

  #warm(): void {
    if (!this.#o.mirror.synced()) return;
    try {
      this.#live().paths("tier", this.#o.now());
    } catch (e) {
      this.#o.log.error("view graph build failed", { error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
    }
  }

  #live(): ViewGraph {
    if (!this.#o.mirror.synced()) throw new ViewUnavailable("not_synced", "topology mirror is not synced yet");
    if (!this.#graph) {
      const t0 = performance.now();
      this.#graph = ViewGraph.fromMirror(this.#o.mirror.mirror());
      this.#o.log.info("view graph built", { rev: this.#graph.rev, nodes: this.#graph.nodes.size, ms: Math.round(performance.now() - t0) });
    }
    return this.#graph;
  }

  async #graphAt(at: number): Promise<ViewGraph> {
    const hit = this.#past.find((p) => p.at === at);
    if (hit) return hit.graph;
    if (!this.#o.history) throw new ViewUnavailable("unavailable", "time travel needs the history store, which this gateway does not have");
    const snap: TopologySnapshot = await this.#o.history.stateAt(at);
    const graph = ViewGraph.fromMirror(mirrorFromSnapshot(snap));
    this.#past = [{ at, graph }, ...this.#past].slice(0, 2);
    return graph;
  }

  #run(g: ViewGraph, h: HealthMaps, spec: ViewSpec, dataAt: number): ViewResult {
    const t0 = performance.now();
    const r = computeView({ graph: g, health: h, spec, now: this.#o.now(), dataAt });
    this.stats.computes++;
    this.stats.computeMs += performance.now() - t0;
    return r;
  }

  #send(sub: Sub, frame: string): void {
    if (sub.socket.closed) return;
    this.stats.frames++;
    this.stats.bytes += frame.length;
    sub.socket.send(frame);
  }

  #error(socket: ViewSocket, sub: string | undefined, code: "bad_request" | "not_synced" | "unavailable", error: string): void {
    socket.send(JSON.stringify({ schema: "view.error.v1", ...(sub !== undefined ? { sub } : {}), code, error: error.slice(0, 4096) }));
  }

  #startTimer(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      try {
        this.#tick();
      } catch (e) {
        // a view that cannot be computed must not take the gateway down; its sockets keep their last frame
        this.#o.log.error("view tick failed", { error: e instanceof Error ? `${e.name}: ${e.message}` : String(e), stack: e instanceof Error ? e.stack : undefined });
      }
    }, this.#o.intervalMs);
  }

  #stopTimer(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

function snapshotFrame(sub: Sub, rev: number, at: number, spec: ViewSpec, r: ViewResult): string {
  const frame: ViewSnapshot = { schema: "view.snapshot.v1", ...(sub.id !== undefined ? { sub: sub.id } : {}), seq: sub.seq, rev, at, spec, marks: r.marks, links: r.links, summary: r.summary };
  return JSON.stringify(frame);
}

/** Stops what a socket was still being sent of the raw stream (a snapshot in chunks): it subscribed to a view. */
export function leaveRawStream(sender: { stream(kind: "topology" | "health", frames: () => Iterator<string>): void }): void {
  const none = () => [][Symbol.iterator]() as Iterator<string>;
  sender.stream("topology", none);
  sender.stream("health", none);
}
