/**
 * The topology writer's lease: one key in a JetStream KV bucket (`<PREFIX>_LEASES`) says which instance may write the
 * graph and the topology stream. The holder renews it by compare-and-set on the key's revision; a standby polls the
 * key and takes it over (again by compare-and-set) once its revision has not moved for a whole TTL.
 *
 * Time is only ever measured on one process's own clock, never compared across machines: the holder trusts its lease
 * until `sent + ttl - margin`, where `sent` is when it sent its last successful renewal; a standby takes over no
 * earlier than `ttl` after it first *saw* that revision, which is after the renewal was written. So the holder has
 * fenced itself at least `margin` before any standby can write (the margin absorbs a stalled event loop and clock-rate
 * drift). A holder that cannot renew in time aborts `lost`, and its owner stops writing at once.
 */
import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import { JsApiCode, jsApiCode, type Bus } from "../shared/bus.ts";
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
  kv: KV;
  key: string;
  holder: string;
  timing: LeaseTiming;
  log: Logger;
  signal?: AbortSignal;
  now?: () => number;
  onWaiting?: (holder: string | undefined) => void;
}): Promise<HeldLease> {
  const { kv, key, holder, timing, log } = opts;
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
  return holdLease({ kv, key, holder, timing, log, now, value, revision, sent });
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
}): HeldLease {
  const { kv, key, holder, timing, log, now } = o;
  const lost = new AbortController();
  let revision = o.revision;
  let released = false;
  let renewing: Promise<void> | undefined;
  let fenceTimer: ReturnType<typeof setTimeout> | undefined;

  const lose = (why: string, fields: Record<string, unknown> = {}) => {
    if (lost.signal.aborted || released) return;
    clearInterval(renewer);
    clearTimeout(fenceTimer);
    log.error(`lease lost: ${why}; this instance stops writing`, { key, holder, revision, ...fields });
    lost.abort(new LeaseStopped(why));
  };
  let deadline = 0;
  /** trusted until `sent + ttl - margin`; the timer is set again after every renewal */
  const trustUntil = (sent: number) => {
    deadline = sent + timing.ttlMs - timing.marginMs;
    clearTimeout(fenceTimer);
    fenceTimer = setTimeout(() => lose("not renewed in time"), Math.max(0, sent + timing.ttlMs - timing.marginMs - now()));
  };
  trustUntil(o.sent);

  const renew = async () => {
    const sent = now();
    try {
      const next = await kv.update(key, o.value(), revision);
      revision = next;
      // a renewal that answers after the deadline does not revive a lease already given up
      if (!lost.signal.aborted && !released) trustUntil(sent);
    } catch (e) {
      if (!isConflict(e)) {
        log.warn("lease renewal failed; retrying", { key, error: String(e) });
        return;
      }
      // A conflict: someone wrote the key — or our own previous write landed and only its answer was lost.
      const cur = await kv.get(key).catch(() => null);
      if (cur && cur.operation === "PUT" && holderOf(cur) === holder) revision = cur.revision;
      else lose("another instance holds it", { now: cur ? holderOf(cur) : undefined });
    }
  };
  const renewer = setInterval(() => {
    if (renewing || released || lost.signal.aborted) return;
    renewing = renew().finally(() => (renewing = undefined));
  }, timing.renewMs);

  return {
    lost: lost.signal,
    revision: () => revision,
    check: () => {
      if (!lost.signal.aborted && !released && now() >= deadline) lose("not renewed in time");
      return !lost.signal.aborted && !released;
    },
    release: async () => {
      if (released) return;
      released = true;
      clearInterval(renewer);
      clearTimeout(fenceTimer);
      // a renewal in flight lands first, so the delete names the revision it wrote
      await renewing;
      if (lost.signal.aborted) return;
      // only if it is still ours: a delete against a newer revision fails and leaves the new holder alone
      await kv.delete(key, { previousSeq: revision }).catch((e) => log.warn("lease not released; a standby takes over once it lapses", { key, error: String(e) }));
    },
  };
}
