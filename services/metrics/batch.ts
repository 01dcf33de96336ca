/**
 * metrics.v1 decoding on the metrics service's hot path.
 *
 * The zod schema (pipelines/contracts/metrics.ts) stays the contract; checking 5000 samples with it cost ~7 ms a
 * batch here, the largest item in the service's CPU profile at 100k+ samples/s. So a batch is first checked by a
 * plain loop that accepts only what the schema accepts, and returned as parsed. Anything it does not accept (a
 * broken batch, or a valid one it is not sure of, such as a sample without labels) goes through the schema, which
 * gives the error (the DLQ reason) or the defaulted batch. test/integration/metrics/metrics.test.ts holds the two to the same answers.
 */
import { MAX_MESSAGE_BYTES, decode } from "../../pipelines/codec.ts";
import { MAX_SAMPLES_PER_BATCH, MetricBatch } from "../../pipelines/contracts/metrics.ts";
import { hostId, isAgentSource } from "../../pipelines/stages/topology/ids.ts";
import type { Topology } from "../../pipelines/streams.ts";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const text = new TextDecoder();

const isId = (v: unknown): boolean => typeof v === "string" && v.length >= 1 && v.length <= 512;
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function labelsConform(labels: unknown): boolean {
  if (!isRecord(labels)) return false;
  let n = 0;
  for (const k in labels) {
    if (++n > 64 || k.length > 256) return false;
    const v = labels[k];
    if (typeof v !== "string" || v.length > 4096) return false;
  }
  return true;
}

/** True only when the schema would accept `v` unchanged (no defaults to apply). */
export function conformsToMetricBatch(v: unknown): v is MetricBatch {
  if (!isRecord(v) || v.schema !== "metrics.v1" || !isId(v.source) || !isId(v.batchId)) return false;
  const samples = v.samples;
  if (!Array.isArray(samples) || samples.length < 1 || samples.length > MAX_SAMPLES_PER_BATCH) return false;
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i];
    if (!isRecord(s) || !isId(s.entity)) return false;
    const { metric, ts, value } = s;
    if (typeof metric !== "string" || metric.length > 200 || !METRIC_NAME.test(metric)) return false;
    if (typeof ts !== "number" || !Number.isSafeInteger(ts) || ts < 0) return false;
    if (typeof value !== "number" || !Number.isFinite(value)) return false;
    if (!labelsConform(s.labels)) return false;
  }
  return true;
}

/** bytes → MetricBatch, or the contract's ContractError (oversized / not_json / invalid) with its reason. */
export function decodeMetricBatch(bytes: Uint8Array): MetricBatch {
  if (bytes.byteLength <= MAX_MESSAGE_BYTES) {
    let json: unknown;
    try {
      json = JSON.parse(text.decode(bytes));
    } catch {
      json = undefined;
    }
    if (conformsToMetricBatch(json)) return json;
  }
  return decode(MetricBatch, "metrics.v1", bytes);
}

/**
 * Why a decoded batch may not be stored as coming from where it was published, or undefined when it may.
 *
 * The subject is what NATS permissions hold an agent to (services/shared/nats-auth.ts lets `agent:<host>` publish only
 * `<prefix>.metrics.v1.agent:<host>`), so the body must agree with it: its `source` must be the one the subject names,
 * and an agent's samples must be of its own host (`host:<host>`, or an entity id under it such as
 * `service:<host>:…`) — otherwise one agent could write another host's series. Other sources (the simulator, jobs,
 * remote_write) speak for many hosts and are checked on `source` only.
 */
/** `<prefix>.metrics.v1.<tenant>.<source>`: a broker tenant's agent (NATS permissions confine it to its tenant's token) */
function isTenantSubject(topo: Pick<Topology, "subjects">, plain: string, subject: string, source: string): boolean {
  const base = plain.slice(0, plain.lastIndexOf(".") + 1);
  if (!subject.startsWith(base)) return false;
  const tenant = subject.slice(base.length, subject.indexOf(".", base.length));
  return tenant.length > 0 && topo.subjects.tenantMetrics(tenant, source) === subject;
}

export function originMismatch(topo: Pick<Topology, "subjects">, subject: string, batch: MetricBatch): string | undefined {
  const plain = topo.subjects.metrics(batch.source);
  if (plain !== subject && !isTenantSubject(topo, plain, subject, batch.source))
    return `source_mismatch: the batch says source "${batch.source.slice(0, 200)}" but was published on ${subject.slice(0, 300)} (expected ${plain.slice(0, 300)}, or a tenant's <prefix>.metrics.v1.<tenant>.<source>)`;
  if (!isAgentSource(batch.source)) return undefined;
  const host = batch.source.slice("agent:".length);
  const own = hostId(host);
  const under = `:${host}:`;
  for (let i = 0; i < batch.samples.length; i++) {
    const e = batch.samples[i]!.entity;
    if (e === own) continue;
    const colon = e.indexOf(":");
    if (colon > 0 && e.startsWith(under, colon)) continue;
    return `host_mismatch: ${batch.source.slice(0, 200)} may write only its own host's series, but sample ${i} is of "${e.slice(0, 200)}"`;
  }
  return undefined;
}
