/**
 * Alerts service: ALERTS stream (durable consumer "alerts") → dedup + flap damping (AlertBook) → mapping onto the
 * topology → health deltas on <prefix>.health.v1; current alerts and health answered over request/reply
 * (<prefix>.rpc.alerts). History goes to ClickHouse through a second durable consumer ("alerts-history") in large,
 * lingering batches, acked once inserted (a failed insert naks and redelivers; inserts are deduplicated): ClickHouse
 * is never on the health path, and a ClickHouse outage delays history only.
 *
 * The state lives in memory and is derived from the stream alone: "alerts" acks a batch once it is folded, and after a
 * restart the book is rebuilt by replaying the stream up to that consumer's ack floor, silently.
 */
import { DeliverPolicy } from "@nats-io/jetstream";
import { decode, encode, validate } from "../../pipelines/codec.ts";
import { AlertBatch, AlertsQuery, type Alert, type AlertView, type AlertsList } from "../../pipelines/contracts/alerts.ts";
import { HealthDelta, HealthState, type HealthEntry } from "../../pipelines/contracts/health.ts";
import type { TopoNode } from "../../pipelines/contracts/topology.ts";
import {
  buildIndex,
  emptyBook,
  foldAlert,
  healthOfEntity,
  mapAlert,
  sameHealth,
  stableId,
  tickBook,
  type AlertBook,
  type AlertEntry,
  type AlertRules,
  type FlapConfig,
  type TopologyIndex,
} from "../../pipelines/stages/alerts.ts";
import { ensureConsumer, runConsumer, type Bus, type ConsumerHandle } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { AlertHistory } from "./history.ts";
import { alertSubjects } from "./subjects.ts";

/** What the service needs of the topology: the gateway's mirror (services/gateway/mirror.ts) fits. */
export interface TopologyView {
  synced(): boolean;
  rev(): number;
  nodes(): Iterable<TopoNode>;
}

export interface AlertsService {
  book(): AlertBook;
  seq(): number;
  handled(): number;
  stop(): Promise<void>;
}

export async function startAlertsService(deps: {
  bus: Bus;
  topology: TopologyView;
  rules: AlertRules;
  history: AlertHistory;
  log: Logger;
  flap?: Partial<FlapConfig>;
  now?: () => number;
  /** how often damped changes, topology changes and retention are looked at */
  tickMs?: number;
  /** pause after each history insert so the next one carries everything that arrived meanwhile */
  historyLingerMs?: number;
}): Promise<AlertsService> {
  const { bus, topology, rules, history, log } = deps;
  const now = deps.now ?? Date.now;
  const subjects = alertSubjects(bus.topo);
  const book = emptyBook({ ...emptyBook().flap, ...deps.flap });
  /** entity → fingerprints mapped to it */
  const byEntity = new Map<string, Set<string>>();
  /** what subscribers have been told */
  const published = new Map<string, HealthEntry>();
  // Numbered from the start time so seq keeps increasing across restarts; readers treat any step other than +1 as a
  // gap and fetch health.state.v1.
  let seq = now();
  let handled = 0;
  let index: TopologyIndex | null = null;
  let indexRev = -1;

  await history.init();
  await ensureConsumer(bus.jsm, subjects.consumer);
  await ensureConsumer(bus.jsm, subjects.historyConsumer);

  const setEntities = (fp: string, e: AlertEntry, entities: string[], via: string, touched: Set<string>) => {
    for (const id of e.entities) {
      byEntity.get(id)?.delete(fp);
      if (byEntity.get(id)?.size === 0) byEntity.delete(id);
      touched.add(id);
    }
    e.entities = entities;
    e.via = via;
    for (const id of entities) {
      let s = byEntity.get(id);
      if (!s) byEntity.set(id, (s = new Set()));
      s.add(fp);
      touched.add(id);
    }
  };

  const mapEntry = (fp: string, e: AlertEntry, touched: Set<string>) => {
    if (!index) return;
    const m = mapAlert({ rules, index, alert: e.last });
    const entities = m?.entities ?? [];
    const same = entities.length === e.entities.length && entities.every((x, i) => x === e.entities[i]);
    if (!same) setEntities(fp, e, entities, m?.via ?? "", touched);
    else e.via = m?.via ?? "";
  };

  /** Rebuilds the topology index when the mirror moved on, and re-maps every alert (new hosts may map the unmapped). */
  const refreshIndex = (touched: Set<string>) => {
    if (!topology.synced() || topology.rev() === indexRev) return;
    index = buildIndex(topology.nodes());
    indexRev = topology.rev();
    for (const [fp, e] of book.entries) mapEntry(fp, e, touched);
  };

  const publishHealth = (touched: Set<string>) => {
    const entities: HealthEntry[] = [];
    for (const id of touched) {
      const h = healthOfEntity(book, id, byEntity.get(id) ?? []);
      if (sameHealth(published.get(id), h)) continue;
      if (h.health === "ok" && !h.alerts.length) published.delete(id);
      else published.set(id, h);
      entities.push(h);
    }
    if (!entities.length) return;
    seq++;
    bus.nc.publish(subjects.health, encode(HealthDelta, "health.delta.v1", { schema: "health.delta.v1", seq, at: now(), entities }, 64 * 1024 * 1024));
  };

  const fold = (alerts: Alert[], touched: Set<string>) => {
    const t = now();
    for (const a of alerts) {
      const outcome = foldAlert(book, a, t);
      const e = book.entries.get(a.fingerprint)!;
      if (outcome === "new") mapEntry(a.fingerprint, e, touched);
      if (outcome === "new" || outcome === "changed") for (const id of e.entities) touched.add(id);
    }
  };

  await replay();

  const consumer: ConsumerHandle = await runConsumer(
    bus,
    subjects.consumer,
    AlertBatch,
    "alert.v1",
    async (batch) => {
      const touched = new Set<string>();
      refreshIndex(touched);
      const alerts = batch.flatMap((b) => b.value.alerts);
      fold(alerts, touched);
      publishHealth(touched);
      handled += alerts.length;
    },
    { maxBatch: 64, onError: (e) => log.warn("alert batch failed; will be redelivered", { error: String(e) }) },
  );

  const historyLinger = deps.historyLingerMs ?? 500;
  let stopping = false;
  const historyConsumer: ConsumerHandle = await runConsumer(
    bus,
    subjects.historyConsumer,
    AlertBatch,
    "alert.v1",
    async (batch) => {
      const alerts = batch.flatMap((b) => b.value.alerts);
      // entities as mapped now (the "alerts" consumer is usually ahead; when it is not, map here)
      const entitiesOf = (a: Alert) => {
        const known = book.entries.get(a.fingerprint)?.entities;
        if (known?.length || !index) return known ?? [];
        return mapAlert({ rules, index, alert: a })?.entities ?? [];
      };
      await history.insert(
        alerts.map((a) => ({ alert: a, entities: entitiesOf(a) })),
        stableId(...batch.map((b) => b.value.batchId)),
      );
      if (!stopping) await Bun.sleep(historyLinger);
    },
    { maxBatch: 256, onError: (e) => log.warn("alert history insert failed; will be redelivered", { error: String(e) }) },
  );

  const timer = setInterval(() => {
    try {
      const touched = new Set<string>();
      refreshIndex(touched);
      const { changed, forgotten } = tickBook(book, now());
      for (const fp of changed) for (const id of book.entries.get(fp)?.entities ?? []) touched.add(id);
      for (const fp of forgotten) {
        for (const [id, set] of byEntity) {
          if (set.delete(fp)) touched.add(id);
          if (!set.size) byEntity.delete(id);
        }
      }
      publishHealth(touched);
    } catch (e) {
      log.warn("alerts tick failed", { error: String(e) });
    }
  }, deps.tickMs ?? 1000);

  const rpc = bus.nc.subscribe(subjects.rpc, {
    callback: (err, msg) => {
      if (err || !msg.reply) return;
      let reply: unknown;
      try {
        const q = decode(AlertsQuery, "alerts.query", msg.data);
        reply = answer(q);
      } catch (e) {
        reply = { error: e instanceof Error ? e.message : String(e) };
      }
      msg.respond(new TextEncoder().encode(JSON.stringify(reply)));
    },
  });

  function answer(q: ReturnType<typeof AlertsQuery.parse>): AlertsList | HealthState {
    if (q.op === "health") {
      const entities = [...published.values()];
      return validate(HealthState, "health.state.v1", { schema: "health.state.v1", seq, at: now(), entities });
    }
    const views: AlertView[] = [];
    let total = 0;
    const consider = (fp: string, e: AlertEntry) => {
      if (e.published.state === "resolved" && !e.pending) return;
      if (q.op === "unmapped" && e.entities.length) return;
      total++;
      if (views.length < q.limit) views.push(viewOf(fp, e));
    };
    if (q.op === "list" && q.entity) for (const fp of byEntity.get(q.entity) ?? []) consider(fp, book.entries.get(fp)!);
    else for (const [fp, e] of book.entries) consider(fp, e);
    return { alerts: views, total };
  }

  /** Rebuilds the book from what was already acked (before a restart), without publishing or writing anything. */
  async function replay() {
    const info = await bus.jsm.consumers.info(subjects.consumer.stream, subjects.consumer.durable);
    const floor = info.ack_floor.stream_seq;
    if (!floor) return;
    const c = await bus.js.consumers.get(subjects.consumer.stream, { deliver_policy: DeliverPolicy.All });
    const started = Date.now();
    let n = 0;
    const touched = new Set<string>();
    while (true) {
      const msgs = await c.fetch({ max_messages: 1000, expires: 2000 });
      let last = 0;
      let got = 0;
      for await (const m of msgs) {
        got++;
        last = m.seq;
        if (m.seq > floor) break;
        try {
          const alerts = decode(AlertBatch, "alert.v1", m.data).alerts;
          fold(alerts, touched);
          n += alerts.length;
        } catch {
          // it went to the dead-letter stream the first time round
        }
      }
      if (!got || last >= floor) break;
    }
    log.info("alerts replayed", { events: n, alerts: book.entries.size, ms: Date.now() - started });
  }

  return {
    book: () => book,
    seq: () => seq,
    handled: () => handled,
    stop: async () => {
      clearInterval(timer);
      rpc.unsubscribe();
      stopping = true;
      await consumer.stop();
      await historyConsumer.stop();
    },
  };
}

export function viewOf(fp: string, e: AlertEntry): AlertView {
  return {
    fingerprint: fp,
    source: e.last.source,
    state: e.published.state,
    severity: e.published.severity,
    flapping: e.flapping,
    summary: e.last.summary,
    labels: e.last.labels,
    target: e.last.target,
    startsAt: e.last.startsAt,
    at: e.last.at,
    entities: e.entities,
    via: e.via,
  };
}

/** The gateway's mirror as the service's TopologyView. */
export function mirrorView(m: { mirror(): { rev: number; nodes: Map<string, TopoNode> }; synced(): boolean }): TopologyView {
  return { synced: () => m.synced(), rev: () => m.mirror().rev, nodes: () => m.mirror().nodes.values() };
}
