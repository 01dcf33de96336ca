/**
 * A change set the graph store cannot hold in one transaction (`too_large`, as Kuzu's full buffer pool or Neo4j's
 * transaction memory limit) is written again in halves, each its own transaction with its own revs and outbox
 * entries: no rebuild of the model, and the deltas on the stream fold to the stored graph. Real nats-server and Kuzu;
 * the store's memory limit is played by a wrapper refusing writes above a size.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { decode } from "../../../pipelines/codec.ts";
import { DiscoveryBatch as DiscoveryBatchSchema, type DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { TopologyDelta } from "../../../pipelines/contracts/topology.ts";
import type { Changes } from "../../../pipelines/stages/topology/index.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { changeCount, GraphStoreError, type ApplyOptions, type GraphStore, type OutboxEntry } from "../../../services/graph/port.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import type { Logger } from "../../../services/shared/log.ts";
import { startTopologyService } from "../../../services/topology/service.ts";
import { proc } from "../../helpers/discovery.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

let nats: NatsServer;
let bus: Bus;
let tmp: { dir: string; cleanup: () => void };

beforeAll(async () => {
  nats = await startNats();
  tmp = tempDir("orrery-topo-split-");
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("split"), name: "test" });
});
afterAll(async () => {
  await bus.close();
  await nats.stop();
  tmp.cleanup();
});

/** A store whose transactions hold at most `limit` items: a larger write fails with too_large and stores nothing. */
class Limited implements GraphStore {
  readonly name = "limited-kuzu";
  readonly sizes: { items: number; ok: boolean }[] = [];
  constructor(
    private readonly inner: KuzuGraphStore,
    private readonly limit: number,
  ) {}
  async apply(c: Changes, rev: number, outbox?: { entries: OutboxEntry[]; sentUpTo: number }, opts?: ApplyOptions) {
    const items = changeCount(c);
    this.sizes.push({ items, ok: items <= this.limit });
    if (items > this.limit) throw new GraphStoreError("too_large", `${items} items do not fit (limit ${this.limit})`);
    await this.inner.apply(c, rev, outbox, opts);
  }
  init = () => this.inner.init();
  checkpoint = () => this.inner.checkpoint();
  outbox = () => this.inner.outbox();
  load = () => this.inner.load();
  query: GraphStore["query"] = (...a) => this.inner.query(...a);
  neighbourhood: GraphStore["neighbourhood"] = (...a) => this.inner.neighbourhood(...a);
  impact: GraphStore["impact"] = (...a) => this.inner.impact(...a);
  exportSnapshot = () => this.inner.exportSnapshot();
  putRegistry: GraphStore["putRegistry"] = (...a) => this.inner.putRegistry(...a);
  loadRegistry = () => this.inner.loadRegistry();
  close = () => this.inner.close();
}

const HOSTS = 40;
const PORTS = 10;
const scan = (h: number): DiscoveryBatch => ({
  schema: "discovery.v1",
  source: `agent:h${h}`,
  host: `h${h}`,
  scanId: 1,
  part: 0,
  parts: 1,
  full: false,
  at: Date.now(),
  events: Array.from({ length: PORTS }, (_, i) => ({ type: "listener.seen" as const, proto: "tcp" as const, ip: "0.0.0.0", port: 8000 + i, process: proc(100 + i, `svc${i}`) })),
});

test("a change set too large for one store transaction is written in halves, without a rebuild, deltas consistent", async () => {
  const inner = new KuzuGraphStore(join(tmp.dir, "kuzu"));
  const store = new Limited(inner, 300);
  const lines: string[] = [];
  const log: Logger = { info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) };
  // Everything published before the service starts: one change set of ~1600 items (40 hosts × 10 listeners).
  for (let h = 0; h < HOSTS; h++) await publishEvent(bus, bus.topo.subjects.discovery(`h${h}`), DiscoveryBatchSchema, "discovery.v1", scan(h), `scan:${h}`);
  const svc = await startTopologyService({ bus, store, log, aging: { intervalMs: 3_600_000 } });
  try {
    await waitFor(async () => {
      const c = bus.topo.consumers.topology;
      const i = await bus.jsm.consumers.info(c.stream, c.durable);
      return i.num_pending === 0 && i.num_ack_pending === 0;
    }, "every scan written", 60_000);
    const g = await store.load();
    expect(g.nodes.filter((n) => n.kind === "listener").length).toBe(HOSTS * PORTS);
    expect(g.nodes.length).toBe(svc.model().nodes.size);
    expect(g.edges.length).toBe(svc.model().edges.size);
    expect(g.rev).toBe(svc.rev());
    // the first attempt was refused and halved until the parts fit; every write that went through fits
    expect(store.sizes[0]!.ok).toBe(false);
    expect(store.sizes.filter((s) => s.ok).every((s) => s.items <= 300)).toBe(true);
    expect(store.sizes.filter((s) => s.ok).reduce((a, s) => a + s.items, 0)).toBeGreaterThanOrEqual(g.nodes.length + g.edges.length);
    expect(lines.some((l) => /writing it in halves/.test(l))).toBe(true);
    expect(lines.some((l) => /rebuild/.test(l))).toBe(false);

    // the deltas on the stream: revs 1..rev, folding to the stored graph
    const stream = bus.topo.streams.topology.name;
    await waitFor(async () => (await bus.jsm.streams.info(stream)).state.messages === g.rev, "every delta published");
    const nodes = new Set<string>();
    const edges = new Set<string>();
    const revs: number[] = [];
    for (let seq = 1; seq <= g.rev; seq++) {
      const d = decode(TopologyDelta, "topology.delta.v1", (await bus.jsm.streams.getMessage(stream, { seq }))!.data);
      revs.push(d.rev);
      for (const n of d.nodesUpserted) nodes.add(n.id);
      for (const e of d.edgesUpserted) edges.add(e.id);
    }
    expect(revs).toEqual(Array.from({ length: g.rev }, (_, i) => i + 1));
    expect([...nodes].sort()).toEqual(g.nodes.map((n) => n.id).sort());
    expect([...edges].sort()).toEqual(g.edges.map((e) => e.id).sort());
  } finally {
    await svc.stop();
    await store.close();
  }
}, 120_000);
