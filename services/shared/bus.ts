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
  JetStreamApiCodes,
  JetStreamApiError,
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
      // Drain flushes what is pending; but with the server gone (it died with the supervisor) a drain waits for a
      // reconnect that never comes, so after a few seconds the connection is just closed.
      const drained = await Promise.race([nc.drain().then(() => true, () => false), Bun.sleep(5000).then(() => false)]);
      if (!drained) await nc.close().catch(() => undefined);
    },
  };
}

/** Creates every stream of the declaration, then the durables with fixed names (idempotent; every service does it). */
export async function ensureStreams(jsm: JetStreamManager, topo: Topology): Promise<void> {
  for (const s of Object.values(topo.streams)) await ensureStream(jsm, s);
  for (const c of Object.values(topo.consumers)) await ensureConsumer(jsm, c);
}

/**
 * JetStream API error codes (nats-server's errors.json) the bus tells apart; @nats-io/jetstream names only some.
 * A JetStream API failure is recognised by its code, never by its message.
 */
export const JsApiCode = {
  ...JetStreamApiCodes,
  /** a stream of that name exists with another configuration */
  StreamNameInUse: 10058,
  /** a durable of that name exists with another configuration (nats-server 2.9) */
  ConsumerNameInUse: 10013,
  ConsumerExistingActive: 10105,
  /** a durable of that name exists (nats-server 2.10+) */
  ConsumerAlreadyExists: 10148,
} as const;

/** The JetStream API error code of `e`, or undefined when `e` is not a JetStream API error. */
export function jsApiCode(e: unknown): number | undefined {
  return e instanceof JetStreamApiError ? e.code : undefined;
}

const CONSUMER_EXISTS: ReadonlySet<number | undefined> = new Set([JsApiCode.ConsumerNameInUse, JsApiCode.ConsumerExistingActive, JsApiCode.ConsumerAlreadyExists]);

function streamConfig(s: StreamSpec) {
  return {
    name: s.name,
    subjects: s.subjects,
    storage: StorageType.File,
    retention: s.retention === "workqueue" ? RetentionPolicy.Workqueue : RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: ns(s.maxAgeMs),
    max_bytes: s.maxBytes,
    duplicate_window: ns(s.duplicateWindowMs),
  };
}

function consumerConfig(c: ConsumerSpec) {
  return {
    durable_name: c.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: c.filterSubject,
    ack_wait: ns(c.ackWaitMs),
    max_deliver: c.maxDeliver,
    max_ack_pending: c.maxAckPending ?? 10_000,
  };
}

/** Creates one stream, or brings an existing one to its declaration (idempotent, safe against a concurrent create). */
export async function ensureStream(jsm: JetStreamManager, s: StreamSpec): Promise<void> {
  const cfg = streamConfig(s);
  try {
    await jsm.streams.info(s.name);
  } catch (e) {
    if (jsApiCode(e) !== JsApiCode.StreamNotFound) throw e;
    try {
      await jsm.streams.add(cfg);
      return;
    } catch (err) {
      // Another service created it between our info and add, with other settings (an identical add succeeds):
      // the update below brings it to this declaration.
      if (jsApiCode(err) !== JsApiCode.StreamNameInUse) throw err;
    }
  }
  await jsm.streams.update(s.name, cfg);
}

/**
 * Creates one durable, or brings an existing one's ack_wait, max_deliver and max_ack_pending to its declaration
 * (idempotent, safe against a concurrent create). Its stream must exist.
 */
export async function ensureConsumer(jsm: JetStreamManager, c: ConsumerSpec): Promise<void> {
  const cfg = consumerConfig(c);
  try {
    await jsm.consumers.info(c.stream, c.durable);
  } catch (e) {
    if (jsApiCode(e) !== JsApiCode.ConsumerNotFound) throw e;
    try {
      await jsm.consumers.add(c.stream, cfg);
      return;
    } catch (err) {
      // another worker of the same type created it first
      if (!CONSUMER_EXISTS.has(jsApiCode(err))) throw err;
    }
  }
  await jsm.consumers.update(c.stream, c.durable, { ack_wait: cfg.ack_wait, max_deliver: cfg.max_deliver, max_ack_pending: cfg.max_ack_pending });
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
  await jsm.consumers.add(c.stream, { ...consumerConfig(c), deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: info.ack_floor.stream_seq + 1 });
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

/**
 * What a consumer handler throws to say how its failure is to be handled. Anything else (an untyped error) is taken
 * as possibly transient: nak'ed with a backoff, and dead-lettered on its last allowed delivery.
 */
export class PermanentError extends Error {
  override readonly name = "PermanentError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
/** The message is fine, something it needs is not (a store is down): nak the whole batch, do not look for a culprit. */
export class TransientError extends Error {
  override readonly name = "TransientError";
  constructor(
    message: string,
    readonly delayMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type AckDecision =
  | { kind: "ack" }
  /** redeliver after delayMs; `shared`: the failure is not this message's (do not split the batch to find one) */
  | { kind: "nak"; delayMs: number; shared: boolean }
  /** never redeliver: to the dead-letter stream with the reason, then ack */
  | { kind: "term"; reason: string };

/** Errors of other ports whose code says the input itself is bad, so retrying can never succeed. */
const PERMANENT_CODES: Record<string, readonly string[]> = {
  GraphStoreError: ["bad_request", "read_only"],
  HistoryStoreError: ["bad_row"],
  HistoryRowError: [""],
};

const describe = (e: unknown) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

/**
 * The one mapping from a handler's outcome to what JetStream is told (STYLE.md pattern 4). `err` undefined = success.
 * On the last allowed delivery a nak becomes a term: JetStream would otherwise stop delivering it without a trace.
 */
export function toAckDecision(err: unknown, delivery: { deliveryCount: number; maxDeliver: number } = { deliveryCount: 1, maxDeliver: -1 }): AckDecision {
  if (err === undefined) return { kind: "ack" };
  const name = err instanceof Error ? err.name : "";
  const code = (err as { code?: unknown })?.code;
  const permanent =
    err instanceof ContractError ||
    err instanceof PermanentError ||
    (name in PERMANENT_CODES && (PERMANENT_CODES[name]!.includes("") || PERMANENT_CODES[name]!.includes(String(code))));
  if (permanent) return { kind: "term", reason: `handler: ${describe(err)}` };
  if (delivery.maxDeliver > 0 && delivery.deliveryCount >= delivery.maxDeliver)
    return { kind: "term", reason: `handler: ${describe(err)} (delivery ${delivery.deliveryCount} of ${delivery.maxDeliver})` };
  const backoff = Math.min(30_000, 500 * 2 ** Math.min(Math.max(delivery.deliveryCount, 1), 6));
  if (err instanceof TransientError) return { kind: "nak", delayMs: err.delayMs ?? backoff, shared: true };
  return { kind: "nak", delayMs: backoff, shared: false };
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
 * throughput high under load. The batch is acked after `handle` resolves.
 *
 * When it throws, `toAckDecision` says what happens. A TransientError naks the whole batch (with a delay). Any other
 * error might be one poison message's, so the batch is bisected: each half is handled again on its own (in stream
 * order), until the failing messages are alone; only they are nak'ed (or dead-lettered, for a permanent error or
 * on their last delivery) and the rest is acked. When both halves of a split fail the cause is taken to be shared
 * and the split stops there — except for messages on their last delivery, which are always tried alone, so a good
 * message is never dead-lettered for its neighbour's fault.
 */
export async function runConsumer<S extends z.ZodType>(
  bus: Bus,
  spec: ConsumerSpec,
  schema: S,
  schemaName: string,
  handle: (batch: Decoded<z.infer<S>>[]) => Promise<void>,
  opts: {
    maxBatch?: number;
    onError?: (e: unknown) => void;
    /**
     * When fewer than maxBatch messages are here but JetStream says more are pending, wait up to this long for them
     * once (a backlog is still being fetched): one large batch instead of a batch of one message followed by another.
     */
    lingerMs?: number;
    /**
     * Messages held here beyond the batch being handled: the local queue stops at `queued` (default 2 × maxBatch) and
     * the client pulls `pullWindow` at a time (default maxBatch, at least 100). A consumer of large messages whose
     * batches are slow to handle sets them lower: all of them sit in memory meanwhile.
     */
    queued?: number;
    pullWindow?: number;
  } = {},
): Promise<ConsumerHandle> {
  const maxBatch = opts.maxBatch ?? 500;
  const consumer = await bus.js.consumers.get(spec.stream, spec.durable);
  const messages = await consumer.consume({ max_messages: opts.pullWindow ?? Math.max(maxBatch, 100) });
  const queue: JsMsg[] = [];
  const signal: { wake: (() => void) | null } = { wake: null };
  let ended = false;

  // Bounded: the pump stops taking messages while the local queue is full, so nothing waits here long enough to
  // outlive ack_wait and be redelivered (a backlog stays in JetStream, where it belongs).
  const highWater = opts.queued ?? maxBatch * 2;
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

  type Item = Decoded<z.infer<S>>;
  const isLast = (m: JsMsg) => spec.maxDeliver > 0 && m.info.deliveryCount >= spec.maxDeliver;
  const terminate = async (m: JsMsg, reason: string) => {
    try {
      await deadLetter(bus, m, spec.durable, reason);
      m.ack();
    } catch (dlqErr) {
      opts.onError?.(dlqErr);
      m.nak(1000);
    }
  };
  const settle = async (items: Item[], err: unknown) => {
    for (const g of items) {
      const d = toAckDecision(err, { deliveryCount: g.msg.info.deliveryCount, maxDeliver: spec.maxDeliver });
      if (d.kind === "ack") g.msg.ack();
      else if (d.kind === "nak") g.msg.nak(d.delayMs);
      else await terminate(g.msg, d.reason);
    }
  };
  const attempt = async (items: Item[], retry = true): Promise<unknown> => {
    // the retries of a failed batch must not outlive ack_wait (not on the first try: that would double the acks sent)
    if (retry) for (const g of items) g.msg.working();
    try {
      await handle(items);
      return undefined;
    } catch (e) {
      return e ?? new Error("handler threw a nullish value");
    }
  };
  /** `err` is what handling `items` together threw. */
  const isolate = async (items: Item[], err: unknown): Promise<void> => {
    const d = toAckDecision(err, { deliveryCount: 1, maxDeliver: -1 });
    if (items.length === 1 || (d.kind === "nak" && d.shared)) {
      // alone (the failure is this message's), or a shared cause: no culprit to look for — but a message on its
      // last delivery still gets its own try before it is dead-lettered
      const last = items.length > 1 ? items.filter((g) => isLast(g.msg)) : [];
      await settle(items.filter((g) => !last.includes(g)), err);
      for (const g of last) await settle([g], await attempt([g]));
      return;
    }
    const mid = Math.ceil(items.length / 2);
    const halves = [items.slice(0, mid), items.slice(mid)];
    const errs: unknown[] = [];
    for (const h of halves) {
      const e = await attempt(h);
      errs.push(e);
      if (e === undefined) for (const g of h) g.msg.ack();
    }
    const permanent = errs.some((e) => e !== undefined && toAckDecision(e).kind === "term");
    if (errs[0] !== undefined && errs[1] !== undefined && !permanent) {
      // both halves fail, and not for a reason of a message's own: most likely one shared cause (a store that is
      // down), so stop splitting; only what is on its last delivery gets its own try
      for (let i = 0; i < 2; i++) {
        const last = halves[i]!.filter((g) => isLast(g.msg));
        await settle(halves[i]!.filter((g) => !isLast(g.msg)), errs[i]);
        for (const g of last) await settle([g], await attempt([g]));
      }
      return;
    }
    for (let i = 0; i < 2; i++) if (errs[i] !== undefined) await isolate(halves[i]!, errs[i]);
  };

  const work = (async () => {
    while (true) {
      if (!queue.length) {
        if (ended) break;
        await new Promise<void>((r) => (signal.wake = r));
        signal.wake = null;
        continue;
      }
      if (opts.lingerMs && queue.length < maxBatch && !ended && queue[queue.length - 1]!.info.pending > 0) {
        const deadline = performance.now() + opts.lingerMs;
        while (queue.length < maxBatch && !ended && performance.now() < deadline) await Bun.sleep(Math.min(5, Math.max(1, deadline - performance.now())));
      }
      const msgs = queue.splice(0, maxBatch);
      room.free?.();
      room.free = null;
      const good: Item[] = [];
      for (const m of msgs) {
        try {
          good.push({ msg: m, value: decode(schema, schemaName, m.data) });
        } catch (e) {
          await terminate(m, e instanceof ContractError ? `${e.code}: ${e.message}` : `decode failed: ${String(e)}`);
        }
      }
      if (!good.length) continue;
      const err = await attempt(good, false);
      if (err === undefined) {
        for (const g of good) g.msg.ack();
        continue;
      }
      opts.onError?.(err);
      await isolate(good, err);
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
