/** metric batches → JetStream → metrics service → ClickHouse (embedded owner over HTTP) → series API queries. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { MetricBatch } from "../pipelines/contracts/metrics.ts";
import { makeClickHouseClient } from "../services/clickhouse/client.ts";
import { startClickHouseOwner } from "../services/clickhouse/owner.ts";
import { ClickHouseSeriesStore } from "../services/metrics/clickhouse.ts";
import { startMetricsService } from "../services/metrics/service.ts";
import { connectBus, publishEvent, type Bus } from "../services/shared/bus.ts";
import { makeLogger } from "../services/shared/log.ts";
import { startNats, type NatsServer } from "./helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "./helpers/tmp.ts";

let nats: NatsServer;
let owner: Awaited<ReturnType<typeof startClickHouseOwner>>;
let bus: Bus;
let store: ClickHouseSeriesStore;
let svc: Awaited<ReturnType<typeof startMetricsService>>;
const tmp = tempDir();
const db = uniquePrefix("m").replace(/-/g, "_");

beforeAll(async () => {
  nats = await startNats();
  owner = await startClickHouseOwner({ dataDir: join(tmp.dir, "ch"), port: 0 });
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("metrics"), name: "test" });
  store = new ClickHouseSeriesStore(makeClickHouseClient({ url: owner.url }), { database: db, ttlDays: 7 });
  svc = await startMetricsService({ bus, store, log: makeLogger("test", true) });
});
afterAll(async () => {
  await svc.stop();
  await store.close();
  await bus.close();
  await owner.stop();
  await nats.stop();
  tmp.cleanup();
});

test("samples published as batches are queryable as a series, latest values and all, and a redelivered batch is not doubled", async () => {
  const t0 = Date.UTC(2026, 10, 22, 10, 0, 0);
  const samples = Array.from({ length: 120 }, (_, i) => ({ entity: "host:h1", metric: "host_load1", ts: t0 + i * 1000, value: i % 60, labels: {} }));
  await publishEvent(bus, bus.topo.subjects.metrics("agent:h1"), MetricBatch, "metrics.v1", { schema: "metrics.v1", source: "agent:h1", batchId: "b1", samples: samples.slice(0, 60) }, "b1");
  await publishEvent(bus, bus.topo.subjects.metrics("agent:h1"), MetricBatch, "metrics.v1", { schema: "metrics.v1", source: "agent:h1", batchId: "b2", samples: samples.slice(60) }, "b2");
  await waitFor(() => svc.written() >= 120, "120 samples written");
  // A redelivery (same batchId, different message id so JetStream does not drop it) must not double the rows.
  await publishEvent(bus, bus.topo.subjects.metrics("agent:h1"), MetricBatch, "metrics.v1", { schema: "metrics.v1", source: "agent:h1", batchId: "b2", samples: samples.slice(60) }, "b2-again");
  await waitFor(() => svc.written() >= 180, "redelivered batch handled");

  const points = await store.series({ entity: "host:h1", metric: "host_load1", from: t0, to: t0 + 120_000, stepSeconds: 60 });
  expect(points).toEqual([
    { t: t0, v: 29.5 },
    { t: t0 + 60_000, v: 29.5 },
  ]);
  const count = await (await makeClickHouseClient({ url: owner.url }).query({ query: `SELECT count() AS c FROM ${db}.samples`, format: "JSONEachRow" })).json<{ c: string }>();
  expect(Number(count[0]!.c)).toBe(120);
  expect(await store.latest("host:h1")).toEqual({ host_load1: { t: t0 + 119_000, v: 59 } });
  const injected = await store.series({ entity: "host:h1' OR 1=1 --", metric: "host_load1", from: t0, to: t0 + 120_000, stepSeconds: 60 });
  expect(injected).toEqual([]);
});
