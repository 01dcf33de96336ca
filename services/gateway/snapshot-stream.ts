/**
 * Large states to browsers without large frames. A topology snapshot (134 MB of JSON at 10k hosts) or a health state
 * is cut into frames of at most `maxFrameBytes` (begin, chunks, end; one whole frame when it fits), and each socket
 * gets them through its own `SocketSender`, one frame after another as the socket drains, so the gateway never
 * buffers more than a frame or two of a snapshot per client. Live deltas go out between chunks; readers hold them
 * until `end` and apply those past the snapshot's rev (pipelines/contracts/topology.ts says how).
 */
import type { EdgeHealth, HealthEntry, HealthState, ImpactEntry } from "../../pipelines/contracts/health.ts";
import type { TopoEdge, TopoNode } from "../../pipelines/contracts/topology.ts";

const bytes = (s: string) => Buffer.byteLength(s, "utf8");

interface List {
  key: string;
  items: readonly unknown[];
}

/**
 * Cuts lists of items into JSON objects `{<head>,"<key>":[…],…}` of at most `budget` UTF-8 bytes, each item
 * serialised once. An item larger than the budget on its own goes alone in its frame (the one case a frame passes
 * the limit: one entity is capped by its contract, a frame limit below that is a misconfiguration).
 * Yields each chunk with how many items it holds.
 */
function* chunksOf(head: string, lists: readonly List[], budget: number): Generator<{ json: string; items: number }> {
  const fixed = bytes(head) + 2 + lists.reduce((n, l) => n + bytes(l.key) + 6, 0);
  let parts: string[][] = lists.map(() => []);
  let size = fixed;
  let count = 0;
  const flush = () => {
    const body = lists.map((l, i) => `,${JSON.stringify(l.key)}:[${parts[i]!.join(",")}]`).join("");
    const out = { json: `{${head}${body}}`, items: count };
    parts = lists.map(() => []);
    size = fixed;
    count = 0;
    return out;
  };
  for (let li = 0; li < lists.length; li++) {
    for (const item of lists[li]!.items) {
      const s = JSON.stringify(item);
      const n = bytes(s) + 1;
      if (count > 0 && size + n > budget) yield flush();
      parts[li]!.push(s);
      size += n;
      count++;
    }
  }
  if (count > 0) yield flush();
}

/**
 * The frames of one state: the whole state as one frame (`whole`'s head) when it fits in `budget`, else begin,
 * chunks (`chunk`'s head), end with the number of chunks. Lazy: nothing is serialised before the first frame is asked for.
 */
function* framesOf(o: { whole: string; begin: string; chunk: string; end: (chunks: number) => string; lists: readonly List[]; budget: number }): Generator<string> {
  const chunks = chunksOf(o.chunk, o.lists, o.budget);
  const first = chunks.next();
  const total = o.lists.reduce((n, l) => n + l.items.length, 0);
  if (first.done || first.value.items === total) {
    // everything fits in one chunk: as one whole frame if that fits too (it differs from the chunk only in its head)
    const body = first.done ? o.lists.map((l) => `,${JSON.stringify(l.key)}:[]`).join("") : first.value.json.slice(o.chunk.length + 1, -1);
    const whole = `{${o.whole}${body}}`;
    if (bytes(whole) <= o.budget) {
      yield whole;
      return;
    }
  }
  yield o.begin;
  let n = 0;
  if (!first.done) {
    yield first.value.json;
    n++;
  }
  for (const c of chunks) {
    yield c.json;
    n++;
  }
  yield o.end(n);
}

export interface SnapshotSource {
  rev: number;
  nodes: readonly TopoNode[];
  edges: readonly TopoEdge[];
}

/** A topology snapshot as WebSocket frames of at most `maxFrameBytes` (topology.snapshot.v1, or begin/chunk/end). */
export function topologySnapshotFrames(s: SnapshotSource, at: number, maxFrameBytes: number): Generator<string> {
  const lists = [
    { key: "nodes", items: s.nodes },
    { key: "edges", items: s.edges },
  ];
  return framesOf({
    whole: `"schema":"topology.snapshot.v1","rev":${s.rev},"at":${at}`,
    begin: JSON.stringify({ schema: "topology.snapshot.begin.v1", rev: s.rev, at, nodes: s.nodes.length, edges: s.edges.length }),
    chunk: `"schema":"topology.snapshot.chunk.v1","rev":${s.rev}`,
    end: (chunks) => JSON.stringify({ schema: "topology.snapshot.end.v1", rev: s.rev, chunks }),
    lists,
    budget: maxFrameBytes,
  });
}

/** A health state as WebSocket frames of at most `maxFrameBytes` (health.state.v1, or begin/chunk/end). */
export function healthStateFrames(s: HealthState, maxFrameBytes: number): Generator<string> {
  const lists: { key: string; items: readonly (HealthEntry | EdgeHealth | ImpactEntry)[] }[] = [
    { key: "entities", items: s.entities },
    { key: "edges", items: s.edges },
    { key: "impact", items: s.impact },
  ];
  return framesOf({
    whole: `"schema":"health.state.v1","seq":${s.seq},"at":${s.at}`,
    begin: JSON.stringify({ schema: "health.state.begin.v1", seq: s.seq, at: s.at, entities: s.entities.length, edges: s.edges.length, impact: s.impact.length }),
    chunk: `"schema":"health.state.chunk.v1","seq":${s.seq}`,
    end: (chunks) => JSON.stringify({ schema: "health.state.end.v1", seq: s.seq, chunks }),
    lists,
    budget: maxFrameBytes,
  });
}

/** The part of Bun's ServerWebSocket a sender uses (a test can stand in for it). */
export interface FrameSocket {
  /** Bun: bytes sent, -1 queued under backpressure (wait for `drain`), 0 dropped (over the backpressure limit) */
  send(data: string): number;
  getBufferedAmount(): number;
  close(code?: number, reason?: string): void;
}

/** Why a sender gave up on its socket: the gateway logs it. */
export interface SlowClient {
  code: number;
  reason: string;
  bufferedBytes: number;
  backpressureLimit: number;
  /** a snapshot or health state was still being sent (its kind and how many of its frames went out) */
  streaming: { kind: StreamKind; framesSent: number } | null;
}

export type StreamKind = "topology" | "health";

/** RFC 6455 "try again later": the client should reconnect (and will get a fresh snapshot). */
export const SLOW_CLIENT_CODE = 1013;

/**
 * One socket's outgoing frames: streams (a snapshot, a health state) one frame at a time as the socket drains, and
 * live frames (deltas) at once, between a stream's frames. A stream of a kind replaces the one of the same kind not yet
 * finished (a resync supersedes the snapshot it replaces). A frame Bun drops because the socket is over its
 * backpressure limit closes the socket (the client reconnects and resyncs) and is reported through `onSlow`.
 */
export class SocketSender {
  #ws: FrameSocket;
  #current: { kind: StreamKind; frames: Iterator<string>; sent: number } | null = null;
  #queue: { kind: StreamKind; frames: () => Iterator<string> }[] = [];
  #waiting = false;
  #closed = false;
  #scheduled = false;
  #opts: { backpressureLimit: number; onSlow: (s: SlowClient) => void; sliceMs: number };

  constructor(ws: FrameSocket, opts: { backpressureLimit: number; onSlow: (s: SlowClient) => void; sliceMs?: number }) {
    this.#ws = ws;
    this.#opts = { sliceMs: 10, ...opts };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True while a stream is being sent or waits its turn. */
  get streaming(): boolean {
    return this.#current !== null || this.#queue.length > 0;
  }

  /**
   * Queues a stream; `frames` is called when its turn comes, so the state it serialises is taken then (everything
   * sent before its first frame is superseded by it).
   */
  stream(kind: StreamKind, frames: () => Iterator<string>): void {
    if (this.#closed) return;
    this.#queue = this.#queue.filter((s) => s.kind !== kind);
    if (this.#current?.kind === kind) this.#current = null;
    this.#queue.push({ kind, frames });
    this.#pump();
  }

  /** A live frame, sent now. */
  send(frame: string): void {
    if (this.#closed) return;
    this.#deliver(frame);
  }

  /** Bun's `drain`: there is room again. */
  drain(): void {
    this.#waiting = false;
    this.#pump();
  }

  /** The socket closed: drop what was pending. */
  closedBySocket(): void {
    this.#closed = true;
    this.#current = null;
    this.#queue = [];
  }

  #deliver(frame: string): boolean {
    const r = this.#ws.send(frame);
    if (r === 0) {
      this.#slow();
      return false;
    }
    if (r === -1) this.#waiting = true;
    return true;
  }

  #pump(): void {
    if (this.#scheduled) return;
    // a long snapshot to a fast client is sent in slices, so the gateway keeps serving everyone else in between
    const until = performance.now() + this.#opts.sliceMs;
    while (!this.#closed && !this.#waiting) {
      if (!this.#current) {
        const next = this.#queue.shift();
        if (!next) return;
        this.#current = { kind: next.kind, frames: next.frames(), sent: 0 };
      }
      const n = this.#current.frames.next();
      if (n.done) {
        this.#current = null;
        continue;
      }
      if (!this.#deliver(n.value)) return;
      if (this.#current) this.#current.sent++;
      if (performance.now() > until) {
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          this.#pump();
        });
        return;
      }
    }
  }

  #slow(): void {
    const bufferedBytes = this.#ws.getBufferedAmount();
    const streaming = this.#current ? { kind: this.#current.kind, framesSent: this.#current.sent } : null;
    const reason = "slow client: over the backpressure limit";
    this.closedBySocket();
    this.#opts.onSlow({ code: SLOW_CLIENT_CODE, reason, bufferedBytes, backpressureLimit: this.#opts.backpressureLimit, streaming });
    this.#ws.close(SLOW_CLIENT_CODE, reason);
  }
}
