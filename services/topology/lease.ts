/**
 * The topology writer's lease: one key in a JetStream KV bucket (`<PREFIX>_LEASES`) says which instance may write the
 * graph and the topology stream. The holder renews it by compare-and-set on the key's revision; a standby polls the
 * key and takes it over (again by compare-and-set) once its revision has not moved for a whole TTL.
 *
 * Time is only ever measured on one process's own clock, never compared across machines: the holder trusts its lease
 * until `sent + ttl - margin`, where `sent` is when it sent its last successful renewal; a standby takes over no
 * earlier than `ttl` after it first *saw* that revision, which is after the renewal was written. So the holder has
 * fenced itself at least `margin` before any standby can write (the margin absorbs a stalled event loop and clock-rate
 * drift). A holder that cannot renew in time aborts `lost`, and its owner stops writing at once. The holder renews on
 * a thread of its own (lease-renewer.ts), so a long synchronous step of the service is not taken for a lost lease.
 */
import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import { JsApiCode, jsApiCode, type Bus, type BusOptions } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";

export interface LeaseTiming {
  /** a lease not renewed for this long may be taken over */
  ttlMs: number;
  /** how often the holder renews (well inside the TTL) */
  renewMs: number;
  /** how often a standby reads the key */
  pollMs: number;
  /** the holder fences itself this long before its lease could lapse */
  marginMs: number;
}

/** Renewal at a fifth of the TTL (four renewals may fail before the holder fences), fence a quarter early. */
export function leaseTiming(ttlMs: number): LeaseTiming {
  return { ttlMs, renewMs: Math.max(50, Math.floor(ttlMs / 5)), pollMs: Math.max(50, Math.min(500, Math.floor(ttlMs / 10))), marginMs: Math.floor(ttlMs / 4) };
}

/** The renewer thread's first message (lease-renewer.ts). */
export interface RenewerInit {
  connect: BusOptions;
  bucket: string;
  key: string;
  /** the key's value, written at every renewal */
  value: Uint8Array;
  /** the revision of our last write of the key */
  revision: number;
  timing: LeaseTiming;
  /** the shared cells below */
  cells: SharedArrayBuffer;
}

/** Messages to the service thread. */
export type RenewerEvent =
  | { type: "log"; level: "info" | "warn" | "error"; msg: string; fields?: Record<string, unknown> }
  | { type: "lapsed" | "lost"; why: string; holder?: string }
  | { type: "released" };

/** Slots of the shared cells: state (Int32), renewed once (Int32), revision (BigInt64 at byte 8). */
export const CELLS_BYTES = 16;
export const LEASE_OK = 0;
export const LEASE_LAPSED = 1;
export const LEASE_LOST = 2;

/** What the key holds: who holds it, for logs and /readyz of the others. */
interface LeaseValue {
  holder: string;
  since: number;
}

/** The lease bucket of a bus prefix (pipelines/streams.ts), replicated as the streams are. */
export const leaseBucket = (bus: Bus) => bus.topo.buckets.leases;

/** The KV bucket of leases, created if needed (history 1: only the current holder matters). */
export async function openLeaseBucket(bus: Bus): Promise<KV> {
  return new Kvm(bus.js).create(leaseBucket(bus), { history: 1, replicas: bus.topo.streams.topology.replicas });
}

/** A lease this process holds until `lost` aborts or it is released. */
export interface HeldLease {
  /** aborted the moment the lease can no longer be trusted (a renewal failed for too long, or another holder took it) */
  readonly lost: AbortSignal;
  /** the KV revision of the lease's last write by us */
  revision(): number;
  /**
   * True while the lease may be trusted, checked on the clock now: a write about to begin asks this, because a stalled
   * event loop (a long synchronous step) can hold the timer that would have aborted `lost` past its deadline.
   */
  check(): boolean;
  /** stops renewing and deletes the key (if still ours), so a standby takes over without waiting for the TTL */
  release(): Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

const isConflict = (e: unknown) => {
  const c = jsApiCode(e);
  return c === JsApiCode.StreamWrongLastSequence || c === JsApiCode.StreamWrongLastSequenceUnknown;
};

function holderOf(e: KvEntry): string | undefined {
  try {
    return (JSON.parse(dec.decode(e.value)) as LeaseValue).holder;
  } catch {
    return undefined;
  }
}

export class LeaseStopped extends Error {
  override readonly name = "LeaseStopped";
}

/**
 * Waits until this process holds the lease `key` (or `signal` aborts: LeaseStopped), then renews it until it is
 * released or lost. `onWaiting` is told who holds it while we wait.
 */
export async function acquireLease(opts: {
  /** the holder renews on a thread of its own, with a connection of its own made as this bus's */
  bus: Bus;
  key: string;
  holder: string;
  timing: LeaseTiming;
  log: Logger;
  signal?: AbortSignal;
  now?: () => number;
  onWaiting?: (holder: string | undefined) => void;
}): Promise<HeldLease> {
  const { bus, key, holder, timing, log } = opts;
  let kv: KV | undefined;
  const now = opts.now ?? (() => performance.now());
  const value = () => enc.encode(JSON.stringify({ holder, since: Date.now() } satisfies LeaseValue));
  /** the revision we last saw and when we first saw it, on our clock */
  let seen: { revision: number; at: number } | undefined;
  let revision = 0;
  let sent = 0;
  for (;;) {
    if (opts.signal?.aborted) throw new LeaseStopped("stopped while waiting for the lease");
    const t = now();
    try {
      // opened in the loop: a standby started (or left) while NATS is away waits for it like any other read
      kv ??= await openLeaseBucket(bus);
      const e = await kv.get(key);
      if (!e || e.operation !== "PUT") {
        sent = now();
        revision = await kv.create(key, value());
        log.info("lease taken (none held)", { key, holder, revision });
        break;
      }
      if (holderOf(e) === holder) {
        // our own key (a write whose answer we lost): it is ours only as of this read
        sent = t;
        revision = await kv.update(key, value(), e.revision);
        break;
      }
      if (!seen || seen.revision !== e.revision) {
        seen = { revision: e.revision, at: now() };
        opts.onWaiting?.(holderOf(e));
      } else if (now() - seen.at >= timing.ttlMs) {
        sent = now();
        revision = await kv.update(key, value(), e.revision);
        log.warn("lease taken over: its holder stopped renewing it", { key, holder, from: holderOf(e), lapsedMs: Math.round(now() - seen.at), revision });
        break;
      }
    } catch (e) {
      // another standby was quicker, or the holder renewed between our read and our write: read again
      if (!isConflict(e)) log.warn("lease read or write failed; retrying", { key, error: String(e) });
    }
    await Bun.sleep(Math.max(0, timing.pollMs - (now() - t)));
  }
  return holdLease({ kv, key, holder, timing, log, now, value, revision, sent, renewWith: bus.options, bucket: leaseBucket(bus) });
}

function holdLease(o: {
  kv: KV;
  key: string;
  holder: string;
  timing: LeaseTiming;
  log: Logger;
  now: () => number;
  value: () => Uint8Array;
  revision: number;
  sent: number;
  renewWith: BusOptions;
  bucket: string;
}): HeldLease {
  const { key, holder, timing, log, now } = o;
  const lost = new AbortController();
  const cells = new SharedArrayBuffer(CELLS_BYTES);
  const state = new Int32Array(cells, 0, 2);
  const rev = new BigInt64Array(cells, 8, 1);
  Atomics.store(rev, 0, BigInt(o.revision));
  let released = false;
  /** until the renewer's first renewal, trust runs on this thread's clock from the acquiring write */
  const firstDeadline = o.sent + timing.ttlMs - timing.marginMs;

  const renewer = new Worker(new URL("./lease-renewer.ts", import.meta.url).href);
  // the lease never keeps a process alive on its own
  (renewer as unknown as { unref(): void }).unref();
  const releasedByRenewer = Promise.withResolvers<void>();
  const lose = (why: string, fields: Record<string, unknown> = {}) => {
    if (lost.signal.aborted || released) return;
    clearInterval(watch);
    log.error(`lease lost: ${why}; this instance stops writing`, { key, holder, revision: Number(Atomics.load(rev, 0)), ...fields });
    lost.abort(new LeaseStopped(why));
    renewer.terminate();
    releasedByRenewer.resolve();
  };
  renewer.onmessage = (ev: MessageEvent<RenewerEvent>) => {
    const e = ev.data;
    if (e.type === "log") log[e.level](e.msg, e.fields ?? {});
    else if (e.type === "released") releasedByRenewer.resolve();
    else lose(e.why, e.holder ? { now: e.holder } : {});
  };
  renewer.onerror = (e) => lose("its renewer thread failed", { error: String(e.message ?? e) });
  renewer.postMessage({ connect: o.renewWith, bucket: o.bucket, key, value: o.value(), revision: o.revision, timing, cells } satisfies RenewerInit);

  const trusted = () => Atomics.load(state, 0) === LEASE_OK && (Atomics.load(state, 1) === 1 || now() < firstDeadline);
  // the renewer's own timer flags a lapse; this notices it (or a renewer that never renewed) when this thread is free
  const watch = setInterval(() => {
    if (!trusted()) lose(Atomics.load(state, 0) === LEASE_LOST ? "another instance holds it" : "not renewed in time");
  }, Math.max(50, Math.min(250, timing.renewMs)));

  return {
    lost: lost.signal,
    revision: () => Number(Atomics.load(rev, 0)),
    check: () => {
      if (!lost.signal.aborted && !released && !trusted()) lose(Atomics.load(state, 0) === LEASE_LOST ? "another instance holds it" : "not renewed in time");
      return !lost.signal.aborted && !released;
    },
    release: async () => {
      if (released) return;
      released = true;
      clearInterval(watch);
      if (lost.signal.aborted) return;
      renewer.postMessage({ type: "release" });
      // the renewer deletes the key (if still ours) and closes its connection; a stuck one is ended regardless
      await Promise.race([releasedByRenewer.promise, Bun.sleep(3000)]);
      renewer.terminate();
    },
  };
}
