/**
 * A WebSocket client of the gateway's /ws as the dashboard is one: every frame read and parsed, the topology kept
 * (ids and kinds: topology-count.ts). Measures the time from opening to the first full snapshot (a whole
 * `topology.snapshot.v1` frame, or the `end` of a streamed one) and says how the connection ended.
 */
import { TopologyCount } from "./topology-count.ts";

export interface WsStats {
  /** ms from `new WebSocket` to the first full snapshot; null until then */
  firstSnapshotMs: number | null;
  /** nodes + edges of that snapshot as received (all sources) */
  firstSnapshotItems: number | null;
  frames: number;
  bytes: number;
  /** bytes and frames up to the first full snapshot */
  snapshotBytes: number | null;
  snapshotFrames: number | null;
  /** "code reason" once closed by the server or the network (not by close()) */
  closed: string | null;
}

export class WsClient {
  readonly count: TopologyCount;
  readonly stats: WsStats = { firstSnapshotMs: null, firstSnapshotItems: null, frames: 0, bytes: 0, snapshotBytes: null, snapshotFrames: null, closed: null };
  private ws: WebSocket;
  private readonly opened = performance.now();
  private closing = false;
  private waiters: (() => void)[] = [];
  /** called for each topology delta applied, with the number of items in it */
  onDelta: ((items: number) => void) | null = null;

  constructor(url: string, inScope: (source: string) => boolean) {
    this.count = new TopologyCount(inScope);
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (ev) => {
      const text = typeof ev.data === "string" ? ev.data : new TextDecoder().decode(ev.data as ArrayBuffer);
      this.stats.frames++;
      this.stats.bytes += text.length;
      const before = this.count.deltaItems;
      const r = this.count.apply(JSON.parse(text));
      if (r === "delta" && this.onDelta) this.onDelta(this.count.deltaItems - before);
      if (r === "snapshot" && this.stats.firstSnapshotMs === null) {
        this.stats.firstSnapshotMs = Math.round(performance.now() - this.opened);
        const c = this.count.counts("all");
        this.stats.firstSnapshotItems = [...Object.values(c.nodes), ...Object.values(c.edges)].reduce((a, b) => a + b, 0);
        this.stats.snapshotBytes = this.stats.bytes;
        this.stats.snapshotFrames = this.stats.frames;
        for (const w of this.waiters.splice(0)) w();
      }
    };
    this.ws.onclose = (ev) => {
      if (!this.closing) this.stats.closed = `${ev.code} ${ev.reason}`.trim();
      for (const w of this.waiters.splice(0)) w();
    };
  }

  /** Resolves at the first full snapshot; rejects when the socket closes first or `timeoutMs` passes. */
  async firstSnapshot(timeoutMs: number): Promise<number> {
    if (this.stats.firstSnapshotMs === null && this.stats.closed === null) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        timer = setTimeout(resolve, timeoutMs);
      });
      clearTimeout(timer);
    }
    if (this.stats.firstSnapshotMs !== null) return this.stats.firstSnapshotMs;
    throw new Error(this.stats.closed ? `the gateway closed the WebSocket before a full snapshot: ${this.stats.closed}` : `no full snapshot on the WebSocket within ${timeoutMs} ms (${this.stats.frames} frames, ${this.stats.bytes} bytes)`);
  }

  close(): void {
    this.closing = true;
    this.ws.close();
  }
}
