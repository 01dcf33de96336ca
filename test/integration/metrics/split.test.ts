/**
 * Every batch fits the bus, end to end: 50,000 label-heavy samples (10,000 of them encode to several times the 900 KiB
 * message limit) go through a real publisher path — the remote_write receiver on Bun.serve, and metricBatches with
 * the bus as the agent and the simulator publish — to JetStream (real nats-server), the metrics service and
 * ClickHouse (the embedded owner), and every sample is found there, once, with its labels.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { ClickHouseClient } from "@clickhouse/client";
import { MAX_MESSAGE_BYTES } from "../../../pipelines/codec.ts";
import { MAX_SAMPLES_PER_BATCH, type Sample } from "../../../pipelines/contracts/metrics.ts";
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
  expect(JSON.stringify({ schema: "metrics.v1", source: "agent:split", batchId: "x", samples: samples.slice(0, MAX_SAMPLES_PER_BATCH) }).length).toBeGreaterThan(MAX_MESSAGE_BYTES);
  const parts = metricBatches(samples, { source: "agent:split", idBase: "agent:split:boot:1" });
  const publish = () => Promise.all(parts.map((p) => bus.js.publish(bus.topo.subjects.metrics("agent:split"), p.bytes, { msgID: p.msgId, timeout: 30_000 })));
  const acks = await publish();
  expect(acks.every((a) => !a.duplicate)).toBe(true);
  for (const p of parts) expect(p.bytes.byteLength).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
  // a redelivery cut again gets the same ids: JetStream keeps one copy
  const again = metricBatches(samples, { source: "agent:split", idBase: "agent:split:boot:1" });
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
