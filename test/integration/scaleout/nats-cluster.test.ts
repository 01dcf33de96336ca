/**
 * A 3-node JetStream cluster with every stream declared R3 (ORRERY_NATS_REPLICAS=3): sustained ingest of discovery,
 * metrics and alerts through the real services (topology on Kuzu, metrics and alert history on the embedded
 * ClickHouse), while the node the services are connected to is SIGKILLed and, 10 s later, restarted. The services'
 * clients reconnect to the surviving nodes (NATS_URL lists all three). Afterwards every stream holds each published
 * message once (a publish retried across the failover carries the same Nats-Msg-Id), and the stores hold exactly what
 * was published: hosts in the graph, samples and alert events in ClickHouse. Nothing dead-lettered.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { encode } from "../../../pipelines/codec.ts";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { GenericAlert } from "../../../pipelines/contracts/alerts.ts";
import { MetricBatch } from "../../../pipelines/contracts/metrics.ts";
import { normalizeGeneric } from "../../../pipelines/stages/alerts/generic.ts";
import { AlertRules } from "../../../pipelines/stages/alerts/mapping.ts";
import { ClickHouseAlertHistory } from "../../../services/alerts/history.ts";
import { alertBatchMessage } from "../../../services/alerts/publish.ts";
import { startAlertsService } from "../../../services/alerts/service.ts";
import { makeClickHouseClient } from "../../../services/clickhouse/client.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { ClickHouseSeriesStore } from "../../../services/metrics/clickhouse.ts";
import { startMetricsService } from "../../../services/metrics/service.ts";
import { connectBus } from "../../../services/shared/bus.ts";
import { natsOptions, natsServers, BusKeys, parseEnv } from "../../../services/shared/config.ts";
import type { Logger } from "../../../services/shared/log.ts";
import { startTopologyService } from "../../../services/topology/service.ts";
import { z } from "zod";
import { retryingPublisher } from "../../helpers/faults.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { hostSeen } from "../../helpers/discovery.ts";
import { startNatsCluster, type NatsCluster } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const tmp = tempDir("orrery-scaleout-");
let cluster: NatsCluster;
let ch: TestClickHouse;

beforeAll(async () => {
  [cluster, ch] = await Promise.all([startNatsCluster({ size: 3 }), startClickHouse(join(tmp.dir, "ch"), { embedded: true })]);
}, 90_000);
afterAll(async () => {
  await cluster?.stop();
  await ch?.stop();
  tmp.cleanup();
});

const quiet: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined };

test("config: NATS_URL takes a cluster's nodes, ORRERY_NATS_REPLICAS the streams' replicas", () => {
  const cfg = parseEnv(z.object(BusKeys), { NATS_URL: "nats://a:4222, nats://b:4222,nats://c:4222", ORRERY_NATS_REPLICAS: "3" });
  expect(natsServers(cfg.NATS_URL)).toEqual(["nats://a:4222", "nats://b:4222", "nats://c:4222"]);
  expect(natsOptions(cfg, "x").replicas).toBe(3);
  expect(() => parseEnv(z.object(BusKeys), { ORRERY_NATS_REPLICAS: "0" })).toThrow(/ORRERY_NATS_REPLICAS/);
  expect(() => parseEnv(z.object(BusKeys), { NATS_URL: " , " })).toThrow(/NATS_URL/);
});

test("one node of three SIGKILLed and restarted during sustained ingest: nothing lost, nothing duplicated", async () => {
  const prefix = uniquePrefix("r3");
  const bus = await connectBus({ url: cluster.url, prefix, name: "scaleout-services", replicas: 3 });
  const feed = await connectBus({ url: cluster.url, prefix, name: "scaleout-feed", replicas: 3 });
  const db = prefix.replace(/-/g, "_");
  const kuzu = new KuzuGraphStore(join(tmp.dir, "kuzu"));
  const series = new ClickHouseSeriesStore(makeClickHouseClient({ url: ch.url, logErrors: false, requestTimeoutMs: 10_000 }), { database: db, ttlDays: 30 });
  const alertHistory = new ClickHouseAlertHistory(makeClickHouseClient({ url: ch.url, logErrors: false, requestTimeoutMs: 10_000 }), { database: db, ttlDays: 30 });
  const noTopology = { synced: () => true, rev: () => 1, nodes: () => [] };
  const topology = await startTopologyService({ bus, store: kuzu, log: quiet, aging: { intervalMs: 24 * 3600_000 } });
  const metrics = await startMetricsService({ bus, store: series, log: quiet, options: { rollupIntervalMs: 5000 } });
  const alerts = await startAlertsService({ bus, topology: noTopology, rules: AlertRules.parse({}), history: alertHistory, log: quiet, historyLingerMs: 50 });
  const t0 = Date.now();
  const discovery = retryingPublisher(feed, (i) => {
    const host = `r3h${i}`;
    const batch = { schema: "discovery.v1" as const, source: `agent:${host}`, host, scanId: 1, part: 0, parts: 1, full: false, at: t0 + i, events: [hostSeen([`10.9.${(i >> 8) & 255}.${i & 255}`], host)] };
    return { subject: feed.topo.subjects.discovery(host), bytes: encode(DiscoveryBatch, "discovery.v1", batch), id: `r3:d:${i}`, items: 1 };
  }, 100);
  const samples = retryingPublisher(feed, (i) => {
    const s = Array.from({ length: 50 }, (_, k) => ({ entity: `host:m${k % 10}`, metric: "r3_test", ts: t0 + i * 50 + k, value: i, labels: {} }));
    return { subject: feed.topo.subjects.metrics("r3"), bytes: encode(MetricBatch, "metrics.v1", { schema: "metrics.v1", source: "r3", batchId: `b${i}`, samples: s }), id: `r3:m:${i}`, items: s.length };
  }, 50);
  const events = retryingPublisher(feed, (i) => {
    const at = t0 + i;
    // a batch's source is its alerts' (alert.v1 refuses others)
    const m = alertBatchMessage("generic", [normalizeGeneric(GenericAlert.parse({ fingerprint: `r3-${i}`, severity: "warning", target: { host: `a${i % 20}` }, at }), at)]);
    return { subject: feed.topo.subjects.alerts("generic"), bytes: m.bytes, id: m.batchId, items: 1 };
  }, 200);
  const count = async (sql: string) => {
    const c = makeClickHouseClient({ url: ch.url, logErrors: false });
    try {
      return Number((await (await c.query({ query: sql, format: "JSONEachRow" })).json<{ n: string }>())[0]!.n);
    } finally {
      await c.close();
    }
  };
  const hosts = async () => (await kuzu.load()).nodes.filter((n) => n.kind === "host" && n.id.startsWith("host:r3h")).length;
  try {
    await waitFor(async () => (await hosts()) >= 20 && (await count(`SELECT count() AS n FROM ${db}.samples`)) >= 1000, "ingest flowing before the fault", 60_000, 250);
    // the node the services' connection is on: they must move to another
    const victim = cluster.nodes.findIndex((n) => n.name === bus.nc.info?.server_name);
    expect(victim).toBeGreaterThanOrEqual(0);
    await cluster.kill(victim);
    await Bun.sleep(10_000);
    await cluster.restart(victim);
    await Bun.sleep(8_000);
    const d = await discovery.stop();
    const m = await samples.stop();
    const a = await events.stop();
    expect(bus.nc.info?.server_name).not.toBeUndefined();
    // the streams: each message once, whatever was retried across the failover
    const info = (s: string) => feed.jsm.streams.info(s);
    await waitFor(async () => (await info(feed.topo.streams.discovery.name)).state.messages === d.messages, "discovery stream holds each batch once", 30_000, 250);
    expect((await info(feed.topo.streams.discovery.name)).state.messages).toBe(d.messages);
    expect((await info(feed.topo.streams.metrics.name)).state.messages).toBe(m.messages);
    expect((await info(feed.topo.streams.alerts.name)).state.messages).toBe(a.messages);
    // every stream replicated three times over
    expect((await info(feed.topo.streams.topology.name)).config.num_replicas).toBe(3);
    // the stores: exactly what was published
    await waitFor(async () => (await hosts()) === d.items, `${d.items} hosts in the graph`, 120_000, 500);
    await waitFor(async () => (await count(`SELECT count() AS n FROM ${db}.samples`)) === m.items, `${m.items} samples in ClickHouse`, 120_000, 500);
    await waitFor(async () => (await count(`SELECT count() AS n FROM ${db}.alerts_history FINAL`)) === a.items, `${a.items} alert events in ClickHouse`, 120_000, 500).catch(async (e) => {
      const c = await feed.jsm.consumers.info(feed.topo.consumers.alertsHistory.stream, feed.topo.consumers.alertsHistory.durable);
      const n = await count(`SELECT count() AS n FROM ${db}.alerts_history FINAL`);
      throw new Error(`${(e as Error).message} (stored ${n}; alerts-history consumer: pending ${c.num_pending}, ack pending ${c.num_ack_pending}, delivered ${c.delivered.stream_seq}, ack floor ${c.ack_floor.stream_seq})`);
    });
    await Bun.sleep(2000);
    expect(await hosts()).toBe(d.items);
    expect(await count(`SELECT count() AS n FROM ${db}.samples`)).toBe(m.items);
    expect(await count(`SELECT count() AS n FROM ${db}.alerts_history FINAL`)).toBe(a.items);
    expect((await info(feed.topo.streams.dlq.name)).state.messages).toBe(0);
    process.stderr.write(`scaleout: killed ${cluster.nodes[victim]!.name}; published ${d.messages} discovery, ${m.messages} metric batches (${m.items} samples), ${a.messages} alert events; publishes retried ${d.retries + m.retries + a.retries}\n`);
  } finally {
    await discovery.stop();
    await samples.stop();
    await events.stop();
    await alerts.stop();
    await metrics.stop();
    await topology.stop();
    await alertHistory.close();
    await series.close();
    await kuzu.close();
    await feed.close();
    await bus.close();
  }
}, 300_000);

test("a process declared with the default one replica does not scale a cluster's R3 streams down", async () => {
  const prefix = uniquePrefix("r3keep");
  const r3 = await connectBus({ url: cluster.url, prefix, name: "r3", replicas: 3 });
  const r1 = await connectBus({ url: cluster.url, prefix, name: "r1" });
  try {
    for (const s of Object.values(r1.topo.streams)) expect((await r1.jsm.streams.info(s.name)).config.num_replicas).toBe(3);
  } finally {
    await r1.close();
    await r3.close();
  }
}, 60_000);
