/** discovery → JetStream → topology service → Kuzu + delta stream, against a real nats-server; bad input → DLQ. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { DeliverPolicy } from "@nats-io/jetstream";
import { TopologyDelta } from "../../../pipelines/contracts/topology.ts";
import type { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { decode } from "../../../pipelines/codec.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { z } from "zod";
import { ContractError } from "../../../pipelines/codec.ts";
import type { ConsumerSpec } from "../../../pipelines/streams.ts";
import { connectBus, ensureConsumer, PermanentError, publishEvent, runConsumer, toAckDecision, TransientError, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startTopologyService, type TopologyService } from "../../../services/topology/service.ts";
import { fetchSnapshot, startMirror } from "../../../services/topology/client.ts";
import { startGatewayServer } from "../../../services/gateway/http.ts";
import { DiscoveryBatch as DiscoveryBatchSchema } from "../../../pipelines/contracts/discovery.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const log = makeLogger("test", true);
const proc = (pid: number, comm: string) => ({ pid, exe: `/usr/bin/${comm}`, comm, cmdline: [comm], user: "u", uid: 1, startTime: 5, containerId: null });
const batch = (events: DiscoveryBatch["events"], scanId = 1): DiscoveryBatch => ({ schema: "discovery.v1", source: "agent:h1", host: "h1", scanId, part: 0, parts: 1, full: false, at: Date.now(), events });

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats.stop();
});

describe("topology pipeline", () => {
  let bus: Bus;
  let store: KuzuGraphStore;
  let svc: TopologyService;
  let tmp: { dir: string; cleanup: () => void };
  beforeAll(async () => {
    tmp = tempDir();
    bus = await connectBus({ url: nats.url, prefix: uniquePrefix("pipe"), name: "test" });
    store = new KuzuGraphStore(join(tmp.dir, "kuzu"));
    svc = await startTopologyService({ bus, store, log });
  });
  afterAll(async () => {
    await svc.stop();
    await store.close();
    await bus.close();
    tmp.cleanup();
  });

  test("a discovery batch lands in the graph store, in a numbered delta and in the snapshot", async () => {
    const deltas = await bus.js.consumers.get(bus.topo.streams.topology.name, { deliver_policy: DeliverPolicy.All });
    const hostSeen = { type: "host.seen" as const, hostname: "h1", os: "Debian", kernel: "6.1", cpus: 2, memTotalBytes: 1e9, ips: ["10.1.1.1"] };
    await publishEvent(
      bus,
      bus.topo.subjects.discovery("h1"),
      DiscoveryBatchSchema,
      "discovery.v1",
      batch([
        hostSeen,
        { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 5432, process: proc(10, "postgres") },
        { type: "connection.seen", proto: "tcp", localIp: "127.0.0.1", localPort: 41000, remoteIp: "127.0.0.1", remotePort: 5432, process: proc(11, "app") },
      ]),
      "h1:1",
    );
    // The agent's next scan: the connection is still open, so it becomes a dependency (flows need two scans).
    await publishEvent(bus, bus.topo.subjects.discovery("h1"), DiscoveryBatchSchema, "discovery.v1", batch([hostSeen], 2), "h1:1b");
    const rows = await waitFor(async () => {
      const r = await store.query("MATCH (a:Entity)-[:CONNECTS]->(l:Entity {kind: 'listener'}) RETURN a.name AS client, l.port AS port");
      return r.length ? r : null;
    }, "CONNECTS edge in Kuzu");
    expect(rows).toEqual([{ client: "app", port: 5432 }]);
    const kinds: string[] = [];
    const revs: number[] = [];
    while (revs.length < svc.rev()) {
      const m = await deltas.next({ expires: 5000 });
      const d = decode(TopologyDelta, "topology.delta.v1", m!.data);
      revs.push(d.rev);
      kinds.push(...d.nodesUpserted.map((n) => n.kind));
    }
    expect(revs[0]).toBe(1);
    expect(kinds.sort()).toEqual(["host", "listener", "process", "process"]);
    const snap = await fetchSnapshot(bus);
    expect(snap.rev).toBe(svc.rev());
    expect(snap.nodes.length).toBe(4);
    expect(snap.edges.map((e) => e.kind).sort()).toEqual(["CONNECTS", "DEPENDS_ON", "LISTENS", "RUNS", "RUNS"]);
  });

  test("a retried publish with the same Nats-Msg-Id is stored once", async () => {
    const b = batch([{ type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 6379, process: proc(12, "redis") }], 2);
    const before = (await bus.jsm.streams.info(bus.topo.streams.discovery.name)).state.messages;
    await publishEvent(bus, bus.topo.subjects.discovery("h1"), DiscoveryBatchSchema, "discovery.v1", b, "h1:2");
    await publishEvent(bus, bus.topo.subjects.discovery("h1"), DiscoveryBatchSchema, "discovery.v1", b, "h1:2");
    expect((await bus.jsm.streams.info(bus.topo.streams.discovery.name)).state.messages).toBe(before + 1);
  });

  test("malformed, invalid and oversized messages go to the dead-letter stream with a reason; the consumer keeps going", async () => {
    const subj = bus.topo.subjects.discovery("h1");
    await bus.js.publish(subj, new TextEncoder().encode("{not json"));
    await bus.js.publish(subj, new TextEncoder().encode(JSON.stringify({ schema: "discovery.v1", source: "x", events: "nope" })));
    const huge = batch([{ type: "host.seen", hostname: "h1", os: "x".repeat(200), kernel: "k", cpus: 1, memTotalBytes: 1, ips: [] }]);
    (huge as unknown as { pad: string }).pad = "y".repeat(950 * 1024);
    await bus.js.publish(subj, new TextEncoder().encode(JSON.stringify(huge)));
    // and a good one after them still gets through
    await publishEvent(bus, subj, DiscoveryBatchSchema, "discovery.v1", batch([{ type: "listener.seen", proto: "udp", ip: "0.0.0.0", port: 53, process: proc(13, "dns") }], 3), "h1:3");

    const dlq = await bus.js.consumers.get(bus.topo.streams.dlq.name, { deliver_policy: DeliverPolicy.All });
    const reasons: string[] = [];
    const originals: number[] = [];
    for (let i = 0; i < 3; i++) {
      const m = await dlq.next({ expires: 10_000 });
      expect(m).not.toBeNull();
      reasons.push(m!.headers!.get("Orrery-Reason"));
      originals.push(m!.data.byteLength);
      expect(m!.headers!.get("Orrery-Original-Subject")).toBe(subj);
    }
    expect(reasons[0]).toStartWith("not_json");
    expect(reasons[1]).toStartWith("invalid");
    expect(reasons[1]).toContain("events");
    expect(reasons[2]).toStartWith("oversized");
    expect(originals[0]).toBe(9); // the original bytes are kept
    await waitFor(() => svc.model().nodes.has("listener:h1:udp:0.0.0.0:53"), "the good message after the bad ones");
  });
});

describe("splitDelta", () => {
  test("a large change set becomes consecutive deltas, node upserts first and node removals last", async () => {
    const { splitDelta, DELTA_CHUNK } = await import("../../../services/topology/service.ts");
    const n = (i: number) => ({ id: `n${i}`, kind: "host" as const, name: "n", source: "s", props: {}, firstSeen: 1, lastSeen: 1 });
    const nodes = Array.from({ length: DELTA_CHUNK + 10 }, (_, i) => n(i));
    const deltas = splitDelta({ nodesUpserted: nodes, nodesRemoved: ["gone"], edgesUpserted: [], edgesRemoved: [{ id: "e", kind: "RUNS", src: "a", dst: "b" }] }, 41, 5);
    expect(deltas.map((d) => d.rev)).toEqual([42, 43]);
    expect(deltas[0]!.nodesUpserted.length).toBe(DELTA_CHUNK);
    expect(deltas[1]!.nodesUpserted.length).toBe(10);
    expect(deltas[1]!.edgesRemoved).toEqual(["e"]);
    expect(deltas[1]!.nodesRemoved).toEqual(["gone"]);
  });
});

describe("toAckDecision", () => {
  test("success acks; permanent errors go to the DLQ at once; others are nak'ed with a growing delay, then dead-lettered on the last delivery", () => {
    expect(toAckDecision(undefined)).toEqual({ kind: "ack" });
    expect(toAckDecision(new ContractError("invalid", "x.v1", "x.v1: n: expected number"))).toEqual({ kind: "term", reason: "handler: ContractError: x.v1: n: expected number" });
    expect(toAckDecision(new PermanentError("unknown host kind"), { deliveryCount: 1, maxDeliver: 5 })).toMatchObject({ kind: "term", reason: "handler: PermanentError: unknown host kind" });
    const graphBad = Object.assign(new Error("bad"), { name: "GraphStoreError", code: "bad_request" });
    const graphDown = Object.assign(new Error("io"), { name: "GraphStoreError", code: "write_failed" });
    expect(toAckDecision(graphBad).kind).toBe("term");
    expect(toAckDecision(graphDown, { deliveryCount: 1, maxDeliver: 5 })).toEqual({ kind: "nak", delayMs: 1000, shared: false });
    expect(toAckDecision(graphDown, { deliveryCount: 3, maxDeliver: 5 })).toEqual({ kind: "nak", delayMs: 4000, shared: false });
    expect(toAckDecision(new Error("x"), { deliveryCount: 40, maxDeliver: -1 })).toEqual({ kind: "nak", delayMs: 30_000, shared: false });
    expect(toAckDecision(new TransientError("clickhouse down", 250), { deliveryCount: 2, maxDeliver: 5 })).toEqual({ kind: "nak", delayMs: 250, shared: true });
    expect(toAckDecision(new TransientError("clickhouse down"), { deliveryCount: 5, maxDeliver: 5 })).toEqual({ kind: "term", reason: "handler: TransientError: clickhouse down (delivery 5 of 5)" });
  });
});

describe("runConsumer when the handler throws", () => {
  const Item = z.object({ n: z.number().int() });
  type Item = z.infer<typeof Item>;
  let bus: Bus;
  beforeAll(async () => {
    bus = await connectBus({ url: nats.url, prefix: uniquePrefix("fail"), name: "test" });
  });
  afterAll(async () => {
    await bus.close();
  });

  /** publishes items 0..count-1 on their own subject, then consumes them with `handle` on a durable of their own */
  async function run(name: string, count: number, maxDeliver: number, handle: (items: { n: number; delivery: number }[]) => void) {
    // The first message is handed over alone as soon as it arrives; a slow first call lets the rest queue up, so
    // they come as one batch (as under load).
    const subject = bus.topo.subjects.discovery(name);
    const spec: ConsumerSpec = { stream: bus.topo.streams.discovery.name, durable: name, filterSubject: subject, ackWaitMs: 30_000, maxDeliver };
    await ensureConsumer(bus.jsm, spec);
    for (let n = 0; n < count; n++) await bus.js.publish(subject, new TextEncoder().encode(JSON.stringify({ n })), { msgID: `${name}:${n}` });
    const calls: number[][] = [];
    const handle$ = async (batch: { msg: { info: { deliveryCount: number } }; value: Item }[]) => {
      calls.push(batch.map((b) => b.value.n));
      if (calls.length === 1) await Bun.sleep(300);
      handle(batch.map((b) => ({ n: b.value.n, delivery: b.msg.info.deliveryCount })));
    };
    const c = await runConsumer(bus, spec, Item, "item.v1", handle$, { maxBatch: 100 });
    const settled = () =>
      waitFor(async () => {
        const i = await bus.jsm.consumers.info(spec.stream, spec.durable);
        return i.num_pending === 0 && i.num_ack_pending === 0 && i.delivered.stream_seq > 0;
      }, `${name}: everything acked`, 30_000);
    return { calls, spec, subject, settled, stop: () => c.stop() };
  }

  /** what the dead-letter stream holds for one consumer (the server here is 2.9: no multi-filter consumers) */
  async function deadLetters(origin: string, expected: number) {
    const subject = bus.topo.subjects.dlq(origin);
    const read = async () => {
      const dlq = await bus.js.consumers.get(bus.topo.streams.dlq.name, { deliver_policy: DeliverPolicy.All, filter_subjects: subject });
      const out: { n: number; reason: string; subject: string }[] = [];
      while (true) {
        const m = await dlq.next({ expires: 1000 });
        if (!m) break;
        out.push({ n: JSON.parse(new TextDecoder().decode(m.data)).n, reason: m.headers!.get("Orrery-Reason"), subject: m.headers!.get("Orrery-Original-Subject") });
        if (m.info.pending === 0) break;
      }
      return out;
    };
    let out = await read();
    if (out.length < expected) out = await waitFor(async () => ((await read()).length >= expected ? await read() : null), `${expected} dead letters of ${origin}`, 10_000);
    expect(out.length).toBe(expected); // and no more than that
    return out;
  }

  test("one poison message: the rest of its batch is acked on the first delivery; it alone is retried, then dead-lettered on its last delivery", async () => {
    const ok = new Map<number, number>();
    const r = await run("poison", 40, 3, (items) => {
      const bad = items.find((i) => i.n === 17);
      if (bad) throw new Error(`cannot handle item 17 (delivery ${bad.delivery})`);
      for (const i of items) ok.set(i.n, (ok.get(i.n) ?? 0) + 1);
    });
    await r.settled();
    await r.stop();
    const firstWith17 = r.calls.find((c) => c.includes(17))!;
    expect(firstWith17.length).toBeGreaterThan(20); // it came in a batch with many others
    expect([...ok.keys()].sort((a, b) => a - b)).toEqual([...Array(40).keys()].filter((n) => n !== 17));
    expect([...ok.values()].every((v) => v === 1)).toBe(true); // each handled once, on its first delivery
    // 17 was tried alone on each of its 3 deliveries, and no good message was retried after the first one
    expect(r.calls.filter((c) => c.length === 1 && c[0] === 17).length).toBe(3);
    const dl = await deadLetters("poison", 1);
    expect(dl).toEqual([{ n: 17, subject: r.subject, reason: "handler: Error: cannot handle item 17 (delivery 3) (delivery 3 of 3)" }]);
  }, 60_000);

  test("a permanent error goes to the dead-letter stream at once; two poison messages in different halves are both isolated", async () => {
    const ok: number[] = [];
    const r = await run("permanent", 30, 10, (items) => {
      const bad = items.find((i) => i.n === 3 || i.n === 25);
      if (bad) throw new PermanentError(`item ${bad.n} refers to nothing`);
      ok.push(...items.map((i) => i.n));
    });
    await r.settled();
    await r.stop();
    expect(ok.sort((a, b) => a - b)).toEqual([...Array(30).keys()].filter((n) => n !== 3 && n !== 25));
    const dl = await deadLetters("permanent", 2);
    expect(dl.map((d) => d.n).sort((a, b) => a - b)).toEqual([3, 25]);
    expect(dl.find((d) => d.n === 3)!.reason).toBe("handler: PermanentError: item 3 refers to nothing");
    expect(r.calls.filter((c) => c.includes(3) && c.length === 1).length).toBe(1); // never redelivered
  }, 60_000);

  test("a transient failure naks the whole batch without splitting it; the batch is handled once the cause is gone", async () => {
    let failures = 0;
    const ok: number[] = [];
    const r = await run("transient", 25, 10, (items) => {
      if (failures < 2) {
        failures++;
        throw new TransientError("store is down", 200);
      }
      ok.push(...items.map((i) => i.n));
    });
    await r.settled();
    await r.stop();
    expect(ok.sort((a, b) => a - b)).toEqual([...Array(25).keys()]);
    // no bisecting: each message was offered to the handler once per delivery — once failing, once handled
    const offered = new Map<number, number>();
    for (const c of r.calls) for (const n of c) offered.set(n, (offered.get(n) ?? 0) + 1);
    expect(r.calls[1]!.length).toBe(24); // the failing batch was offered whole, and only once
    expect([...offered.entries()].filter(([, v]) => v !== 2)).toEqual([]);
    await deadLetters("transient", 0);
  }, 60_000);

  test("a cause that never goes away: every message is dead-lettered on its last delivery, none is dropped silently", async () => {
    const r = await run("down", 12, 2, () => {
      throw new TransientError("store is down", 100);
    });
    await r.settled();
    await r.stop();
    const dl = await deadLetters("down", 12);
    expect(dl.map((d) => d.n).sort((a, b) => a - b)).toEqual([...Array(12).keys()]);
    expect(new Set(dl.map((d) => d.reason))).toEqual(new Set(["handler: TransientError: store is down (delivery 2 of 2)"]));
  }, 60_000);
});

describe("gateway /api/snapshot", () => {
  test("answers 503 {error: 'not synced'} until the mirror has its first snapshot, then the graph", async () => {
    const tmp = tempDir();
    const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("snap"), name: "test" });
    const mirror = await startMirror(bus, log);
    const server = startGatewayServer({ bus, mirror, log, host: "127.0.0.1", port: 0, dashboardDir: tmp.dir });
    const base = `http://127.0.0.1:${server.port}`;
    let svc: TopologyService | undefined;
    let store: KuzuGraphStore | undefined;
    try {
      // no topology service on this prefix yet: nobody answers the snapshot request
      const early = await fetch(`${base}/api/snapshot`);
      expect(early.status).toBe(503);
      expect(await early.json()).toEqual({ error: "not synced" });
      expect((await fetch(`${base}/healthz`)).status).toBe(503);

      store = new KuzuGraphStore(join(tmp.dir, "kuzu"));
      svc = await startTopologyService({ bus, store, log });
      const snap = await waitFor(async () => {
        const r = await fetch(`${base}/api/snapshot`);
        return r.status === 200 ? r.json() : null;
      }, "snapshot served once synced", 20_000);
      expect(snap).toMatchObject({ schema: "topology.snapshot.v1", nodes: [], edges: [] });
    } finally {
      await server.stop(true);
      await mirror.stop();
      await svc?.stop();
      await store?.close();
      await bus.close();
      tmp.cleanup();
    }
  }, 60_000);
});
