/**
 * A JetStream key-value bucket, laid out as NATS KV lays one out (stream KV_<bucket>, subjects $KV.<bucket>.<key>,
 * one value per key, rollup and direct get allowed) so the `nats kv` tool and the @nats-io/kv client can read it; the
 * few operations identity needs are written here on @nats-io/jetstream, which Orrery already depends on.
 *
 * Every process keeps the whole bucket (or the keys under one prefix) in memory, fed by an ordered consumer that
 * replays the last value of each key and then follows changes: a check on the request path is a map lookup, and a
 * revocation made by another process arrives within milliseconds. Writes are applied to the local copy at once too.
 */
import { headers, type MsgHdrs } from "@nats-io/transport-node";
import { DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, type JsMsg } from "@nats-io/jetstream";
import type { Bus } from "../shared/bus.ts";
import { JsApiCode, jsApiCode } from "../shared/bus.ts";
import { TransientError } from "../shared/errors.ts";

export interface Entry {
  value: Uint8Array;
  seq: number;
}

const KEY = /^[-/_=.a-zA-Z0-9]+$/;
const enc = new TextEncoder();

export class KvBucket {
  readonly stream: string;
  private readonly entries = new Map<string, Entry>();
  private listeners: ((key: string) => void)[] = [];
  private stopped = false;
  private consuming?: Promise<void>;
  private stopConsumer?: () => void;

  private constructor(
    private readonly bus: Bus,
    readonly name: string,
    private readonly filter: string,
  ) {
    this.stream = `KV_${name}`;
  }

  /** Creates the bucket if needed, loads it (or the keys under `prefix`), and follows it until close(). */
  static async open(bus: Bus, name: string, opts: { prefix?: string } = {}): Promise<KvBucket> {
    const b = new KvBucket(bus, name, `$KV.${name}.${opts.prefix ? `${opts.prefix}>` : ">"}`);
    await b.ensure();
    await b.follow();
    return b;
  }

  private subject(key: string): string {
    if (!KEY.test(key) || key.startsWith(".") || key.endsWith(".")) throw new Error(`bad KV key: ${JSON.stringify(key)}`);
    return `$KV.${this.name}.${key}`;
  }

  private async ensure(): Promise<void> {
    const cfg = {
      name: this.stream,
      subjects: [`$KV.${this.name}.>`],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.New,
      max_msgs_per_subject: 1,
      allow_rollup_hdrs: true,
      deny_delete: true,
      deny_purge: false,
      allow_direct: true,
      num_replicas: 1,
    };
    try {
      await this.bus.jsm.streams.info(this.stream);
    } catch (e) {
      if (jsApiCode(e) !== JsApiCode.StreamNotFound) throw e;
      try {
        await this.bus.jsm.streams.add(cfg);
      } catch (err) {
        if (jsApiCode(err) !== JsApiCode.StreamNameInUse) throw err;
      }
    }
  }

  private apply(key: string, m: { seq: number; data: Uint8Array; headers?: MsgHdrs }) {
    const cur = this.entries.get(key);
    if (cur && cur.seq >= m.seq) return;
    const op = m.headers?.get("KV-Operation");
    if (op === "DEL" || op === "PURGE") this.entries.delete(key);
    else this.entries.set(key, { value: m.data, seq: m.seq });
    for (const l of this.listeners) l(key);
  }

  /** Replays the last value of every key, then keeps following; resolves once the replay is complete. */
  private async follow(): Promise<void> {
    const info = await this.bus.jsm.streams.info(this.stream);
    const lastSeq = info.state.last_seq;
    const c = await this.bus.js.consumers.get(this.stream, { filter_subjects: this.filter, deliver_policy: DeliverPolicy.LastPerSubject });
    const msgs = await c.consume();
    this.stopConsumer = () => void msgs.stop();
    const loaded = Promise.withResolvers<void>();
    // the replay is complete once we have read up to the stream's last sequence at open (or nothing is pending)
    let replayed = lastSeq === 0;
    if (replayed) loaded.resolve();
    this.consuming = (async () => {
      try {
        for await (const m of msgs as AsyncIterable<JsMsg>) {
          this.apply(m.subject.slice(`$KV.${this.name}.`.length), { seq: m.seq, data: m.data, headers: m.headers });
          if (!replayed && (m.seq >= lastSeq || m.info.pending === 0)) {
            replayed = true;
            loaded.resolve();
          }
        }
      } catch (e) {
        if (!this.stopped) loaded.reject(e);
      }
    })();
    // a stream whose last message lies outside our filter: nothing pending tells us we are done
    const poll = setInterval(async () => {
      if (replayed) return clearInterval(poll);
      try {
        const ci = await c.info(true);
        if (ci.num_pending === 0 && ci.delivered.stream_seq >= 0 && !replayed) {
          replayed = true;
          loaded.resolve();
        }
      } catch {
        // asked again at the next tick
      }
    }, 200);
    try {
      await loaded.promise;
    } finally {
      clearInterval(poll);
    }
  }

  onChange(f: (key: string) => void): void {
    this.listeners.push(f);
  }

  get(key: string): Entry | undefined {
    return this.entries.get(key);
  }

  /** keys starting with `prefix`, with their entries */
  *list(prefix: string): Iterable<[string, Entry]> {
    for (const e of this.entries) if (e[0].startsWith(prefix)) yield e;
  }

  /** Drops keys from the local copy only (what another process purged: a purge sends no message to followers). */
  forget(drop: (key: string, e: Entry) => boolean): void {
    for (const [k, e] of [...this.entries]) if (drop(k, e)) this.entries.delete(k);
  }

  async put(key: string, value: unknown): Promise<number> {
    return await this.write(key, enc.encode(JSON.stringify(value)));
  }

  /** Stores `value` only if `key` has none yet; false when it had one. */
  async create(key: string, value: unknown): Promise<boolean> {
    try {
      await this.write(key, enc.encode(JSON.stringify(value)), { lastSubjectSequence: 0 });
      return true;
    } catch (e) {
      if (jsApiCode(e) === 10071 /* wrong last sequence */) return false;
      throw e;
    }
  }

  async delete(key: string): Promise<void> {
    const h = headers();
    h.set("KV-Operation", "PURGE");
    h.set("Nats-Rollup", "sub");
    await this.write(key, new Uint8Array(), undefined, h);
  }

  /** Removes every key under `prefix` (keys ending in a token boundary: "dir.abc." removes dir.abc.0, dir.abc.1 …). */
  async purgePrefix(prefix: string): Promise<void> {
    await this.bus.jsm.streams.purge(this.stream, { filter: `$KV.${this.name}.${prefix}>` });
    for (const k of [...this.entries.keys()]) if (k.startsWith(prefix)) this.entries.delete(k);
  }

  private async write(key: string, data: Uint8Array, expect?: { lastSubjectSequence: number }, h?: MsgHdrs): Promise<number> {
    let ack;
    try {
      ack = await this.bus.js.publish(this.subject(key), data, { expect, headers: h, timeout: 10_000 });
    } catch (e) {
      if (jsApiCode(e) !== undefined) throw e;
      throw new TransientError(`identity store unavailable: ${(e as Error).message}`, undefined, { cause: e });
    }
    this.apply(key, { seq: ack.seq, data, headers: h });
    return ack.seq;
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.stopConsumer?.();
    await this.consuming?.catch(() => undefined);
  }
}
