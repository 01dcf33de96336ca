/**
 * Every subject, stream and durable consumer of an install, declared here and nowhere else; services/shared/bus.ts
 * creates them (ensureStreams, ensureStream, ensureConsumer). A `prefix` namespaces everything so tests (and several
 * Orrery installs on one NATS) never see each other's messages. The version lives in the subject:
 * orrery.discovery.v1.<host>.
 *
 *   <prefix>.discovery.v1.<host>          DISCOVERY  discovery.v1 batches (agents, collectors, jobs)
 *   <prefix>.metrics.v1.<source>          METRICS    metrics.v1 batches
 *   <prefix>.{discovery,metrics}.v1.<tenant>.<host|source>   the same, from an agent run as a broker tenant
 *   <prefix>.alerts.v1.<source>           ALERTS     alert.v1, from the ingest service and the Icinga2 consumer
 *   <prefix>.topology.delta.v1            TOPOLOGY   topology.delta.v1 from the topology service
 *   <prefix>.health.v1                    HEALTH     health.delta.v1 (entity health, edge state, impact); `seq`
 *                                                    numbers them — a reader that sees a gap asks for health.state.v1
 *                                                    over <prefix>.rpc.alerts
 *   <prefix>.dlq.<origin>                 DLQ        what a consumer could not handle, with the reason in headers
 *   <prefix>.jobs.v1.<type>.any           JOBS       runs any worker of <type> may take (durable `jobs-<type>`,
 *                                                    shared by all of them)
 *   <prefix>.jobs.v1.<type>.on.<worker>   JOBS       runs placed on one worker (durable `jobs-<type>-on-<worker>`)
 *   <prefix>.registry.v1.<type>           REGISTRY   registry.v1: every change of the registry, kept forever (the
 *                                                    registry's record of truth, services/registry/store.ts)
 *   <prefix>.registry.drift.v1            DRIFT      registry.drift.v1: declared vs discovered, when it changes
 *   <prefix>.registry.graph.v1            REGISTRY_GRAPH registry.graph.v1: the registry's part of the graph, whole,
 *                                                    when it changes (the topology service writes it to the store)
 *
 * KV bucket <PREFIX>_IDENTITY (stream KV_<PREFIX>_IDENTITY, services/identity/kv.ts): sessions, API tokens, local
 * users and the directory snapshot, read by the gateway and the ingest service.
 * KV bucket <PREFIX>_BROKER (@nats-io/kv, services/broker/store.ts): the service broker's instances, bindings and
 * their operations.
 *
 * Core NATS, no stream: worker heartbeats, run status events, the placement table, and the request/reply subjects
 * (<prefix>.rpc.*). None of them may fall under a stream's subjects (test/unit/contracts/streams.test.ts checks).
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
  /**
   * limits: a buffer every consumer reads at its own pace, trimmed by age and size only; workqueue: a message is
   * removed once a consumer acks it (the job queue), and no two consumers may share a subject.
   */
  retention: "limits" | "workqueue";
  /** Limits: a stream is a buffer between services, not an archive (history lives in ClickHouse). */
  maxAgeMs: number;
  maxBytes: number;
  /** JetStream's dedup window for Nats-Msg-Id. */
  duplicateWindowMs: number;
  /** copies kept by a JetStream cluster (1 on a single server; 3 in the production layout, deploy/nats) */
  replicas: number;
}

export interface ConsumerSpec {
  stream: string;
  durable: string;
  filterSubject: string;
  ackWaitMs: number;
  /** deliveries before JetStream gives a message up; -1 = never */
  maxDeliver: number;
  /** messages handed out and not yet acked before JetStream waits; default 10 000 */
  maxAckPending?: number;
  /**
   * The app's own limit: tries of a message that keeps failing on its own before it is dead-lettered with the reason
   * (services/shared/bus.ts toAckDecision; for job runs, the worker). Unlike max_deliver it leaves a record.
   */
  maxAttempts?: number;
}

/** What a jobs worker chooses for its consumers: the run's ack_wait and how many deliveries a run gets. */
export interface JobConsumerOptions {
  ackWaitMs: number;
  /** deliveries of a run before the worker gives it up (dead-letter and a final failed status) */
  maxAttempts: number;
}

export interface Topology {
  prefix: string;
  subjects: {
    discovery: (host: string) => string;
    metrics: (source: string) => string;
    /** a broker tenant's discovery: its NATS user may publish only under `<prefix>.discovery.v1.<tenant>.>` */
    tenantDiscovery: (tenant: string, host: string) => string;
    /** a broker tenant's metrics: `<prefix>.metrics.v1.<tenant>.<source>` */
    tenantMetrics: (tenant: string, source: string) => string;
    alerts: (source: string) => string;
    topologyDelta: string;
    /** health.delta.v1 from the alerts service */
    health: string;
    dlq: (origin: string) => string;
    /** core NATS request/reply: the topology service answers with a snapshot */
    snapshotRpc: string;
    /** core NATS request/reply: read-only Cypher against the graph store (its owner is the topology service) */
    cypherRpc: string;
    /** core NATS request/reply: AlertsQuery → AlertsList | health.state.v1 | not_ready, answered by the alerts service */
    alertsRpc: string;
    /** core NATS request/reply: IngestQuery → IngestRejected, answered by every ingest instance (ask with requestMany) */
    ingestRpc: string;
    /** registry.v1 events (one subject per event type) */
    registry: (type: string) => string;
    /** registry.drift.v1 */
    drift: string;
    /** registry.graph.v1 */
    registryGraph: string;
    /** core NATS request/reply: RegistryRequest → RegistryReply, answered by the registry service */
    registryRpc: string;
    /** core NATS request/reply: anything → exporters.status.v1, answered by the exporter service (when it runs) */
    exportersRpc: string;
    jobs: {
      /** every run of the JOBS stream */
      all: string;
      /** the shared queue of a worker type */
      queue: (type: string) => string;
      /** the queue of one worker (placed runs) */
      placed: (type: string, worker: string) => string;
      heartbeat: (worker: string) => string;
      heartbeats: string;
      status: (job: string) => string;
      statuses: string;
      placements: string;
      placementsRpc: string;
      /** core NATS request/reply: on-demand runs (job.submit.v1 → job.submitted.v1), answered by the scheduler */
      submitRpc: string;
    };
  };
  streams: {
    discovery: StreamSpec;
    metrics: StreamSpec;
    alerts: StreamSpec;
    topology: StreamSpec;
    health: StreamSpec;
    dlq: StreamSpec;
    jobs: StreamSpec;
    registry: StreamSpec;
    drift: StreamSpec;
    registryGraph: StreamSpec;
  };
  /** JetStream KV buckets (opened by their users, not by ensureStreams) */
  buckets: {
    identity: string;
    broker: string;
    /** the topology writer's lease (services/topology/lease.ts) */
    leases: string;
  };
  /** durables with fixed names; created with the streams when a service connects */
  consumers: {
    topology: ConsumerSpec;
    metrics: ConsumerSpec;
    history: ConsumerSpec;
    alerts: ConsumerSpec;
    alertsHistory: ConsumerSpec;
    /** the topology service's follower of registry.graph.v1 */
    registryGraph: ConsumerSpec;
  };
  /** durables of the job queue, one per worker type (shared) and per worker (placed); a worker creates its own */
  jobConsumers: {
    durable: { shared: (type: string) => string; placed: (type: string, worker: string) => string };
    shared: (type: string, o: JobConsumerOptions) => ConsumerSpec;
    placed: (type: string, worker: string, o: JobConsumerOptions) => ConsumerSpec;
  };
}

const GiB = 1024 ** 3;
const DAY = 24 * 3600 * 1000;

/** Subject tokens cannot hold '.', '*', '>' or spaces. */
export function subjectToken(s: string): string {
  return s.replace(/[.*> \t\r\n]/g, "_") || "_";
}

/**
 * Whether a discovery batch about `host` came on that host's subject (or a broker tenant's subject for it): NATS
 * permissions confine an agent to its own host's subject, and this confines what it says to that host.
 */
export function discoverySubjectFits(topo: Pick<Topology, "subjects">, subject: string, host: string): boolean {
  const plain = topo.subjects.discovery(host);
  if (subject === plain) return true;
  const base = plain.slice(0, plain.lastIndexOf(".") + 1);
  if (!subject.startsWith(base)) return false;
  const tenant = subject.slice(base.length, subject.indexOf(".", base.length));
  return tenant.length > 0 && topo.subjects.tenantDiscovery(tenant, host) === subject;
}

export function topologyFor(prefix = "orrery", o: { replicas?: number } = {}): Topology {
  if (!/^[a-zA-Z0-9_-]+$/.test(prefix)) throw new Error(`prefix must be [a-zA-Z0-9_-]+, got "${prefix}"`);
  const replicas = o.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) throw new Error(`replicas must be an integer from 1 to 5, got ${replicas}`);
  const P = prefix.toUpperCase().replace(/-/g, "_");
  const stream = (name: string, subjects: string[], maxAgeMs: number, maxBytes: number, duplicateWindowMs = DEDUP_WINDOW_MS, retention: StreamSpec["retention"] = "limits"): StreamSpec => ({
    name: `${P}_${name}`,
    subjects,
    retention,
    maxAgeMs,
    maxBytes,
    duplicateWindowMs,
    replicas,
  });
  const subjects: Topology["subjects"] = {
    discovery: (host) => `${prefix}.discovery.v1.${subjectToken(host)}`,
    metrics: (source) => `${prefix}.metrics.v1.${subjectToken(source)}`,
    // the tenant is a token of its own (escaped like any other), which is what its NATS permission matches on
    tenantDiscovery: (tenant, host) => `${prefix}.discovery.v1.${subjectToken(tenant)}.${subjectToken(host)}`,
    tenantMetrics: (tenant, source) => `${prefix}.metrics.v1.${subjectToken(tenant)}.${subjectToken(source)}`,
    alerts: (source) => `${prefix}.alerts.v1.${subjectToken(source)}`,
    topologyDelta: `${prefix}.topology.delta.v1`,
    health: `${prefix}.health.v1`,
    dlq: (origin) => `${prefix}.dlq.${subjectToken(origin)}`,
    snapshotRpc: `${prefix}.rpc.topology.snapshot`,
    cypherRpc: `${prefix}.rpc.graph.cypher`,
    alertsRpc: `${prefix}.rpc.alerts`,
    ingestRpc: `${prefix}.rpc.ingest`,
    registry: (type) => `${prefix}.registry.v1.${subjectToken(type)}`,
    drift: `${prefix}.registry.drift.v1`,
    registryGraph: `${prefix}.registry.graph.v1`,
    registryRpc: `${prefix}.rpc.registry`,
    exportersRpc: `${prefix}.rpc.exporters`,
    jobs: {
      all: `${prefix}.jobs.v1.>`,
      queue: (type) => `${prefix}.jobs.v1.${type}.any`,
      placed: (type, worker) => `${prefix}.jobs.v1.${type}.on.${worker}`,
      heartbeat: (worker) => `${prefix}.workers.v1.heartbeat.${worker}`,
      heartbeats: `${prefix}.workers.v1.heartbeat.*`,
      status: (job) => `${prefix}.jobs.status.v1.${job}`,
      statuses: `${prefix}.jobs.status.v1.*`,
      placements: `${prefix}.placements.v1`,
      placementsRpc: `${prefix}.rpc.placements`,
      submitRpc: `${prefix}.rpc.jobs.submit`,
    },
  };
  const streams: Topology["streams"] = {
    discovery: stream("DISCOVERY", [`${prefix}.discovery.v1.>`], 1 * DAY, 2 * GiB, JOB_RESULT_DEDUP_WINDOW_MS),
    metrics: stream("METRICS", [`${prefix}.metrics.v1.>`], 1 * DAY, 4 * GiB, JOB_RESULT_DEDUP_WINDOW_MS),
    alerts: stream("ALERTS", [`${prefix}.alerts.v1.>`], 7 * DAY, 1 * GiB),
    topology: stream("TOPOLOGY", [subjects.topologyDelta], 1 * DAY, 2 * GiB),
    health: stream("HEALTH", [subjects.health], 1 * DAY, 1 * GiB),
    dlq: stream("DLQ", [`${prefix}.dlq.>`], 14 * DAY, 1 * GiB),
    // Two schedulers publish the same slot with the same Nats-Msg-Id: it is stored once.
    jobs: stream("JOBS", [subjects.jobs.all], 7 * DAY, 1 * GiB, DEDUP_WINDOW_MS, "workqueue"),
    // The registry's record of truth: never trimmed (0 = no age limit, -1 = no size limit), since dropping its oldest
    // events would change what the fold of the stream says.
    registry: stream("REGISTRY", [`${prefix}.registry.v1.>`], 0, -1),
    drift: stream("DRIFT", [subjects.drift], 30 * DAY, 256 * 1024 ** 2),
    // Each message is the whole registry part, so only the last one matters; no age limit, so a graph store rebuilt
    // from scratch months later still finds it. Size-trimmed oldest first.
    registryGraph: stream("REGISTRY_GRAPH", [subjects.registryGraph], 0, 256 * 1024 ** 2),
  };
  const jobDurable = { shared: (type: string) => `jobs-${type}`, placed: (type: string, worker: string) => `jobs-${type}-on-${worker}` };
  // A worker pulls only what it can run (concurrency), so a small max_ack_pending is plenty and keeps a runaway
  // puller from taking the whole queue. max_deliver -1: a run whose worker died on its last delivery would otherwise
  // vanish; the worker counts deliveries itself and gives a run up past maxAttempts with a record (worker.ts).
  const job = (durable: string, filterSubject: string, o: JobConsumerOptions): ConsumerSpec => ({
    stream: streams.jobs.name,
    durable,
    filterSubject,
    ackWaitMs: o.ackWaitMs,
    maxDeliver: -1,
    maxAttempts: o.maxAttempts,
    maxAckPending: 1000,
  });
  return {
    prefix,
    subjects,
    streams,
    buckets: { identity: `${P}_IDENTITY`, broker: `${P}_BROKER`, leases: `${P}_LEASES` },
    // maxDeliver -1 everywhere: past max_deliver JetStream stops delivering a message without a trace. A store outage
    // is waited out by the consumer (services/shared/bus.ts failureHandler); a message that keeps failing on its own
    // is dead-lettered by the app after DEFAULT_MAX_ATTEMPTS deliveries.
    consumers: {
      // max_ack_pending = the service's batch + local queue (3000 + 3000, services/topology/service.ts), both kept
      // alive while a batch is written: more would wait unseen in the client's pull buffer, outlive ack_wait behind a
      // long 10k-host write and come back redelivered (7,000 of them in one bench estate run)
      topology: { stream: streams.discovery.name, durable: "topology", filterSubject: `${prefix}.discovery.v1.>`, ackWaitMs: 30_000, maxDeliver: -1, maxAckPending: 6000 },
      metrics: { stream: streams.metrics.name, durable: "metrics", filterSubject: `${prefix}.metrics.v1.>`, ackWaitMs: 30_000, maxDeliver: -1 },
      history: {
        stream: streams.topology.name,
        durable: "history",
        filterSubject: subjects.topologyDelta,
        // Generous: up to ~1000 fetched deltas wait in the local queue while earlier ones are inserted one by one.
        ackWaitMs: 120_000,
        // Never give up on a delta: a ClickHouse outage must not leave holes in the history (a batch that fails for
        // it is held and retried in place with capped backoff until ClickHouse is back).
        maxDeliver: -1,
      },
      alerts: { stream: streams.alerts.name, durable: "alerts", filterSubject: `${prefix}.alerts.v1.>`, ackWaitMs: 30_000, maxDeliver: -1 },
      // A second durable that writes alert history: ClickHouse never sits on the health path.
      alertsHistory: {
        stream: streams.alerts.name,
        durable: "alerts-history",
        filterSubject: `${prefix}.alerts.v1.>`,
        ackWaitMs: 60_000,
        // History must survive a ClickHouse outage of any length: the service retries a failed insert in place with
        // capped backoff (keeping the messages in progress), and the durable never gives a message up (-1 =
        // unlimited), so nothing is dropped or dead-lettered for being delivered too often.
        maxDeliver: -1,
      },
      registryGraph: { stream: streams.registryGraph.name, durable: "topology-registry", filterSubject: subjects.registryGraph, ackWaitMs: 60_000, maxDeliver: -1 },
    },
    jobConsumers: {
      durable: jobDurable,
      shared: (type, o) => job(jobDurable.shared(type), subjects.jobs.queue(type), o),
      placed: (type, worker, o) => job(jobDurable.placed(type, worker), subjects.jobs.placed(type, worker), o),
    },
  };
}

/** The alerts service's part of the declaration, named as its modules and tests read it. */
export interface AlertSubjects {
  health: string;
  rpc: string;
  healthStream: StreamSpec;
  consumer: ConsumerSpec;
  historyConsumer: ConsumerSpec;
}

export function alertSubjects(topo: Topology): AlertSubjects {
  return { health: topo.subjects.health, rpc: topo.subjects.alertsRpc, healthStream: topo.streams.health, consumer: topo.consumers.alerts, historyConsumer: topo.consumers.alertsHistory };
}

/** The jobs service's part of the declaration, named as its modules, tests and benches read it. */
export interface JobsTopology {
  stream: string;
  subjects: Topology["subjects"]["jobs"];
  durable: Topology["jobConsumers"]["durable"];
}

export function jobsTopology(topo: Topology | string): JobsTopology {
  const t = typeof topo === "string" ? topologyFor(topo) : topo;
  return { stream: t.streams.jobs.name, subjects: t.subjects.jobs, durable: t.jobConsumers.durable };
}

/**
 * The durables of one ITSM exporter (services/exporters): one per stream it follows, created by the exporter service.
 * ack_wait is generous and max_deliver unlimited: a vendor outage is waited out in place (failureHandler holds the
 * batch), and a message the vendor refuses is dead-lettered by the app with the vendor's answer.
 */
export function exporterConsumers(topo: Topology, name: string): { topology: ConsumerSpec; health: ConsumerSpec; registry: ConsumerSpec } {
  const spec = (stream: StreamSpec, what: string, filterSubject: string): ConsumerSpec => ({
    stream: stream.name,
    durable: `exporter-${name}-${what}`,
    filterSubject,
    ackWaitMs: 120_000,
    maxDeliver: -1,
    maxAckPending: 1000,
    maxAttempts: 5,
  });
  return {
    topology: spec(topo.streams.topology, "topology", topo.subjects.topologyDelta),
    health: spec(topo.streams.health, "health", topo.subjects.health),
    registry: spec(topo.streams.registry, "registry", `${topo.prefix}.registry.v1.>`),
  };
}
