/**
 * metric batches → JetStream → metrics service → ClickHouse (the embedded owner, a child process, over HTTP) →
 * series / rollups / top-N / latest, and the gateway's metric routes on a real Bun.serve.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { ClickHouseClient } from "@clickhouse/client";
import { DeliverPolicy } from "@nats-io/jetstream";
import { decode } from "../../../pipelines/codec.ts";
import { MAX_SAMPLES_PER_BATCH, MetricBatch, type Sample } from "../../../pipelines/contracts/metrics.ts";
import { conformsToMetricBatch, decodeMetricBatch, originMismatch } from "../../../services/metrics/batch.ts";
import { metricsRoutes } from "../../../services/gateway/routes/metrics.ts";
import { ClickHouseSeriesStore, legacyRollupViews, resolutionForStep, resolutionForWindow, schemaStatements } from "../../../services/metrics/clickhouse.ts";
import { startMetricsService } from "../../../services/metrics/service.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { httpErrors } from "../../../services/shared/http.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";


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

// not an agent's source: these batches carry many hosts' series (an agent may write only its own host's)
const publish = (batchId: string, samples: Sample[], msgId = batchId) =>
  publishEvent(bus, bus.topo.subjects.metrics("test"), MetricBatch, "metrics.v1", { schema: "metrics.v1", source: "test", batchId, samples }, msgId);
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

test("the fast metrics.v1 check gives the schema's answer: the same batch, or the same error, on valid, boundary and broken input", () => {
  let seed = 42;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const sample = (): Record<string, unknown> => ({ entity: "host:a", metric: "cpu_util", ts: 1_700_000_000_000, value: 0.5, labels: { job: "node" } });
  const edits: ((s: Record<string, unknown>) => void)[] = [
    (s) => (s.entity = ""), (s) => (s.entity = "e".repeat(512)), (s) => (s.entity = "e".repeat(513)), (s) => (s.entity = 7),
    (s) => (s.metric = "bad name"), (s) => (s.metric = "9lives"), (s) => (s.metric = "a:b_c9"), (s) => (s.metric = "m".repeat(200)), (s) => (s.metric = "m".repeat(201)), (s) => (s.metric = ""),
    (s) => (s.ts = -1), (s) => (s.ts = 1.5), (s) => (s.ts = 2 ** 53), (s) => (s.ts = 2 ** 53 - 1), (s) => (s.ts = "1"), (s) => (s.ts = 0), (s) => delete s.ts,
    (s) => (s.value = 1e308), (s) => (s.value = -0), (s) => (s.value = "1"), (s) => (s.value = null), (s) => delete s.value,
    (s) => delete s.labels, (s) => (s.labels = {}), (s) => (s.labels = []), (s) => (s.labels = null), (s) => (s.labels = { k: 1 }),
    (s) => (s.labels = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`l${i}`, "v"]))), (s) => (s.labels = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`l${i}`, "v"]))),
    (s) => (s.labels = { ["k".repeat(256)]: "v".repeat(4096) }), (s) => (s.labels = { ["k".repeat(257)]: "v" }), (s) => (s.labels = { k: "v".repeat(4097) }),
    (s) => (s.extra = "ignored"), () => undefined,
  ];
  const batchEdits: ((b: Record<string, unknown>) => void)[] = [
    (b) => (b.schema = "metrics.v2"), (b) => (b.source = ""), (b) => (b.batchId = "x".repeat(513)), (b) => (b.samples = []), (b) => (b.samples = "no"),
    (b) => (b.samples = Array.from({ length: MAX_SAMPLES_PER_BATCH }, sample)), (b) => (b.samples = Array.from({ length: MAX_SAMPLES_PER_BATCH + 1 }, sample)), (b) => (b.extra = 1), () => undefined,
  ];
  const answer = (f: () => MetricBatch) => {
    try {
      const b = f();
      return { ok: { source: b.source, batchId: b.batchId, samples: b.samples.map((s) => [s.entity, s.metric, s.ts, s.value, s.labels]) } };
    } catch (e) {
      return { error: `${(e as Error).name}: ${(e as Error).message}` };
    }
  };
  const inputs: string[] = ["not json", "null", "[]", JSON.stringify({ schema: "metrics.v1" })];
  for (let i = 0; i < 400; i++) {
    const samples = Array.from({ length: 1 + rnd(4) }, sample);
    for (const s of samples) if (rnd(2)) edits[rnd(edits.length)]!(s);
    const b: Record<string, unknown> = { schema: "metrics.v1", source: "agent:h", batchId: `b${i}`, samples };
    if (rnd(4) === 0) batchEdits[rnd(batchEdits.length)]!(b);
    inputs.push(JSON.stringify(b));
  }
  let fast = 0;
  for (const input of inputs) {
    const bytes = new TextEncoder().encode(input);
    if (conformsToMetricBatch(JSON.parse(input.startsWith("not") ? "null" : input))) fast++;
    expect({ input: input.slice(0, 200), ...answer(() => decodeMetricBatch(bytes)) }).toEqual({ input: input.slice(0, 200), ...answer(() => decode(MetricBatch, "metrics.v1", bytes)) });
  }
  // both paths were exercised
  expect(fast).toBeGreaterThan(50);
  expect(inputs.length - fast).toBeGreaterThan(50);
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
  // The reads above ran before any rollup step (raw rows above the step watermark are folded in at read time);
  // after a step the rollup tables hold the same, once.
  const beforeStep = await store.series({ entity: "host:h1", metric: "host_load1", from: t0, to: t0 + 3_600_000, stepSeconds: 60, agg: "max" });
  await svc.rollupNow();
  expect(await store.series({ entity: "host:h1", metric: "host_load1", from: t0, to: t0 + 3_600_000, stepSeconds: 60, agg: "max" })).toEqual(beforeStep);
  const rollup = async (table: string) =>
    (await (await ch.query({ query: `SELECT sum(count) AS n, sum(sum) AS s, min(min) AS lo, max(max) AS hi FROM ${db}.${table} WHERE entity = 'host:h1'`, format: "JSONEachRow" })).json<Record<string, string | number>>())[0]!;
  // (UInt64 comes back quoted from clickhouse-server and as a number from chDB)
  for (const table of ["samples_1m", "samples_1h"]) expect(Object.fromEntries(Object.entries(await rollup(table)).map(([k, v]) => [k, Number(v)]))).toEqual({ n: 120, s: 3540, lo: 0, hi: 59 });

  expect(await store.latest("host:h1")).toEqual({ host_load1: { t: t0 + 119_000, v: 59 } });
  const injected = await store.series({ entity: "host:h1' OR 1=1 --", metric: "host_load1", from: t0, to: t0 + 120_000, stepSeconds: 60 });
  expect(injected).toEqual([]);
});

test("a burst of messages, old batchIds among them under new message ids, is combined into few inserts and stored once", async () => {
  const before = svc.written();
  const burst = Array.from({ length: 12 }, (_, i) => ({ id: `burst-${i % 8}`, msg: `burst-msg-${i}` }));
  const samplesOf = (id: string) => Array.from({ length: 30 }, (_, j) => ({ entity: `host:${id}`, metric: "burst_m", ts: t0 + j * 1000, value: j, labels: {} }));
  await Promise.all(burst.map((b) => publish(b.id, samplesOf(b.id), b.msg)));
  await waitFor(() => svc.written() >= before + 12 * 30, "burst handled");
  const rows = await (await ch.query({ query: `SELECT count() AS n, uniqExact(entity) AS e FROM ${db}.samples WHERE metric = 'burst_m'`, format: "JSONEachRow" })).json<{ n: string | number; e: string | number }>();
  expect([Number(rows[0]!.n), Number(rows[0]!.e)]).toEqual([8 * 30, 8]);
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

test("a batch whose body does not match its subject is dead-lettered with the reason: another source, or an agent writing another host's series", async () => {
  const dlqName = bus.topo.streams.dlq.name;
  const from = (await bus.jsm.streams.info(dlqName)).state.last_seq + 1;
  const raw = (source: string, batchId: string, entities: string[]) =>
    new TextEncoder().encode(JSON.stringify({ schema: "metrics.v1", source, batchId, samples: entities.map((entity, j) => ({ entity, metric: "origin_m", ts: t0 + j * 1000, value: j, labels: {} })) }));
  const h2 = bus.topo.subjects.metrics("agent:h2");
  // on agent:h2's subject, a body that says it is agent:h1
  await bus.js.publish(h2, raw("agent:h1", "o1", ["host:h1"]), { msgID: "o1" });
  // agent:h2, but one of its samples is of host h1 (the whole batch is refused: none of it stored)
  await bus.js.publish(h2, raw("agent:h2", "o2", ["host:h2", "service:h1:nginx:tcp/80"]), { msgID: "o2" });
  await bus.js.publish(h2, raw("agent:h2", "o3", ["host:h2", "host:h1"]), { msgID: "o3" });
  // its own host and what runs on it: stored
  const before = svc.written();
  await bus.js.publish(h2, raw("agent:h2", "o4", ["host:h2", "service:h2:nginx:tcp/80", "host:h2"]), { msgID: "o4" });
  await waitFor(() => svc.written() >= before + 3, "agent:h2's own batch written");
  const dlq = await bus.js.consumers.get(dlqName, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from });
  const got: [string, string][] = [];
  for (let i = 0; i < 3; i++) {
    const m = await dlq.next({ expires: 5000 });
    got.push([m!.headers!.get("Orrery-Reason"), m!.headers!.get("Orrery-Original-Subject")]);
  }
  expect(got).toEqual([
    [expect.stringMatching(/^source_mismatch: the batch says source "agent:h1" but was published on .*agent:h2/), h2],
    [expect.stringMatching(/^host_mismatch: agent:h2 may write only its own host's series, but sample 1 is of "service:h1:nginx:tcp\/80"/), h2],
    [expect.stringMatching(/^host_mismatch: .* sample 1 is of "host:h1"/), h2],
  ]);
  const rows = await (await ch.query({ query: `SELECT entity, count() AS n FROM ${db}.samples WHERE metric = 'origin_m' GROUP BY entity ORDER BY entity`, format: "JSONEachRow" })).json<{ entity: string; n: string | number }>();
  expect(rows.map((r) => [r.entity, Number(r.n)])).toEqual([["host:h2", 2], ["service:h2:nginx:tcp/80", 1]]);
});

test("originMismatch: the subject's source, and an agent's own host and the entities under it", () => {
  const topo = bus.topo;
  const b = (source: string, ...entities: string[]) => ({ schema: "metrics.v1" as const, source, batchId: "x", samples: entities.map((entity) => ({ entity, metric: "m", ts: 1, value: 1, labels: {} })) });
  expect(originMismatch(topo, topo.subjects.metrics("sim"), b("sim", "host:a", "host:b"))).toBeUndefined();
  expect(originMismatch(topo, topo.subjects.metrics("agent:web.example.org"), b("agent:web.example.org", "host:web.example.org", "service:web.example.org:sshd:tcp/22"))).toBeUndefined();
  expect(originMismatch(topo, topo.subjects.metrics("sim"), b("prometheus", "host:a"))).toMatch(/^source_mismatch/);
  // a broker tenant's agent publishes under its tenant's token, with the same host rule
  expect(originMismatch(topo, topo.subjects.tenantMetrics("t0123", "agent:web"), b("agent:web", "host:web", "service:web:x"))).toBeUndefined();
  expect(originMismatch(topo, topo.subjects.tenantMetrics("t0123", "agent:web"), b("agent:web", "host:web2"))).toMatch(/^host_mismatch/);
  expect(originMismatch(topo, topo.subjects.tenantMetrics("t0123", "agent:web"), b("agent:db", "host:db"))).toMatch(/^source_mismatch/);
  expect(originMismatch(topo, `${topo.subjects.tenantMetrics("t0123", "agent:web")}.extra`, b("agent:web", "host:web"))).toMatch(/^source_mismatch/);
  expect(originMismatch(topo, topo.subjects.metrics("agent:web"), b("agent:web", "host:web2"))).toMatch(/^host_mismatch/);
  expect(originMismatch(topo, topo.subjects.metrics("agent:web"), b("agent:web", "service:web2:x"))).toMatch(/^host_mismatch/);
  expect(originMismatch(topo, topo.subjects.metrics("agent:web"), b("agent:web", "hostweb"))).toMatch(/^host_mismatch/);
  expect(originMismatch(topo, topo.subjects.metrics("agent:web"), b("agent:web", "service:web"))).toMatch(/^host_mismatch/);
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
    const server = Bun.serve({ port: 0, hostname: "127.0.0.1", routes: metricsRoutes({ series: store }), error: httpErrors(makeLogger("test", true)) });
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

describe("combined inserts against the real owner: each batch stored once, whatever it is combined with", () => {
  const cdb = uniquePrefix("mc").replace(/-/g, "_");
  let cs: ClickHouseSeriesStore;
  const batch = (id: string, n: number, at = t0) => ({ batchId: id, samples: Array.from({ length: n }, (_, i) => ({ entity: `host:${id}`, metric: "mem", ts: at + i * 1000, value: i, labels: { id } })) });
  const perEntity = async () =>
    Object.fromEntries(
      (await (await ch.query({ query: `SELECT entity, count() AS n FROM ${cdb}.samples GROUP BY entity ORDER BY entity`, format: "JSONEachRow" })).json<{ entity: string; n: string | number }>()).map((r) => [r.entity, Number(r.n)]),
    );
  beforeAll(async () => {
    cs = new ClickHouseSeriesStore(owner.client(), { database: cdb, ttlDays: 7 });
    await cs.init();
  });
  afterAll(() => cs?.close());

  test("redelivered batches in other combinations, and a batchId twice in one insert, are stored once; rollups count them once", async () => {
    expect(await cs.insertMany([batch("a", 100), batch("b", 50)])).toEqual({ samples: 150, skippedBatchDays: 0 });
    expect(await cs.insertMany([batch("b", 50), batch("c", 70), batch("c", 70)])).toEqual({ samples: 70, skippedBatchDays: 1 });
    expect(await cs.insertMany([batch("a", 100)])).toEqual({ samples: 0, skippedBatchDays: 1 });
    await cs.insert(batch("c", 70).samples, "c");
    expect(await perEntity()).toEqual({ "host:a": 100, "host:b": 50, "host:c": 70 });
    await cs.rollup();
    const rolled = await (await ch.query({ query: `SELECT sum(count) AS n FROM ${cdb}.samples_1m`, format: "JSONEachRow" })).json<{ n: string | number }>();
    expect(Number(rolled[0]!.n)).toBe(220);
    // only the first sample of each batch-day carries the marker
    const markers = await (await ch.query({ query: `SELECT batch, count() AS n FROM ${cdb}.samples WHERE batch != '' GROUP BY batch ORDER BY batch`, format: "JSONEachRow" })).json<{ batch: string; n: string | number }>();
    expect(markers.map((m) => [m.batch, Number(m.n)])).toEqual([["a", 1], ["b", 1], ["c", 1]]);
  });

  test("a batch across midnight is marked per day: a day already stored is left out, the other day stored", async () => {
    const midnight = Math.ceil(t0 / 86_400_000) * 86_400_000;
    const d = batch("d", 20, midnight - 10_000);
    // as if an earlier attempt had stored only the first day's part before the process died
    expect(await cs.insertMany([{ batchId: "d", samples: d.samples.slice(0, 10) }])).toEqual({ samples: 10, skippedBatchDays: 0 });
    expect(await cs.insertMany([d, batch("e", 5)])).toEqual({ samples: 15, skippedBatchDays: 1 });
    expect((await perEntity())["host:d"]).toBe(20);
    expect(await cs.insertMany([d])).toEqual({ samples: 0, skippedBatchDays: 2 });
    expect((await perEntity())["host:d"]).toBe(20);
  });
});

describe("rollup steps against the real owner: exactly once", () => {
  const rdb = uniquePrefix("mr").replace(/-/g, "_");
  const open = async () => {
    const s = new ClickHouseSeriesStore(owner.client(), { database: rdb, ttlDays: 7 });
    await s.init();
    return s;
  };
  let s1: ClickHouseSeriesStore;
  // 3 minutes of one series at 1 Hz, value = second within the minute
  const minute = (m: number, tag = "") => Array.from({ length: 60 }, (_, i) => ({ entity: "host:r", metric: `cpu${tag}`, ts: t0 + m * 60_000 + i * 1000, value: i, labels: {} }));
  const tables = async () => {
    const one = async (table: string) =>
      (await (await ch.query({ query: `SELECT t, sum(count) AS n, sum(sum) AS s, max(max) AS hi FROM ${rdb}.${table} WHERE metric = 'cpu' GROUP BY t ORDER BY t`, format: "JSONEachRow" })).json<Record<string, string | number>>()).map((r) => ({ t: String(r.t), n: Number(r.n), s: Number(r.s), hi: Number(r.hi) }));
    return { m1: await one("samples_1m"), h1: await one("samples_1h") };
  };
  const reads = () =>
    Promise.all([
      s1.series({ entity: "host:r", metric: "cpu", from: t0, to: t0 + 600_000, stepSeconds: 60 }),
      s1.series({ entity: "host:r", metric: "cpu", from: t0, to: t0 + 3_600_000, stepSeconds: 3600, agg: "max" }),
      s1.top({ metric: "cpu", windowSeconds: 3600, n: 5, at: t0 + 3_600_000, by: "avg" }),
      s1.latestMany({ entities: ["host:r"], at: t0 + 3_600_000 }),
    ]);
  beforeAll(async () => {
    s1 = await open();
  });
  afterAll(() => s1?.close());

  test("a crash after the plan, after one rollup, or after both (before done) is redone without doubling", async () => {
    await s1.insert(minute(0), "r0");
    expect((await s1.rollup()).step).toEqual({ from: 0, to: expect.any(Number) });
    const m0 = { t: expect.any(String), n: 60, s: 1770, hi: 59 };
    expect((await tables()).m1).toEqual([m0]);

    for (const [k, crashAfter] of [[1, "plan"], [2, "1m"], [3, "both"]] as const) {
      await s1.insert(minute(k), `r${k}`);
      const next = (await s1.planRollup())!;
      expect(next.redone).toBe(false);
      if (crashAfter !== "plan") await s1.applyRollup(next.plan, "samples_1m");
      if (crashAfter === "both") await s1.applyRollup(next.plan, "samples_1h");
      // the process dies here; a new one picks the recorded plan up
      const s2 = await open();
      expect(await s2.rollup()).toEqual({ step: next.plan, redone: true, done: next.plan.to });
      expect(await s2.rollup()).toEqual({ redone: false, done: next.plan.to });
      await s2.close();
      const { m1, h1 } = await tables();
      expect(m1).toEqual(Array.from({ length: k + 1 }, () => m0));
      expect(h1).toEqual([{ t: expect.any(String), n: 60 * (k + 1), s: 1770 * (k + 1), hi: 59 }]);
    }
  });

  test("a redelivered batch makes no new rows to roll up; late samples are folded into their old buckets", async () => {
    const before = await reads();
    const done = (await s1.readState()).done;
    await s1.insert(minute(1), "r1");
    expect(await s1.rollup()).toEqual({ redone: false, done });
    expect(await reads()).toEqual(before);

    // late: ten more samples for minute 0, after minute 0 was rolled up
    await s1.insert(Array.from({ length: 10 }, (_, i) => ({ entity: "host:r", metric: "cpu", ts: t0 + i * 1000 + 500, value: 100, labels: {} })), "late");
    // one merged part now holds rolled-up rows and the late ones: reads and the step must split it by row
    await ch.command({ query: `OPTIMIZE TABLE ${rdb}.samples FINAL` });
    const parts = await (await ch.query({ query: `SELECT count() AS n, uniqExact(partition) AS p FROM system.parts WHERE database = {db:String} AND table = 'samples' AND active`, query_params: { db: rdb }, format: "JSONEachRow" })).json<{ n: string | number; p: string | number }>();
    expect(Number(parts[0]!.n)).toBe(Number(parts[0]!.p));
    const exactBeforeStep = await reads();
    expect(exactBeforeStep[0][0]).toEqual({ t: t0, v: (1770 + 1000) / 70 });
    expect(exactBeforeStep[1]).toEqual([{ t: t0, v: 100 }]);
    expect((await s1.rollup()).step).toBeDefined();
    expect(await reads()).toEqual(exactBeforeStep);
    const { m1, h1 } = await tables();
    expect(m1[0]).toEqual({ t: expect.any(String), n: 70, s: 2770, hi: 100 });
    expect(h1).toEqual([{ t: expect.any(String), n: 250, s: 1770 * 4 + 1000, hi: 100 }]);
  });

  test("a read waits for a step in flight instead of counting its rows twice", async () => {
    await s1.insert(minute(5), "r5");
    const expected = await reads();
    const next = (await s1.planRollup())!;
    await s1.applyRollup(next.plan, "samples_1m");
    await s1.applyRollup(next.plan, "samples_1h");
    // rollups hold the step's rows, the watermark does not say so yet: a read now must wait for completeRollup
    const pending = reads();
    let settled = false;
    void pending.then(() => (settled = true));
    await Bun.sleep(150);
    expect(settled).toBe(false);
    // once the 1m rollup is marked, its reads go on; the 1h ones (series at 3600 s, latest) still wait
    await s1.markRolledUp(next.plan, "samples_1m");
    expect(await s1.series({ entity: "host:r", metric: "cpu", from: t0, to: t0 + 600_000, stepSeconds: 60 })).toEqual(expected[0]);
    expect(settled).toBe(false);
    await s1.markRolledUp(next.plan, "samples_1h");
    expect(await pending).toEqual(expected);
  });

  test("a database from before rollup steps: its views' rollups are kept, the views dropped, nothing counted twice", async () => {
    const old = uniquePrefix("mo").replace(/-/g, "_");
    const legacy = schemaStatements(old, { raw: 7, m1: 90, h1: 730 }).slice(0, 4).map((q) => q.replace(", enable_block_number_column = 1", ""));
    for (const query of [...legacy, ...legacyRollupViews(old)]) await ch.command({ query });
    await ch.insert({ table: `${old}.samples`, values: minute(0).map((x) => ({ ...x })), format: "JSONEachRow" });
    const s3 = new ClickHouseSeriesStore(owner.client(), { database: old, ttlDays: 7 });
    await s3.init();
    const views = await (await ch.query({ query: `SELECT name FROM system.tables WHERE database = {db:String} AND engine = 'MaterializedView'`, query_params: { db: old }, format: "JSONEachRow" })).json();
    expect(views).toEqual([]);
    expect(await s3.rollup()).toEqual({ redone: false, done: expect.any(Number) });
    await s3.insert(minute(1), "new");
    expect((await s3.rollup()).step).toBeDefined();
    const n = async (table: string) => Number((await (await ch.query({ query: `SELECT sum(count) AS n FROM ${old}.${table}`, format: "JSONEachRow" })).json<{ n: string }>())[0]!.n);
    expect([await n("samples_1m"), await n("samples_1h")]).toEqual([120, 120]);
    expect(await s3.series({ entity: "host:r", metric: "cpu", from: t0, to: t0 + 120_000, stepSeconds: 60 })).toEqual([
      { t: t0, v: 29.5 },
      { t: t0 + 60_000, v: 29.5 },
    ]);
    await s3.close();
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
