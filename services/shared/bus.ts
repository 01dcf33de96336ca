/**
 * The event bus: NATS JetStream I/O shared by every service. Streams and consumers come from pipelines/streams.ts and
 * are created idempotently at start. Consumers validate every message; what fails validation goes to the dead-letter
 * stream with the reason and the original bytes, and the consumer keeps running. A message is acked only after its
 * handler has made its effect durable.
 */
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import type { z } from "zod";
import { ContractError, decode, encode } from "../../pipelines/codec.ts";
import { topologyFor, type ConsumerSpec, type StreamSpec, type Topology } from "../../pipelines/streams.ts";

const ns = (ms: number) => ms * 1_000_000;

export interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  topo: Topology;
  close(): Promise<void>;
}

export async function connectBus(opts: { url: string; prefix?: string; name: string; user?: string; pass?: string; token?: string }): Promise<Bus> {
  const nc = await connect({
    servers: opts.url,
    name: opts.name,
    user: opts.user,
    pass: opts.pass,
    token: opts.token,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
  });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const topo = topologyFor(opts.prefix);
  await ensureStreams(jsm, topo);
  return {
    nc,
    js,
    jsm,
    topo,
    close: async () => {
      await nc.drain().catch(() => nc.close());
    },
  };
}

export async function ensureStreams(jsm: JetStreamManager, topo: Topology): Promise<void> {
  for (const s of Object.values(topo.streams)) await ensureStream(jsm, s);
  for (const c of Object.values(topo.consumers)) await ensureConsumer(jsm, c);
}

async function ensureStream(jsm: JetStreamManager, s: StreamSpec): Promise<void> {
  const cfg = {
    name: s.name,
    subjects: s.subjects,
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: ns(s.maxAgeMs),
    max_bytes: s.maxBytes,
    duplicate_window: ns(s.duplicateWindowMs),
  };
  try {
    await jsm.streams.info(s.name);
    await jsm.streams.update(s.name, cfg);
  } catch (e) {
    if (!/stream not found/i.test(String((e as Error).message))) throw e;
    await jsm.streams.add(cfg).catch(async (err) => {
      // Another service created it between our info and add: fine, it is the same declaration.
      if (!/already in use|exists/i.test(String(err.message))) throw err;
    });
  }
}

export async function ensureConsumer(jsm: JetStreamManager, c: ConsumerSpec): Promise<void> {
  const cfg = {
    durable_name: c.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: c.filterSubject,
    ack_wait: ns(c.ackWaitMs),
    max_deliver: c.maxDeliver,
    max_ack_pending: 10_000,
  };
  try {
    await jsm.consumers.info(c.stream, c.durable);
    await jsm.consumers.update(c.stream, c.durable, { ack_wait: cfg.ack_wait, max_deliver: cfg.max_deliver, max_ack_pending: cfg.max_ack_pending });
  } catch (e) {
    if (!/consumer not found/i.test(String((e as Error).message))) throw e;
    await jsm.consumers.add(c.stream, cfg);
  }
}

/**
 * For a consumer with a single owner whose order matters (topology): messages a dead predecessor had taken but not
 * acked would come back only after ack_wait — after newer ones. Recreating the durable at its ack floor replays
 * them in stream order instead. Returns how many messages were outstanding.
 */
export async function rewindToAckFloor(jsm: JetStreamManager, c: ConsumerSpec): Promise<number> {
  const info = await jsm.consumers.info(c.stream, c.durable);
  const outstanding = info.num_ack_pending + info.num_redelivered;
  if (info.num_ack_pending === 0) return 0;
  await jsm.consumers.delete(c.stream, c.durable);
  await jsm.consumers.add(c.stream, {
    durable_name: c.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: info.ack_floor.stream_seq + 1,
    filter_subject: c.filterSubject,
    ack_wait: ns(c.ackWaitMs),
    max_deliver: c.maxDeliver,
    max_ack_pending: 10_000,
  });
  return outstanding;
}

/** Validates, then publishes with a Nats-Msg-Id so a retried publish is deduplicated by JetStream. */
export async function publishEvent<S extends z.ZodType>(
  bus: Bus,
  subject: string,
  schema: S,
  name: string,
  value: z.input<S>,
  msgId: string,
): Promise<void> {
  const bytes = encode(schema, name, value);
  await bus.js.publish(subject, bytes, { msgID: msgId, timeout: 30_000 });
}

/** Publishes the bytes that failed validation to the dead-letter stream, with why and where they came from. */
export async function deadLetter(bus: Bus, m: Pick<JsMsg, "subject" | "data" | "seq">, origin: string, reason: string): Promise<void> {
  const h = headers();
  h.set("Orrery-Reason", reason.slice(0, 4000));
  h.set("Orrery-Original-Subject", m.subject);
  h.set("Orrery-Original-Seq", String(m.seq));
  h.set("Orrery-Consumer", origin);
  await bus.js.publish(bus.topo.subjects.dlq(origin), m.data, { headers: h, msgID: `dlq:${origin}:${m.subject}:${m.seq}` });
}

export interface Decoded<T> {
  msg: JsMsg;
  value: T;
}

export interface ConsumerHandle {
  stop(): Promise<void>;
  /** resolves when the loop has ended (after stop, or on a fatal error) */
  done: Promise<void>;
}

/**
 * Runs a durable pull consumer. Messages are decoded one by one; valid ones are handed to `handle` in micro-batches:
 * whatever arrived while the previous batch was being handled (up to maxBatch), so latency stays low when idle and
 * throughput high under load. The batch is acked after `handle` resolves; if it throws, the batch is nak'ed with a
 * delay and redelivered.
 */
export async function runConsumer<S extends z.ZodType>(
  bus: Bus,
  spec: ConsumerSpec,
  schema: S,
  schemaName: string,
  handle: (batch: Decoded<z.infer<S>>[]) => Promise<void>,
  opts: { maxBatch?: number; onError?: (e: unknown) => void } = {},
): Promise<ConsumerHandle> {
  const maxBatch = opts.maxBatch ?? 500;
  const consumer = await bus.js.consumers.get(spec.stream, spec.durable);
  const messages = await consumer.consume({ max_messages: Math.max(maxBatch, 100) });
  const queue: JsMsg[] = [];
  const signal: { wake: (() => void) | null } = { wake: null };
  let ended = false;

  // Bounded: the pump stops taking messages while the local queue is full, so nothing waits here long enough to
  // outlive ack_wait and be redelivered (a backlog stays in JetStream, where it belongs).
  const highWater = maxBatch * 2;
  const room: { free: (() => void) | null } = { free: null };
  const pump = (async () => {
    for await (const m of messages) {
      queue.push(m);
      signal.wake?.();
      while (queue.length >= highWater) await new Promise<void>((r) => (room.free = r));
    }
    ended = true;
    signal.wake?.();
  })();

  const work = (async () => {
    while (true) {
      if (!queue.length) {
        if (ended) break;
        await new Promise<void>((r) => (signal.wake = r));
        signal.wake = null;
        continue;
      }
      const msgs = queue.splice(0, maxBatch);
      room.free?.();
      room.free = null;
      const good: Decoded<z.infer<S>>[] = [];
      for (const m of msgs) {
        try {
          good.push({ msg: m, value: decode(schema, schemaName, m.data) });
        } catch (e) {
          const reason = e instanceof ContractError ? `${e.code}: ${e.message}` : `decode failed: ${String(e)}`;
          try {
            await deadLetter(bus, m, spec.durable, reason);
            m.ack();
          } catch (dlqErr) {
            opts.onError?.(dlqErr);
            m.nak(1000);
          }
        }
      }
      if (!good.length) continue;
      try {
        await handle(good);
        for (const g of good) g.msg.ack();
      } catch (e) {
        opts.onError?.(e);
        for (const g of good) g.msg.nak(2000);
      }
    }
  })();

  const done = Promise.all([pump, work]).then(() => undefined);
  return {
    done,
    stop: async () => {
      await messages.close();
      room.free?.();
      await done;
    },
  };
}
