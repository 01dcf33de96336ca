/**
 * metric batches → JetStream → metrics service → ClickHouse (the embedded owner, a child process, over HTTP) →
 * series / rollups / top-N / latest, and the gateway's metric routes on a real Bun.serve.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { ClickHouseClient } from "@clickhouse/client";
import { MetricBatch, type Sample } from "../pipelines/contracts/metrics.ts";
import { metricsRoutes } from "../services/gateway/routes/metrics.ts";
import { ClickHouseSeriesStore, resolutionForStep, resolutionForWindow } from "../services/metrics/clickhouse.ts";
import { startMetricsService } from "../services/metrics/service.ts";
import { connectBus, publishEvent, type Bus } from "../services/shared/bus.ts";
import { makeLogger } from "../services/shared/log.ts";
import { startClickHouse, type TestClickHouse } from "./helpers/clickhouse.ts";
import { startNats, type NatsServer } from "./helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "./helpers/tmp.ts";


let nats: NatsServer;
let owner: TestClickHouse;
let bus: Bus;
let store: ClickHouseSeriesStore;
let ch: ClickHouseClient;
let svc: Awaited<ReturnType<typeof startMetricsService>>;
const tmp = tempDir();
const db = uniquePrefix("m").replace(/-/g, "_");
// Recent enough for every TTL, aligned to an hour so rollup buckets are predictable.
const t0 = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3 * 3_600_000;

const publish = (batchId: string, samples: Sample[], msgId = batchId) =>
  publishEvent(bus, bus.topo.subjects.metrics("agent:h1"), MetricBatch, "metrics.v1", { schema: "metrics.v1", source: "agent:h1", batchId, samples }, msgId);
const count = async (table: string) =>
  Number((await (await ch.query({ query: `SELECT count() AS c FROM ${db}.${table}`, format: "JSONEachRow" })).json<{ c: string }>())[0]!.c);

beforeAll(async () => {
  nats = await startNats();
  owner = await startClickHouse(join(tmp.dir, "owner"));
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("metrics"), name: "test" });
  ch = owner.client();
  store = new ClickHouseSeriesStore(owner.client(), { database: db, ttlDays: 7, rollup1mTtlDays: 30, rollup1hTtlDays: 400 });
  svc = await startMetricsService({ bus, store, log: makeLogger("test", true) });
}, 60_000);
afterAll(async () => {
  await svc?.stop();
  await store?.close();
  await ch?.close();
  await bus?.close();
  await owner?.stop();
  await nats?.stop();
  tmp.cleanup();
});

test("the step picks the table: the coarsest rollup whose buckets divide it", () => {
  expect([1, 15, 90, 60, 120, 300, 3600, 7200, 86_400].map(resolutionForStep)).toEqual(["raw", "raw", "raw", "1m", "1m", "1m", "1h", "1h", "1h"]);
  expect([60, 599, 600, 86_400, 2 * 86_400, 7 * 86_400].map(resolutionForWindow)).toEqual(["raw", "raw", "1m", "1m", "1m", "1h"]);
});

test("samples published as batches are queryable as a series, latest values and all, and a redelivered batch doubles neither raw rows nor rollups", async () => {
  const samples = Array.from({ length: 120 }, (_, i) => ({ entity: "host:h1", metric: "host_load1", ts: t0 + i * 1000, value: i % 60, labels: {} }));
  await publish("b1", samples.slice(0, 60));
  await publish("b2", samples.slice(60));
  await waitFor(() => svc.written() >= 120, "120 samples written");
  // A redelivery (same batchId, different message id so JetStream does not drop it) must not double the rows.
  await publish("b2", samples.slice(60), "b2-again");
  await waitFor(() => svc.written() >= 180, "redelivered batch handled");

  // step 60 is answered by the 1-minute rollup, step 30 by raw samples, step 3600 by the hourly rollup
  expect(await store.series({ entity: "host:h1", metric: "host_load1", from: t0, to: t0 + 120_000, stepSeconds: 60 })).toEqual([
    { t: t0, v: 29.5 },
    { t: t0 + 60_000, v: 29.5 },
  ]);
  expect(await store.series({ entity: "host:h1", metric: "host_load1", from: t0, to: t0 + 120_000, stepSeconds: 30 })).toEqual([
    { t: t0, v: 14.5 },
    { t: t0 + 30_000, v: 44.5 },
    { t: t0 + 60_000, v: 14.5 },
    { t: t0 + 90_000, v: 44.5 },
  ]);
  expect(await store.series({ entity: "host:h1", metric: "host_load1", from: t0, to: t0 + 3_600_000, stepSeconds: 3600 })).toEqual([{ t: t0, v: 29.5 }]);
  expect(await store.series({ entity: "host:h1", metric: "host_load1", from: t0, to: t0 + 120_000, stepSeconds: 60, agg: "max" })).toEqual([
    { t: t0, v: 59 },
    { t: t0 + 60_000, v: 59 },
  ]);
  expect(await store.series({ entity: "host:h1", metric: "host_load1", from: t0, to: t0 + 120_000, stepSeconds: 60, agg: "last" })).toEqual([
    { t: t0, v: 59 },
    { t: t0 + 60_000, v: 59 },
  ]);

  expect(await count("samples")).toBe(120);
  const rollup = async (table: string) =>
    (await (await ch.query({ query: `SELECT sum(count) AS n, sum(sum) AS s, min(min) AS lo, max(max) AS hi FROM ${db}.${table} WHERE entity = 'host:h1'`, format: "JSONEachRow" })).json<Record<string, string | number>>())[0]!;
  // (UInt64 comes back quoted from clickhouse-server and as a number from chDB)
  for (const table of ["samples_1m", "samples_1h"]) expect(Object.fromEntries(Object.entries(await rollup(table)).map(([k, v]) => [k, Number(v)]))).toEqual({ n: 120, s: 3540, lo: 0, hi: 59 });

  expect(await store.latest("host:h1")).toEqual({ host_load1: { t: t0 + 119_000, v: 59 } });
  const injected = await store.series({ entity: "host:h1' OR 1=1 --", metric: "host_load1", from: t0, to: t0 + 120_000, stepSeconds: 60 });
  expect(injected).toEqual([]);
});

test("a message that breaks the contract goes to the dead-letter stream with the reason, and the service goes on", async () => {
  const subject = bus.topo.subjects.metrics("agent:bad");
  await bus.js.publish(subject, new TextEncoder().encode(JSON.stringify({ schema: "metrics.v1", source: "agent:bad", batchId: "bad1", samples: [{ entity: "host:x", metric: "m", ts: t0, value: "NaN" }] })), { msgID: "bad1" });
  await bus.js.publish(subject, new TextEncoder().encode("not json"), { msgID: "bad2" });
  const before = svc.written();
  await publish("after-bad", [{ entity: "host:x", metric: "m", ts: t0, value: 1, labels: {} }]);
  await waitFor(() => svc.written() > before, "the valid batch after the bad ones written");
  const dlq = await bus.js.consumers.get(bus.topo.streams.dlq.name);
  const reasons: string[] = [];
  for (let i = 0; i < 2; i++) {
    const m = await dlq.next({ expires: 5000 });
    reasons.push(m!.headers!.get("Orrery-Reason"));
    expect(m!.headers!.get("Orrery-Original-Subject")).toBe(subject);
  }
  expect(reasons).toEqual([expect.stringMatching(/^invalid: metrics.v1: samples.0.value/), expect.stringMatching(/^not_json:/)]);
});

describe("many entities", () => {
  const hosts = Array.from({ length: 20 }, (_, i) => `host:w${String(i).padStart(2, "0")}`);
  let at: number;
  beforeAll(async () => {
    // each host: 10 minutes of cpu at 1 Hz, its level set by its index, with a spike at the last second on odd hosts
    at = t0 + 2 * 3_600_000;
    const samples: Sample[] = [];
    hosts.forEach((entity, h) => {
      for (let s = 0; s < 600; s++) {
        samples.push({ entity, metric: "cpu_util", ts: at - 600_000 + s * 1000, value: s === 599 && h % 2 ? 1000 : h, labels: { core: "all" } });
      }
      samples.push({ entity, metric: "mem_used", ts: at - 5000, value: h * 1e9, labels: {} });
    });
    const before = svc.written();
    for (let i = 0; i < samples.length; i += 5000) await publish(`many-${i}`, samples.slice(i, i + 5000));
    await waitFor(() => svc.written() >= before + samples.length, "many-entity samples written");
  });

  test("top-N by a metric over a window, from raw samples for short windows and rollups for long ones", async () => {
    // 5 min window (raw): avg is the host's level except the odd hosts' last-second spike
    const top3 = await store.top({ metric: "cpu_util", windowSeconds: 300, n: 3, at });
    expect(top3.map((e) => e.entity)).toEqual(["host:w19", "host:w17", "host:w15"]);
    expect(top3[0]!.v).toBeCloseTo((19 * 299 + 1000) / 300, 9);
    // 1 h window (1-minute rollup), by max: every odd host peaked at 1000, ties broken by entity
    const byMax = await store.top({ metric: "cpu_util", windowSeconds: 3600, n: 2, by: "max", at });
    expect(byMax).toEqual([
      { entity: "host:w01", v: 1000 },
      { entity: "host:w03", v: 1000 },
    ]);
    const lowest = await store.top({ metric: "cpu_util", windowSeconds: 3 * 86_400, n: 2, by: "last", order: "asc", at });
    expect(lowest).toEqual([
      { entity: "host:w00", v: 0 },
      { entity: "host:w02", v: 2 },
    ]);
    expect(await store.top({ metric: "cpu_util", windowSeconds: 300, n: 3, at: at - 86_400_000 })).toEqual([]);
  });

  test("latest values of many entities in one query, filtered by metric and lookback", async () => {
    const asked = [...hosts.slice(0, 3), "host:nobody", "x') OR 1=1 --"];
    const all = await store.latestMany({ entities: asked, at });
    expect(Object.keys(all).sort()).toEqual(hosts.slice(0, 3));
    expect(all["host:w01"]).toEqual({ cpu_util: { t: at - 1000, v: 1000 }, mem_used: { t: at - 5000, v: 1e9 } });
    const memOnly = await store.latestMany({ entities: hosts, metrics: ["mem_used"], at });
    expect(Object.keys(memOnly).length).toBe(20);
    expect(memOnly["host:w07"]).toEqual({ mem_used: { t: at - 5000, v: 7e9 } });
    // a lookback that ends before the samples sees nothing; one that starts after them neither
    expect(await store.latestMany({ entities: hosts, at: at - 3 * 3_600_000, lookbackSeconds: 600 })).toEqual({});
    expect(await store.latestMany({ entities: hosts, at: at + 3_600_000, lookbackSeconds: 60 })).toEqual({});
  });

  test("gateway routes: top, latest for many, series; bad input gets 400 with the reason", async () => {
    const server = Bun.serve({ port: 0, hostname: "127.0.0.1", routes: metricsRoutes({ series: store }) });
    const base = `http://127.0.0.1:${server.port}`;
    try {
      const top = await fetch(`${base}/api/metrics/top?metric=cpu_util&window=5m&n=2&at=${at}`);
      expect(top.status).toBe(200);
      const topBody = (await top.json()) as { entries: { entity: string }[]; windowSeconds: number };
      expect(topBody.windowSeconds).toBe(300);
      expect(topBody.entries.map((e) => e.entity)).toEqual(["host:w19", "host:w17"]);

      const latest = await fetch(`${base}/api/metrics/latest`, { method: "POST", body: JSON.stringify({ entities: ["host:w05", "host:w06"], metrics: ["mem_used"], at }) });
      expect(latest.status).toBe(200);
      expect(await latest.json()).toEqual({ values: { "host:w05": { mem_used: { t: at - 5000, v: 5e9 } }, "host:w06": { mem_used: { t: at - 5000, v: 6e9 } } } });

      const one = await fetch(`${base}/api/metrics/latest?entity=host:h1`);
      expect(await one.json()).toEqual({ entity: "host:h1", values: { host_load1: { t: t0 + 119_000, v: 59 } } });

      const series = await fetch(`${base}/api/series?entity=host:h1&metric=host_load1&from=${t0}&to=${t0 + 120_000}&step=60`);
      expect(((await series.json()) as { points: unknown[] }).points).toEqual([
        { t: t0, v: 29.5 },
        { t: t0 + 60_000, v: 29.5 },
      ]);

      const cases: [string, RequestInit | undefined, RegExp][] = [
        ["/api/metrics/top?window=5m", undefined, /metric/],
        ["/api/metrics/top?metric=cpu_util&window=5 minutes", undefined, /window: a duration like/],
        ["/api/metrics/top?metric=cpu_util&n=0", undefined, /n:/],
        ["/api/metrics/top?metric=cpu%20util", undefined, /metric names are/],
        ["/api/metrics/latest", { method: "POST", body: "not json" }, /body must be JSON/],
        ["/api/metrics/latest", { method: "POST", body: JSON.stringify({ entities: [] }) }, /entities:/],
        ["/api/metrics/latest", { method: "POST", body: JSON.stringify({ entities: ["host:a"], lookback: "forever" }) }, /lookback/],
        ["/api/metrics/latest", undefined, /entity/],
        [`/api/series?entity=host:h1&metric=host_load1&from=${t0}&to=${t0}`, undefined, /to must be after from/],
        [`/api/series?entity=host:h1&metric=host_load1&from=0&to=${t0}&step=1`, undefined, /too many points/],
        [`/api/series?entity=host:h1&metric=host_load1&from=0&to=${t0}&agg=median`, undefined, /agg/],
      ];
      for (const [path, init, reason] of cases) {
        const res = await fetch(base + path, init);
        expect({ path, status: res.status }).toEqual({ path, status: 400 });
        expect(((await res.json()) as { error: string }).error).toMatch(reason);
      }
    } finally {
      await server.stop(true);
    }
  });
});

test("retention: TTLs as configured on raw samples and on each rollup, and a changed TTL is adopted at start", async () => {
  const engines = async () =>
    Object.fromEntries(
      (await (await ch.query({ query: `SELECT name, engine_full FROM system.tables WHERE database = {db:String}`, query_params: { db }, format: "JSONEachRow" })).json<{ name: string; engine_full: string }>()).map(
        (r) => [r.name, r.engine_full],
      ),
    );
  const before = await engines();
  expect(before.samples).toContain("TTL toDateTime(ts) + toIntervalDay(7)");
  expect(before.samples_1m).toMatch(/^AggregatingMergeTree.*TTL t \+ toIntervalDay\(30\)/);
  expect(before.samples_1h).toContain("TTL t + toIntervalDay(400)");
  const other = new ClickHouseSeriesStore(owner.client(), { database: db, ttlDays: 14 });
  await other.init();
  await other.close();
  const after = await engines();
  expect(after.samples).toContain("TTL toDateTime(ts) + toIntervalDay(14)");
  expect(after.samples_1m).toContain("toIntervalDay(90)");
  expect(after.samples_1h).toContain("toIntervalDay(730)");
});
