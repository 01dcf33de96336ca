/**
 * Every batch fits the bus, end to end: 50,000 label-heavy samples (10,000 of them encode to several times the 900 KiB
 * message limit) go through a real publisher path — the remote_write receiver on Bun.serve, and metricBatches with
 * the bus as the agent and the simulator publish — to JetStream (real nats-server), the metrics service and
 * ClickHouse (the embedded owner), and every sample is found there, once, with its labels. And the agent itself: a
 * host with 20,000 connections of a process with a long command line publishes every discovery part and sample.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { ClickHouseClient } from "@clickhouse/client";
import { MAX_MESSAGE_BYTES } from "../../../pipelines/codec.ts";
import { connect } from "@nats-io/transport-node";
import { decode } from "../../../pipelines/codec.ts";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import type { HostScan, ProcessInfo, SocketInfo } from "../../../pipelines/contracts/host-scan.ts";
import { MAX_SAMPLES_PER_BATCH, type Sample } from "../../../pipelines/contracts/metrics.ts";
import { makeAgent } from "../../../services/agent/agent.ts";
import { metricBatches } from "../../../pipelines/contracts/split.ts";
import { encodeWriteRequest, jetStreamPublisher, remoteWriteHandler, type RemoteWriteResult } from "../../../services/ingest/remote-write.ts";
import { ClickHouseSeriesStore } from "../../../services/metrics/clickhouse.ts";
import { startMetricsService } from "../../../services/metrics/service.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { httpErrors } from "../../../services/shared/http.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

let nats: NatsServer;
let owner: TestClickHouse;
let bus: Bus;
let store: ClickHouseSeriesStore;
let ch: ClickHouseClient;
let svc: Awaited<ReturnType<typeof startMetricsService>>;
let receiver: ReturnType<typeof Bun.serve>;
const results: RemoteWriteResult[] = [];
const tmp = tempDir("orrery-split-");
const db = uniquePrefix("split").replace(/-/g, "_");

beforeAll(async () => {
  nats = await startNats();
  owner = await startClickHouse(join(tmp.dir, "owner"));
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("split"), name: "test-split" });
  ch = owner.client();
  store = new ClickHouseSeriesStore(owner.client(), { database: db, ttlDays: 7 });
  svc = await startMetricsService({ bus, store, log: makeLogger("test", true) });
  receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    routes: { "/api/v1/write": remoteWriteHandler({ publish: jetStreamPublisher(bus), onResult: (r) => results.push(r) }) },
    error: httpErrors(makeLogger("test", true)),
  });
}, 60_000);
afterAll(async () => {
  await receiver?.stop(true);
  await svc?.stop();
  await store?.close();
  await ch?.close();
  await bus?.close();
  await owner?.stop();
  await nats?.stop();
  tmp.cleanup();
});

/** Labels as a Kubernetes-style exporter sends them: ~400 bytes a series. */
function heavyLabels(metric: string, i: number): Record<string, string> {
  return {
    instance: `node-${String(i).padStart(5, "0")}.eu-west-1.compute.internal:9100`,
    job: "kubernetes-service-endpoints",
    namespace: "payments-production",
    pod: `payments-api-7f9c8d6b5-${(i * 7919).toString(36).padStart(5, "x")}`,
    container: "payments-api",
    node: `ip-10-12-${i % 256}-${(i * 13) % 256}.eu-west-1.compute.internal`,
    image: "registry.example.internal/payments/api:2026.12.01-4f3c2a1b9e",
    app_kubernetes_io_part_of: "payments",
    app_kubernetes_io_managed_by: "helm",
    helm_sh_chart: "payments-api-14.2.7",
    series_of: metric,
  };
}

type Row = { c: string; d: string; s: number };
const countRows = async (where: string) =>
  (await (await ch.query({ query: `SELECT count() AS c, uniqExact(entity, metric, ts) AS d, sum(value) AS s FROM ${db}.samples WHERE ${where}`, format: "JSONEachRow" })).json<Row>())[0]!;

test("remote_write: 50,000 label-heavy samples in one request are cut to fit, and every one is in ClickHouse", async () => {
  const t0 = Math.floor(Date.now() / 1000) * 1000 - 600_000;
  // 1,000 series × 50 samples, one request (Prometheus sends up to its max_samples_per_send; a big one here)
  const series = Array.from({ length: 1000 }, (_, i) => ({
    labels: { __name__: "rw_split_probe", ...heavyLabels("rw_split_probe", i), orrery_entity: `host:rw-split-${i}` },
    samples: Array.from({ length: 50 }, (_, k) => ({ value: i + k / 100, timestamp: t0 + k * 1000 })),
  }));
  const body = encodeWriteRequest(series);
  const res = await fetch(`http://127.0.0.1:${receiver.port}/api/v1/write`, { method: "POST", headers: { "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy", "X-Prometheus-Remote-Write-Version": "0.1.0" }, body });
  expect(res.status).toBe(204);
  expect(res.headers.get("x-orrery-accepted-samples")).toBe("50000");
  const r = results.at(-1)!;
  // cut by bytes, not by count: 50,000 samples would be 5 messages by count alone
  expect(r.batches).toBeGreaterThan(50_000 / MAX_SAMPLES_PER_BATCH);
  const expectedSum = series.reduce((n, s) => n + s.samples.reduce((m, x) => m + x.value, 0), 0);
  const row = await waitFor(async () => {
    const x = await countRows("metric = 'rw_split_probe'");
    return Number(x.c) >= 50_000 ? x : null;
  }, "50,000 remote_write samples in ClickHouse", 90_000, 250);
  expect({ count: Number(row.c), distinct: Number(row.d) }).toEqual({ count: 50_000, distinct: 50_000 });
  expect(row.s).toBeCloseTo(expectedSum, 3);
  const one = (await (await ch.query({ query: `SELECT labels FROM ${db}.samples WHERE metric = 'rw_split_probe' AND entity = 'host:rw-split-7' LIMIT 1`, format: "JSONEachRow" })).json<{ labels: Record<string, string> }>())[0]!;
  expect(one.labels).toEqual(heavyLabels("rw_split_probe", 7));
}, 180_000);

test("metricBatches on the bus (the agent's and the simulator's path): 50,000 label-heavy samples, every message under the limit, every sample stored once", async () => {
  const t0 = Math.floor(Date.now() / 1000) * 1000 - 300_000;
  const labels = Array.from({ length: 500 }, (_, i) => heavyLabels("bus_split_probe", i));
  const samples: Sample[] = Array.from({ length: 50_000 }, (_, n) => ({ entity: `host:bus-split-${n % 500}`, metric: "bus_split_probe", ts: t0 + Math.floor(n / 500) * 1000, value: n, labels: labels[n % 500]! }));
  // the old cut by count: its first message would be refused
  expect(JSON.stringify({ schema: "metrics.v1", source: "sim:split", batchId: "x", samples: samples.slice(0, MAX_SAMPLES_PER_BATCH) }).length).toBeGreaterThan(MAX_MESSAGE_BYTES);
  const parts = metricBatches(samples, { source: "sim:split", idBase: "sim:split:boot:1" });
  const publish = () => Promise.all(parts.map((p) => bus.js.publish(bus.topo.subjects.metrics("sim:split"), p.bytes, { msgID: p.msgId, timeout: 30_000 })));
  const acks = await publish();
  expect(acks.every((a) => !a.duplicate)).toBe(true);
  for (const p of parts) expect(p.bytes.byteLength).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
  // a redelivery cut again gets the same ids: JetStream keeps one copy
  const again = metricBatches(samples, { source: "sim:split", idBase: "sim:split:boot:1" });
  expect(again.map((p) => p.msgId)).toEqual(parts.map((p) => p.msgId));
  expect((await publish()).every((a) => a.duplicate)).toBe(true);
  const row = await waitFor(async () => {
    const x = await countRows("metric = 'bus_split_probe'");
    return Number(x.c) >= 50_000 ? x : null;
  }, "50,000 samples in ClickHouse", 90_000, 250);
  // and nothing more arrives: each sample once
  await Bun.sleep(1000);
  const final = await countRows("metric = 'bus_split_probe'");
  expect({ count: Number(final.c), distinct: Number(final.d), sum: final.s }).toEqual({ count: 50_000, distinct: 50_000, sum: (49_999 * 50_000) / 2 });
  expect(Number(row.c)).toBe(50_000);
}, 180_000);

test("the agent: 20,000 connections of a process with a long command line — every discovery part under the limit and complete, every sample in ClickHouse", async () => {
  const host = "agent-split-1";
  const at = Math.floor(Date.now() / 1000) * 1000 - 120_000;
  const proc: ProcessInfo = { pid: 4242, ppid: 1, comm: "java", exe: "/usr/bin/java", cmdline: ["java", ...Array.from({ length: 40 }, (_, i) => `-Dorrery.split.option${i}=${"x".repeat(60)}`)], uid: 1000, user: "app", startTime: 1_700_000_000_000, containerId: null, cpuTicks: 100, rssBytes: 1e9 };
  const sockets: SocketInfo[] = [
    { proto: "tcp", family: 4, localIp: "0.0.0.0", localPort: 8080, remoteIp: "0.0.0.0", remotePort: 0, state: "listen", inode: 1, uid: 1000, pid: 4242 },
    ...Array.from({ length: 20_000 }, (_, i): SocketInfo => ({ proto: "tcp", family: 4, localIp: "10.1.0.1", localPort: 20_000 + (i % 40_000), remoteIp: `10.2.${(i >> 8) & 255}.${i & 255}`, remotePort: 5432, state: "established", inode: 2 + i, uid: 1000, pid: 4242 })),
  ];
  const scan = (): Promise<HostScan> =>
    Promise.resolve({ at, facts: { hostname: host, os: "Linux", kernel: "6.1", cpus: 4, memTotalBytes: 16e9, memAvailableBytes: 8e9, load1: 1, ips: ["10.1.0.1"] }, sockets, processes: new Map([[4242, proc]]), unreadablePids: [] });
  const nc = await connect({ servers: nats.url });
  const parts: DiscoveryBatch[] = [];
  const sizes: number[] = [];
  nc.subscribe(`${bus.topo.subjects.discovery(host)}`, {
    callback: (_e, m) => {
      sizes.push(m.data.byteLength);
      parts.push(decode(DiscoveryBatch, "discovery.v1", m.data));
    },
  });
  await nc.flush();
  const warnings: string[] = [];
  const agent = makeAgent(bus, { info: () => undefined, warn: (m) => void warnings.push(m), error: (m) => void warnings.push(m) }, { host, intervalMs: 5000, fullEvery: 1, scan });
  try {
    const report = await agent.scanOnce();
    await nc.flush();
    await waitFor(() => parts.length >= report.batches || null, "the agent's discovery parts", 10_000, 20);
    // 20,000 connection events of ~2.7 KB: far more parts than the count limit alone would cut
    expect(report.batches).toBeGreaterThan(20_000 / 2000);
    expect(parts.map((b) => b.part).sort((a, b) => a - b)).toEqual(parts.map((_, i) => i));
    expect(new Set(parts.map((b) => b.parts))).toEqual(new Set([parts.length]));
    expect(parts.reduce((n, b) => n + b.events.length, 0)).toBe(report.events);
    for (const n of sizes) expect(n).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(warnings).toEqual([]);
    // one sample per remote endpoint: 20,000 series of one service at one time
    const query = `SELECT count() AS c, uniqExact(labels['remote']) AS r FROM ${db}.samples WHERE entity LIKE 'service:${host}:%' AND metric = 'connections'`;
    const row = await waitFor(async () => {
      const x = (await (await ch.query({ query, format: "JSONEachRow" })).json<{ c: string; r: string }>())[0]!;
      return Number(x.c) >= 20_000 ? x : null;
    }, "the agent's 20,000 connection samples in ClickHouse", 90_000, 250);
    expect({ count: Number(row.c), remotes: Number(row.r) }).toEqual({ count: 20_000, remotes: 20_000 });
    const total = await countRows(`entity LIKE '%${host}%'`);
    expect(Number(total.c)).toBe(report.samples);
  } finally {
    await agent.stop();
    await nc.close();
  }
}, 180_000);
