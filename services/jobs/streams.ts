/**
 * The job work queue, declared in code like pipelines/streams.ts: one WorkQueue-retention stream per install
 * (`<PREFIX>_JOBS`, subjects `<prefix>.jobs.v1.>`). A message is removed when a worker acks it.
 *
 *   <prefix>.jobs.v1.<type>.any          runs any worker of <type> may take; ONE durable pull consumer `jobs-<type>`
 *                                        shared by all of them (start another worker and it takes work)
 *   <prefix>.jobs.v1.<type>.on.<worker>  runs the placement put on one worker; durable `jobs-<type>-on-<worker>`
 *
 * Core NATS (no stream): heartbeats, run status events, the placement table and its request/reply, on-demand submits.
 */
import { AckPolicy, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager } from "@nats-io/jetstream";

const ns = (ms: number) => ms * 1_000_000;

export interface JobsTopology {
  stream: string;
  subjects: {
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
  durable: { shared: (type: string) => string; placed: (type: string, worker: string) => string };
}

export function jobsTopology(prefix: string): JobsTopology {
  const P = prefix.toUpperCase().replace(/-/g, "_");
  return {
    stream: `${P}_JOBS`,
    subjects: {
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
    durable: { shared: (type) => `jobs-${type}`, placed: (type, worker) => `jobs-${type}-on-${worker}` },
  };
}

export async function ensureJobStream(jsm: JetStreamManager, jt: JobsTopology): Promise<void> {
  const cfg = {
    name: jt.stream,
    subjects: [jt.subjects.all],
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    discard: DiscardPolicy.Old,
    max_age: ns(7 * 86_400_000),
    max_bytes: 1024 ** 3,
    // Two schedulers publish the same slot with the same Nats-Msg-Id; it is stored once.
    duplicate_window: ns(2 * 60_000),
  };
  try {
    await jsm.streams.info(jt.stream);
  } catch (e) {
    if (!/stream not found/i.test(String((e as Error).message))) throw e;
    await jsm.streams.add(cfg).catch((err) => {
      if (!/already in use|exists/i.test(String(err.message))) throw err;
    });
  }
}

export async function ensureJobConsumer(jsm: JetStreamManager, jt: JobsTopology, durable: string, filter: string, ackWaitMs: number, maxDeliver: number): Promise<void> {
  try {
    await jsm.consumers.info(jt.stream, durable);
    await jsm.consumers.update(jt.stream, durable, { ack_wait: ns(ackWaitMs), max_deliver: maxDeliver });
  } catch (e) {
    if (!/consumer not found/i.test(String((e as Error).message))) throw e;
    await jsm.consumers
      .add(jt.stream, {
        durable_name: durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: filter,
        ack_wait: ns(ackWaitMs),
        max_deliver: maxDeliver,
        max_ack_pending: 1000,
      })
      .catch((err) => {
        // another worker of the same type created it first: same declaration
        if (!/already in use|exists/i.test(String(err.message))) throw err;
      });
  }
}
