/**
 * Prometheus remote_write 1.0 receiver: snappy-compressed protobuf WriteRequests → metrics.v1 batches on JetStream.
 *
 * Mapping of a Prometheus series to Orrery samples:
 * - entity: the `orrery_entity` label when present (e.g. `process:web-1:812:1700000000000`), else `host:<host part of
 *   the instance label>` (`web-1:9100` → `host:web-1`, `[::1]:9090` → `host:::1`); a series with neither is skipped
 *   and counted as `noEntity`.
 * - metric: `__name__`; every other label (`job`, `instance`, …) is kept as a label; `orrery_entity` is dropped.
 * - values: metrics.v1 requires finite values, so NaN, ±Inf and Prometheus stale markers (the NaN with bits
 *   0x7ff0000000000002 that ends a series) are skipped and counted apart (`stale`, `nonFinite`); native histograms
 *   (not representable as one float) are counted as `histograms`. A series whose labels break the contract (over 64
 *   labels, a name that is not a metric name, …) is skipped and counted as `invalid`.
 *
 * Delivery: the samples are cut by metricBatches (pipelines/contracts/split.ts: at most MAX_SAMPLES_PER_BATCH and
 * under the message byte limit, measured) and published with a batchId/Nats-Msg-Id derived from the body's hash and
 * each part's offset, so a request Prometheus retries is stored once by JetStream and once by ClickHouse. The answer is 204 only after every batch is acked; a publish failure answers 503,
 * which Prometheus retries. A body that is not snappy or not a WriteRequest answers 400 with the reason (Prometheus
 * drops it: retrying would not help); a wrong Content-Type, Content-Encoding or protocol version answers 415.
 */
import { createHash } from "node:crypto";
import protobuf from "protobufjs";
import snappy from "snappyjs";
import { MAX_MESSAGE_BYTES } from "../../pipelines/codec.ts";
import { MAX_SAMPLES_PER_BATCH, type MetricBatch, Sample } from "../../pipelines/contracts/metrics.ts";
import { metricBatches } from "../../pipelines/contracts/split.ts";
import { formatIssues } from "../../pipelines/issues.ts";
import type { Bus } from "../shared/bus.ts";
import { HttpError } from "../shared/http.ts";

// remote write 1.0 (prometheus/prompb/remote.proto + types.proto), only the fields we read. A sample's value is
// read as fixed64 (same wire type as double) so its exact bits are visible: JavaScript engines may canonicalise NaN
// payloads, which would erase the difference between a stale marker and any other NaN.
const root = protobuf.Root.fromJSON({
  nested: {
    prometheus: {
      nested: {
        WriteRequest: { fields: { timeseries: { rule: "repeated", type: "TimeSeries", id: 1 } } },
        TimeSeries: {
          fields: {
            labels: { rule: "repeated", type: "Label", id: 1 },
            samples: { rule: "repeated", type: "Sample", id: 2 },
            histograms: { rule: "repeated", type: "bytes", id: 4 },
          },
        },
        Label: { fields: { name: { type: "string", id: 1 }, value: { type: "string", id: 2 } } },
        Sample: { fields: { value: { type: "fixed64", id: 1 }, timestamp: { type: "int64", id: 2 } } },
      },
    },
  },
});
const WriteRequestType = root.lookupType("prometheus.WriteRequest");

type Int64 = number | { low: number; high: number };
export interface PromLabel {
  name: string;
  value: string;
}
export interface PromSample {
  /** the value's IEEE-754 bits, as protobufjs gives a fixed64 */
  value: Int64;
  timestamp: Int64;
}
export interface PromTimeSeries {
  labels: PromLabel[];
  samples: PromSample[];
  histograms: Uint8Array[];
}
export interface WriteRequest {
  timeseries: PromTimeSeries[];
}

/** A request refused, with its status (an HttpError: the server's error hook answers it). */
export class RemoteWriteError extends HttpError {
  override readonly name = "RemoteWriteError";
  constructor(status: 400 | 405 | 413 | 415, message: string) {
    super(status, message);
  }
}

export interface Skipped {
  stale: number;
  nonFinite: number;
  histograms: number;
  noEntity: number;
  invalid: number;
}

export interface MappedWrite {
  samples: Sample[];
  series: number;
  skipped: Skipped;
  /** the first contract violation seen, for logs */
  firstInvalid?: string;
}

export const DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024;

/** Snappy block format → protobuf WriteRequest. Throws RemoteWriteError(400 or 413) with the reason. */
export function decodeWriteRequest(body: Uint8Array, maxBytes = DEFAULT_MAX_BODY_BYTES): WriteRequest {
  let raw: Uint8Array;
  try {
    raw = snappy.uncompress(body, maxBytes);
  } catch (e) {
    const msg = (e as Error).message;
    if (/too big/i.test(msg)) throw new RemoteWriteError(413, `body decompresses past ${maxBytes} bytes`);
    throw new RemoteWriteError(400, `body is not snappy (block format): ${msg}`);
  }
  try {
    return WriteRequestType.decode(raw) as unknown as WriteRequest;
  } catch (e) {
    throw new RemoteWriteError(400, `body is not a protobuf prometheus.WriteRequest: ${(e as Error).message}`);
  }
}

/** For tests and tools: a WriteRequest as Prometheus would send it (values as plain numbers; stale via STALE_NAN_BITS). */
export function encodeWriteRequest(series: { labels: Record<string, string>; samples: { value: number | "stale"; timestamp: number }[] }[]): Uint8Array<ArrayBuffer> {
  const msg = WriteRequestType.fromObject({
    timeseries: series.map((s) => ({
      labels: Object.entries(s.labels).map(([name, value]) => ({ name, value })),
      samples: s.samples.map((x) => ({ value: x.value === "stale" ? STALE_NAN_BITS : doubleBits(x.value), timestamp: x.timestamp })),
    })),
  });
  return new Uint8Array(snappy.compress(WriteRequestType.encode(msg).finish()));
}

/** Prometheus's stale marker: a NaN with this exact bit pattern (value.StaleNaN). */
export const STALE_NAN_BITS = { low: 0x00000002, high: 0x7ff00000, unsigned: true };

const scratch = new DataView(new ArrayBuffer(8));
function bitsToDouble(v: Int64): { value: number; stale: boolean } {
  if (typeof v === "number") {
    // protobufjs without Long support hands a number: the bits are lost past 2^53, read what we can.
    scratch.setBigUint64(0, BigInt(v), true);
  } else {
    scratch.setUint32(0, v.low >>> 0, true);
    scratch.setUint32(4, v.high >>> 0, true);
  }
  const stale = scratch.getUint32(4, true) === STALE_NAN_BITS.high && scratch.getUint32(0, true) === STALE_NAN_BITS.low;
  return { value: scratch.getFloat64(0, true), stale };
}
function doubleBits(x: number): { low: number; high: number; unsigned: boolean } {
  scratch.setFloat64(0, x, true);
  return { low: scratch.getUint32(0, true), high: scratch.getUint32(4, true), unsigned: true };
}
function int64ToNumber(v: Int64): number {
  return typeof v === "number" ? v : v.high * 0x1_0000_0000 + (v.low >>> 0);
}

/** `web-1:9100` → web-1, `[::1]:9090` → ::1, `web-1` → web-1. */
export function instanceHost(instance: string): string {
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(instance);
  if (v6) return v6[1]!;
  const colon = instance.lastIndexOf(":");
  // a bare IPv6 address has several colons and no port
  if (colon > 0 && instance.indexOf(":") === colon && /^\d+$/.test(instance.slice(colon + 1))) return instance.slice(0, colon);
  return instance;
}

/** The Orrery entity a Prometheus series belongs to, or undefined when its labels do not say. */
export function entityFor(labels: Record<string, string>): string | undefined {
  if (labels.orrery_entity) return labels.orrery_entity;
  if (labels.instance) {
    const host = instanceHost(labels.instance);
    if (host) return `host:${host}`;
  }
  return undefined;
}

/** Prometheus series → contract samples, with what was skipped and why counted. Pure. */
export function toSamples(req: WriteRequest): MappedWrite {
  const skipped: Skipped = { stale: 0, nonFinite: 0, histograms: 0, noEntity: 0, invalid: 0 };
  const samples: Sample[] = [];
  let firstInvalid: string | undefined;
  for (const ts of req.timeseries) {
    skipped.histograms += ts.histograms?.length ?? 0;
    const all: Record<string, string> = {};
    for (const l of ts.labels ?? []) all[l.name] = l.value;
    const { __name__: metric, orrery_entity: _e, ...labels } = all;
    const entity = entityFor(all);
    const n = ts.samples?.length ?? 0;
    if (!n) continue;
    if (!entity) {
      skipped.noEntity += n;
      continue;
    }
    // Validate the series' identity once; each sample then only needs a finite value and a valid time.
    const probe = Sample.safeParse({ entity, metric, ts: 0, value: 0, labels });
    if (!probe.success) {
      skipped.invalid += n;
      firstInvalid ??= `${metric ?? "(no __name__)"}: ${formatIssues(probe.error)}`;
      continue;
    }
    const base = probe.data;
    for (const s of ts.samples) {
      const { value, stale } = bitsToDouble(s.value);
      if (stale) skipped.stale++;
      else if (!Number.isFinite(value)) skipped.nonFinite++;
      else {
        const t = int64ToNumber(s.timestamp);
        if (!Number.isSafeInteger(t) || t < 0) {
          skipped.invalid++;
          firstInvalid ??= `${metric}: timestamp ${t} is not a non-negative ms epoch`;
        } else samples.push({ entity: base.entity, metric: base.metric, ts: t, value, labels: base.labels });
      }
    }
  }
  return { samples, series: req.timeseries.length, skipped, firstInvalid };
}

/** Splits samples into contract-sized batches (≤ maxSamples each, ≤ maxBytes encoded), as the handler publishes them. */
export function chunkSamples(samples: Sample[], maxSamples = MAX_SAMPLES_PER_BATCH, maxBytes = MAX_MESSAGE_BYTES): Sample[][] {
  return metricBatches(samples, { source: "prometheus", idBase: "rw", maxCount: maxSamples, maxBytes }).map((p) => p.items);
}

export interface RemoteWriteResult {
  accepted: number;
  batches: number;
  series: number;
  skipped: Skipped;
  firstInvalid?: string;
}

export interface RemoteWriteDeps {
  /** Publishes one batch (validated and encoded: `bytes`) and resolves once JetStream has acked it. */
  publish: (batch: MetricBatch, bytes: Uint8Array) => Promise<void>;
  /** metrics.v1 `source` of the batches (default `prometheus`). */
  source?: string;
  maxBodyBytes?: number;
  /** Called after every accepted request (counters, logs). */
  onResult?: (r: RemoteWriteResult) => void;
  /** Called when publishing failed (the request answered 503). */
  onError?: (e: unknown) => void;
}

const isProtobuf = (ct: string | null) => {
  if (!ct) return false;
  const [type, ...params] = ct.split(";").map((p) => p.trim().toLowerCase());
  if (type !== "application/x-protobuf") return false;
  // remote write 2.0 names its message in a proto= parameter; 1.0 sends none or prometheus.WriteRequest
  const proto = params.find((p) => p.startsWith("proto="));
  return !proto || proto === "proto=prometheus.writerequest";
};

/** The HTTP handler (mount it at POST /api/v1/write on a Bun.serve whose `error` hook is httpErrors: refusals are thrown). */
export function remoteWriteHandler(deps: RemoteWriteDeps): (req: Request) => Promise<Response> {
  const source = deps.source ?? "prometheus";
  const maxBody = deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  return async (req) => {
    if (req.method !== "POST") throw new RemoteWriteError(405, "remote write takes POST");
    if (!isProtobuf(req.headers.get("content-type")))
      throw new RemoteWriteError(415, `Content-Type must be application/x-protobuf (remote write 1.0), got ${JSON.stringify(req.headers.get("content-type"))}`);
    const enc = req.headers.get("content-encoding");
    if (enc && enc.trim().toLowerCase() !== "snappy") throw new RemoteWriteError(415, `Content-Encoding must be snappy, got ${JSON.stringify(enc)}`);
    const version = req.headers.get("x-prometheus-remote-write-version");
    if (version && !version.startsWith("0.1")) throw new RemoteWriteError(415, `remote write version ${version} is not supported (0.1.0 is)`);
    const declared = Number(req.headers.get("content-length") ?? 0);
    if (declared > maxBody) throw new RemoteWriteError(413, `body of ${declared} bytes is over ${maxBody}`);
    const body = new Uint8Array(await req.arrayBuffer());
    if (body.length === 0) throw new RemoteWriteError(400, "empty body: expected a snappy-compressed WriteRequest");
    const decoded = decodeWriteRequest(body, maxBody);
    const mapped = toSamples(decoded);
    const digest = createHash("sha256").update(body).digest("hex").slice(0, 32);
    // toSamples kept only samples the contract accepts, and its limits keep any one sample far under a message
    const chunks = metricBatches(mapped.samples, { source, idBase: `rw-${digest}`, idOf: (offset) => `rw-${digest}-${offset}` });
    try {
      await Promise.all(chunks.map((c) => deps.publish(c.batch, c.bytes)));
    } catch (e) {
      deps.onError?.(e);
      throw new HttpError(503, `could not publish to JetStream: ${(e as Error).message}`);
    }
    const result: RemoteWriteResult = { accepted: mapped.samples.length, batches: chunks.length, series: mapped.series, skipped: mapped.skipped, firstInvalid: mapped.firstInvalid };
    deps.onResult?.(result);
    const headers: Record<string, string> = { "X-Orrery-Accepted-Samples": String(result.accepted) };
    for (const [k, v] of Object.entries(result.skipped)) if (v) headers[`X-Orrery-Skipped-${k}`] = String(v);
    return new Response(null, { status: 204, headers });
  };
}

/** `publish` for remoteWriteHandler over the bus: the bytes as encoded, Nats-Msg-Id = batchId, resolves on the JetStream ack. */
export function jetStreamPublisher(bus: Bus): (batch: MetricBatch, bytes: Uint8Array) => Promise<void> {
  return async (batch, bytes) => {
    await bus.js.publish(bus.topo.subjects.metrics(batch.source), bytes, { msgID: batch.batchId, timeout: 30_000 });
  };
}
