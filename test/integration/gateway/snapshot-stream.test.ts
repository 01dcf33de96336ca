/**
 * The gateway's WebSocket at a size where one frame of the whole graph would not do: a real gateway (its real mirror
 * over a real nats-server, fed by a fake topology service) with a tiny frame limit streams the snapshot as
 * begin/chunks/end, each frame under the limit, while deltas keep coming; and a client that stops reading is closed
 * and logged with the reason.
 */
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { connect, type Socket } from "node:net";
import { WsFrame, type TopologyDelta } from "../../../pipelines/contracts/topology.ts";
import { applyDelta, mirrorFromSnapshot, type Mirror } from "../../../pipelines/stages/apply-delta.ts";
import { startGatewayServer } from "../../../services/gateway/http.ts";
// ORRERY_AUTH=off explicitly: these tests are not about who may pass (test/integration/identity/ is)
import { openGate } from "../../../services/identity/client.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import type { Logger } from "../../../services/shared/log.ts";
import { startMirror, type TopologyMirror } from "../../../services/topology/client.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";
import { churnDelta, estate, fakeTopologyService } from "./estate.ts";

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function recordingLogger() {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const log: Logger = {
    info: (msg, fields) => lines.push({ level: "info", msg, fields }),
    warn: (msg, fields) => lines.push({ level: "warn", msg, fields }),
    error: (msg, fields) => lines.push({ level: "error", msg, fields }),
  };
  return { log, lines };
}

async function gatewayOver(truth: Mirror, opts: { maxFrameBytes?: number; backpressureLimit?: number }) {
  const { log, lines } = recordingLogger();
  const bus: Bus = await connectBus({ url: nats.url, prefix: uniquePrefix("gws"), name: "test" });
  cleanups.push(() => bus.close());
  const topo = fakeTopologyService(bus, truth);
  cleanups.push(() => topo.stop());
  const mirror: TopologyMirror = await startMirror(bus, log);
  cleanups.push(() => mirror.stop());
  await waitFor(() => mirror.synced(), "gateway mirror synced");
  const tmp = tempDir();
  cleanups.push(tmp.cleanup);
  const server = startGatewayServer({ auth: openGate(), bus, mirror, log, host: "127.0.0.1", port: 0, dashboardDir: tmp.dir, ...opts });
  cleanups.push(() => server.stop(true));
  return { server, topo, lines, url: `ws://127.0.0.1:${server.port}/ws` };
}

test("a large snapshot arrives in frames under the limit, and the deltas sent meanwhile are applied once each, in rev order", async () => {
  // ~18k entities with bulky processes: ~11 MB of JSON, several times what the kernel buffers on loopback, so the
  // stream has to wait for the client to drain
  const truth = estate({ hosts: 700, procs: 5, rev: 40, pad: 1200 });
  const LIMIT = 16 * 1024;
  const gw = await gatewayOver(truth, { maxFrameBytes: LIMIT });
  const entities = truth.nodes.size + truth.edges.size;
  expect(entities).toBeGreaterThan(15_000);

  const sizes: number[] = [];
  const order: string[] = [];
  let client: Mirror | null = null;
  let building: Mirror | null = null;
  let begin: { rev: number; nodes: number; edges: number } | null = null;
  let chunks = 0;
  const held: TopologyDelta[] = [];
  const applied: number[] = [];
  let heldDuringStream = 0;
  let ended = false;
  let t0 = 0;
  let firstFullMs = 0;

  const publishing: Promise<void>[] = [];
  const ws = new WebSocket(gw.url);
  cleanups.push(() => ws.close());
  t0 = performance.now();
  ws.onmessage = (ev) => {
    const text = String(ev.data);
    const f = WsFrame.parse(JSON.parse(text));
    order.push(f.schema);
    switch (f.schema) {
      case "topology.snapshot.begin.v1":
        sizes.push(Buffer.byteLength(text));
        begin = f;
        building = { rev: f.rev, nodes: new Map(), edges: new Map() };
        // deltas published now travel through JetStream and the gateway's mirror while the stream is under way
        publishing.push((async () => {
          for (let i = 1; i <= 20; i++) await gw.topo.publish(churnDelta(truth.rev + 1));
        })());
        break;
      case "topology.snapshot.chunk.v1":
        sizes.push(Buffer.byteLength(text));
        for (const n of f.nodes) building!.nodes.set(n.id, n);
        for (const e of f.edges) building!.edges.set(e.id, e);
        chunks++;
        break;
      case "topology.snapshot.end.v1":
        sizes.push(Buffer.byteLength(text));
        expect(f.chunks).toBe(chunks);
        client = building!;
        for (const d of held.sort((a, b) => a.rev - b.rev)) if (applyDelta(client, d)) applied.push(d.rev);
        ended = true;
        firstFullMs = performance.now() - t0;
        break;
      case "topology.snapshot.v1":
        throw new Error("the whole snapshot came as one frame");
      case "topology.delta.v1":
        if (!ended) {
          heldDuringStream++;
          held.push(f);
        } else if (applyDelta(client!, f)) applied.push(f.rev);
        break;
    }
  };

  await waitFor(() => ended, "snapshot end", 60_000);
  await Promise.all(publishing);
  await waitFor(() => client!.rev === truth.rev && applied.length > 0, "every delta applied", 30_000);

  expect(order[0]).toBe("topology.snapshot.begin.v1");
  expect(begin!.rev).toBe(40);
  expect(begin!.nodes + begin!.edges).toBe(entities);
  expect(Math.max(...sizes)).toBeLessThanOrEqual(LIMIT);
  expect(chunks).toBeGreaterThan(100);
  // some deltas crossed the snapshot on the wire, and each of the 20 was applied exactly once, in rev order
  expect(heldDuringStream).toBeGreaterThan(0);
  expect(applied).toEqual(Array.from({ length: 20 }, (_, i) => 41 + i));
  // the client ends with exactly the estate: every entity of the snapshot, and the deltas' net effect
  expect(client!.rev).toBe(60);
  expect([...client!.nodes.keys()].sort()).toEqual([...truth.nodes.keys()].sort());
  expect([...client!.edges.keys()].sort()).toEqual([...truth.edges.keys()].sort());
  expect(client!.nodes.get("host:churn60")?.props.rev).toBe(60);
  console.log(`snapshot of ${entities} entities (${(sizes.reduce((a, b) => a + b, 0) / 1e6).toFixed(1)} MB) in ${chunks} chunks of ≤ ${LIMIT} B: first full snapshot after ${firstFullMs.toFixed(0)} ms`);
}, 120_000);

test("a snapshot that fits one frame still comes as one topology.snapshot.v1", async () => {
  const truth = estate({ hosts: 3, procs: 2, rev: 5 });
  const gw = await gatewayOver(truth, {});
  const frames: WsFrame[] = [];
  const ws = new WebSocket(gw.url);
  cleanups.push(() => ws.close());
  ws.onmessage = (ev) => frames.push(WsFrame.parse(JSON.parse(String(ev.data))));
  const first = await waitFor(() => frames[0], "first frame");
  expect(first.schema).toBe("topology.snapshot.v1");
  if (first.schema !== "topology.snapshot.v1") throw new Error("unreachable");
  expect(mirrorFromSnapshot(first).nodes.size).toBe(truth.nodes.size);
});

/** A WebSocket client that completes the handshake and then never reads again. */
async function stalledClient(port: number): Promise<Socket> {
  const sock = connect(port, "127.0.0.1");
  await new Promise<void>((ok, fail) => {
    sock.once("error", fail);
    sock.once("connect", () => {
      sock.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    sock.once("data", (d) => {
      if (!String(d).startsWith("HTTP/1.1 101")) fail(new Error(`no upgrade: ${String(d).slice(0, 80)}`));
      sock.pause();
      ok();
    });
  });
  return sock;
}

test("a client that stops reading is closed once it is over the backpressure limit, and the close is logged with its reason", async () => {
  const truth = estate({ hosts: 2, procs: 1, rev: 1 });
  const LIMIT = 256 * 1024;
  const gw = await gatewayOver(truth, { backpressureLimit: LIMIT });
  const sock = await stalledClient(gw.server.port!);
  cleanups.push(() => sock.destroy());
  // a reading client beside it keeps every delta
  let readerRev = 0;
  const reader = new WebSocket(gw.url);
  cleanups.push(() => reader.close());
  reader.onmessage = (ev) => {
    const f = WsFrame.parse(JSON.parse(String(ev.data)));
    if (f.schema === "topology.delta.v1") readerRev = f.rev;
  };
  await new Promise((ok) => (reader.onopen = ok));

  // ~100 KB deltas until the stalled client's kernel buffers and then the gateway's are full
  const blob = "y".repeat(8000);
  let rev = truth.rev;
  const slow = () => gw.lines.find((l) => l.msg === "slow WebSocket client closed");
  while (!slow() && rev < 2000) {
    const d = churnDelta(++rev);
    for (let i = 0; i < 12; i++) d.nodesUpserted[0]!.props[`blob${i}`] = blob;
    await gw.topo.publish(d);
    if (rev % 10 === 0) await Bun.sleep(5);
  }
  const line = await waitFor(slow, "slow client logged");
  expect(line.level).toBe("warn");
  expect(line.fields).toMatchObject({ code: 1013, reason: "slow client: over the backpressure limit", backpressureLimit: LIMIT });
  expect(line.fields!.bufferedBytes as number).toBeGreaterThan(LIMIT - 100_000);
  // the reader was not held back by the stalled one
  await waitFor(() => readerRev === rev, "reader has every delta");
}, 120_000);

test("after a gap in revs the gateway resyncs and streams the new snapshot to a connected client, in chunks", async () => {
  const truth = estate({ hosts: 60, procs: 3, rev: 1, pad: 200 });
  const LIMIT = 8 * 1024;
  const gw = await gatewayOver(truth, { maxFrameBytes: LIMIT });
  const begins: number[] = [];
  let building: Mirror | null = null;
  let client: Mirror | null = null;
  let maxFrame = 0;
  const ws = new WebSocket(gw.url);
  cleanups.push(() => ws.close());
  ws.onmessage = (ev) => {
    const text = String(ev.data);
    maxFrame = Math.max(maxFrame, Buffer.byteLength(text));
    const f = WsFrame.parse(JSON.parse(text));
    if (f.schema === "topology.snapshot.begin.v1") {
      begins.push(f.rev);
      building = { rev: f.rev, nodes: new Map(), edges: new Map() };
    } else if (f.schema === "topology.snapshot.chunk.v1") {
      for (const n of f.nodes) building!.nodes.set(n.id, n);
      for (const e of f.edges) building!.edges.set(e.id, e);
    } else if (f.schema === "topology.snapshot.end.v1") client = building;
    else if (f.schema === "topology.delta.v1" && client) applyDelta(client, f);
  };
  await waitFor(() => client?.rev === 1, "first snapshot");
  // rev 3 without rev 2: the gateway's mirror sees a gap and asks the topology service for a snapshot again
  const lost = churnDelta(2);
  applyDelta(truth, lost);
  await gw.topo.publish(churnDelta(3));
  await waitFor(() => client?.rev === 3, "the resync's snapshot");
  expect(begins).toEqual([1, 3]);
  expect(maxFrame).toBeLessThanOrEqual(LIMIT);
  expect([...client!.nodes.keys()].sort()).toEqual([...truth.nodes.keys()].sort());
  expect(gw.lines.some((l) => l.msg === "gap in topology revs; resyncing")).toBe(true);
}, 60_000);

test("a delta over the frame limit still goes out whole, and the gateway says so", async () => {
  const truth = estate({ hosts: 2, procs: 1, rev: 1 });
  const gw = await gatewayOver(truth, { maxFrameBytes: 4096 });
  const revs: number[] = [];
  const ws = new WebSocket(gw.url);
  cleanups.push(() => ws.close());
  ws.onmessage = (ev) => {
    const f = WsFrame.parse(JSON.parse(String(ev.data)));
    if (f.schema === "topology.delta.v1") revs.push(f.rev);
  };
  await new Promise((ok) => (ws.onopen = ok));
  const d = churnDelta(2);
  d.nodesUpserted[0]!.props.blob = "z".repeat(8000);
  await gw.topo.publish(d);
  await waitFor(() => revs.includes(2), "the large delta");
  expect(gw.lines.find((l) => l.msg === "delta frame over the WebSocket frame limit")?.fields).toMatchObject({ schema: "topology.delta.v1", maxFrameBytes: 4096 });
});
