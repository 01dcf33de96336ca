/**
 * Prometheus remote_write receiver: the pure decoder and mapping, malformed requests, retried requests stored once,
 * and Debian's real Prometheus scraping itself and remote-writing into our receiver → JetStream (real nats-server) →
 * metrics service → ClickHouse (embedded owner, a child process) → series().
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import snappy from "snappyjs";
import { decode, encode } from "../../../pipelines/codec.ts";
import { MAX_SAMPLES_PER_BATCH, MetricBatch, type Sample } from "../../../pipelines/contracts/metrics.ts";
import { ClickHouseSeriesStore } from "../../../services/metrics/clickhouse.ts";
import {
  chunkSamples,
  decodeWriteRequest,
  encodeWriteRequest,
  entityFor,
  instanceHost,
  jetStreamPublisher,
  remoteWriteHandler,
  toSamples,
  type RemoteWriteResult,
} from "../../../services/ingest/remote-write.ts";
import { startMetricsService } from "../../../services/metrics/service.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { httpErrors } from "../../../services/shared/http.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const PROTOBUF = { "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy", "X-Prometheus-Remote-Write-Version": "0.1.0" };

describe("decoder and mapping (pure)", () => {
  test("series map to contract samples; stale markers, NaN, ±Inf, entity-less and invalid series are skipped and counted", () => {
    const body = encodeWriteRequest([
      {
        labels: { __name__: "node_load1", instance: "web-1:9100", job: "node" },
        samples: [
          { value: 0.5, timestamp: 1_700_000_000_000 },
          { value: "stale", timestamp: 1_700_000_001_000 },
          { value: Number.NaN, timestamp: 1_700_000_002_000 },
          { value: Number.POSITIVE_INFINITY, timestamp: 1_700_000_003_000 },
          { value: Number.NEGATIVE_INFINITY, timestamp: 1_700_000_004_000 },
          { value: -2.25, timestamp: 1_700_000_005_000 },
        ],
      },
      { labels: { __name__: "http_requests_total", orrery_entity: "process:web-1:812:1", instance: "[::1]:8080", code: "200" }, samples: [{ value: 42, timestamp: 1_700_000_000_000 }] },
      { labels: { __name__: "up", job: "federate" }, samples: [{ value: 1, timestamp: 1_700_000_000_000 }] },
      { labels: { __name__: "bad name", instance: "h:1" }, samples: [{ value: 1, timestamp: 1_700_000_000_000 }] },
      { labels: { __name__: "many", instance: "h:1", ...Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`l${i}`, "x"])) }, samples: [{ value: 1, timestamp: 1 }] },
    ]);
    const mapped = toSamples(decodeWriteRequest(body));
    expect(mapped.samples).toEqual([
      { entity: "host:web-1", metric: "node_load1", ts: 1_700_000_000_000, value: 0.5, labels: { instance: "web-1:9100", job: "node" } },
      { entity: "host:web-1", metric: "node_load1", ts: 1_700_000_005_000, value: -2.25, labels: { instance: "web-1:9100", job: "node" } },
      { entity: "process:web-1:812:1", metric: "http_requests_total", ts: 1_700_000_000_000, value: 42, labels: { instance: "[::1]:8080", code: "200" } },
    ]);
    expect(mapped.skipped).toEqual({ stale: 1, nonFinite: 3, histograms: 0, noEntity: 1, invalid: 2 });
    expect(mapped.series).toBe(5);
    expect(mapped.firstInvalid).toMatch(/bad name.*metric names are/);
  });

  test("entity from orrery_entity, else the instance's host part", () => {
    expect(["web-1:9100", "10.0.0.7:9100", "[::1]:9090", "[fe80::1]", "::1", "web-1"].map(instanceHost)).toEqual(["web-1", "10.0.0.7", "::1", "fe80::1", "::1", "web-1"]);
    expect(entityFor({ instance: "db:9187", orrery_entity: "listener:db:tcp:0.0.0.0:5432" })).toBe("listener:db:tcp:0.0.0.0:5432");
    expect(entityFor({ instance: "db:9187" })).toBe("host:db");
    expect(entityFor({ job: "x" })).toBeUndefined();
  });

  test("batches stay within the contract: ≤ MAX_SAMPLES_PER_BATCH and under the message size limit", () => {
    const labels = { instance: "h:1", job: "j", big: "é".repeat(2000) };
    const samples: Sample[] = Array.from({ length: 25_000 }, (_, i) => ({ entity: "host:h", metric: "m", ts: i, value: i, labels: i < 20_000 ? {} : labels }));
    const chunks = chunkSamples(samples);
    expect(chunks.flat().length).toBe(25_000);
    chunks.forEach((c, i) => {
      expect(c.length).toBeLessThanOrEqual(MAX_SAMPLES_PER_BATCH);
      // encode() refuses anything over the 900 KiB limit
      const bytes = encode(MetricBatch, "metrics.v1", { schema: "metrics.v1", source: "p", batchId: "b", samples: c }).byteLength;
      // and batches are full, not needlessly small: each but the last carries at least 400 KiB or the most samples
      if (i < chunks.length - 1) expect(bytes >= 400 * 1024 || c.length === MAX_SAMPLES_PER_BATCH).toBe(true);
    });
  });

  test("a body that is not snappy, or snappy but not protobuf, is refused with the reason", () => {
    expect(() => decodeWriteRequest(new TextEncoder().encode("hello, not snappy"))).toThrow(/not snappy/);
    expect(() => decodeWriteRequest(snappy.compress(new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2])))).toThrow(/not a protobuf prometheus.WriteRequest/);
  });
});

let nats: NatsServer;
let owner: TestClickHouse;
let bus: Bus;
let store: ClickHouseSeriesStore;
let svc: Awaited<ReturnType<typeof startMetricsService>>;
let receiver: ReturnType<typeof Bun.serve>;
const results: RemoteWriteResult[] = [];
const tmp = tempDir("orrery-rw-");
const db = uniquePrefix("rw").replace(/-/g, "_");


beforeAll(async () => {
  nats = await startNats();
  owner = await startClickHouse(join(tmp.dir, "owner"));
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("rw"), name: "test-rw" });
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
  await bus?.close();
  await owner?.stop();
  await nats?.stop();
  tmp.cleanup();
});

describe("the HTTP receiver", () => {
  const url = () => `http://127.0.0.1:${receiver.port}/api/v1/write`;

  test("malformed requests: 400 for a bad body, 415 for a wrong content type, encoding or version, 405 for GET", async () => {
    const good = encodeWriteRequest([{ labels: { __name__: "x", instance: "h:1" }, samples: [{ value: 1, timestamp: Date.now() }] }]);
    const cases: [RequestInit, number, RegExp][] = [
      [{ method: "POST", headers: PROTOBUF, body: "definitely not snappy" }, 400, /not snappy/],
      [{ method: "POST", headers: PROTOBUF, body: new Uint8Array(snappy.compress(new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2]))) }, 400, /not a protobuf/],
      [{ method: "POST", headers: PROTOBUF, body: new Uint8Array() }, 400, /empty body/],
      [{ method: "POST", headers: { ...PROTOBUF, "Content-Type": "application/json" }, body: good }, 415, /Content-Type must be application\/x-protobuf/],
      [{ method: "POST", headers: { ...PROTOBUF, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request" }, body: good }, 415, /Content-Type/],
      [{ method: "POST", headers: { ...PROTOBUF, "Content-Encoding": "gzip" }, body: good }, 415, /Content-Encoding must be snappy/],
      [{ method: "POST", headers: { ...PROTOBUF, "X-Prometheus-Remote-Write-Version": "2.0.0" }, body: good }, 415, /version 2.0.0/],
      [{ method: "GET" }, 405, /POST/],
    ];
    for (const [init, status, reason] of cases) {
      const res = await fetch(url(), init);
      expect({ status: res.status, error: ((await res.json()) as { error: string }).error }).toEqual({ status, error: expect.stringMatching(reason) });
    }
  });

  test("a retried request is stored once (same batch ids → JetStream dedup), and 204 comes after the publish is acked", async () => {
    const at = Date.now();
    const body = encodeWriteRequest([
      { labels: { __name__: "retry_probe", instance: "retry-host:9100", job: "t" }, samples: [{ value: 7, timestamp: at }, { value: "stale", timestamp: at + 1 }] },
    ]);
    const info = () => bus.jsm.streams.info(bus.topo.streams.metrics.name);
    const first = await fetch(url(), { method: "POST", headers: PROTOBUF, body });
    expect(first.status).toBe(204);
    expect(first.headers.get("x-orrery-accepted-samples")).toBe("1");
    expect(first.headers.get("x-orrery-skipped-stale")).toBe("1");
    const after1 = (await info()).state.messages;
    const second = await fetch(url(), { method: "POST", headers: PROTOBUF, body });
    expect(second.status).toBe(204);
    // (Prometheus is not running yet: nothing else writes to this stream)
    expect((await info()).state.messages).toBe(after1);
    const c = await bus.js.consumers.get(bus.topo.streams.metrics.name, { filter_subjects: bus.topo.subjects.metrics("prometheus") });
    const stored = await c.next({ expires: 2000 });
    expect(decode(MetricBatch, "metrics.v1", stored!.data).samples).toEqual([
      { entity: "host:retry-host", metric: "retry_probe", ts: at, value: 7, labels: { instance: "retry-host:9100", job: "t" } },
    ]);
    const points = await waitFor(async () => {
      const p = await store.series({ entity: "host:retry-host", metric: "retry_probe", from: at - 1000, to: at + 1000, stepSeconds: 1, agg: "avg" });
      return p.length ? p : null;
    }, "probe in ClickHouse");
    expect(points).toEqual([{ t: Math.floor(at / 1000) * 1000, v: 7 }]);
  });

  test("when JetStream does not ack, the answer is 503 (Prometheus retries)", async () => {
    const failing = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      routes: { "/w": remoteWriteHandler({ publish: () => Promise.reject(new Error("no responders")) }) },
      error: httpErrors(makeLogger("test", true)),
    });
    try {
      const body = encodeWriteRequest([{ labels: { __name__: "x", instance: "h:1" }, samples: [{ value: 1, timestamp: Date.now() }] }]);
      const res = await fetch(`http://127.0.0.1:${failing.port}/w`, { method: "POST", headers: PROTOBUF, body });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: string }).error).toMatch(/could not publish.*no responders/);
    } finally {
      await failing.stop(true);
    }
  });
});

function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

test("Debian's Prometheus scrapes itself and remote-writes: real series arrive on JetStream, in ClickHouse and back through series()", async () => {
  const prometheus = Bun.which("prometheus", { PATH: "/usr/bin:/usr/local/bin:/usr/sbin" });
  const promtool = Bun.which("promtool", { PATH: "/usr/bin:/usr/local/bin:/usr/sbin" });
  if (!prometheus || !promtool) throw new Error("prometheus is not installed: run `npm test` (bootstrap installs Debian's prometheus) or apt-get install prometheus");
  const port = freePort();
  const config = join(tmp.dir, "prometheus.yml");
  writeFileSync(
    config,
    `global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:${port}"]
remote_write:
  - url: http://127.0.0.1:${receiver.port}/api/v1/write
    remote_timeout: 5s
    queue_config:
      batch_send_deadline: 500ms
      max_samples_per_send: 2000
      min_backoff: 100ms
      max_backoff: 1s
    metadata_config:
      send: false
`,
  );
  const check = Bun.spawnSync([promtool, "check", "config", config]);
  expect({ exit: check.exitCode, out: check.stdout.toString() + check.stderr.toString() }).toEqual({ exit: 0, out: expect.stringContaining("SUCCESS") });

  const started = Date.now();
  const proc = Bun.spawn(
    [prometheus, `--config.file=${config}`, `--storage.tsdb.path=${join(tmp.dir, "tsdb")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"],
    { stdout: "ignore", stderr: "pipe" },
  );
  let stderr = "";
  void (async () => {
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) stderr += new TextDecoder().decode(chunk);
  })();
  try {
    // 1. decoded samples on JetStream, under the subject of the `prometheus` source
    const seen = new Map<string, Sample>();
    const consumer = await bus.js.consumers.get(bus.topo.streams.metrics.name, { filter_subjects: bus.topo.subjects.metrics("prometheus") });
    await waitFor(
      async () => {
        const m = await consumer.next({ expires: 1000 });
        if (m) for (const s of decode(MetricBatch, "metrics.v1", m.data).samples) seen.set(s.metric, s);
        return seen.has("up") && seen.has("prometheus_build_info");
      },
      `up and prometheus_build_info on JetStream (prometheus stderr: ${stderr})`,
      60_000,
      0,
    );
    const instance = `127.0.0.1:${port}`;
    expect(seen.get("up")).toMatchObject({ entity: "host:127.0.0.1", value: 1, labels: { instance, job: "prometheus" } });
    expect(seen.get("up")!.ts).toBeGreaterThanOrEqual(started - 5000);
    expect(seen.get("prometheus_build_info")).toMatchObject({ entity: "host:127.0.0.1", value: 1, labels: { instance, job: "prometheus", version: expect.stringMatching(/^2\./) } });
    expect(seen.size).toBeGreaterThan(50);

    // 2. the metrics service writes them to ClickHouse; 3. they come back through series() (raw 1 s step and 1 m rollup)
    const range = { entity: "host:127.0.0.1", metric: "up", from: started - 60_000, to: Date.now() + 60_000 };
    const points = await waitFor(async () => {
      const p = await store.series({ ...range, stepSeconds: 1 });
      return p.length >= 2 ? p : null;
    }, "two scrapes of `up` in ClickHouse", 60_000);
    expect(points.every((p) => p.v === 1)).toBe(true);
    const perMinute = await store.series({ ...range, stepSeconds: 60, agg: "max" });
    expect(perMinute.length).toBeGreaterThanOrEqual(1);
    expect(perMinute.every((p) => p.v === 1)).toBe(true);
    const latest = await store.latest("host:127.0.0.1");
    expect(latest.prometheus_build_info?.v).toBe(1);
    expect(Object.keys(latest).length).toBeGreaterThan(50);
    expect(results.some((r) => r.accepted > 0)).toBe(true);
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
}, 120_000);
