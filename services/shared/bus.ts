/**
 * The event bus: NATS JetStream I/O shared by every service. Streams and consumers come from pipelines/streams.ts and
 * are created idempotently at start. Consumers validate every message; what fails validation goes to the dead-letter
 * stream with the reason and the original bytes, and the consumer keeps running. A message is acked only after its
 * handler has made its effect durable.
 */
import { connect, headers, nkeyAuthenticator, type NatsConnection } from "@nats-io/transport-node";
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
import { failureKind, TransientError } from "./errors.ts";

const ns = (ms: number) => ms * 1_000_000;

export interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  topo: Topology;
  /** what it was connected with: a helper thread opens its own connection the same way (the topology lease) */
  options: BusOptions;
  close(): Promise<void>;
}

export interface BusOptions {
  /** one server, or a comma-separated list / array of a cluster's nodes: the client reconnects to any that is up */
  url: string | string[];
  prefix?: string;
  name: string;
  user?: string;
  pass?: string;
  token?: string;
  /**
   * An nkey user's seed (`SU…`, e.g. a broker binding's `nats.seed`): the client signs the server's nonce with it
   * instead of sending a password.
   */
  nkeySeed?: string;
  /** JetStream replicas of every stream this process declares (ORRERY_NATS_REPLICAS; 3 on a 3-node cluster) */
  replicas?: number;
  /**
   * Declare the streams and durables at connect (the default). An agent with credentials of its own cannot (it may
   * only publish its host's subjects): the platform's services declare them.
   */
  declare?: boolean;
  /** reply subjects of requests and JetStream publish acks; an agent's credentials allow only its own (nats-auth.ts) */
  inboxPrefix?: string;
}

export async function connectBus(opts: BusOptions): Promise<Bus> {
  const servers = (Array.isArray(opts.url) ? opts.url : opts.url.split(",")).map((s) => s.trim()).filter(Boolean);
  const nc = await connect({
    servers,
    name: opts.name,
    user: opts.user,
    pass: opts.pass,
    token: opts.token,
    ...(opts.nkeySeed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(opts.nkeySeed)) } : {}),
    inboxPrefix: opts.inboxPrefix,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    // the order is a preference, not a rule: spread the clients of a cluster over its nodes
    noRandomize: false,
  });
  const declare = opts.declare ?? true;
  const js = jetstream(nc);
  // checkAPI asks the server for the account's JetStream info, which a publish-only user may not do
  const jsm = await jetstreamManager(nc, { checkAPI: declare });
  const topo = topologyFor(opts.prefix, { replicas: opts.replicas });
  if (declare) await ensureStreams(jsm, topo);
  return {
    nc,
    js,
    jsm,
    topo,
    options: opts,
    close: async () => {
      // A drain flushes what is pending, but with the server gone it waits for a reconnect that may never come: a
      // flush (one round trip) that gets no answer in 2 s means no server, and the connection is closed at once.
      // Every step has a deadline, so a service's shutdown holds its own whatever state NATS is in.
      const within = (p: Promise<unknown>, ms: number) => Promise.race([p.then(() => true, () => false), Bun.sleep(ms).then(() => false)]);
      if (nc.isClosed()) return;
      const drained = (await within(nc.flush(), 2000)) && (await within(nc.drain(), 5000));
      if (!drained && !nc.isClosed()) await within(nc.close(), 1000);
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
    num_replicas: s.replicas,
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
    const existing = await jsm.streams.info(s.name);
    // A process declared with fewer replicas (the default 1: a CLI, an agent, a service missing ORRERY_NATS_REPLICAS)
    // never scales a cluster's streams down; more replicas than today's is a deliberate change and is applied.
    cfg.num_replicas = Math.max(cfg.num_replicas, existing.config.num_replicas ?? 1);
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
  timeoutMs = 30_000,
): Promise<void> {
  const bytes = encode(schema, name, value);
  await bus.js.publish(subject, bytes, { msgID: msgId, timeout: timeoutMs });
}

/** Publishes the bytes that failed validation to the dead-letter stream, with why and where they came from. */
/** Room kept for a dead letter's headers and subject under the server's max_payload (the reason is cut to 4000). */
const DLQ_HEADROOM_BYTES = 16 * 1024;

export async function deadLetter(bus: Bus, m: Pick<JsMsg, "subject" | "data" | "seq">, origin: string, reason: string): Promise<void> {
  const h = headers();
  // a header value cannot hold a line break (NATS refuses it), and store errors often carry several lines
  h.set("Orrery-Reason", reason.replace(/\s*[\r\n]+\s*/g, " ").slice(0, 4000));
  h.set("Orrery-Original-Subject", m.subject);
  h.set("Orrery-Original-Seq", String(m.seq));
  h.set("Orrery-Consumer", origin);
  // A message just under max_payload no longer fits once the headers are added: the server would refuse the dead
  // letter on every try and the message would be redelivered forever, holding its consumer. Keep its head and say so.
  const room = (bus.nc.info?.max_payload ?? 1024 * 1024) - DLQ_HEADROOM_BYTES;
  let data = m.data;
  if (data.byteLength > room) {
    h.set("Orrery-Truncated", `${data.byteLength} bytes, the first ${room} kept`);
    data = data.subarray(0, room);
  }
  await bus.js.publish(bus.topo.subjects.dlq(origin), data, { headers: h, msgID: `dlq:${origin}:${m.subject}:${m.seq}` });
}

// The error classes live in errors.ts (adapters import them without the bus); re-exported for handlers.
export { PermanentError, TransientError, PortError, failureKind, type FailureKind } from "./errors.ts";

/**
 * Tries of a message that fails on its own with an error of unknown kind before it is dead-lettered, unless its
 * ConsumerSpec says otherwise (`maxAttempts`). Counted from JetStream's delivery count, so a restart does not reset it.
 */
export const DEFAULT_MAX_ATTEMPTS = 5;
/** The longest wait between two tries while a store is unavailable (also the longest a recovered store waits for us). */
export const MAX_BACKOFF_MS = 30_000;
/** Capped exponential backoff before try `attempt + 1`: 1 s, 2 s, 4 s … MAX_BACKOFF_MS. */
export const backoffMs = (attempt: number) => Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(Math.max(attempt, 1), 6));

export type AckDecision =
  | { kind: "ack" }
  /**
   * try again after delayMs. `shared`: the failure is not this message's (a store is down): retry the batch whole,
   * for as long as it takes, and do not split it to look for a culprit.
   */
  | { kind: "nak"; delayMs: number; shared: boolean }
  /** never redeliver: to the dead-letter stream with the reason, then ack */
  | { kind: "term"; reason: string };

const describe = (e: unknown) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

/**
 * The one mapping from a handler's outcome to what JetStream is told (STYLE.md pattern 4). `err` undefined = success.
 * A transient failure is never the message's fault: it is retried without limit. A permanent one is dead-lettered at
 * once. Anything else is retried with backoff, and dead-lettered once the message has failed `maxAttempts` times,
 * the last of them `alone` (not in a batch, where a neighbour may have been the cause).
 */
export function toAckDecision(err: unknown, attempt: { deliveryCount: number; maxAttempts?: number; alone?: boolean } = { deliveryCount: 1 }): AckDecision {
  if (err === undefined) return { kind: "ack" };
  const kind = failureKind(err);
  if (kind === "permanent") return { kind: "term", reason: `handler: ${describe(err)}` };
  const n = attempt.deliveryCount;
  if (kind === "transient") return { kind: "nak", delayMs: (err instanceof TransientError ? err.delayMs : undefined) ?? backoffMs(n), shared: true };
  const max = attempt.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if ((attempt.alone ?? true) && max > 0 && n >= max) return { kind: "term", reason: `handler: ${describe(err)} (attempt ${n} of ${max})` };
  return { kind: "nak", delayMs: backoffMs(n), shared: false };
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

/** A consumer's declaration, with the app's own limit on tries of a message that fails on its own (see toAckDecision). */
export type ConsumerPolicy = ConsumerSpec & { maxAttempts?: number };

/**
 * The tries before a lone failing message is dead-lettered. A consumer still declared with a finite max_deliver gets
 * its last delivery as its last try: past it JetStream would stop delivering the message without a trace.
 */
export function maxAttemptsOf(spec: ConsumerPolicy): number {
  const app = spec.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  return spec.maxDeliver > 0 ? Math.min(app, spec.maxDeliver) : app;
}

/** Messages a consumer decodes between two turns of the event loop (a 3000-message batch takes ~0.3-1 s to decode). */
const DECODE_STEP = 200;

/** How often a message in progress is told to the server as still being worked on: well inside its ack_wait. */
const workingEveryMs = (ackWaitMs: number) => Math.max(200, Math.min(5000, Math.floor(ackWaitMs / 3)));

/**
 * What a consumer does with a batch its handler failed on; shared by runConsumer and the metrics service's own loop.
 *
 * - Transient (a store is down): the batch is held and tried again in place with capped backoff, for as long as it
 *   takes, its messages (and, through `keepAlive`, those the consumer has queued) kept in progress meanwhile. The
 *   consumer thereby pauses: it takes nothing new while the store is down, probes it once per backoff, and keeps
 *   stream order. Only stop() hands the batch back to JetStream (nak, redelivered later). JetStream's max_deliver
 *   (-1 for our consumers) is never what ends a message.
 * - Otherwise the cause may be one poison message's, so the batch is bisected: each half is tried again on its own (in
 *   order) until the failing messages are alone; only they are nak'ed with backoff, or dead-lettered (a permanent
 *   error, or the last of maxAttempts) and the rest is acked. When both halves of a split fail with an error of
 *   unknown kind the cause is taken to be shared and the split stops there (all nak'ed) — except for messages on
 *   their last attempt, which are always tried alone, so a good message is never dead-lettered for its neighbour.
 */
export function failureHandler<T extends { msg: JsMsg }>(
  bus: Bus,
  spec: ConsumerPolicy,
  o: {
    /** handles the items again, throwing as the first try did; settles nothing itself */
    retry: (items: T[]) => Promise<void>;
    /** keeps other messages the consumer holds (queued behind the failed batch) in progress during a hold */
    keepAlive?: () => void;
    onError?: (e: unknown) => void;
    /** called on each failed try of a held batch (for logging) */
    onHold?: (attempt: number, e: unknown) => void;
  },
) {
  const maxAttempts = maxAttemptsOf(spec);
  const isLast = (m: JsMsg) => m.info.deliveryCount >= maxAttempts;
  let stopping = false;
  const sleepers = new Set<() => void>();
  /** sleeps ms (cut short by stop), keeping `items` and the consumer's queue in progress */
  const holdFor = async (ms: number, items: T[]) => {
    const tick = workingEveryMs(spec.ackWaitMs);
    const until = performance.now() + ms;
    while (!stopping && performance.now() < until) {
      await new Promise<void>((r) => {
        const done = () => {
          clearTimeout(t);
          sleepers.delete(done);
          r();
        };
        const t = setTimeout(done, Math.min(tick, Math.max(1, until - performance.now())));
        sleepers.add(done);
      });
      for (const g of items) g.msg.working();
      o.keepAlive?.();
    }
  };

  const terminate = async (m: JsMsg, reason: string) => {
    try {
      await deadLetter(bus, m, spec.durable, reason);
      m.ack();
    } catch (dlqErr) {
      o.onError?.(dlqErr);
      m.nak(1000);
    }
  };
  const settle = async (items: T[], err: unknown, alone: boolean) => {
    for (const g of items) {
      const d = toAckDecision(err, { deliveryCount: g.msg.info.deliveryCount, maxAttempts, alone });
      if (d.kind === "ack") g.msg.ack();
      else if (d.kind === "nak") g.msg.nak(d.delayMs);
      else await terminate(g.msg, d.reason);
    }
  };
  const attempt = async (items: T[]): Promise<unknown> => {
    // the retries of a failed batch must not outlive ack_wait
    for (const g of items) g.msg.working();
    try {
      await o.retry(items);
      return undefined;
    } catch (e) {
      return e ?? new Error("handler threw a nullish value");
    }
  };

  /** Holds `items` through a transient failure; resolves to the first other outcome (undefined = handled). */
  const hold = async (items: T[], err: unknown): Promise<{ err: unknown } | "stopped"> => {
    for (let n = 1; ; n++) {
      o.onHold?.(n, err);
      const d = toAckDecision(err, { deliveryCount: n });
      await holdFor(d.kind === "nak" ? d.delayMs : backoffMs(n), items);
      if (stopping) return "stopped";
      err = await attempt(items);
      if (err === undefined || failureKind(err) !== "transient") return { err };
    }
  };

  /** `err` is what handling `items` together threw; settles every one of them. */
  const resolve = async (items: T[], err: unknown): Promise<void> => {
    if (failureKind(err) === "transient") {
      const r = await hold(items, err);
      if (r === "stopped") {
        for (const g of items) g.msg.nak();
        return;
      }
      if (r.err === undefined) {
        for (const g of items) g.msg.ack();
        return;
      }
      err = r.err;
    }
    if (items.length === 1) return settle(items, err, true);
    const mid = Math.ceil(items.length / 2);
    const halves = [items.slice(0, mid), items.slice(mid)];
    const errs: unknown[] = [];
    for (const h of halves) {
      const e = await attempt(h);
      errs.push(e);
      if (e === undefined) for (const g of h) g.msg.ack();
    }
    const unknownBoth = errs.every((e) => e !== undefined && failureKind(e) === "unknown");
    for (let i = 0; i < 2; i++) {
      const h = halves[i]!;
      const e = errs[i];
      if (e === undefined) continue;
      if (!unknownBoth) {
        await resolve(h, e);
        continue;
      }
      // most likely one shared cause: stop splitting; only what is on its last attempt gets its own try
      await settle(h.filter((g) => !isLast(g.msg)), e, false);
      for (const g of h.filter((g) => isLast(g.msg))) {
        const alone = await attempt([g]);
        if (alone === undefined) g.msg.ack();
        else await resolve([g], alone);
      }
    }
  };

  return {
    /** Settles a batch whose handling threw `err` (acked, nak'ed, held or dead-lettered, message by message). */
    resolve: async (items: T[], err: unknown): Promise<void> => {
      o.onError?.(err);
      await resolve(items, err);
    },
    /** Dead-letters one message (a decode failure) and acks it; nak'ed when the dead-letter stream is unreachable. */
    terminate,
    /** Ends any hold at once (its batch is nak'ed for redelivery); the consumer is stopping. */
    stop: () => {
      stopping = true;
      for (const s of [...sleepers]) s();
    },
  };
}

/**
 * Runs a durable pull consumer. Messages are decoded one by one; valid ones are handed to `handle` in micro-batches:
 * whatever arrived while the previous batch was being handled (up to maxBatch), so latency stays low when idle and
 * throughput high under load. The batch is acked after `handle` resolves; when it throws, failureHandler settles it
 * (a store that is down: held and retried in place until it is back; otherwise bisected to find the culprit).
 */
export async function runConsumer<S extends z.ZodType>(
  bus: Bus,
  spec: ConsumerPolicy,
  schema: S,
  schemaName: string,
  handle: (batch: Decoded<z.infer<S>>[]) => Promise<void>,
  opts: {
    maxBatch?: number;
    onError?: (e: unknown) => void;
    /** each failed try of a batch held while its store is unavailable */
    onHold?: (attempt: number, e: unknown) => void;
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
  // Short pulls (5 s, heartbeats at 2.5 s): after a restart with naks in flight, nats-server 2.9 was seen to drop
  // this run's open pull while the client still counted on it; a new pull every few seconds bounds that stall.
  const messages = await consumer.consume({ max_messages: opts.pullWindow ?? Math.max(maxBatch, 100), expires: 5000 });
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
  const failures = failureHandler<Item>(bus, spec, {
    retry: (items) => handle(items),
    keepAlive: () => {
      for (const m of queue) m.working();
    },
    onError: opts.onError,
    onHold: opts.onHold,
  });

  let stopping = false;
  const work = (async () => {
    while (true) {
      // stopping: what is queued goes back to JetStream now (redelivered to the next run), not after ack_wait
      if (stopping) for (const m of queue.splice(0)) m.nak();
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
      for (const [i, m] of msgs.entries()) {
        // a large batch is decoded with the event loop let run every DECODE_STEP messages (replies, acks, heartbeats)
        if (i > 0 && i % DECODE_STEP === 0) await new Promise<void>((r) => setImmediate(r));
        try {
          good.push({ msg: m, value: decode(schema, schemaName, m.data) });
        } catch (e) {
          await failures.terminate(m, e instanceof ContractError ? `${e.code}: ${e.message}` : `decode failed: ${String(e)}`);
        }
      }
      if (!good.length) continue;
      let err: unknown;
      // a long batch (a 10k-host first scan's graph write) must not outlive ack_wait, nor the queue behind it:
      // redelivered, they would come back as work already done
      const keepAlive = setInterval(() => {
        for (const g of good) g.msg.working();
        for (const m of queue) m.working();
      }, workingEveryMs(spec.ackWaitMs));
      try {
        await handle(good);
      } catch (e) {
        err = e ?? new Error("handler threw a nullish value");
      } finally {
        clearInterval(keepAlive);
      }
      if (err === undefined) for (const g of good) g.msg.ack();
      else await failures.resolve(good, err);
    }
  })();

  const done = Promise.all([pump, work]).then(() => undefined);
  return {
    done,
    stop: async () => {
      // The pull is withdrawn (and the server told) before anything is handed back, so naks are not sent back to
      // this run's inbox. A nak'ed message can still reach the server's stale pull request and return after ack_wait.
      const closed = messages.close();
      await bus.nc.flush().catch(() => undefined);
      stopping = true;
      failures.stop();
      await closed;
      room.free?.();
      signal.wake?.();
      await done;
    },
  };
}
