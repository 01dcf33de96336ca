/**
 * Cutting a batch into messages that fit the bus: at most `maxCount` items and at most `maxBytes` encoded bytes per
 * message (MAX_MESSAGE_BYTES, under NATS's 1 MiB max_payload). Every publisher of a batched contract goes through here,
 * so "too many labels" can never turn a tick into an `oversized` error.
 *
 * Items are packed greedily by an estimate of their encoded size (one pass), then each part is encoded for real and
 * measured; a part the estimate got wrong is halved and measured again. So the result is exact, and the cost stays
 * one encoding of the batch (plus a rare re-encoding of a mis-estimated part), never an encoding per item added.
 * Part ids derive from the offset of the part's first item in the batch, so the same batch cut again (a redelivery,
 * a retried publish) gets the same ids and JetStream's duplicate window stores it once.
 *
 * Per contract: metricBatches (metrics.v1, ids `<base>:<offset>`), discoveryMessages / discoveryBatches (one scan's
 * parts renumbered 0..n-1 of n; the caller names them by part). Alerts use splitToFit directly.
 */
import { z } from "zod";
import { MAX_MESSAGE_BYTES, encode } from "../codec.ts";
import { DiscoveryBatch, type DiscoveryEvent, MAX_DISCOVERY_EVENTS } from "./discovery.ts";
import { MAX_SAMPLES_PER_BATCH, MetricBatch, type Sample } from "./metrics.ts";

/** One item that alone encodes over the message limit: it cannot be published in any split, so it is refused by name. */
export class OversizedItemError extends Error {
  override readonly name = "OversizedItemError";
  readonly code = "oversized_item";
  constructor(
    readonly schema: string,
    /** index of the item in the batch given to the splitter */
    readonly index: number,
    readonly bytes: number,
    readonly limit: number,
    /** what the item is, for a human: e.g. `listener.seen tcp 0.0.0.0:80 (pid 12 java)` */
    readonly item: string,
  ) {
    super(`${schema}: item ${index} (${item}) is ${bytes} bytes encoded alone, over the ${limit}-byte message limit; it cannot be published`);
  }
}

/** A part as encoded: its items (offset `start` in the batch) and whatever `encode` made of them (at least the bytes). */
export type Part<T, E extends { bytes: Uint8Array }> = E & { start: number; items: T[] };

export interface SplitOptions<T, E extends { bytes: Uint8Array }> {
  /** contract name, for errors (`metrics.v1`) */
  schema: string;
  maxCount: number;
  /** default MAX_MESSAGE_BYTES */
  maxBytes?: number;
  /** estimated encoded bytes of one item inside the array (a wrong estimate costs a re-encoding, never a wrong part) */
  sizeOf: (item: T) => number;
  /** estimated encoded bytes of the envelope around an empty array */
  overheadBytes: number;
  /** the real encoding of a part whose first item is at `start`; must not itself refuse a size (it is measured here) */
  encode: (items: T[], start: number) => E;
  /** names an item in an OversizedItemError */
  describe?: (item: T) => string;
  /**
   * Called with each item too large for any message; the rest is still split and returned. Without it, the first
   * such item throws its OversizedItemError and nothing is returned.
   */
  onOversized?: (e: OversizedItemError) => void;
}

/** Splits `items` under both limits; parts keep the items' order. An empty batch gives no parts. */
export function splitToFit<T, E extends { bytes: Uint8Array }>(items: readonly T[], o: SplitOptions<T, E>): Part<T, E>[] {
  const maxBytes = o.maxBytes ?? MAX_MESSAGE_BYTES;
  const out: Part<T, E>[] = [];
  for (const [from, to] of packRanges(items, o.sizeOf, o.overheadBytes, o.maxCount, maxBytes)) emit(from, to);
  return out;

  // encode and measure; halve a part the estimate got wrong
  function emit(from: number, to: number): void {
    const part = items.slice(from, to);
    const e = o.encode(part, from);
    if (e.bytes.byteLength <= maxBytes) {
      out.push({ ...e, start: from, items: part });
      return;
    }
    if (to - from === 1) return refuse(o, from, part[0]!, e.bytes.byteLength, maxBytes);
    const mid = from + Math.ceil((to - from) / 2);
    emit(from, mid);
    emit(mid, to);
  }
}

/** Greedy packing by estimate: [from, to) ranges of at most maxCount items and maxBytes estimated bytes. */
function packRanges<T>(items: readonly T[], sizeOf: (item: T) => number, overheadBytes: number, maxCount: number, maxBytes: number): [number, number][] {
  if (!(maxCount >= 1)) throw new RangeError(`maxCount must be ≥ 1, got ${maxCount}`);
  const out: [number, number][] = [];
  let start = 0;
  let bytes = overheadBytes;
  for (let i = 0; i < items.length; i++) {
    const size = sizeOf(items[i]!) + 1; // and its comma
    if (i > start && (i - start >= maxCount || bytes + size > maxBytes)) {
      out.push([start, i]);
      start = i;
      bytes = overheadBytes;
    }
    bytes += size;
  }
  if (items.length > start) out.push([start, items.length]);
  return out;
}

/** An item over the limit alone: thrown, or handed to onOversized (and left out). */
function refuse<T>(o: { schema: string; describe?: (item: T) => string; onOversized?: (e: OversizedItemError) => void }, index: number, item: T, bytes: number, limit: number): void {
  let what = o.describe?.(item);
  if (what === undefined) {
    const s = JSON.stringify(item);
    what = s.length > 120 ? `${s.slice(0, 120)}…` : s;
  }
  const err = new OversizedItemError(o.schema, index, bytes, limit, what);
  if (!o.onOversized) throw err;
  o.onOversized(err);
}

const utf8 = (s: string) => Buffer.byteLength(s);

// The schemas compiled by zod (generated parsers, several times faster: a 10k-host simulator tick is ~570k samples
// and 160k events); errors read as zod's.
const MetricBatchCompiled = z.compile(MetricBatch);
const DiscoveryBatchCompiled = z.compile(DiscoveryBatch);

/** The metrics.v1 estimate: exact for ASCII strings, with each labels object measured once (series share it). */
function sampleSizer(): (s: Sample) => number {
  const labelBytes = new Map<object, number>();
  return (s) => {
    const labels = s.labels ?? {};
    let l = labelBytes.get(labels);
    if (l === undefined) {
      l = utf8(JSON.stringify(labels));
      labelBytes.set(labels, l);
    }
    // {"entity":"…","metric":"…","ts":…,"value":…,"labels":…}
    return 50 + utf8(s.entity) + s.metric.length + String(s.ts).length + String(s.value).length + l;
  };
}

export interface MetricMessage {
  batch: MetricBatch;
  /** the batch as validated and encoded: publish these bytes */
  bytes: Uint8Array;
  /** Nats-Msg-Id, the same as batch.batchId */
  msgId: string;
}

export interface MetricSplitOptions {
  source: string;
  /** each part's batchId is `<idBase>:<offset of its first sample>`: stable for the same samples */
  idBase: string;
  /** another form of id from the same offset (e.g. an older scheme kept so dedup holds across an upgrade) */
  idOf?: (start: number) => string;
  maxBytes?: number;
  maxCount?: number;
  onOversized?: (e: OversizedItemError) => void;
}

/**
 * metrics.v1 messages for any number of samples: validated (a ContractError names a bad sample), each under the
 * count and byte limits, with deterministic batch ids.
 */
export function metricBatches(samples: readonly Sample[], o: MetricSplitOptions): Part<Sample, MetricMessage>[] {
  const envelope = { schema: "metrics.v1" as const, source: o.source, batchId: o.idOf ? o.idOf(samples.length) : `${o.idBase}:${samples.length}` };
  return splitToFit(samples, {
    schema: "metrics.v1",
    maxCount: Math.min(o.maxCount ?? MAX_SAMPLES_PER_BATCH, MAX_SAMPLES_PER_BATCH),
    maxBytes: o.maxBytes,
    sizeOf: sampleSizer(),
    overheadBytes: utf8(JSON.stringify({ ...envelope, samples: [] })),
    encode: (part, start) => {
      const batchId = o.idOf ? o.idOf(start) : `${o.idBase}:${start}`;
      const batch: MetricBatch = { schema: "metrics.v1", source: o.source, batchId, samples: part };
      return { batch, msgId: batchId, bytes: encode(MetricBatchCompiled, "metrics.v1", batch, Number.POSITIVE_INFINITY) };
    },
    describe: (s) => `${s.metric} of ${s.entity}, ${Object.keys(s.labels ?? {}).length} labels`,
    onOversized: o.onOversized,
  });
}

function describeEvent(e: DiscoveryEvent): string {
  switch (e.type) {
    case "host.seen":
      return `host.seen ${e.hostname}`;
    case "listener.seen":
    case "listener.gone":
      return `${e.type} ${e.proto} ${e.ip}:${e.port}${e.type === "listener.seen" && e.process ? ` (pid ${e.process.pid} ${e.process.comm})` : ""}`;
    case "connection.seen":
    case "connection.gone":
      return `${e.type} ${e.proto} ${e.localIp}:${e.localPort} → ${e.remoteIp}:${e.remotePort}${e.type === "connection.seen" && e.process ? ` (pid ${e.process.pid} ${e.process.comm})` : ""}`;
    case "entity.annotated":
      return `entity.annotated ${e.match.host}${e.match.port === undefined ? "" : `:${e.match.port}`}`;
    case "name.seen":
      return `name.seen ${e.ip} ${e.name}`;
  }
}

export interface DiscoverySplitOptions {
  maxBytes?: number;
  maxCount?: number;
  /** restamp the batches' `at` (the simulator sends a scan later than it made it) */
  at?: number;
  /** declare this reporting interval on the batches (DiscoveryBatch.intervalMs) */
  intervalMs?: number;
  onOversized?: (e: OversizedItemError) => void;
}

export interface DiscoveryMessage {
  batch: DiscoveryBatch;
  /** the batch as validated and encoded: publish these bytes */
  bytes: Uint8Array;
}

/**
 * The batches of one scan (same source, host, scanId), re-cut so every part fits, numbered part 0..n-1 of n across
 * the scan (the topology stage waits for all n parts of a full scan), each encoded once with its real numbers. A scan
 * with no events stays one empty batch: it still says "this source is alive" (and, when full, "it has nothing").
 */
export function discoveryMessages(scan: readonly DiscoveryBatch[], o: DiscoverySplitOptions = {}): DiscoveryMessage[] {
  const first = scan[0];
  if (!first) return [];
  const { events: _e, part: _p, parts: _n, ...rest } = first;
  const envelope = { ...rest, ...(o.at === undefined ? {} : { at: o.at }), ...(o.intervalMs === undefined ? {} : { intervalMs: o.intervalMs }) };
  const events = scan.length === 1 ? first.events : scan.flatMap((b) => b.events);
  const maxBytes = o.maxBytes ?? MAX_MESSAGE_BYTES;
  const opts = { schema: "discovery.v1", describe: describeEvent, onOversized: o.onOversized };
  const message = (part: number, parts: number, evs: DiscoveryEvent[]): DiscoveryMessage => {
    const batch: DiscoveryBatch = { ...envelope, part, parts, events: evs };
    return { batch, bytes: encode(DiscoveryBatchCompiled, "discovery.v1", batch, Number.POSITIVE_INFINITY) };
  };
  // ranges by estimate (part numbers counted at their widest), then each part encoded once with its real numbers;
  // when the estimate was wrong, the part over the limit is halved and the scan renumbered and encoded again
  let ranges = packRanges(events, (e) => utf8(JSON.stringify(e)), utf8(JSON.stringify({ ...envelope, part: 2 ** 31, parts: 2 ** 31, events: [] })), Math.min(o.maxCount ?? MAX_DISCOVERY_EVENTS, MAX_DISCOVERY_EVENTS), maxBytes);
  for (;;) {
    if (!ranges.length) return [message(0, 1, [])];
    const out = ranges.map(([from, to], i) => message(i, ranges.length, events.slice(from, to)));
    if (out.every((m) => m.bytes.byteLength <= maxBytes)) return out;
    ranges = ranges.flatMap(([from, to], i): [number, number][] => {
      const bytes = out[i]!.bytes.byteLength;
      if (bytes <= maxBytes) return [[from, to]];
      if (to - from === 1) {
        refuse(opts, from, events[from]!, bytes, maxBytes);
        return [];
      }
      const mid = from + Math.ceil((to - from) / 2);
      return [[from, mid], [mid, to]];
    });
  }
}

/** discoveryMessages without the bytes, for a publisher that encodes itself. */
export function discoveryBatches(scan: readonly DiscoveryBatch[], o: DiscoverySplitOptions = {}): DiscoveryBatch[] {
  return discoveryMessages(scan, o).map((m) => m.batch);
}
