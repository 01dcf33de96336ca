/**
 * Publishing normalized alerts to JetStream as alert.v1 batches, by group commit.
 *
 * Idle, a call's alerts go out at once (after the current event-loop turn, so the requests Bun.serve parsed in that
 * turn share the message). Under load (the last flush less than `lingerMs` ago) what arrives waits until `lingerMs`
 * after that flush and goes out together, pipelined; with `maxInFlight` flushes unacked it waits for the next ack and
 * goes out with everything that queued up meanwhile. So the batch size follows the load, an idle alert never waits
 * for a timer, and under load no alert waits longer than the linger or one JetStream round trip. Per source,
 * messages carry up to MAX_ALERTS_PER_MESSAGE alerts and stay under the message byte limit (split otherwise). Each
 * caller's promise resolves once JetStream has stored every message carrying its alerts, and rejects if any was not
 * stored (or with a ContractError, before anything is queued, if one of its alerts is invalid). One JetStream
 * round trip per request sits at the awaited-publish limit (~9.7k msg/s here) and queues at 10k requests/s.
 *
 * Dedup: Nats-Msg-Id = batchId = `<source>:` + hash of the event ids, so a message published again (the same batch)
 * is stored once. Since a retried request may be coalesced with different neighbours, the publisher also remembers
 * the event ids it stored (or is storing) for `dedupWindowMs` (JetStream's duplicate window, 2 min), at most
 * `dedupMaxIds` of them: a retry of events this process already stored resolves without publishing them again, a
 * retry of events still in flight waits for that publish. Across a restart of the publisher (or with several ingest
 * replicas) or past those bounds, a retry coalesced differently is stored again; the alerts service folds it as a
 * duplicate (same fingerprint, state and severity) and history collapses it by event id.
 */
import { MAX_MESSAGE_BYTES, validate } from "../../pipelines/codec.ts";
import { Alert, MAX_ALERTS_PER_MESSAGE, type AlertBatch } from "../../pipelines/contracts/alerts.ts";
import { stableId } from "../../pipelines/stages/alerts.ts";
import type { Bus } from "../shared/bus.ts";

export type PublishAlerts = (alerts: Alert[]) => Promise<void>;

interface Waiter {
  alerts: Alert[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * The bytes and id of one alert.v1 message. Its alerts were validated one by one when handed to the publisher (so a
 * bad alert fails its own caller, not the batch it would have shared); the wrapper is ours.
 */
export function alertBatchMessage(source: string, alerts: Alert[]): { batchId: string; bytes: Uint8Array } {
  const batchId = `${source}:${stableId(...alerts.map((a) => a.id))}`;
  const msg: AlertBatch = { schema: "alert.v1", source, batchId, alerts };
  return { batchId, bytes: new TextEncoder().encode(JSON.stringify(msg)) };
}

/** A message must stay under the NATS payload limit: 1000 alerts of up to ~64 labels could exceed it. */
function splitBySize(source: string, alerts: Alert[]): { batchId: string; bytes: Uint8Array }[] {
  const m = alertBatchMessage(source, alerts);
  if (m.bytes.byteLength <= MAX_MESSAGE_BYTES || alerts.length === 1) return [m];
  const half = Math.ceil(alerts.length / 2);
  return [...splitBySize(source, alerts.slice(0, half)), ...splitBySize(source, alerts.slice(half))];
}

export interface AlertPublisherOptions {
  /** flushes unacked at once; what arrives while that many are waits for the next ack (default 4) */
  maxInFlight?: number;
  /**
   * under load only (a flush in flight or within the last lingerMs): how long new alerts wait for company before
   * going out (default 2 ms). Idle, nothing waits for a timer.
   */
  lingerMs?: number;
  /** how long a stored event id is remembered, so a retry of it is not published again (default 120 s) */
  dedupWindowMs?: number;
  /** at most this many remembered event ids, the oldest forgotten first (default 200k) */
  dedupMaxIds?: number;
  now?: () => number;
}

export function alertPublisher(bus: Bus, opts: AlertPublisherOptions = {}): PublishAlerts {
  const maxInFlight = Math.max(1, opts.maxInFlight ?? 4);
  const linger = opts.lingerMs ?? 2;
  const dedupWindow = opts.dedupWindowMs ?? 120_000;
  const dedupMax = opts.dedupMaxIds ?? 200_000;
  const now = opts.now ?? Date.now;
  let queue: Waiter[] = [];
  let inFlight = 0;
  let scheduled = false;
  let lastFlush = -Infinity;
  /** event id → when it was handed to JetStream and the promise of its message's ack (insertion order = age) */
  const known = new Map<string, { at: number; stored: Promise<void> }>();

  const forgetOld = () => {
    const cutoff = now() - dedupWindow;
    for (const [id, k] of known) {
      if (k.at >= cutoff && known.size <= dedupMax) break;
      known.delete(id);
    }
  };

  /**
   * Decides when the queue goes out: at once when idle (nothing in flight, no flush within the linger), else when
   * `lingerMs` have passed since the last flush (so under load about one message per source and linger), and never
   * with more than `maxInFlight` unacked: then on the next ack, with everything that queued up meanwhile.
   */
  const kick = () => {
    if (!queue.length || scheduled || inFlight >= maxInFlight) return;
    scheduled = true;
    const wait = lastFlush + linger - now();
    const go = () => {
      scheduled = false;
      flush();
    };
    if (wait <= 0) setImmediate(go);
    else setTimeout(go, Math.min(wait, linger));
  };

  const flush = () => {
    if (!queue.length) return;
    const waiters = queue;
    queue = [];
    lastFlush = now();
    forgetOld();
    // per source, in arrival order, cut at the message limit; each waiter depends on the messages carrying its alerts
    // (or on the earlier message that already carries one of its events)
    const chunks: { source: string; alerts: Alert[] }[] = [];
    const open = new Map<string, number>();
    const deps = waiters.map(() => [] as Promise<void>[]);
    const chunkOf = new Map<string, number>();
    const placedIn = waiters.map(() => new Set<number>());
    waiters.forEach((w, wi) => {
      for (const a of w.alerts) {
        const earlier = known.get(a.id);
        if (earlier) {
          deps[wi]!.push(earlier.stored);
          continue;
        }
        // the same event twice in one flush (Icinga2's CheckResult and StateChange of one check) goes out once
        const already = chunkOf.get(a.id);
        if (already !== undefined) {
          placedIn[wi]!.add(already);
          continue;
        }
        let ci = open.get(a.source);
        if (ci === undefined || chunks[ci]!.alerts.length >= MAX_ALERTS_PER_MESSAGE) {
          ci = chunks.push({ source: a.source, alerts: [] }) - 1;
          open.set(a.source, ci);
        }
        chunks[ci]!.alerts.push(a);
        chunkOf.set(a.id, ci);
        placedIn[wi]!.add(ci);
      }
    });
    if (!chunks.length) {
      for (const [wi, w] of waiters.entries()) Promise.all(deps[wi]!).then(() => w.resolve(), w.reject);
      return;
    }
    inFlight++;
    const sent = chunks.map(async ({ source, alerts }) => {
      for (const { batchId, bytes } of splitBySize(source, alerts)) {
        await bus.js.publish(bus.topo.subjects.alerts(source), bytes, { msgID: batchId, timeout: 30_000 });
      }
    });
    const at = now();
    chunks.forEach(({ alerts }, ci) => {
      const stored = sent[ci]!;
      for (const a of alerts) known.set(a.id, { at, stored });
      // not stored: forget it, so a retry publishes it again
      stored.catch(() => {
        for (const a of alerts) if (known.get(a.id)?.stored === stored) known.delete(a.id);
      });
    });
    waiters.forEach((w, wi) => {
      Promise.all([...deps[wi]!, ...[...placedIn[wi]!].map((ci) => sent[ci]!)]).then(() => w.resolve(), w.reject);
    });
    void Promise.allSettled(sent).then(() => {
      inFlight--;
      kick();
    });
  };

  return (input) => {
    if (!input.length) return Promise.resolve();
    let alerts: Alert[];
    try {
      // throws ContractError with the reason: the caller maps it (the ingest answers 400)
      alerts = input.map((a) => validate(Alert, "alert.v1", a));
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<void>((resolve, reject) => {
      queue.push({ alerts, resolve, reject });
      kick();
    });
  };
}
