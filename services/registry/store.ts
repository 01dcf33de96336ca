/**
 * The registry's record of truth: the REGISTRY stream (pipelines/streams.ts), one registry.v1 event per change, kept
 * forever. Why a stream and not a database: JetStream is already on every install (embedded and real), its file
 * storage is durable, subscribers get every change for free, and the audit trail is the log itself rather than a
 * second table that could disagree with it. The current state is the fold of the log (model.ts), rebuilt at start by
 * replaying the stream (a 10k-component registry replays in well under a second) and kept up to date by an ordered
 * consumer, so several registry processes agree.
 *
 * Writes are optimistic: each append says which stream sequence it expects to follow (Nats-Expected-Last-Sequence).
 * When another writer got there first, JetStream refuses the publish, the writer waits until its fold has caught up
 * and decides again (services/registry/registry.ts re-checks the caller's revision, which is what yields a 409).
 */
import { DeliverPolicy, type JsMsg } from "@nats-io/jetstream";
import { decode, encode } from "../../pipelines/codec.ts";
import { RegistryEvent } from "../../pipelines/contracts/registry.ts";
import type { Bus } from "../shared/bus.ts";
import { jsApiCode } from "../shared/bus.ts";
import { TransientError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { applyEvent, emptyState, type RegistryState } from "./model.ts";

/** JetStream's "wrong last sequence" (Nats-Expected-Last-Sequence did not hold). */
const WRONG_LAST_SEQUENCE = 10071;
/** an event may be larger than the 900 KiB of a pipeline batch: the registry stream is written by this service only */
const MAX_EVENT_BYTES = 900 * 1024;

function sized(e: RegistryEvent): Uint8Array {
  const data = new TextEncoder().encode(JSON.stringify(e));
  if (data.byteLength > MAX_EVENT_BYTES) throw new Error(`registry.v1: an event of ${data.byteLength} bytes is over the limit of ${MAX_EVENT_BYTES}`);
  return data;
}

export class ConcurrentWrite extends Error {
  override readonly name = "ConcurrentWrite";
}

export interface RegistryLog {
  readonly state: RegistryState;
  /**
   * Appends events in order right after sequence `after`; throws ConcurrentWrite when another write came first (the
   * events before the one refused are in the log: callers make a multi-event write all-or-nothing with a commit).
   * Resolves once the fold has applied them.
   */
  append(events: RegistryEvent[], after: number): Promise<number>;
  /** resolves once the fold has applied everything in the stream now */
  catchUp(): Promise<void>;
  onApplied(f: (seq: number, e: RegistryEvent) => void): void;
  close(): Promise<void>;
}

export class JetStreamRegistryLog implements RegistryLog {
  readonly state = emptyState();
  private waiters: { seq: number; resolve: () => void }[] = [];
  private listeners: ((seq: number, e: RegistryEvent) => void)[] = [];
  private stopConsumer?: () => void;
  private consuming?: Promise<void>;
  private stopped = false;

  private constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
  ) {}

  /** Replays the stream into the fold and follows it until close(). */
  static async open(bus: Bus, log: Logger): Promise<JetStreamRegistryLog> {
    const r = new JetStreamRegistryLog(bus, log);
    await r.follow();
    return r;
  }

  private get stream(): string {
    return this.bus.topo.streams.registry.name;
  }

  private applied(seq: number, data: Uint8Array) {
    let e: RegistryEvent;
    try {
      e = decode(RegistryEvent, "registry.v1", data, 8 * 1024 * 1024);
    } catch (err) {
      // only this service writes the stream, through encode(): an event it cannot read is a bug or tampering, and
      // skipping it is the only way the rest of the registry stays readable
      this.log.error("registry: unreadable event skipped", { seq, error: String(err) });
      this.state.seq = Math.max(this.state.seq, seq);
      return this.wake();
    }
    applyEvent(this.state, seq, e);
    for (const l of this.listeners) l(seq, e);
    this.wake();
  }

  private wake() {
    const ready = this.waiters.filter((w) => w.seq <= this.state.seq);
    this.waiters = this.waiters.filter((w) => w.seq > this.state.seq);
    for (const w of ready) w.resolve();
  }

  private waitFor(seq: number): Promise<void> {
    if (seq <= this.state.seq) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ seq, resolve }));
  }

  private async follow(): Promise<void> {
    const c = await this.bus.js.consumers.get(this.stream, { deliver_policy: DeliverPolicy.All });
    const msgs = await c.consume();
    this.stopConsumer = () => void msgs.stop();
    this.consuming = (async () => {
      try {
        for await (const m of msgs as AsyncIterable<JsMsg>) this.applied(m.seq, m.data);
      } catch (e) {
        if (!this.stopped) this.log.error("registry: following the stream failed", { error: String(e) });
      }
    })();
    await this.catchUp();
  }

  async catchUp(): Promise<void> {
    const info = await this.bus.jsm.streams.info(this.stream);
    await this.waitFor(info.state.last_seq);
  }

  onApplied(f: (seq: number, e: RegistryEvent) => void): void {
    this.listeners.push(f);
  }

  async append(events: RegistryEvent[], after: number): Promise<number> {
    let last = after;
    for (const e of events) {
      // an import's parts carry components the registry has just validated row by row: checking 400 of them again
      // per part would double an import's cost (the follower still validates every event it reads)
      const data = e.type === "import.part" ? sized(e) : encode(RegistryEvent, "registry.v1", e, MAX_EVENT_BYTES);
      try {
        const ack = await this.bus.js.publish(this.bus.topo.subjects.registry(e.type), data, { expect: { lastSequence: last }, timeout: 10_000 });
        last = ack.seq;
      } catch (err) {
        if (jsApiCode(err) === WRONG_LAST_SEQUENCE) throw new ConcurrentWrite("the registry changed meanwhile", { cause: err });
        if (jsApiCode(err) !== undefined) throw err;
        throw new TransientError(`registry store unavailable: ${(err as Error).message}`, undefined, { cause: err });
      }
    }
    await this.waitFor(last);
    return last;
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.stopConsumer?.();
    await this.consuming?.catch(() => undefined);
    for (const w of this.waiters) w.resolve();
  }
}
