/**
 * Subjects, streams and durable consumers, declared once. A `prefix` namespaces everything so tests (and several
 * Orrery installs on one NATS) never see each other's messages. Version lives in the subject: orrery.discovery.v1.<host>.
 */
import { MAX_JOB_ACK_WAIT_MS, MAX_JOB_TIMEOUT_MS } from "./contracts/jobs.ts";

/** Dedup window of streams written only by services that publish right away (alerts, topology deltas). */
export const DEDUP_WINDOW_MS = 2 * 60_000;
/**
 * Dedup window of the streams discovery jobs write (discovery, metrics). A job run redelivered after its worker died
 * is redone from the start, up to timeout + ack_wait after the first attempt published its first item, and
 * republishes with the same Nats-Msg-Id: the window must cover that, or the redo stores its items again. The cost is
 * nats-server memory: it keeps every message id of the window (about 100 B each).
 */
export const JOB_RESULT_DEDUP_WINDOW_MS = MAX_JOB_TIMEOUT_MS + MAX_JOB_ACK_WAIT_MS + 5 * 60_000;

export interface StreamSpec {
  name: string;
  subjects: string[];
  /** Limits: a stream is a buffer between services, not an archive (history lives in ClickHouse). */
  maxAgeMs: number;
  maxBytes: number;
  /** JetStream's dedup window for Nats-Msg-Id. */
  duplicateWindowMs: number;
}

export interface ConsumerSpec {
  stream: string;
  durable: string;
  filterSubject: string;
  ackWaitMs: number;
  maxDeliver: number;
}

export interface Topology {
  prefix: string;
  subjects: {
    discovery: (host: string) => string;
    metrics: (source: string) => string;
    alerts: (source: string) => string;
    topologyDelta: string;
    dlq: (origin: string) => string;
    /** core NATS request/reply: the topology service answers with a snapshot */
    snapshotRpc: string;
    /** core NATS request/reply: read-only Cypher against the graph store (its owner is the topology service) */
    cypherRpc: string;
  };
  streams: { discovery: StreamSpec; metrics: StreamSpec; alerts: StreamSpec; topology: StreamSpec; dlq: StreamSpec };
  consumers: { topology: ConsumerSpec; metrics: ConsumerSpec };
}

const GiB = 1024 ** 3;
const DAY = 24 * 3600 * 1000;

/** Subject tokens cannot hold '.', '*', '>' or spaces. */
export function subjectToken(s: string): string {
  return s.replace(/[.*> \t\r\n]/g, "_") || "_";
}

export function topologyFor(prefix = "orrery"): Topology {
  if (!/^[a-zA-Z0-9_-]+$/.test(prefix)) throw new Error(`prefix must be [a-zA-Z0-9_-]+, got "${prefix}"`);
  const P = prefix.toUpperCase().replace(/-/g, "_");
  const stream = (name: string, subjects: string[], maxAgeMs: number, maxBytes: number, duplicateWindowMs = DEDUP_WINDOW_MS): StreamSpec => ({
    name: `${P}_${name}`,
    subjects,
    maxAgeMs,
    maxBytes,
    duplicateWindowMs,
  });
  const streams = {
    discovery: stream("DISCOVERY", [`${prefix}.discovery.v1.>`], 1 * DAY, 2 * GiB, JOB_RESULT_DEDUP_WINDOW_MS),
    metrics: stream("METRICS", [`${prefix}.metrics.v1.>`], 1 * DAY, 4 * GiB, JOB_RESULT_DEDUP_WINDOW_MS),
    alerts: stream("ALERTS", [`${prefix}.alerts.v1.>`], 7 * DAY, 1 * GiB),
    topology: stream("TOPOLOGY", [`${prefix}.topology.delta.v1`], 1 * DAY, 2 * GiB),
    dlq: stream("DLQ", [`${prefix}.dlq.>`], 14 * DAY, 1 * GiB),
  };
  return {
    prefix,
    subjects: {
      discovery: (host) => `${prefix}.discovery.v1.${subjectToken(host)}`,
      metrics: (source) => `${prefix}.metrics.v1.${subjectToken(source)}`,
      alerts: (source) => `${prefix}.alerts.v1.${subjectToken(source)}`,
      topologyDelta: `${prefix}.topology.delta.v1`,
      dlq: (origin) => `${prefix}.dlq.${subjectToken(origin)}`,
      snapshotRpc: `${prefix}.rpc.topology.snapshot`,
      cypherRpc: `${prefix}.rpc.graph.cypher`,
    },
    streams,
    consumers: {
      topology: { stream: streams.discovery.name, durable: "topology", filterSubject: `${prefix}.discovery.v1.>`, ackWaitMs: 30_000, maxDeliver: 20 },
      metrics: { stream: streams.metrics.name, durable: "metrics", filterSubject: `${prefix}.metrics.v1.>`, ackWaitMs: 30_000, maxDeliver: 20 },
    },
  };
}
