/**
 * splitToFit and the per-contract splitters (pipelines/contracts/split.ts), without a server: parts stay under the
 * count and the byte limit as measured on the real encoding, label-heavy samples included; an item too large for any
 * message is refused by name; the same batch cut twice gets the same ids.
 */
import { describe, expect, test } from "bun:test";
import { decode, encode, MAX_MESSAGE_BYTES } from "../../../pipelines/codec.ts";
import { DiscoveryBatch, type DiscoveryEvent, MAX_DISCOVERY_EVENTS } from "../../../pipelines/contracts/discovery.ts";
import { MAX_SAMPLES_PER_BATCH, MetricBatch, type Sample } from "../../../pipelines/contracts/metrics.ts";
import { discoveryBatches, metricBatches, OversizedItemError, splitToFit } from "../../../pipelines/contracts/split.ts";
import { itemToMessages } from "../../../services/jobs/results.ts";
import { JobInputError } from "../../../services/jobs/sdk.ts";

const te = new TextEncoder();
const json = (items: unknown[]) => ({ bytes: te.encode(JSON.stringify({ items })) });

/** Samples as a label-heavy exporter sends them: ~130 bytes of labels per series, one labels object per series. */
function labelHeavy(n: number, ts = 1_700_000_000_000): Sample[] {
  const series = Array.from({ length: 500 }, (_, i) => ({
    job: "node-exporter",
    instance: `sim-app-${String(i).padStart(4, "0")}.prod.example.internal:9100`,
    cpu: String(i % 16),
    mode: "user",
    region: "eu-west-1",
  }));
  return Array.from({ length: n }, (_, i) => ({ entity: `host:sim-app-${i % 500}`, metric: "node_cpu_seconds_total", ts: ts + Math.floor(i / 500), value: i * 0.25, labels: series[i % 500]! }));
}

describe("splitToFit", () => {
  test("the count limit cuts parts of at most maxCount, in order, with each part's offset", () => {
    const items = Array.from({ length: 25 }, (_, i) => i);
    const parts = splitToFit(items, { schema: "t", maxCount: 10, sizeOf: () => 2, overheadBytes: 12, encode: json });
    expect(parts.map((p) => p.items.length)).toEqual([10, 10, 5]);
    expect(parts.map((p) => p.start)).toEqual([0, 10, 20]);
    expect(parts.flatMap((p) => p.items)).toEqual(items);
    expect(splitToFit([], { schema: "t", maxCount: 10, sizeOf: () => 2, overheadBytes: 12, encode: json })).toEqual([]);
  });

  test("the byte limit is met exactly as measured, and parts are full, not needlessly small", () => {
    const items = Array.from({ length: 1000 }, (_, i) => "x".repeat(i % 97));
    const maxBytes = 4096;
    const parts = splitToFit(items, { schema: "t", maxCount: 10_000, maxBytes, sizeOf: (s) => s.length + 2, overheadBytes: 12, encode: json });
    expect(parts.flatMap((p) => p.items)).toEqual(items);
    for (const [i, p] of parts.entries()) {
      expect(p.bytes.byteLength).toBeLessThanOrEqual(maxBytes);
      // the next item would not have fitted
      if (i < parts.length - 1) expect(p.bytes.byteLength + items[p.start + p.items.length]!.length + 3).toBeGreaterThan(maxBytes);
    }
  });

  test("an estimate that is wrong (too low) still gives parts under the limit: they are measured and halved", () => {
    const items = Array.from({ length: 500 }, (_, i) => "y".repeat(50 + (i % 50)));
    let encodings = 0;
    const parts = splitToFit(items, {
      schema: "t",
      maxCount: 10_000,
      maxBytes: 8000,
      sizeOf: () => 10, // a fifth of the truth, or less
      overheadBytes: 0,
      encode: (part) => {
        encodings++;
        return json(part);
      },
    });
    expect(parts.flatMap((p) => p.items)).toEqual(items);
    for (const p of parts) expect(p.bytes.byteLength).toBeLessThanOrEqual(8000);
    // halving re-encodes a mis-estimated part a few times, never once per item
    expect(encodings).toBeLessThan(items.length / 5);
  });

  test("one item larger than the limit is refused with a typed error naming it; with onOversized the rest still goes", () => {
    const items = ["a", "b".repeat(5000), "c"];
    const o = { schema: "t.v1", maxCount: 10, maxBytes: 1000, sizeOf: (s: string) => s.length + 2, overheadBytes: 12, encode: json, describe: (s: string) => `item of ${s.length} chars` };
    let thrown: unknown;
    try {
      splitToFit(items, o);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(OversizedItemError);
    const err = thrown as OversizedItemError;
    expect(err).toMatchObject({ name: "OversizedItemError", code: "oversized_item", schema: "t.v1", index: 1, limit: 1000, item: "item of 5000 chars" });
    expect(err.bytes).toBeGreaterThan(5000);
    expect(err.message).toContain("item 1 (item of 5000 chars)");

    const refused: OversizedItemError[] = [];
    const parts = splitToFit(items, { ...o, onOversized: (e) => refused.push(e) });
    expect(parts.flatMap((p) => p.items)).toEqual(["a", "c"]);
    expect(refused.map((e) => e.index)).toEqual([1]);
  });
});

describe("metricBatches", () => {
  test("a 50k-sample label-heavy batch (several MB at 10k samples per message) is cut by bytes, every part valid and under the limit", () => {
    const samples = labelHeavy(50_000);
    // the old cut by count alone: 10,000 of these samples are over the limit
    expect(te.encode(JSON.stringify({ schema: "metrics.v1", source: "sim", batchId: "x", samples: samples.slice(0, MAX_SAMPLES_PER_BATCH) })).byteLength).toBeGreaterThan(MAX_MESSAGE_BYTES);
    const parts = metricBatches(samples, { source: "sim", idBase: "sim:boot:7" });
    expect(parts.length).toBeGreaterThan(5);
    expect(parts.flatMap((p) => p.batch.samples)).toEqual(samples);
    for (const p of parts) {
      expect(p.bytes.byteLength).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
      expect(p.batch.samples.length).toBeLessThanOrEqual(MAX_SAMPLES_PER_BATCH);
      // the bytes are the batch, as a consumer decodes it
      expect(decode(MetricBatch, "metrics.v1", p.bytes)).toEqual(p.batch);
      expect(p.msgId).toBe(p.batch.batchId);
    }
    // full parts: all but the last carry at least 90% of the limit
    for (const p of parts.slice(0, -1)) expect(p.bytes.byteLength).toBeGreaterThan(0.9 * MAX_MESSAGE_BYTES);
  });

  test("small samples are cut by count; non-ASCII labels are measured in bytes", () => {
    const small = Array.from({ length: 25_000 }, (_, i): Sample => ({ entity: "host:h", metric: "up", ts: i, value: 1, labels: {} }));
    expect(metricBatches(small, { source: "s", idBase: "b" }).map((p) => p.batch.samples.length)).toEqual([10_000, 10_000, 5_000]);
    const wide = { note: "é".repeat(4000) }; // 8000 bytes in UTF-8, 4000 characters
    const heavy = Array.from({ length: 400 }, (_, i): Sample => ({ entity: "host:h", metric: "m", ts: i, value: i, labels: wide }));
    const parts = metricBatches(heavy, { source: "s", idBase: "b" });
    expect(parts.length).toBe(4);
    for (const p of parts) expect(p.bytes.byteLength).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
  });

  test("ids are deterministic: the same samples give the same batch ids; they derive from each part's first offset", () => {
    const a = metricBatches(labelHeavy(30_000), { source: "agent:h", idBase: "agent:h:boot:3" });
    const b = metricBatches(labelHeavy(30_000), { source: "agent:h", idBase: "agent:h:boot:3" });
    expect(b.map((p) => p.msgId)).toEqual(a.map((p) => p.msgId));
    expect(a.map((p) => p.msgId)).toEqual(a.map((p) => `agent:h:boot:3:${p.start}`));
    expect(new Set(a.map((p) => p.msgId)).size).toBe(a.length);
  });

  test("an invalid sample is a ContractError naming it, as encode() says; no sample can be too large alone for the contract's limits", () => {
    expect(() => metricBatches([{ entity: "host:h", metric: "bad name", ts: 1, value: 1, labels: {} }], { source: "s", idBase: "b" })).toThrow(/metrics\.v1: samples\.0\.metric/);
    // the largest labels the contract allows (64 × 4 KiB) still fit one message; a smaller limit refuses by name
    const big: Sample = { entity: "host:big", metric: "m", ts: 1, value: 1, labels: Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`l${i}`, "v".repeat(4096)])) };
    expect(metricBatches([big], { source: "s", idBase: "b" })).toHaveLength(1);
    expect(() => metricBatches([big], { source: "s", idBase: "b", maxBytes: 100_000 })).toThrow(/metrics\.v1: item 0 \(m of host:big, 64 labels\) is \d+ bytes/);
  });
});

describe("discoveryBatches", () => {
  const process = (pid: number, args: number) => ({ pid, exe: "/usr/bin/java", comm: "java", cmdline: Array.from({ length: args }, (_, i) => `-Dprop${i}=${"v".repeat(200)}`), user: "app", uid: 1000, startTime: 1, containerId: null });
  const conn = (i: number, args: number): DiscoveryEvent => ({ type: "connection.seen", proto: "tcp", localIp: "10.0.0.1", localPort: 30000 + i, remoteIp: "10.0.0.2", remotePort: 5432, process: process(100 + i, args) });
  const scan = (events: DiscoveryEvent[]): DiscoveryBatch[] => [{ schema: "discovery.v1", source: "agent:h", host: "h", scanId: 4, part: 0, parts: 1, full: true, at: 1_700_000_000_000, events }];

  test("a scan whose events are large is re-cut under the limit and renumbered part 0..n-1 of n; every part encodes", () => {
    const events = Array.from({ length: 600 }, (_, i) => conn(i, 20)); // ~4.5 KB each: ~2.7 MB
    const out = discoveryBatches(scan(events));
    expect(out.length).toBeGreaterThan(2);
    expect(out.map((b) => b.part)).toEqual(out.map((_, i) => i));
    for (const b of out) {
      expect(b.parts).toBe(out.length);
      expect(b).toMatchObject({ source: "agent:h", host: "h", scanId: 4, full: true });
      expect(encode(DiscoveryBatch, "discovery.v1", b).byteLength).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    }
    expect(out.flatMap((b) => b.events)).toEqual(events);
    // many small events: the count limit
    const many = discoveryBatches(scan(Array.from({ length: 4500 }, (_, i) => conn(i, 0))));
    expect(many.map((b) => b.events.length)).toEqual([MAX_DISCOVERY_EVENTS, MAX_DISCOVERY_EVENTS, 500]);
  });

  test("parts of one scan are merged and re-cut; a scan without events stays one batch (the source is alive)", () => {
    const a = scan([conn(1, 0), conn(2, 0)])[0]!;
    const out = discoveryBatches([{ ...a, parts: 2, events: [conn(1, 0)] }, { ...a, part: 1, parts: 2, events: [conn(2, 0)] }]);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ part: 0, parts: 1 });
    expect(out[0]!.events).toHaveLength(2);
    expect(discoveryBatches(scan([]))).toEqual(scan([]));
    expect(discoveryBatches([])).toEqual([]);
  });

  test("an event too large for any message is refused naming the socket and process", () => {
    const huge = conn(7, 250); // 250 arguments of ~210 bytes: over the limit? no, ~53 KB; use a small limit
    expect(() => discoveryBatches(scan([conn(1, 0), huge]), { maxBytes: 20_000 })).toThrow(OversizedItemError);
    expect(() => discoveryBatches(scan([conn(1, 0), huge]), { maxBytes: 20_000 })).toThrow("item 1 (connection.seen tcp 10.0.0.1:30007 → 10.0.0.2:5432 (pid 107 java))");
    const refused: OversizedItemError[] = [];
    const out = discoveryBatches(scan([conn(1, 0), huge]), { maxBytes: 20_000, onOversized: (e) => refused.push(e) });
    expect(out.flatMap((b) => b.events)).toEqual([conn(1, 0)]);
    expect(refused).toHaveLength(1);
  });
});

describe("a job's results (services/jobs/results.ts) go through the splitters", () => {
  const run = { job: "exporter-scrape", runId: "exporter-scrape@9", requestedAt: 9000 };

  test("a label-heavy item is several messages under the limit, ids from the run, the item and each offset", () => {
    const r = itemToMessages(run, { key: "k1", samples: labelHeavy(30_000) }, 5);
    expect(r.metrics.length).toBeGreaterThan(3);
    expect(r.metrics[0]!.msgId).toBe("exporter-scrape@9:k1:m0");
    let offset = 0;
    for (const m of r.metrics) {
      expect(m.msgId).toBe(`exporter-scrape@9:k1:m${offset}`);
      expect(m.batch.batchId).toBe(m.msgId);
      expect(encode(MetricBatch, "metrics.v1", m.batch).byteLength).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
      offset += m.batch.samples.length;
    }
    expect(offset).toBe(30_000);
    expect(itemToMessages(run, { key: "k1", samples: labelHeavy(30_000) }, 99).metrics.map((m) => m.msgId)).toEqual(r.metrics.map((m) => m.msgId));
  });

  test("an event too large for any message fails the run (JobInputError) naming the item and the event", () => {
    const cmdline = Array.from({ length: 256 }, () => "a".repeat(4096)); // the contract allows it: 1 MiB of arguments
    const item = { key: "h1", host: "h1", events: [{ type: "listener.seen" as const, proto: "tcp" as const, ip: "10.0.0.1", port: 8080, process: { pid: 4, exe: null, comm: "huge", cmdline, user: "u", uid: 1, startTime: 1, containerId: null } }] };
    expect(() => itemToMessages(run, item, 5)).toThrow(JobInputError);
    expect(() => itemToMessages(run, item, 5)).toThrow(/item "h1": discovery\.v1: item 0 \(listener\.seen tcp 10\.0\.0\.1:8080 \(pid 4 huge\)\) is \d+ bytes/);
  });
});
