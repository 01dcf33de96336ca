/** discovery → JetStream → topology service → Kuzu + delta stream, against a real nats-server; bad input → DLQ. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { DeliverPolicy } from "@nats-io/jetstream";
import { TopologyDelta } from "../../../pipelines/contracts/topology.ts";
import type { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { decode } from "../../../pipelines/codec.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startTopologyService, type TopologyService } from "../../../services/topology/service.ts";
import { fetchSnapshot, startMirror } from "../../../services/topology/client.ts";
import { startGatewayServer } from "../../../services/gateway/http.ts";
// ORRERY_AUTH=off explicitly: these tests are not about who may pass (test/integration/identity/ is)
import { openGate } from "../../../services/identity/client.ts";
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

describe("gateway /api/snapshot", () => {
  test("answers 503 {error: 'not synced'} until the mirror has its first snapshot, then the graph", async () => {
    const tmp = tempDir();
    const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("snap"), name: "test" });
    const mirror = await startMirror(bus, log);
    const server = startGatewayServer({ auth: openGate(), bus, mirror, log, host: "127.0.0.1", port: 0, dashboardDir: tmp.dir });
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
