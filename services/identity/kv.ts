/**
 * The identity bucket as every process holds it: a NATS KV bucket (@nats-io/kv) copied into memory by a watcher
 * that replays the last value of each key (or of the keys under one prefix) and then follows changes. A check on the
 * request path is a map lookup, and a revocation made by another process arrives within milliseconds. Writes go
 * through the KV client and are applied to the local copy at once too, by revision, so a late watch entry never
 * undoes a newer write.
 */
import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import type { Bus } from "../shared/bus.ts";
import { JsApiCode, jsApiCode } from "../shared/bus.ts";
import { TransientError } from "../shared/errors.ts";

export interface Entry {
  value: Uint8Array;
  /** the KV revision (the stream sequence of the write) */
  revision: number;
}

const enc = new TextEncoder();

/** A write that found another revision than it expected (create on an existing key, update after someone else's). */
export class RevisionConflict extends Error {
  override readonly name = "RevisionConflict";
}

export class KvMirror {
  private readonly entries = new Map<string, Entry>();
  /** the revision of the last delete seen per key, so a late watch entry of an older value is not resurrected */
  private readonly gone = new Map<string, number>();
  private listeners: ((key: string) => void)[] = [];
  private watcher?: QueuedIterator<KvEntry>;
  private following?: Promise<void>;

  private constructor(private readonly kv: KV) {}

  /** Creates the bucket if needed, loads it (or the keys under `prefix`), and follows it until close(). */
  static async open(bus: Bus, name: string, opts: { prefix?: string } = {}): Promise<KvMirror> {
    // history 1: only the current value matters, and a deleted secret leaves no older value behind
    const kv = await new Kvm(bus.js).create(name, { history: 1 });
    const m = new KvMirror(kv);
    await m.follow(bus, name, opts.prefix ? `${opts.prefix}>` : ">");
    return m;
  }

  private apply(key: string, op: KvEntry["operation"], revision: number, value: Uint8Array) {
    const have = Math.max(this.entries.get(key)?.revision ?? 0, this.gone.get(key) ?? 0);
    if (have >= revision) return;
    if (op === "DEL" || op === "PURGE") {
      this.entries.delete(key);
      this.gone.set(key, revision);
    } else {
      this.entries.set(key, { value, revision });
      this.gone.delete(key);
    }
    for (const l of this.listeners) l(key);
  }

  /** Replays the last value of every key under `filter`, then keeps following; resolves once the replay is complete. */
  private async follow(bus: Bus, bucket: string, filter: string): Promise<void> {
    // The watcher marks the last replayed entry (delta 0: nothing pending behind it); when no key matches, there is
    // nothing to replay and no such entry will come, which the stream's subjects under the filter tell beforehand.
    const info = await bus.jsm.streams.info(`KV_${bucket}`, { subjects_filter: `$KV.${bucket}.${filter}` });
    const keys = Object.keys(info.state.subjects ?? {}).length;
    const loaded = Promise.withResolvers<void>();
    if (keys === 0) loaded.resolve();
    this.watcher = await this.kv.watch({ key: filter });
    this.following = (async () => {
      try {
        for await (const e of this.watcher!) {
          this.apply(e.key, e.operation, e.revision, e.value);
          if (e.delta === 0) loaded.resolve();
        }
        loaded.resolve();
      } catch (err) {
        loaded.reject(err);
      }
    })();
    await loaded.promise;
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

  async put(key: string, value: unknown): Promise<number> {
    const data = enc.encode(JSON.stringify(value));
    const revision = await unavailable(() => this.kv.put(key, data));
    this.apply(key, "PUT", revision, data);
    return revision;
  }

  /** Stores `value` only if `key` has none (or was deleted); RevisionConflict when it has one. */
  async create(key: string, value: unknown): Promise<number> {
    const data = enc.encode(JSON.stringify(value));
    const revision = await unavailable(() => this.kv.create(key, data));
    this.apply(key, "PUT", revision, data);
    return revision;
  }

  /** Stores `value` only if `key` is still at `revision`; RevisionConflict when another write came first. */
  async update(key: string, value: unknown, revision: number): Promise<number> {
    const data = enc.encode(JSON.stringify(value));
    const next = await unavailable(() => this.kv.update(key, data, revision));
    this.apply(key, "PUT", next, data);
    return next;
  }

  /** Removes `key` and its value; followers hear of it by the purge marker. */
  async delete(key: string): Promise<void> {
    await unavailable(() => this.kv.purge(key));
    // the marker's revision is not returned by purge; any revision above the value's removes it locally
    const cur = this.entries.get(key);
    if (cur) this.apply(key, "PURGE", cur.revision + 1, new Uint8Array());
  }

  /** Removes the markers of keys deleted more than `olderMs` ago (recent ones stay, for followers still catching up). */
  async compact(olderMs: number): Promise<number> {
    const bucket = this.kv as KV & { purgeDeletes(olderMillis?: number): Promise<{ purged: number }> };
    return (await unavailable(() => bucket.purgeDeletes(olderMs))).purged;
  }

  async close(): Promise<void> {
    this.watcher?.stop();
    await this.following?.catch(() => undefined);
  }
}

/** Revision mismatches become RevisionConflict; a JetStream that does not answer becomes a TransientError. */
async function unavailable<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    const code = jsApiCode(e);
    if (code === JsApiCode.StreamWrongLastSequence || code === JsApiCode.StreamWrongLastSequenceUnknown) throw new RevisionConflict("the key changed since it was read", { cause: e });
    if (code !== undefined) throw e;
    throw new TransientError(`identity store unavailable: ${(e as Error).message}`, undefined, { cause: e });
  }
}
