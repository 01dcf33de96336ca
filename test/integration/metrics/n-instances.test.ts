/**
 * Several metrics services on one database: three processes (`bun services/metrics/main.ts`, as deployed) share the
 * durable consumer and one ClickHouse owner while metric batches are published without pause, some of them published
 * again under a new message id (the same batchId). One service is SIGKILLed with batches in hand and started again;
 * JetStream redelivers what it held after ack_wait (30 s). Then every sample is in `samples` once and counted once in
 * each rollup (count and sum exact against the raw rows), and nothing is dead-lettered. Run in both rollup modes:
 * `steps` (the embedded default: steps from every service at once, 500 ms apart, so their plans collide) and `views`
 * (what replicated tables use), where a batch is also published twice at the same instant, taken by two services at
 * once: ClickHouse's deduplication token keeps one copy.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { encode } from "../../../pipelines/codec.ts";
import { MetricBatch } from "../../../pipelines/contracts/metrics.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { chNumber, dlqSize, retryingPublisher, startServiceProcess, type ServiceProcess } from "../../helpers/faults.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const INSTANCES = 3;
const PER_BATCH = 200;
const METRIC = "n_instances";
/** today's midnight (UTC) 4 h after the first sample (inside every TTL): batches land in two daily partitions and several hour buckets */
const BASE = Math.floor(Date.now() / 86_400_000) * 86_400_000 - 4 * 3_600_000;

const tmp = tempDir("orrery-metrics-n-");
let nats: NatsServer;
let ch: TestClickHouse;
const running = new Set<ServiceProcess>();

beforeAll(async () => {
  [nats, ch] = await Promise.all([startNats(), startClickHouse(join(tmp.dir, "ch"), { embedded: true })]);
}, 60_000);
afterAll(async () => {
  for (const s of running) await s.kill9();
  await nats?.stop();
  await ch?.stop();
  tmp.cleanup();
});

/** Batch i: PER_BATCH samples, each (entity, ts) once in the whole run, integer values so sums are exact. */
function batch(prefix: string, i: number): MetricBatch {
  const samples = Array.from({ length: PER_BATCH }, (_, k) => ({ entity: `host:${prefix}h${k % 10}`, metric: METRIC, ts: BASE + i * 20_000 + k, value: (i * 31 + k) % 1000, labels: {} }));
  return { schema: "metrics.v1", source: "ninst", batchId: `${prefix}:b${i}`, samples };
}

for (const mode of (process.env.NI_MODES?.split(",") ?? ["steps", "views"]) as ("steps" | "views")[]) {
  test(`${INSTANCES} metrics services on one database (${mode}), one SIGKILLed mid-batch and restarted: every sample stored once, rollups exact, nothing dead-lettered`, async () => {
    const prefix = uniquePrefix(`ni${mode}`);
    const db = prefix.replace(/-/g, "_");
    const env = { NATS_URL: nats.url, ORRERY_PREFIX: prefix, CLICKHOUSE_URL: ch.url, CLICKHOUSE_DATABASE: db, ORRERY_METRICS_ROLLUP_MS: "500", ORRERY_METRICS_ROLLUPS: mode };
    const start = async () => {
      const p = await startServiceProcess("metrics", env);
      running.add(p);
      return p;
    };
    const services = await Promise.all(Array.from({ length: INSTANCES }, start));
    const feed: Bus = await connectBus({ url: nats.url, prefix, name: "n-instances-feed" });
    const subject = feed.topo.subjects.metrics("ninst");
    const bytesOf = (i: number) => encode(MetricBatch, "metrics.v1", batch(prefix, i));
    // the batch published again under a new message id: 100 batches later (a late republish) in both modes, and in
    // `views` also at once (two services may take the two copies at the same moment)
    const republished = new Set<number>();
    const sent = new Set<number>();
    const load = retryingPublisher(
      feed,
      (j) => {
        const i = Math.floor(j / 2);
        sent.add(i);
        if (j % 2 === 0) return { subject, bytes: bytesOf(i), id: `${prefix}:${i}`, items: PER_BATCH };
        const again = mode === "views" && i % 5 === 0 ? i : i >= 100 && i % 7 === 0 ? i - 100 : -1;
        if (again < 0) return { subject, bytes: bytesOf(i), id: `${prefix}:${i}`, items: 0 }; // the same message id: dropped by JetStream
        republished.add(again);
        return { subject, bytes: bytesOf(again), id: `${prefix}:again:${j}`, items: 0 };
      },
      20,
    );
    const consumer = () => feed.jsm.consumers.info(feed.topo.consumers.metrics.stream, feed.topo.consumers.metrics.durable);
    const raw = () => chNumber(ch.url, `SELECT count() AS n FROM ${db}.samples`);
    try {
      await waitFor(async () => (await raw()) >= 40 * PER_BATCH, "ingest flowing through all services", 60_000, 100);
      // a burst, so that every service holds messages it pulled and has not acked when the victim is killed
      const burst = Array.from({ length: 400 }, (_, n) => 1_000_000 + n);
      for (const i of burst) sent.add(i);
      await Promise.all(burst.map((i) => feed.js.publish(subject, bytesOf(i), { msgID: `${prefix}:${i}`, timeout: 10_000 })));
      const victim = services[0]!;
      expect(await victim.kill9()).toBe(137);
      running.delete(victim);
      await Bun.sleep(2000);
      services[0] = await start();
      // ack_wait (30 s) passes for what the victim held: JetStream redelivers it to the others
      let redelivered = 0;
      const deadline = Date.now() + 45_000;
      while (Date.now() < deadline) {
        redelivered = Math.max(redelivered, (await consumer()).num_redelivered);
        if (redelivered > 0 && Date.now() > deadline - 10_000) break;
        await Bun.sleep(500);
      }
      await load.stop();
      const batches = sent.size;
      const expected = batches * PER_BATCH;
      await waitFor(async () => (await consumer()).num_pending === 0 && (await consumer()).num_ack_pending === 0, "every message acked", 60_000, 200);
      const sums = async () => {
        return {
          raw: await chNumber(ch.url, `SELECT count() AS n FROM ${db}.samples`),
          distinct: await chNumber(ch.url, `SELECT uniqExact(entity, metric, ts) AS n FROM ${db}.samples`),
          rawSum: await chNumber(ch.url, `SELECT sum(value) AS n FROM ${db}.samples`),
          m1: await chNumber(ch.url, `SELECT sum(count) AS n FROM ${db}.samples_1m`),
          m1Sum: await chNumber(ch.url, `SELECT sum(sum) AS n FROM ${db}.samples_1m`),
          h1: await chNumber(ch.url, `SELECT sum(count) AS n FROM ${db}.samples_1h`),
          h1Sum: await chNumber(ch.url, `SELECT sum(sum) AS n FROM ${db}.samples_1h`),
        };
      };
      // the rollups catch up within a few steps (views: at once)
      await waitFor(async () => {
        const s = await sums();
        return s.raw >= expected && s.m1 >= s.raw && s.h1 >= s.raw;
      }, "the rollups to hold every sample", 60_000, 250);
      await Bun.sleep(1500); // a step or an insert that counted something twice would show now
      const s = await sums();
      let expectedSum = 0;
      for (const i of sent) for (let k = 0; k < PER_BATCH; k++) expectedSum += (i * 31 + k) % 1000;
      expect({ raw: s.raw, distinct: s.distinct, rawSum: s.rawSum }).toEqual({ raw: expected, distinct: expected, rawSum: expectedSum });
      expect({ m1: s.m1, m1Sum: s.m1Sum, h1: s.h1, h1Sum: s.h1Sum }).toEqual({ m1: expected, m1Sum: expectedSum, h1: expected, h1Sum: expectedSum });
      // per bucket, not only in total: each 1m and 1h row equals the raw rows of its bucket
      for (const [t, bucket] of [["samples_1m", "toStartOfMinute(ts)"], ["samples_1h", "toStartOfHour(ts)"]] as const) {
        const diff = await chNumber(
          ch.url,
          `SELECT count() AS n FROM (
             SELECT entity, toDateTime(${bucket}, 'UTC') AS t, count() AS c, sum(value) AS s FROM ${db}.samples GROUP BY entity, t
           ) AS r FULL OUTER JOIN (
             SELECT entity, t, sum(count) AS c, sum(sum) AS s FROM ${db}.${t} GROUP BY entity, t
           ) AS u USING (entity, t) WHERE r.c != u.c OR r.s != u.s`,
        );
        expect({ table: t, bucketsThatDiffer: diff }).toEqual({ table: t, bucketsThatDiffer: 0 });
      }
      expect(republished.size).toBeGreaterThan(0);
      expect(redelivered).toBeGreaterThan(0);
      expect(await dlqSize(feed)).toBe(0);
      process.stderr.write(
        `metrics/n-instances (${mode}): ${INSTANCES} services, ${batches} batches (${expected} samples), ${republished.size} republished under a new id, ` +
          `${redelivered} redelivered after the SIGKILL; raw = 1m = 1h = ${expected}, sums equal\n`,
      );
    } catch (e) {
      process.stderr.write(`consumer ${JSON.stringify(await consumer().catch(String))} dlq ${await dlqSize(feed).catch(String)} raw ${await raw().catch(String)} published ${JSON.stringify(load.now())}\n`);
      for (const [k, p] of services.entries()) process.stderr.write(`metrics service ${k}'s log:\n${p.log().slice(-3000)}\n`);
      throw e;
    } finally {
      await load.stop();
      for (const p of services) {
        await p.stop();
        running.delete(p);
      }
      await feed.close();
    }
  }, 240_000);
}
