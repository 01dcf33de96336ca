/**
 * Alerts service: ALERTS stream (durable consumer "alerts") → dedup + flap damping (AlertBook) → mapping onto the
 * topology → health on the topology (entity health, CONNECTS edge state, and the impact of every unhealthy entity on
 * what depends on it, pipelines/stages/health-impact.ts) → health.delta.v1 on the HEALTH stream; current alerts and
 * health answered over request/reply (<prefix>.rpc.alerts). History goes to ClickHouse through a second durable
 * consumer ("alerts-history") in large, lingering batches, acked once inserted (inserts are deduplicated): ClickHouse
 * is never on the health path, and a ClickHouse outage delays history only (runConsumer holds the batch and retries it
 * in place until ClickHouse is back); an event ClickHouse refuses is dead-lettered with the reason. An alert batch is
 * acked once the health deltas it caused are stored; while they cannot be (NATS or the HEALTH stream unavailable) the
 * batch is held the same way, never dead-lettered.
 *
 * The state lives in memory and is derived from the stream alone: after a restart the book is rebuilt by replaying
 * the stream silently, each event folded at the time JetStream stored it (as it was when handled live, so a replay
 * does not turn a day of changes into a burst that looks like flapping). Until the replay is done and the topology
 * mirror is synced the RPC answers `not_ready` (never an empty state a wallboard would take for "all clear"), and
 * nothing is published; then the first delta carries everything (a jump in seq, so readers fetch the state).
 */
import { DeliverPolicy, type JsMsg } from "@nats-io/jetstream";
import { ClosedConnectionError, ConnectionError, DrainingConnectionError, NoRespondersError, RequestError, TimeoutError } from "@nats-io/transport-node";
import { z } from "zod";
import { decode, encode, MAX_MESSAGE_BYTES, validate } from "../../pipelines/codec.ts";
import { AlertBatch, AlertsQuery, type Alert, type AlertView, type AlertsIgnored, type AlertsList } from "../../pipelines/contracts/alerts.ts";
import { HealthDelta, HealthState, type HealthDeltaInput, type HealthEntry, type NotReady } from "../../pipelines/contracts/health.ts";
import type { TopologyDelta, TopologySnapshot, TopoNode } from "../../pipelines/contracts/topology.ts";
import type { Mirror } from "../../pipelines/stages/apply-delta.ts";
import { type AlertBook, type AlertEntry, emptyBook, type FlapConfig, foldAlert, tickBook } from "../../pipelines/stages/alerts/book.ts";
import { EntityHealthIndex, sameHealth } from "../../pipelines/stages/alerts/health.ts";
import { type AlertRules, buildIndex, mapAlert, type TopologyIndex } from "../../pipelines/stages/alerts/mapping.ts";
import { stableId } from "../../pipelines/stages/alerts/normalize.ts";
import { HealthImpact, type HealthImpactChange, type HealthImpactOptions } from "../../pipelines/stages/health-impact.ts";
import { failureKind, PermanentError, runConsumer, TransientError, type Bus, type ConsumerHandle } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { AlertHistory, HistoryRow } from "./history.ts";

/** What the service needs of the topology: the gateway's mirror (services/topology/client.ts) fits, see mirrorView. */
export interface TopologyView {
  synced(): boolean;
  rev(): number;
  nodes(): Iterable<TopoNode>;
  /** nodes and edges, for impact; without it impact is computed on nodes alone (no edges: nothing is impacted) */
  mirror?(): Pick<Mirror, "rev" | "nodes" | "edges">;
  /** every delta after it is applied (and a snapshot after a resync), so impact follows the graph incrementally */
  onFrame?(f: (frame: TopologyDelta | TopologySnapshot) => void): void;
}

export interface AlertsService {
  book(): AlertBook;
  seq(): number;
  handled(): number;
  /** replay done and topology synced: the RPC answers with state */
  ready(): boolean;
  stop(): Promise<void>;
}



/**
 * A publish that failed for want of a server, not because of what it carried: timed out, no responders (JetStream or
 * the stream not there; JetStreamNotEnabled has it as its cause), or the connection lost, closed or draining.
 */
export function natsUnavailable(e: unknown): boolean {
  for (let x = e, depth = 0; x instanceof Error && depth < 8; x = x.cause, depth++) {
    if (x instanceof TimeoutError || x instanceof NoRespondersError || x instanceof ConnectionError || x instanceof ClosedConnectionError || x instanceof DrainingConnectionError) return true;
    if (x instanceof RequestError && x.isNoResponders()) return true;
  }
  return false;
}

/** When JetStream stored the message: the time the event was handled live, and the time a replay folds it at. */
const storedAt = (m: Pick<JsMsg, "time">) => m.time.getTime();

/** Items per health.delta.v1 message before the byte limit is even looked at. */
const DELTA_ITEMS = 2000;

/**
 * The hot-path schemas, compiled by zod (z.compile): the same schemas, parsed by generated code (~5-15x faster here
 * on alert batches and health deltas); a value the fast path refuses goes through zod's runtime parser, so errors
 * read exactly as before.
 */
const AlertBatchCompiled = z.compile(AlertBatch);
const HealthDeltaCompiled = z.compile(HealthDelta);

export async function startAlertsService(deps: {
  bus: Bus;
  topology: TopologyView;
  rules: AlertRules;
  history: AlertHistory;
  log: Logger;
  flap?: Partial<FlapConfig>;
  impact?: Partial<HealthImpactOptions>;
  now?: () => number;
  /** how often damped changes, topology changes and retention are looked at */
  tickMs?: number;
  /** pause after each history insert so the next one carries everything that arrived meanwhile */
  historyLingerMs?: number;
  /**
   * Asked before each health delta is published: false once this instance's lease can no longer be trusted (another
   * instance may be active), and nothing more is published. Without it the instance is alone.
   */
  stillActive?: () => boolean;
}): Promise<AlertsService> {
  const { bus, topology, rules, history, log } = deps;
  const now = deps.now ?? Date.now;
  const { subjects, streams, consumers } = bus.topo;
  const book = emptyBook({ ...emptyBook().flap, ...deps.flap });
  /** entity → fingerprints mapped to it */
  const byEntity = new Map<string, Set<string>>();
  /** entity → the alerts that count for it and its health, kept as alerts change */
  const healthIx = new EntityHealthIndex();
  /** what subscribers have been told */
  const published = new Map<string, HealthEntry>();
  const impact = new HealthImpact(deps.impact);
  // Numbered from the start time so seq keeps increasing across restarts; readers treat any step other than +1 as a
  // gap and fetch health.state.v1.
  let seq = now();
  let handled = 0;
  let index: TopologyIndex | null = null;
  let indexRev = -1;
  let ready = false;
  let notReadyWhy = "replaying the alerts stream";
  /** entities touched before the service was ready: published with the first delta */
  const held = new Set<string>();
  const frames: (TopologyDelta | TopologySnapshot)[] = [];
  topology.onFrame?.((f) => frames.push(f));
  let impactSynced = false;

  await history.init();
  // Past the last delta a predecessor stored (a busy service can number faster than the clock): the first delta
  // after a restart always leaves a gap, so every reader fetches the state rather than folding onto an old one.
  // No delta stored yet is null (the client maps "no message found" to it); any other failure stops the start. The
  // HEALTH stream and both durables were created when the bus connected (ensureStreams).
  const last = await bus.jsm.streams.getMessage(streams.health.name, { last_by_subj: subjects.health });
  if (last) {
    try {
      seq = Math.max(seq, decode(HealthDelta, "health.delta.v1", last.data).seq + 1);
    } catch (e) {
      // A stored delta this version cannot read: numbering from the clock still leaves a gap for every reader.
      log.warn("last health delta unreadable; numbering from the clock", { seq: last.seq, error: String(e) });
    }
  }

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
    healthIx.update(fp, e);
  };

  const mirrorOf = (): Pick<Mirror, "rev" | "nodes" | "edges"> =>
    topology.mirror?.() ?? { rev: topology.rev(), nodes: new Map([...topology.nodes()].map((n) => [n.id, n])), edges: new Map() };

  /** Brings impact's graph to the mirror's rev: delta by delta when it can, from the whole mirror otherwise. */
  const refreshImpactGraph = () => {
    if (!impactSynced) {
      frames.length = 0;
      impact.reset(mirrorOf());
      impactSynced = true;
      return;
    }
    for (const f of frames.splice(0)) {
      if (f.schema === "topology.snapshot.v1") {
        impact.reset(mirrorOf());
        frames.length = 0;
        break;
      }
      if (f.rev <= impact.rev) continue;
      if (!impact.applyDelta(f)) {
        impact.reset(mirrorOf());
        frames.length = 0;
        break;
      }
    }
    if (impact.rev !== topology.rev()) impact.reset(mirrorOf());
  };

  /** The book's clock to now: damped changes whose window passed are published, long-resolved alerts forgotten. */
  const advanceClock = (touched: Set<string>) => {
    const { changed, forgottenEntities } = tickBook(book, now());
    for (const fp of changed) {
      const e = book.entries.get(fp);
      healthIx.update(fp, e);
      for (const id of e?.entities ?? []) touched.add(id);
    }
    for (const [fp, ids] of forgottenEntities) {
      healthIx.update(fp, undefined);
      for (const id of ids) {
        const set = byEntity.get(id);
        if (set?.delete(fp)) touched.add(id);
        if (set && !set.size) byEntity.delete(id);
      }
    }
  };

  /** Rebuilds the topology index when the mirror moved on, and re-maps every alert (new hosts may map the unmapped). */
  const refreshIndex = (touched: Set<string>) => {
    if (!topology.synced() || topology.rev() === indexRev) return;
    index = buildIndex(topology.nodes());
    indexRev = topology.rev();
    for (const [fp, e] of book.entries) mapEntry(fp, e, touched);
    refreshImpactGraph();
    if (!ready) {
      // Replay folded changes at their stored times; some were damped then and are due by now. The first answer
      // (whichever of the clock or a live batch makes the service ready) must already hold them.
      advanceClock(touched);
      ready = true;
      for (const id of byEntity.keys()) touched.add(id);
      log.info("alerts ready", { alerts: book.entries.size, rev: indexRev });
    }
  };

  /**
   * Deltas numbered but not yet stored, in seq order. A delta stays here until JetStream has it (its Nats-Msg-Id
   * dedups a retry whose first ack was lost), so none is skipped: the alert batch that caused it is acked only once
   * it is stored, and a tick's delta is retried on the next tick.
   */
  const unsent: { seq: number; bytes: Uint8Array }[] = [];
  let flushing: Promise<void> | null = null;
  const publishUnsent = async () => {
    while (unsent.length) {
      const d = unsent[0]!;
      if (deps.stillActive && !deps.stillActive()) throw new TransientError(`health delta ${d.seq} not published: this instance is no longer the active one`);
      try {
        await bus.js.publish(subjects.health, d.bytes, { msgID: `health:${d.seq}`, timeout: 10_000 });
      } catch (e) {
        // NATS or the HEALTH stream unavailable is no fault of the alerts: the batch is held, not dead-lettered
        if (natsUnavailable(e)) throw new TransientError(`health delta ${d.seq} not stored: ${e instanceof Error ? e.message : String(e)}`, undefined, { cause: e });
        throw e;
      }
      unsent.shift();
    }
  };
  /** Stores every unsent delta, in order; one flush at a time (a caller during one waits for it, then flushes the rest). */
  const flushDeltas = async (): Promise<void> => {
    while (flushing) await flushing.catch(() => undefined);
    if (!unsent.length) return;
    flushing = publishUnsent().finally(() => (flushing = null));
    return flushing;
  };
  const send = (d: HealthDeltaInput) => {
    const bytes = encode(HealthDeltaCompiled, "health.delta.v1", d, 64 * 1024 * 1024);
    if (bytes.byteLength > MAX_MESSAGE_BYTES) throw new RangeError(`health delta of ${bytes.byteLength} bytes`);
    unsent.push({ seq: d.seq, bytes });
  };

  /** One change may exceed a message: split it into consecutive deltas (each applied in seq order). */
  type Item = { k: "entities" | "edges" | "edgesCleared" | "impact" | "impactCleared"; v: unknown };
  const publishChange = (entities: HealthEntry[], ch: HealthImpactChange) => {
    const items: Item[] = [
      ...entities.map((v): Item => ({ k: "entities", v })),
      ...ch.edges.map((v): Item => ({ k: "edges", v })),
      ...ch.edgesCleared.map((v): Item => ({ k: "edgesCleared", v })),
      ...ch.impact.map((v): Item => ({ k: "impact", v })),
      ...ch.impactCleared.map((v): Item => ({ k: "impactCleared", v })),
    ];
    const emit = (slice: Item[]) => {
      const d: Record<Item["k"], unknown[]> = { entities: [], edges: [], edgesCleared: [], impact: [], impactCleared: [] };
      for (const { k, v } of slice) d[k].push(v);
      try {
        send({ schema: "health.delta.v1", seq: seq + 1, at: now(), ...d } as HealthDeltaInput);
        seq++;
      } catch (e) {
        if (!(e instanceof RangeError) || slice.length === 1) throw e;
        const half = Math.ceil(slice.length / 2);
        emit(slice.slice(0, half));
        emit(slice.slice(half));
      }
    };
    for (let i = 0; i < items.length; i += DELTA_ITEMS) emit(items.slice(i, i + DELTA_ITEMS));
  };

  const publishHealth = (touched: Set<string>) => {
    if (!ready) {
      for (const id of touched) held.add(id);
      return;
    }
    for (const id of held) touched.add(id);
    held.clear();
    refreshImpactGraph();
    const entities: HealthEntry[] = [];
    for (const id of touched) {
      const h = healthIx.health(id);
      if (sameHealth(published.get(id), h)) continue;
      if (h.health === "ok" && !h.alerts.length) published.delete(id);
      else published.set(id, h);
      impact.setHealth(id, h.health);
      entities.push(h);
    }
    const ch = impact.flush();
    if (!entities.length && !ch.impact.length && !ch.impactCleared.length && !ch.edges.length && !ch.edgesCleared.length) return;
    publishChange(entities, ch);
  };

  const fold = (alerts: Alert[], at: number, touched: Set<string>) => {
    for (const a of alerts) {
      const outcome = foldAlert(book, a, at);
      const e = book.entries.get(a.fingerprint)!;
      if (outcome === "new") mapEntry(a.fingerprint, e, touched);
      if (outcome === "new" || outcome === "changed") {
        healthIx.update(a.fingerprint, e);
        for (const id of e.entities) touched.add(id);
      }
    }
  };

  const rpc = bus.nc.subscribe(subjects.alertsRpc, {
    callback: (err, msg) => {
      if (err || !msg.reply) return;
      let reply: unknown;
      let parts = false;
      try {
        const q = decode(AlertsQuery, "alerts.query", msg.data);
        parts = q.op === "health" && q.parts;
        reply = answer(q);
      } catch (e) {
        reply = { error: e instanceof Error ? e.message : String(e) };
      }
      const bytes = new TextEncoder().encode(JSON.stringify(reply));
      if (bytes.byteLength <= MAX_MESSAGE_BYTES) return void msg.respond(bytes);
      if (!parts || !(reply as HealthState).schema) {
        return void msg.respond(new TextEncoder().encode(JSON.stringify({ error: `the answer is ${bytes.byteLength} bytes, over one message: ask for health with parts: true (a list with a lower limit)` })));
      }
      for (const p of stateParts(reply as HealthState, bytes.byteLength)) msg.respond(p);
    },
  });

  await replay();
  notReadyWhy = "waiting for the topology mirror to sync";

  /** messages already folded: a batch held while its deltas cannot be stored is retried without folding it twice */
  const folded = new WeakSet<JsMsg>();
  const consumer: ConsumerHandle = await runConsumer(
    bus,
    consumers.alerts,
    AlertBatchCompiled,
    "alert.v1",
    async (batch) => {
      const touched = new Set<string>();
      refreshIndex(touched);
      for (const b of batch) {
        if (folded.has(b.msg)) continue;
        fold(b.value.alerts, storedAt(b.msg), touched);
        folded.add(b.msg);
        handled += b.value.alerts.length;
      }
      publishHealth(touched);
      // acked once the deltas it caused are stored
      await flushDeltas();
    },
    {
      maxBatch: 64,
      onError: (e) => log.warn("alert batch failed", { error: String(e) }),
      onHold: (attempt, e) => log.warn("health deltas cannot be stored; holding the alert batch and retrying", { attempt, error: String(e) }),
    },
  );

  /**
   * Inserts `rows`, bisecting them when ClickHouse refuses some: stores every row it takes and returns those it
   * refused. Any other failure is thrown. Each part's token derives from the whole's, so a retry stores nothing twice.
   */
  const insertRefusing = async (rows: HistoryRow[], token: string): Promise<{ row: HistoryRow; err: unknown }[]> => {
    try {
      await history.insert(rows, token);
      return [];
    } catch (e) {
      if (failureKind(e) !== "permanent") throw e;
      if (rows.length === 1) return [{ row: rows[0]!, err: e }];
      const mid = Math.ceil(rows.length / 2);
      return [...(await insertRefusing(rows.slice(0, mid), `${token}:a`)), ...(await insertRefusing(rows.slice(mid), `${token}:b`))];
    }
  };
  const historyLinger = deps.historyLingerMs ?? 500;
  let stopping = false;
  const historyConsumer: ConsumerHandle = await runConsumer(
    bus,
    consumers.alertsHistory,
    AlertBatchCompiled,
    "alert.v1",
    async (batch) => {
      const alerts = batch.flatMap((b) => b.value.alerts);
      // entities as mapped now (the "alerts" consumer is usually ahead; when it is not, map here)
      const entitiesOf = (a: Alert) => {
        const known = book.entries.get(a.fingerprint)?.entities;
        if (known?.length || !index) return known ?? [];
        return mapAlert({ rules, index, alert: a })?.entities ?? [];
      };
      const rows = alerts.map((a) => ({ alert: a, entities: entitiesOf(a) }));
      const token = stableId(...batch.map((b) => b.value.batchId));
      // A failure is typed (AlertHistoryError): ClickHouse unavailable → runConsumer holds the batch in place and
      // retries it until ClickHouse is back; rows it refuses → runConsumer bisects the batch down to their message,
      // whose other events are stored here before it is dead-lettered (one message carries unrelated senders' alerts).
      if (batch.length > 1) await history.insert(rows, token);
      else {
        const refused = await insertRefusing(rows, token);
        if (refused.length) {
          const list = refused.map(({ row, err }) => `${row.alert.source}/${row.alert.fingerprint} (${row.alert.id}): ${err instanceof Error ? err.message : String(err)}`);
          throw new PermanentError(`ClickHouse refused ${refused.length} of ${rows.length} events (the others are stored): ${list.join("; ")}`, { cause: refused[0]!.err });
        }
      }
      if (!stopping) await Bun.sleep(historyLinger);
    },
    {
      maxBatch: 256,
      onError: (e) => log.warn("alert history insert failed", { error: String(e) }),
      onHold: (attempt, e) => log.warn("alert history store unavailable; holding the batch and retrying", { attempt, error: String(e) }),
    },
  );

  let lastFlushWarning = -Infinity;
  const tick = () => {
    try {
      const touched = new Set<string>();
      refreshIndex(touched);
      advanceClock(touched);
      publishHealth(touched);
    } catch (e) {
      log.warn("alerts tick failed", { error: String(e) });
    }
    if (unsent.length && !flushing)
      flushDeltas().catch((e) => {
        if (Date.now() - lastFlushWarning < 30_000) return;
        lastFlushWarning = Date.now();
        log.warn("health deltas not stored yet; retrying", { unsent: unsent.length, error: String(e) });
      });
  };
  tick();
  const timer = setInterval(tick, deps.tickMs ?? 1000);

  function answer(q: ReturnType<typeof AlertsQuery.parse>): AlertsList | AlertsIgnored | HealthState | NotReady {
    // what the fold ignored is true while replaying too (replay folds the same way), so it is answered at once
    if (q.op === "ignored") return { ignored: book.ignored.total, events: book.ignored.recent.slice(-q.limit).reverse() };
    if (!ready) return { error: `alerts service not ready: ${notReadyWhy}`, code: "not_ready" };
    if (q.op === "health") {
      const entities = [...published.values()];
      return validate(HealthState, "health.state.v1", { schema: "health.state.v1", seq, at: now(), entities, ...impact.state() });
    }
    if (q.op === "alert") {
      const e = book.entries.get(q.fingerprint);
      return { alerts: e ? [viewOf(q.fingerprint, e)] : [], total: e ? 1 : 0 };
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

  /**
   * Rebuilds the book from everything the stream held at start (what a predecessor acked, and what arrived while no
   * service ran), without publishing or writing anything. The durable then delivers what it has not acked: folded
   * again, those events are duplicates of what the replay saw.
   */
  async function replay() {
    const stream = await bus.jsm.streams.info(consumers.alerts.stream);
    const last = stream.state.last_seq;
    if (!stream.state.messages || !last) return;
    const c = await bus.js.consumers.get(consumers.alerts.stream, { deliver_policy: DeliverPolicy.All });
    const started = Date.now();
    let n = 0;
    const touched = new Set<string>();
    let at = 0;
    while (at < last) {
      const msgs = await c.fetch({ max_messages: 1000, expires: 2000 });
      let got = 0;
      for await (const m of msgs) {
        got++;
        at = m.seq;
        if (m.seq > last) break;
        try {
          const alerts = decode(AlertBatchCompiled, "alert.v1", m.data).alerts;
          fold(alerts, storedAt(m), touched);
          n += alerts.length;
        } catch {
          // it went to the dead-letter stream the first time round
        }
        if (m.info.pending === 0) at = Math.max(at, last);
      }
      if (!got) break;
    }
    log.info("alerts replayed", { events: n, alerts: book.entries.size, ms: Date.now() - started });
  }

  return {
    book: () => book,
    seq: () => seq,
    handled: () => handled,
    ready: () => ready,
    stop: async () => {
      clearInterval(timer);
      rpc.unsubscribe();
      stopping = true;
      await consumer.stop();
      await historyConsumer.stop();
      // a last try for what the ticks produced; with NATS gone it must not hold the shutdown
      const flushed = flushDeltas().then(
        () => true,
        () => false,
      );
      if (!(await Promise.race([flushed, Bun.sleep(5000).then(() => false)]))) log.warn("health deltas not stored at stop", { unsent: unsent.length });
    },
  };
}

/** health.state.v1 as HealthStatePart messages, each under the message limit; the arrays sliced in order. */
export function stateParts(state: HealthState, bytes: number): Uint8Array[] {
  type K = "entities" | "edges" | "impact";
  const items: { k: K; v: unknown }[] = [
    ...state.entities.map((v) => ({ k: "entities" as K, v })),
    ...state.edges.map((v) => ({ k: "edges" as K, v })),
    ...state.impact.map((v) => ({ k: "impact" as K, v })),
  ];
  for (let n = Math.ceil((bytes * 1.25) / MAX_MESSAGE_BYTES); ; n *= 2) {
    const per = Math.ceil(items.length / n);
    const out: Uint8Array[] = [];
    const parts = Math.ceil(items.length / per);
    for (let i = 0; i < parts; i++) {
      const slice: Record<K, unknown[]> = { entities: [], edges: [], impact: [] };
      for (const { k, v } of items.slice(i * per, (i + 1) * per)) slice[k].push(v);
      out.push(new TextEncoder().encode(JSON.stringify({ schema: "health.state.v1", seq: state.seq, at: state.at, ...slice, part: i, parts })));
    }
    if (out.every((b) => b.byteLength <= MAX_MESSAGE_BYTES) || per === 1) return out;
  }
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
export function mirrorView(m: {
  mirror(): Mirror;
  synced(): boolean;
  onFrame(f: (frame: TopologyDelta | TopologySnapshot) => void): void;
}): TopologyView {
  return { synced: () => m.synced(), rev: () => m.mirror().rev, nodes: () => m.mirror().nodes.values(), mirror: () => m.mirror(), onFrame: (f) => m.onFrame(f) };
}
