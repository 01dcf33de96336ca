/**
 * A small open-loop HTTP/1.1 load generator (like wrk): keep-alive connections, one request in flight per connection
 * (Bun.serve closes a connection that pipelines a request while an async handler is still running), requests queued
 * client-side when every connection is busy (that wait counts in the latency). fetch() cost ~80 µs of client CPU per
 * request here, which on 2 cores starved the services under test; this costs a few µs.
 */
interface Conn {
  socket: import("bun").Socket<undefined>;
  busy: ((status: number) => void) | null;
  buf: Uint8Array;
  out: Uint8Array | null;
}
export class HttpLoad {
  private conns: Conn[] = [];
  private idle: Conn[] = [];
  private queue: { req: Uint8Array; resolve: (status: number) => void }[] = [];
  private qHead = 0;
  private closing = false;
  /** connections the server closed (Bun.serve drops one idle for 10 s) and that were opened again */
  reconnects = 0;
  private constructor(private readonly u: URL) {}
  static async open(url: string, connections: number): Promise<HttpLoad> {
    const load = new HttpLoad(new URL(url));
    for (let i = 0; i < connections; i++) await load.connect();
    return load;
  }
  private async connect(): Promise<void> {
    const c: Conn = { socket: null as unknown as import("bun").Socket<undefined>, busy: null, buf: new Uint8Array(0), out: null };
    c.socket = await Bun.connect({
      hostname: this.u.hostname,
      port: Number(this.u.port),
      socket: {
        data: (_s, chunk) => {
          const merged = new Uint8Array(c.buf.length + chunk.length);
          merged.set(c.buf);
          merged.set(chunk, c.buf.length);
          c.buf = merged;
          const text = new TextDecoder().decode(c.buf.subarray(0, Math.min(c.buf.length, 1024)));
          const end = text.indexOf("\r\n\r\n");
          if (end < 0) return;
          const len = Number(/content-length: *(\d+)/i.exec(text.slice(0, end))?.[1] ?? "0");
          if (c.buf.length < end + 4 + len) return;
          c.buf = c.buf.subarray(end + 4 + len);
          const done = c.busy!;
          c.busy = null;
          done(Number(text.slice(9, 12)));
          // the server is closing it: wait for the close (and its replacement) rather than lose a request on it
          if (!/\r\nconnection: *close/i.test(text.slice(0, end))) this.dispatch(c);
        },
        drain: () => HttpLoad.flush(c),
        close: () => {
          // a request on it is lost (counted as failed); the connection is replaced, never reused
          this.conns = this.conns.filter((x) => x !== c);
          this.idle = this.idle.filter((x) => x !== c);
          c.busy?.(0);
          c.busy = null;
          if (this.closing) return;
          this.reconnects++;
          void this.connect();
        },
      },
    });
    this.conns.push(c);
    this.dispatch(c);
  }
  /** socket.write takes what the kernel buffer has room for; the rest waits for `drain`. */
  private static flush(c: Conn) {
    if (!c.out) return;
    const n = c.socket.write(c.out);
    c.out = n < c.out.length ? c.out.subarray(Math.max(0, n)) : null;
  }
  private dispatch(c: Conn) {
    if (this.qHead >= this.queue.length) {
      this.idle.push(c);
      return;
    }
    const next = this.queue[this.qHead++]!;
    if (this.qHead > 4096) {
      this.queue = this.queue.slice(this.qHead);
      this.qHead = 0;
    }
    c.busy = next.resolve;
    c.out = next.req;
    HttpLoad.flush(c);
  }
  /** The bytes of one POST (built ahead of time: the load generator must not compete with what it measures). */
  static request(path: string, host: string, body: string): Uint8Array {
    const b = Buffer.from(body);
    return Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\n\r\n`), b]);
  }
  /** Resolves with the response's status (0: the connection closed). */
  send(req: Uint8Array): Promise<number> {
    return new Promise((resolve) => {
      this.queue.push({ req, resolve });
      const c = this.idle.pop();
      if (c) this.dispatch(c);
    });
  }
  /** requests not answered yet: waiting for a connection, and on one */
  pending(): { queued: number; onConnection: number } {
    return { queued: this.queue.length - this.qHead, onConnection: this.conns.filter((c) => c.busy).length };
  }
  close() {
    this.closing = true;
    for (const c of this.conns) c.socket.end();
  }
}
