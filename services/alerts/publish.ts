/**
 * Publishing normalized alerts to JetStream as alert.v1 batches (one message per source and flush).
 *
 * Alerts handed in within a short linger (a webhook's group, and the concurrent requests Bun.serve handles meanwhile)
 * are coalesced per source into messages of up to MAX_ALERTS_PER_MESSAGE; each caller's promise
 * resolves once JetStream has stored every message carrying its alerts, and rejects if any was not stored (or with a
 * ContractError, before anything is queued, if one of its alerts is invalid). One
 * JetStream round trip per request capped the ingest near 4–5k requests/s here.
 * Nats-Msg-Id = batchId = hash of the event ids: a batch published again (a retry of the same group) is stored once;
 * a retry coalesced differently is stored again and folded idempotently downstream (dedup by fingerprint and state,
 * history by event id).
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

/**
 * `lingerMs`: how long the first alert of a batch waits for company. 0 flushes after the current event-loop turn;
 * the default 2 ms coalesces requests arriving over a few turns, which cut the ingest's NATS socket writes (the
 * largest cost in its profile at 5k requests/s) several-fold for a 2 ms latency cost.
 */
export function alertPublisher(bus: Bus, opts: { lingerMs?: number } = {}): PublishAlerts {
  const linger = opts.lingerMs ?? 2;
  let queue: Waiter[] = [];
  let scheduled = false;

  const flush = async () => {
    scheduled = false;
    const waiters = queue;
    queue = [];
    // per source, in arrival order, cut at the message limit; each waiter depends on the messages carrying its alerts
    const chunks: { source: string; alerts: Alert[] }[] = [];
    const open = new Map<string, number>();
    const deps = waiters.map(() => new Set<number>());
    // the same event twice in one flush (Icinga2's CheckResult and StateChange of one check) goes out once
    const placed = new Map<string, number>();
    waiters.forEach((w, wi) => {
      for (const a of w.alerts) {
        const already = placed.get(a.id);
        if (already !== undefined) {
          deps[wi]!.add(already);
          continue;
        }
        let ci = open.get(a.source);
        if (ci === undefined || chunks[ci]!.alerts.length >= MAX_ALERTS_PER_MESSAGE) {
          ci = chunks.push({ source: a.source, alerts: [] }) - 1;
          open.set(a.source, ci);
        }
        chunks[ci]!.alerts.push(a);
        placed.set(a.id, ci);
        deps[wi]!.add(ci);
      }
    });
    const sent = chunks.map(async ({ source, alerts }) => {
      for (const { batchId, bytes } of splitBySize(source, alerts)) {
        await bus.js.publish(bus.topo.subjects.alerts(source), bytes, { msgID: batchId, timeout: 30_000 });
      }
    });
    waiters.forEach((w, wi) => {
      Promise.all([...deps[wi]!].map((ci) => sent[ci]!)).then(() => w.resolve(), w.reject);
    });
    await Promise.allSettled(sent);
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
      if (!scheduled) {
        scheduled = true;
        if (linger > 0) setTimeout(() => void flush(), linger);
        else setImmediate(() => void flush());
      }
    });
  };
}
