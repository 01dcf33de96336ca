/**
 * nats-server restarted mid-ingest: the topology (Kuzu), metrics and history services (ClickHouse owner as a child
 * process) run against one nats-server while churning discovery scans and metric batches are published by publishers
 * that retry each message with its Nats-Msg-Id until acked. The server is stopped and started again on the same port
 * and store dir. Afterwards every published sample is in ClickHouse exactly once, the change history holds each
 * delta's changes once, nothing is dead-lettered, and the graph holds the last scans.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { encode } from "../../../pipelines/codec.ts";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { MetricBatch } from "../../../pipelines/contracts/metrics.ts";
import type { TopologyDelta } from "../../../pipelines/contracts/topology.ts";
import { makeClickHouseClient } from "../../../services/clickhouse/client.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { ClickHouseHistoryStore } from "../../../services/history/clickhouse.ts";
import { startHistoryService } from "../../../services/history/service.ts";
import { ClickHouseSeriesStore } from "../../../services/metrics/clickhouse.ts";
import { startMetricsService } from "../../../services/metrics/service.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import type { Logger } from "../../../services/shared/log.ts";
import { fetchSnapshot } from "../../../services/topology/client.ts";
import { startTopologyService } from "../../../services/topology/service.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { chNumber, churnScan, dlqSize, edgeKey, foldDiscovery, nodeKey, readDeltas, retryingPublisher, sampleCounts, type Published } from "../../helpers/faults.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const HOSTS = 8;
/** how long nats-server stays down */
const DOWN_MS = 3000;
const METRIC = "fault_nats";

const tmp = tempDir("orrery-faults-nats-");
let nats: NatsServer;
let ch: TestClickHouse;

/** warnings and errors of the services, printed when an assertion on the run fails */
const said: string[] = [];
const logger = (service: string): Logger => ({
  info: () => undefined,
  warn: (msg, f) => void said.push(`${service} warn: ${msg} ${JSON.stringify(f ?? {})}`.slice(0, 400)),
  error: (msg, f) => void said.push(`${service} error: ${msg} ${JSON.stringify(f ?? {})}`.slice(0, 400)),
});

type Graph = { nodes: string[]; edges: string[] };
interface Outcome {
  db: string;
  scans: Published;
  samples: Published;
  streams: { discovery: number; metrics: number };
  deltas: TopologyDelta[];
  /** the graph once the topology consumer had nothing pending, and the published scans folded in stream order */
  drained: { snapshot: Graph; want: Graph };
  /** the same after one more scan of every host, published after the drain */
  final: { snapshot: Graph; stored: Graph; want: Graph };
  dlq: number;
}

const graphOf = (g: { nodes: Parameters<typeof nodeKey>[0][]; edges: Parameters<typeof edgeKey>[0][] }): Graph => ({ nodes: g.nodes.map(nodeKey).sort(), edges: g.edges.map(edgeKey).sort() });

async function scenario(): Promise<Outcome> {
  const prefix = uniquePrefix("fnr");
  const db = prefix.replace(/-/g, "_");
  const bus = await connectBus({ url: nats.url, prefix, name: "faults-services" });
  const feed = await connectBus({ url: nats.url, prefix, name: "faults-feed" });
  const kuzu = new KuzuGraphStore(join(tmp.dir, "kuzu"));
  const series = new ClickHouseSeriesStore(makeClickHouseClient({ url: ch.url, logErrors: false, requestTimeoutMs: 10_000 }), { database: db, ttlDays: 30 });
  const historyStore = new ClickHouseHistoryStore(makeClickHouseClient({ url: ch.url, logErrors: false, requestTimeoutMs: 10_000 }), { database: db, ttlDays: 30 });
  const topology = await startTopologyService({ bus, store: kuzu, log: logger("topology"), aging: { intervalMs: 24 * 3600_000 } });
  const metrics = await startMetricsService({ bus, store: series, log: logger("metrics"), options: { rollupIntervalMs: 5000 } });
  const history = await startHistoryService({ bus, store: historyStore, log: logger("history") });
  const t0 = Date.now();
  const scans: DiscoveryBatch[] = [];
  const scanMsg = (i: number) => {
    const b = churnScan(prefix, HOSTS, i);
    scans[i] = b;
    return { subject: feed.topo.subjects.discovery(b.host), bytes: encode(DiscoveryBatch, "discovery.v1", b), id: `${prefix}:d:${i}`, items: 1 };
  };
  const discovery = retryingPublisher(feed, scanMsg, 40);
  const load = retryingPublisher(feed, (i) => {
    const s = Array.from({ length: 50 }, (_, k) => ({ entity: `host:${prefix}h${k % HOSTS}`, metric: METRIC, ts: t0 + i * 50 + k, value: i, labels: {} }));
    return { subject: feed.topo.subjects.metrics("faults"), bytes: encode(MetricBatch, "metrics.v1", { schema: "metrics.v1", source: "faults", batchId: `b${i}`, samples: s }), id: `${prefix}:m:${i}`, items: s.length };
  }, 30);
  const topologyDrained = async (b: Bus) => {
    const c = await b.jsm.consumers.info(b.topo.consumers.topology.stream, b.topo.consumers.topology.durable);
    return c.num_pending === 0 && c.num_ack_pending === 0;
  };
  try {
    await waitFor(async () => (await sampleCounts(ch.url, db, METRIC)).rows >= 1000 && scans.length >= 2 * HOSTS, "ingest flowing before the restart", 60_000, 250);
    const before = { discovery: discovery.now(), samples: load.now() };
    await nats.stop();
    await Bun.sleep(DOWN_MS);
    nats = await startNats({ dir: nats.dir, port: nats.port });
    // how long after the restart each service has stored everything published before it (printed: a figure to watch)
    const restartedAt = performance.now();
    const owed = { samples: load.now().items, scans: discovery.now().messages };
    const caught = { metrics: 0, topology: 0 };
    const ackFloor = async () => (await feed.jsm.consumers.info(feed.topo.consumers.topology.stream, feed.topo.consumers.topology.durable)).ack_floor.stream_seq;
    const watch = (async () => {
      while ((!caught.metrics || !caught.topology) && performance.now() - restartedAt < 120_000) {
        if (!caught.metrics && (await sampleCounts(ch.url, db, METRIC).catch(() => ({ rows: 0 }))).rows >= owed.samples) caught.metrics = performance.now() - restartedAt;
        if (!caught.topology && (await ackFloor().catch(() => 0)) >= owed.scans) caught.topology = performance.now() - restartedAt;
        await Bun.sleep(100);
      }
    })();
    // ingest goes on through the reconnect and for a while after it
    await waitFor(() => load.now().messages > before.samples.messages + 50 && discovery.now().messages > before.discovery.messages + 2 * HOSTS, "publishing again after the restart", 60_000, 250);
    await Bun.sleep(3000);
    const d = await discovery.stop();
    const m = await load.stop();
    await watch;
    // a message whose ack was lost in the restart comes back after the consumer's ack wait (30 s)
    await waitFor(() => topologyDrained(bus), "the topology service to handle every scan", 120_000, 250);
    const drained = { snapshot: graphOf(await fetchSnapshot(bus)), want: foldDiscovery(scans.slice(0, d.messages)) };
    // one more scan of every host: the state each agent would report next
    const again = retryingPublisher(feed, (k) => scanMsg(d.messages + k), 0);
    await waitFor(() => again.now().messages >= HOSTS, "one more scan of every host", 30_000, 50);
    const extra = await again.stop();
    await waitFor(() => topologyDrained(bus), "the topology service to handle the last scans", 120_000, 250);
    const want = foldDiscovery(scans.slice(0, d.messages + extra.messages));
    const final = { snapshot: graphOf(await fetchSnapshot(bus)), stored: graphOf(await kuzu.load()), want };
    await waitFor(async () => (await sampleCounts(ch.url, db, METRIC)).rows >= m.items, `${m.items} samples in ClickHouse`, 120_000, 500);
    const deltas = await readDeltas(feed);
    const changes = deltas.reduce((n, x) => n + x.nodesUpserted.length + x.nodesRemoved.length + x.edgesUpserted.length + x.edgesRemoved.length, 0);
    await waitFor(async () => (await chNumber(ch.url, `SELECT count() AS n FROM ${db}.topology_changes WHERE checkpoint = 0`)) >= changes, `${changes} changes in the history`, 120_000, 500);
    await Bun.sleep(1000); // anything stored twice would show now
    const info = (s: string) => feed.jsm.streams.info(s);
    process.stderr.write(`faults/nats-restart: published ${d.messages} scans and ${m.messages} metric batches (${m.items} samples); ${d.retries + m.retries} publishes retried across the restart; everything published before the restart stored ${Math.round(caught.metrics)} ms (metrics) and ${Math.round(caught.topology)} ms (topology) after it\n`);
    return {
      db,
      scans: d,
      samples: m,
      streams: { discovery: (await info(feed.topo.streams.discovery.name)).state.messages - extra.messages, metrics: (await info(feed.topo.streams.metrics.name)).state.messages },
      deltas,
      drained,
      final,
      dlq: await dlqSize(feed),
    };
  } finally {
    await discovery.stop();
    await load.stop();
    await history.stop();
    await metrics.stop();
    await topology.stop();
    await historyStore.close();
    await series.close();
    await kuzu.close();
    await feed.close();
    await bus.close();
  }
}

let outcome: Promise<Outcome>;
beforeAll(async () => {
  // the server's own dir (its stop leaves it), so the restart finds the same store
  mkdirSync(join(tmp.dir, "nats"));
  [nats, ch] = await Promise.all([startNats({ dir: join(tmp.dir, "nats") }), startClickHouse(join(tmp.dir, "ch"), { embedded: true })]);
  outcome = scenario();
  outcome.catch(() => undefined); // awaited by the tests
}, 60_000);
afterAll(async () => {
  await outcome?.catch(() => undefined);
  await nats?.stop();
  await ch?.stop();
  tmp.cleanup();
});

const TIMEOUT = 240_000;
const explain = (e: unknown) => {
  process.stderr.write(`the services said:\n${said.slice(-40).join("\n")}\n`);
  throw e;
};

test("nats-server restarted mid-ingest: every publish retried until acked, each message in its stream once", async () => {
  const o = await outcome;
  // the restart was felt: some publishes failed and were tried again with their Nats-Msg-Id
  expect(o.scans.retries + o.samples.retries).toBeGreaterThan(0);
  expect(o.streams).toEqual({ discovery: o.scans.messages, metrics: o.samples.messages });
}, TIMEOUT);

test("…every published sample in ClickHouse exactly once (count and distinct)", async () => {
  const o = await outcome;
  expect(o.samples.items).toBeGreaterThan(2000);
  expect(await sampleCounts(ch.url, o.db, METRIC)).toEqual({ rows: o.samples.items, distinct: o.samples.items });
}, TIMEOUT);

test("…every delta's changes in the history once, and nothing dead-lettered", async () => {
  const o = await outcome;
  const revs = o.deltas.map((x) => x.rev);
  expect(new Set(revs).size).toBe(revs.length);
  const size = (x: TopologyDelta) => x.nodesUpserted.length + x.nodesRemoved.length + x.edgesUpserted.length + x.edgesRemoved.length;
  const changes = o.deltas.reduce((n, x) => n + size(x), 0);
  expect(changes).toBeGreaterThan(0);
  const where = `FROM ${o.db}.topology_changes WHERE checkpoint = 0`;
  expect(await chNumber(ch.url, `SELECT count() AS n ${where}`)).toBe(changes);
  expect(await chNumber(ch.url, `SELECT uniqExact(rev, seq) AS n ${where}`)).toBe(changes);
  expect(await chNumber(ch.url, `SELECT uniqExact(rev) AS n ${where}`)).toBe(o.deltas.filter((x) => size(x) > 0).length);
  expect(o.dlq).toBe(0);
}, TIMEOUT);

test("…the graph (live model and Kuzu) holds every host's last scan once each host has scanned again", async () => {
  const o = await outcome;
  expect(o.final.want.nodes.length).toBeGreaterThanOrEqual(3 * HOSTS);
  try {
    expect(o.final.snapshot).toEqual(o.final.want);
    expect(o.final.stored).toEqual(o.final.want);
  } catch (e) {
    explain(e);
  }
}, TIMEOUT);

// Acks sent while nats-server restarts are lost, and JetStream redelivers those scans after the ack wait, behind every
// later scan; the topology service skips a redelivery it has already folded (FoldedSeqs), so no host goes back to an
// older scan.
test("…the graph equals the published scans folded in stream order as soon as the backlog is drained", async () => {
  const o = await outcome;
  expect(o.drained.snapshot).toEqual(o.drained.want);
}, TIMEOUT);
