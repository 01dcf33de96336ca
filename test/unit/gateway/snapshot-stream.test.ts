/** Cutting states into frames under a byte limit, and one socket's sender, without a server. */
import { expect, test } from "bun:test";
import { WsFrame } from "../../../pipelines/contracts/topology.ts";
import { healthStateFrames, SocketSender, topologySnapshotFrames, type FrameSocket, type SlowClient } from "../../../services/gateway/snapshot-stream.ts";
import { estate } from "../../integration/gateway/estate.ts";

const parse = (s: string) => WsFrame.parse(JSON.parse(s));

test("a snapshot over the limit is cut into begin, chunks under the limit, end, holding every entity once", () => {
  const m = estate({ hosts: 40, procs: 3, rev: 9, pad: 50 });
  const snap = { rev: m.rev, nodes: [...m.nodes.values()], edges: [...m.edges.values()] };
  for (const limit of [1024, 4096, 65_536]) {
    const frames = [...topologySnapshotFrames(snap, 123, limit)];
    expect(Math.max(...frames.map((f) => Buffer.byteLength(f)))).toBeLessThanOrEqual(limit);
    const parsed = frames.map(parse);
    expect(parsed[0]).toEqual({ schema: "topology.snapshot.begin.v1", rev: 9, at: 123, nodes: snap.nodes.length, edges: snap.edges.length });
    const chunks = parsed.filter((f) => f.schema === "topology.snapshot.chunk.v1");
    expect(parsed.at(-1)).toEqual({ schema: "topology.snapshot.end.v1", rev: 9, chunks: chunks.length });
    expect(chunks.flatMap((c) => c.nodes)).toEqual(snap.nodes);
    expect(chunks.flatMap((c) => c.edges)).toEqual(snap.edges);
  }
});

test("a snapshot that fits is one topology.snapshot.v1, an empty one too", () => {
  const m = estate({ hosts: 2, procs: 1, rev: 3 });
  const snap = { rev: 3, nodes: [...m.nodes.values()], edges: [...m.edges.values()] };
  const [one, ...rest] = [...topologySnapshotFrames(snap, 5, 1 << 20)];
  expect(rest).toEqual([]);
  expect(parse(one!)).toEqual({ schema: "topology.snapshot.v1", rev: 3, at: 5, nodes: snap.nodes, edges: snap.edges });
  expect([...topologySnapshotFrames({ rev: 0, nodes: [], edges: [] }, 5, 1024)].map(parse)).toEqual([{ schema: "topology.snapshot.v1", rev: 0, at: 5, nodes: [], edges: [] }]);
});

test("an entity larger than the limit goes alone in its chunk", () => {
  const m = estate({ hosts: 3, procs: 1, rev: 1, pad: 3000 });
  const frames = [...topologySnapshotFrames({ rev: 1, nodes: [...m.nodes.values()], edges: [...m.edges.values()] }, 1, 1024)].map(parse);
  const big = frames.filter((f) => f.schema === "topology.snapshot.chunk.v1" && f.nodes.some((n) => n.kind === "process"));
  expect(big.length).toBe(3);
  for (const f of big) if (f.schema === "topology.snapshot.chunk.v1") expect(f.nodes.length + f.edges.length).toBe(1);
});

test("a health state over the limit is cut the same way", () => {
  const entities = Array.from({ length: 300 }, (_, i) => ({ id: `e${i}`, health: "critical" as const, alerts: [`fp${i}`] }));
  const frames = [...healthStateFrames({ schema: "health.state.v1", seq: 4, at: 1, entities, edges: [], impact: [] }, 2048)];
  expect(Math.max(...frames.map((f) => Buffer.byteLength(f)))).toBeLessThanOrEqual(2048);
  const parsed = frames.map(parse);
  expect(parsed[0]).toEqual({ schema: "health.state.begin.v1", seq: 4, at: 1, entities: 300, edges: 0, impact: 0 });
  expect(parsed.flatMap((f) => (f.schema === "health.state.chunk.v1" ? f.entities : []))).toEqual(entities);
  expect(parsed.at(-1)).toMatchObject({ schema: "health.state.end.v1", seq: 4 });
});

/** A socket that takes `room` frames before reporting backpressure, and drops past `limit` buffered frames. */
function fakeSocket(room: number, limit = Infinity) {
  const sent: string[] = [];
  let buffered = 0;
  const closed: [number?, string?][] = [];
  const ws: FrameSocket = {
    send: (d) => {
      if (buffered >= limit) return 0;
      sent.push(d);
      if (sent.length <= room) return d.length;
      buffered++;
      return -1;
    },
    getBufferedAmount: () => buffered * 100,
    close: (code, reason) => void closed.push([code, reason]),
  };
  return { ws, sent, closed, drainAll: () => (buffered = 0), grow: (n: number) => (room += n) };
}

test("a stream waits for drain after backpressure, live frames go out between its frames", () => {
  const s = fakeSocket(2);
  const sender = new SocketSender(s.ws, { backpressureLimit: 1000, onSlow: () => undefined });
  sender.stream("topology", () => ["a", "b", "c", "d"].values());
  expect(s.sent).toEqual(["a", "b", "c"]); // c went out under backpressure: wait
  sender.send("delta1");
  expect(s.sent).toEqual(["a", "b", "c", "delta1"]);
  s.grow(10);
  s.drainAll();
  sender.drain();
  expect(s.sent).toEqual(["a", "b", "c", "delta1", "d"]);
  expect(sender.streaming).toBe(false);
});

test("a newer stream of a kind replaces the unfinished one; other kinds wait their turn", () => {
  const s = fakeSocket(1);
  const sender = new SocketSender(s.ws, { backpressureLimit: 1000, onSlow: () => undefined });
  sender.stream("topology", () => ["t1-begin", "t1-chunk", "t1-end"].values());
  sender.stream("health", () => ["h1"].values());
  sender.stream("topology", () => ["t2"].values());
  s.grow(10);
  sender.drain();
  expect(s.sent).toEqual(["t1-begin", "t1-chunk", "h1", "t2"]);
});

test("a dropped frame closes the socket as a slow client and says why", () => {
  const s = fakeSocket(0, 3);
  const slow: SlowClient[] = [];
  const sender = new SocketSender(s.ws, { backpressureLimit: 300, onSlow: (x) => slow.push(x) });
  sender.stream("topology", () => ["a", "b", "c", "d", "e"].values());
  for (const d of ["x", "y", "z"]) sender.send(d);
  expect(slow).toEqual([{ code: 1013, reason: "slow client: over the backpressure limit", bufferedBytes: 300, backpressureLimit: 300, streaming: { kind: "topology", framesSent: 1 } }]);
  expect(s.closed).toEqual([[1013, "slow client: over the backpressure limit"]]);
  expect(sender.closed).toBe(true);
});
