/**
 * The metrics service against a burst of malformed messages near the size limit, on a real nats-server and the
 * embedded ClickHouse owner: every malformed message lands in the dead-letter stream with a reason, and the valid
 * batches published behind them are stored, within a bound.
 *
 * The burst alternates runs of 100 small malformed messages with runs of 100 near-limit (~890 KiB) ones. That shape is
 * what stalled the service when it pulled by bytes (`consume({ max_bytes })`, @nats-io/jetstream 3.4): a pull ended by
 * its 100-message count left its unused bytes counted as outstanding, the top-up pulls asked for a few KiB, each was
 * answered 409 by the near-limit message at the head, and the client pulled again only after two missed heartbeats.
 * Measured here (2 cores, heavily shared): before, 128 s from the service's start until everything was dead-lettered or
 * stored; after (pulled by count), 14 s.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { ClickHouseClient } from "@clickhouse/client";
import { MAX_MESSAGE_BYTES } from "../../../pipelines/codec.ts";
import { MetricBatch, type Sample } from "../../../pipelines/contracts/metrics.ts";
import { ClickHouseSeriesStore } from "../../../services/metrics/clickhouse.ts";
import { startMetricsService } from "../../../services/metrics/service.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

/** the old code needs three heartbeat stalls (~30 s each) for this burst; the fixed one needs seconds, more when loaded */
const BOUND_MS = 60_000;
const ROUNDS = 3;
const RUN = 100;

let nats: NatsServer;
let owner: TestClickHouse;
let bus: Bus;
let store: ClickHouseSeriesStore;
let ch: ClickHouseClient;
const tmp = tempDir();
const db = uniquePrefix("mb").replace(/-/g, "_");

beforeAll(async () => {
  nats = await startNats();
  owner = await startClickHouse(join(tmp.dir, "owner"));
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("burst"), name: "test" });
  ch = owner.client();
  store = new ClickHouseSeriesStore(owner.client(), { database: db, ttlDays: 7, rollup1mTtlDays: 30, rollup1hTtlDays: 400 });
}, 60_000);
afterAll(async () => {
  await store?.close();
  await ch?.close();
  await bus?.close();
  await owner?.stop();
  await nats?.stop();
  tmp.cleanup();
});

/** Reasons of the dead letters of `origin`, read headers only (the bodies are up to 1 MiB each). */
async function deadLetterReasons(origin: string): Promise<string[]> {
  const subject = bus.topo.subjects.dlq(origin);
  const info = await bus.jsm.streams.info(bus.topo.streams.dlq.name, { subjects_filter: subject });
  const n = info.state.subjects?.[subject] ?? 0;
  const c = await bus.js.consumers.get(bus.topo.streams.dlq.name, { filter_subjects: subject, headers_only: true });
  const reasons: string[] = [];
  while (reasons.length < n) {
    const batch = await c.fetch({ max_messages: n - reasons.length, expires: 5000 });
    let got = 0;
    for await (const m of batch) {
      got++;
      reasons.push(m.headers?.get("Orrery-Reason") ?? "");
    }
    if (!got) break;
  }
  await c.delete().catch(() => undefined);
  return reasons;
}

test(`${ROUNDS * RUN} near-limit malformed messages, between runs of small ones, are dead-lettered with a reason and the valid batches behind them stored within ${BOUND_MS / 1000} s`, async () => {
  const subject = bus.topo.subjects.metrics("burst");
  // near the limit, under the server's max_payload, and not a metrics.v1 batch (no samples)
  const big = new TextEncoder().encode(JSON.stringify({ schema: "metrics.v1", source: "burst", batchId: "big", junk: "A".repeat(MAX_MESSAGE_BYTES - 10 * 1024) }));
  expect(big.byteLength).toBeGreaterThan(880 * 1024);
  const small = (i: number) => new TextEncoder().encode(JSON.stringify({ schema: "metrics.v1", source: "burst", batchId: `s${i}`, samples: "none" }));
  const pending: Promise<unknown>[] = [];
  const flush = async () => void (await Promise.all(pending.splice(0)));
  let malformed = 0;
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < RUN; i++) pending.push(bus.js.publish(subject, small(malformed++), { timeout: 30_000 }));
    await flush();
    for (let i = 0; i < RUN; i++) {
      pending.push(bus.js.publish(subject, big, { timeout: 30_000 }));
      malformed++;
      if (pending.length >= 20) await flush();
    }
    await flush();
  }
  const t0 = Date.now() - 3 * 3_600_000;
  const valid = Array.from({ length: 5 }, (_, b) => Array.from({ length: 200 }, (_, j): Sample => ({ entity: `host:burst-${b}`, metric: "burst_ok", ts: t0 + j * 1000, value: j, labels: {} })));
  for (const [b, samples] of valid.entries()) await publishEvent(bus, subject, MetricBatch, "metrics.v1", { schema: "metrics.v1", source: "burst", batchId: `ok${b}`, samples }, `ok${b}`);

  const started = performance.now();
  const svc = await startMetricsService({ bus, store, log: makeLogger("test", true) });
  try {
    const spec = bus.topo.consumers.metrics;
    await waitFor(
      async () => {
        const i = await bus.jsm.consumers.info(spec.stream, spec.durable);
        return i.num_pending === 0 && i.num_ack_pending === 0 && svc.written() >= 1000;
      },
      "the burst drained and the valid samples written",
      BOUND_MS,
      100,
    );
    const elapsed = performance.now() - started;
    expect(elapsed).toBeLessThan(BOUND_MS);
  } finally {
    await svc.stop();
  }
  const rows = await (await ch.query({ query: `SELECT count() AS n, uniqExact(entity) AS e FROM ${db}.samples WHERE metric = 'burst_ok'`, format: "JSONEachRow" })).json<{ n: string | number; e: string | number }>();
  expect({ n: Number(rows[0]!.n), e: Number(rows[0]!.e) }).toEqual({ n: 1000, e: 5 });
  const reasons = await deadLetterReasons(bus.topo.consumers.metrics.durable);
  expect(reasons.length).toBe(malformed);
  expect(reasons.filter((r) => /^(invalid|not_json|oversized)/.test(r)).length).toBe(malformed);
}, 180_000);
