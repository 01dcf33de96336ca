/**
 * No silent loss through a long store outage, on real servers, under continuous load:
 * (a) the ClickHouse owner (a child process) is stopped while metric batches, topology deltas and alert events keep
 *     being published, and started again on the same port and data after OUTAGE_MS: every published sample (metrics
 *     service), every change (history service) and every alert event (alerts service's history) is stored exactly
 *     once, nothing dead-lettered;
 * (b) the graph store refuses every call (as an unreachable Neo4j does: GraphStoreError "unavailable") while discovery
 *     keeps being published, for OUTAGE_MS: afterwards every published host is in the graph, nothing dead-lettered.
 * Both run at the same time, so the suite pays the outage once. Each shows that a batch held through the outage was
 * tried more than 20 times — the old max_deliver, past which JetStream used to drop it without a trace. (The consumers
 * retry in place, keeping the messages in progress, so JetStream itself delivers them once: the tries are counted by
 * the store wrapper and the services' "holding … retrying" log lines.)
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { TopologyDelta } from "../../../pipelines/contracts/topology.ts";
import { DiscoveryBatch as DiscoveryBatchSchema } from "../../../pipelines/contracts/discovery.ts";
import { MetricBatch } from "../../../pipelines/contracts/metrics.ts";
import { GenericAlert } from "../../../pipelines/contracts/alerts.ts";
import { normalizeGeneric } from "../../../pipelines/stages/alerts/generic.ts";
import { AlertRules } from "../../../pipelines/stages/alerts/mapping.ts";
import { ClickHouseAlertHistory } from "../../../services/alerts/history.ts";
import { alertPublisher } from "../../../services/alerts/publish.ts";
import { startAlertsService } from "../../../services/alerts/service.ts";
import { makeClickHouseClient } from "../../../services/clickhouse/client.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { GraphStoreError, type GraphStore } from "../../../services/graph/port.ts";
import { ClickHouseHistoryStore } from "../../../services/history/clickhouse.ts";
import { startHistoryService } from "../../../services/history/service.ts";
import { ClickHouseSeriesStore } from "../../../services/metrics/clickhouse.ts";
import type { SeriesStore } from "../../../services/metrics/port.ts";
import { startMetricsService } from "../../../services/metrics/service.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import type { Logger } from "../../../services/shared/log.ts";
import { startTopologyService } from "../../../services/topology/service.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { hostSeen, listen, proc } from "../../helpers/discovery.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

/** How long each store is down: the 10 minutes. */
const OUTAGE_MS = 10 * 60_000;
/** The old max_deliver of the metrics and topology consumers. */
const OLD_MAX_DELIVER = 20;

const tmp = tempDir("orrery-loss-");
let nats: NatsServer;

/** A logger that keeps the attempt numbers of "holding … retrying" lines and prints only errors. */
function recordingLogger(): { log: Logger; holds: number[] } {
  const holds: number[] = [];
  const log: Logger = {
    info: () => undefined,
    warn: (msg, f) => {
      if (msg.includes("holding")) holds.push(Number(f?.attempt));
    },
    error: () => undefined,
  };
  return { log, holds };
}

/** Publishes `one(i)` every `everyMs` until stopped; `published` counts what JetStream acked. */
function publisher(one: (i: number) => Promise<number>, everyMs: number) {
  let running = true;
  let published = 0;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      published += await one(i);
      await Bun.sleep(everyMs);
    }
  })();
  return {
    published: () => published,
    stop: async () => {
      running = false;
      await loop;
      return published;
    },
  };
}

async function dlqSize(bus: Bus): Promise<number> {
  return (await bus.jsm.streams.info(bus.topo.streams.dlq.name)).state.messages;
}

interface Outcome {
  published: number;
  stored: number;
  dlq: number;
  /** the most tries one batch got before it was stored */
  maxTries: number;
  /** JetStream's redelivery count of the consumer (0: the batches were held, not nak'ed) */
  redelivered: number;
}

/** (a) metrics, topology history and alert history under load while the ClickHouse owner is stopped for OUTAGE_MS. */
async function clickHouseOutage(): Promise<{ metrics: Outcome; history: Outcome; alerts: Outcome }> {
  const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("lossch"), name: "test" });
  const dataDir = join(tmp.dir, "ch");
  let owner: TestClickHouse = await startClickHouse(dataDir, { embedded: true });
  const port = Number(new URL(owner.url).port);
  const db = uniquePrefix("loss").replace(/-/g, "_");
  const inner = new ClickHouseSeriesStore(makeClickHouseClient({ url: owner.url, logErrors: false, requestTimeoutMs: 10_000 }), { database: db, ttlDays: 30 });
  // tries per batchId: every insert that carried it, failed or not
  const tries = new Map<string, number>();
  const store: SeriesStore = {
    init: () => inner.init(),
    insert: (samples, batchId) => inner.insert(samples, batchId),
    insertMany: (batches) => {
      for (const b of batches) tries.set(b.batchId, (tries.get(b.batchId) ?? 0) + 1);
      return inner.insertMany(batches);
    },
    rollup: () => inner.rollup(),
    series: (q) => inner.series(q),
    latest: (e) => inner.latest(e),
    latestMany: (q) => inner.latestMany(q),
    top: (q) => inner.top(q),
    close: () => inner.close(),
  };
  const { log } = recordingLogger();
  const svc = await startMetricsService({ bus, store, log, options: { rollupIntervalMs: 5000 } });
  const historyStore = new ClickHouseHistoryStore(makeClickHouseClient({ url: owner.url, logErrors: false, requestTimeoutMs: 10_000 }), { database: db, ttlDays: 30 });
  const historyLog = recordingLogger();
  const history = await startHistoryService({ bus, store: historyStore, log: historyLog.log });
  const alertHistory = new ClickHouseAlertHistory(makeClickHouseClient({ url: owner.url, logErrors: false, requestTimeoutMs: 10_000 }), { database: db, ttlDays: 30 });
  const alertsLog = recordingLogger();
  const noTopology = { synced: () => true, rev: () => 1, nodes: () => [] };
  const alertsSvc = await startAlertsService({ bus, topology: noTopology, rules: AlertRules.parse({}), history: alertHistory, log: alertsLog.log, historyLingerMs: 50 });
  const t0 = Date.now();
  // a new alert every 500 ms, each its own event in the history
  const publishAlerts = alertPublisher(bus);
  const alertEvents = publisher(async (i) => {
    const at = t0 + i;
    const r = await publishAlerts([normalizeGeneric(GenericAlert.parse({ fingerprint: `loss-${i}`, severity: "warning", target: { host: `a${i % 20}` }, at }), at)]);
    return r.stored.length;
  }, 500);
  // one node upserted per delta, as the topology service publishes them
  const deltas = publisher(async (i) => {
    const rev = i + 1;
    const node = { id: `host:d${rev}`, kind: "host" as const, name: `d${rev}`, source: "agent:loss", props: {}, firstSeen: t0, lastSeen: t0 + rev };
    const delta = { schema: "topology.delta.v1" as const, rev, at: t0 + rev, nodesUpserted: [node], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] };
    await publishEvent(bus, bus.topo.subjects.topologyDelta, TopologyDelta, "topology.delta.v1", delta, `loss:delta:${rev}`);
    return 1;
  }, 250);
  const load = publisher(async (i) => {
    const samples = Array.from({ length: 50 }, (_, k) => ({ entity: `host:m${k % 10}`, metric: "loss_test", ts: t0 + i * 50 + k, value: i, labels: {} }));
    await publishEvent(bus, bus.topo.subjects.metrics("loss"), MetricBatch, "metrics.v1", { schema: "metrics.v1", source: "loss", batchId: `b${i}`, samples }, `loss:b${i}`);
    return samples.length;
  }, 100);
  const count = async (table = "samples") => {
    const ch = makeClickHouseClient({ url: owner.url, logErrors: false });
    try {
      const r = await (await ch.query({ query: `SELECT count() AS n FROM ${db}.${table}`, format: "JSONEachRow" })).json<{ n: string }>();
      return Number(r[0]!.n);
    } finally {
      await ch.close();
    }
  };
  try {
    await waitFor(
      async () => (await count()) >= 1000 && (await count("topology_changes")) >= 4 && (await count("alerts_history FINAL")) >= 2,
      "samples, changes and alert events stored before the outage",
      60_000,
      250,
    );
    expect(await owner.stop()).toBe(0);
    await Bun.sleep(OUTAGE_MS);
    owner = await startClickHouse(dataDir, { embedded: true, port });
    expect(owner.url).toContain(`:${port}`);
    await Bun.sleep(5000);
    const published = await load.stop();
    const changes = await deltas.stop();
    const events = await alertEvents.stop();
    const stored = await waitFor(async () => {
      const n = await count();
      return n >= published ? n : null;
    }, `all ${published} samples stored after the outage`, 5 * 60_000, 1000);
    const storedChanges = await waitFor(async () => {
      const n = await count("topology_changes");
      return n >= changes ? n : null;
    }, `all ${changes} changes stored after the outage`, 5 * 60_000, 1000);
    const storedEvents = await waitFor(async () => {
      const n = await count("alerts_history FINAL");
      return n >= events ? n : null;
    }, `all ${events} alert events stored after the outage`, 5 * 60_000, 1000);
    const dlq = await dlqSize(bus);
    const info = await bus.jsm.consumers.info(bus.topo.consumers.metrics.stream, bus.topo.consumers.metrics.durable);
    const historyInfo = await bus.jsm.consumers.info(bus.topo.consumers.history.stream, bus.topo.consumers.history.durable);
    const alertsInfo = await bus.jsm.consumers.info(bus.topo.consumers.alertsHistory.stream, bus.topo.consumers.alertsHistory.durable);
    return {
      metrics: { published, stored, dlq, maxTries: Math.max(...tries.values()), redelivered: info.num_redelivered },
      // (the history service's line N says a batch failed its Nth try; the try after the last line stored it)
      history: { published: changes, stored: storedChanges, dlq, maxTries: Math.max(0, ...historyLog.holds) + 1, redelivered: historyInfo.num_redelivered },
      alerts: { published: events, stored: storedEvents, dlq, maxTries: Math.max(0, ...alertsLog.holds) + 1, redelivered: alertsInfo.num_redelivered },
    };
  } finally {
    await load.stop();
    await deltas.stop();
    await alertEvents.stop();
    await svc.stop();
    await history.stop();
    await alertsSvc.stop();
    await alertHistory.close();
    await store.close();
    await historyStore.close();
    await owner.stop();
    await bus.close();
  }
}

/** A graph store that refuses every call while `down`, as an unreachable server does. */
class FlakyGraphStore implements GraphStore {
  down = false;
  readonly name: string;
  constructor(private inner: GraphStore) {
    this.name = inner.name;
  }
  private check(): void {
    if (this.down) throw new GraphStoreError("unavailable", "graph store is down (test outage)");
  }
  init = () => this.inner.init();
  apply: GraphStore["apply"] = async (...a) => (this.check(), this.inner.apply(...a));
  checkpoint = async () => (this.check(), this.inner.checkpoint());
  outbox = async () => (this.check(), this.inner.outbox());
  load = async () => (this.check(), this.inner.load());
  query: GraphStore["query"] = async (...a) => (this.check(), this.inner.query(...a));
  neighbourhood: GraphStore["neighbourhood"] = async (...a) => (this.check(), this.inner.neighbourhood(...a));
  impact: GraphStore["impact"] = async (...a) => (this.check(), this.inner.impact(...a));
  exportSnapshot = async () => (this.check(), this.inner.exportSnapshot());
  putRegistry: GraphStore["putRegistry"] = async (...a) => (this.check(), this.inner.putRegistry(...a));
  loadRegistry = async () => (this.check(), this.inner.loadRegistry());
  close = () => this.inner.close();
}

/** (b) discovery under load while the graph store refuses every call for OUTAGE_MS. */
async function graphOutage(): Promise<Outcome> {
  const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("lossgr"), name: "test" });
  const kuzu = new KuzuGraphStore(join(tmp.dir, "kuzu"));
  const store = new FlakyGraphStore(kuzu);
  const { log, holds } = recordingLogger();
  // Sources report once here, so aging would remove them after a minute: this test is about loss, not aging.
  const svc = await startTopologyService({ bus, store, log, aging: { intervalMs: 24 * 3600_000 } });
  const load = publisher(async (i) => {
    const host = `loss${i}`;
    const batch: DiscoveryBatch = {
      schema: "discovery.v1",
      source: `agent:${host}`,
      host,
      scanId: 1,
      part: 0,
      parts: 1,
      full: false,
      at: Date.now(),
      events: [hostSeen([`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`], host), listen(8080, proc(100, "svc"))],
    };
    await publishEvent(bus, bus.topo.subjects.discovery(host), DiscoveryBatchSchema, "discovery.v1", batch, `loss:${host}`);
    return 1;
  }, 200);
  const hostsStored = async () => (await kuzu.load()).nodes.filter((n) => n.kind === "host" && n.id.startsWith("host:loss")).length;
  try {
    await waitFor(async () => (await hostsStored()) >= 10, "hosts in the graph before the outage", 60_000, 250);
    store.down = true;
    await Bun.sleep(OUTAGE_MS);
    store.down = false;
    await Bun.sleep(5000);
    const published = await load.stop();
    const stored = await waitFor(async () => {
      const n = await hostsStored();
      return n >= published ? n : null;
    }, `all ${published} hosts in the graph after the outage`, 5 * 60_000, 1000);
    const info = await bus.jsm.consumers.info(bus.topo.consumers.topology.stream, bus.topo.consumers.topology.durable);
    // a hold's line N says the batch failed its Nth try; the try after the last line stored it
    return { published, stored, dlq: await dlqSize(bus), maxTries: Math.max(0, ...holds) + 1, redelivered: info.num_redelivered };
  } finally {
    await load.stop();
    await svc.stop();
    await kuzu.close();
    await bus.close();
  }
}

let outcome: Promise<[{ metrics: Outcome; history: Outcome; alerts: Outcome }, Outcome]>;
beforeAll(async () => {
  nats = await startNats();
  outcome = Promise.all([clickHouseOutage(), graphOutage()]);
  outcome.catch(() => undefined); // awaited by the tests
});

afterAll(async () => {
  await outcome?.catch(() => undefined);
  await nats?.stop();
  tmp.cleanup();
});

const TIMEOUT = OUTAGE_MS + 10 * 60_000;

test(`the ClickHouse owner stopped for ${OUTAGE_MS / 60_000} min under metric load: every published sample stored once, nothing dead-lettered`, async () => {
  const [{ metrics }] = await outcome;
  console.log("clickhouse outage, metrics:", JSON.stringify(metrics));
  expect(metrics.published).toBeGreaterThan(1000);
  expect(metrics.stored).toBe(metrics.published);
  expect(metrics.dlq).toBe(0);
  expect(metrics.maxTries).toBeGreaterThan(OLD_MAX_DELIVER);
}, TIMEOUT);

test(`the same outage under topology deltas: every change in the history, nothing dead-lettered`, async () => {
  const [{ history }] = await outcome;
  console.log("clickhouse outage, history:", JSON.stringify(history));
  expect(history.published).toBeGreaterThan(100);
  expect(history.stored).toBe(history.published);
  expect(history.dlq).toBe(0);
  expect(history.maxTries).toBeGreaterThan(OLD_MAX_DELIVER);
}, TIMEOUT);

test(`the same outage under alert events: every event in the alert history once, nothing dead-lettered`, async () => {
  const [{ alerts }] = await outcome;
  console.log("clickhouse outage, alert history:", JSON.stringify(alerts));
  expect(alerts.published).toBeGreaterThan(100);
  expect(alerts.stored).toBe(alerts.published);
  expect(alerts.dlq).toBe(0);
  expect(alerts.maxTries).toBeGreaterThan(OLD_MAX_DELIVER);
}, TIMEOUT);

test(`the graph store failing for ${OUTAGE_MS / 60_000} min under discovery load: every published host in the graph, nothing dead-lettered`, async () => {
  const [, graph] = await outcome;
  console.log("graph store outage:", JSON.stringify(graph));
  expect(graph.published).toBeGreaterThan(10);
  expect(graph.stored).toBe(graph.published);
  expect(graph.dlq).toBe(0);
  expect(graph.maxTries).toBeGreaterThan(OLD_MAX_DELIVER);
}, TIMEOUT);
