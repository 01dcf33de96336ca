/**
 * Publishing normalized alerts to JetStream as alert.v1 batches, by group commit.
 *
 * Idle, a call's alerts go out at once (after the current event-loop turn, so the requests Bun.serve parsed in that
 * turn share the message). Under load (the last flush less than `lingerMs` ago) what arrives waits until `lingerMs`
 * after that flush and goes out together, pipelined; with `maxInFlight` flushes unacked it waits for the next ack and
 * goes out with everything that queued up meanwhile. So the batch size follows the load, an idle alert never waits
 * for a timer, and under load no alert waits longer than the linger or one JetStream round trip. Per source,
 * messages carry up to MAX_ALERTS_PER_MESSAGE alerts and stay under the message byte limit (split otherwise). Each
 * caller's promise resolves once JetStream has stored every message carrying its valid alerts, and rejects if any
 * was not stored. An invalid alert is refused on its own (in the result, with the reason) and never fails the rest:
 * the ingest stores the valid alerts of a webhook group and tells the sender which it refused. One JetStream
 * round trip per request sits at the awaited-publish limit (~9.7k msg/s here) and queues at 10k requests/s.
 *
 * Dedup (unchanged by group commit): Nats-Msg-Id = batchId = `<source>:` + hash of the event ids, so the same events
 * published again in the same grouping (an idle retry, a sender re-sending one request alone, the same webhook group)
 * are stored once by JetStream's 2-minute duplicate window. A retry coalesced with different neighbours gets another
 * id and is stored again; its events keep their ids, so the alerts service folds them as duplicates (same
 * fingerprint, state and severity) and history collapses them by event id. (Remembering stored event ids here would
 * close that gap for one process, but a map of ~10k ids/s cost the ingest more CPU than the load left it.)
 */
import { z } from "zod";
import { ContractError, validate } from "../../pipelines/codec.ts";
import { Alert, MAX_ALERTS_PER_MESSAGE, type AlertBatch } from "../../pipelines/contracts/alerts.ts";
import { splitToFit } from "../../pipelines/contracts/split.ts";
import { stableId } from "../../pipelines/stages/alerts/normalize.ts";
import type { Bus } from "../shared/bus.ts";

/** What became of a call's alerts: those stored (as validated), and those refused, by their index in the call. */
export interface PublishResult {
  stored: Alert[];
  refused: { index: number; alert: Alert; reason: string }[];
}
export type PublishAlerts = (alerts: Alert[]) => Promise<PublishResult>;

/** alert.v1's Alert compiled by zod: each alert is checked here, on the ingest's hot path; errors read as zod's. */
const AlertCompiled = z.compile(Alert);

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

/**
 * A message must stay under the limit: 1000 alerts of up to ~64 labels could exceed it. Chunks are already cut by
 * count, so no size estimate (zero): each is encoded once and halved only when over; one alert over the limit alone
 * fails its callers with an OversizedItemError naming it.
 */
function splitBySize(source: string, alerts: Alert[]): { batchId: string; bytes: Uint8Array }[] {
  return splitToFit(alerts, { schema: "alert.v1", maxCount: MAX_ALERTS_PER_MESSAGE, sizeOf: () => 0, overheadBytes: 0, encode: (part) => alertBatchMessage(source, part), describe: (a) => `alert ${a.id} from ${a.source}` });
}

export interface AlertPublisherOptions {
  /** flushes unacked at once; what arrives while that many are waits for the next ack (default 4) */
  maxInFlight?: number;
  /**
   * under load only (a flush in flight or within the last lingerMs): how long new alerts wait for company before
   * going out (default 2 ms). Idle, nothing waits for a timer.
   */
  lingerMs?: number;
  now?: () => number;
}

export function alertPublisher(bus: Bus, opts: AlertPublisherOptions = {}): PublishAlerts {
  const maxInFlight = Math.max(1, opts.maxInFlight ?? 4);
  const linger = opts.lingerMs ?? 2;
  const now = opts.now ?? Date.now;
  let queue: Waiter[] = [];
  let inFlight = 0;
  let scheduled = false;
  let lastFlush = -Infinity;
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
    inFlight++;
    const sent = chunks.map(async ({ source, alerts }) => {
      for (const { batchId, bytes } of splitBySize(source, alerts)) {
        await bus.js.publish(bus.topo.subjects.alerts(source), bytes, { msgID: batchId, timeout: 30_000 });
      }
    });
    waiters.forEach((w, wi) => {
      const d = deps[wi]!;
      (d.size === 1 ? sent[d.values().next().value!]! : Promise.all([...d].map((ci) => sent[ci]!))).then(() => w.resolve(), w.reject);
    });
    void Promise.allSettled(sent).then(() => {
      inFlight--;
      kick();
    });
  };

  return (input) => {
    const stored: Alert[] = [];
    const refused: PublishResult["refused"] = [];
    input.forEach((a, index) => {
      try {
        stored.push(validate(AlertCompiled, "alert.v1", a));
      } catch (e) {
        if (!(e instanceof ContractError)) throw e;
        refused.push({ index, alert: a, reason: e.message });
      }
    });
    if (!stored.length) return Promise.resolve({ stored, refused });
    return new Promise<PublishResult>((resolve, reject) => {
      queue.push({ alerts: stored, resolve: () => resolve({ stored, refused }), reject });
      kick();
    });
  };
}
