/**
 * Topology service: discovery stream → pure topology stage → graph store (net changes, batched) → delta stream.
 * The in-memory model serves live reads (snapshot RPC); the store is rebuilt into the model at start.
 */
import { DiscoveryBatch } from "../../pipelines/contracts/discovery.ts";
import { TopologyDelta, type TopologySnapshot } from "../../pipelines/contracts/topology.ts";
import { ageModel, applyDiscoverySteps, isEmpty, modelFromGraph, summarizeRemovals, type AgingOptions, type Changes, type StageOptions, type TopologyModel } from "../../pipelines/stages/topology/index.ts";
import { PermanentError, publishEvent, rewindToAckFloor, runConsumer, type Bus, type ConsumerHandle } from "../shared/bus.ts";
import { discoverySubjectFits } from "../../pipelines/streams.ts";
import { changeCount, GraphStoreError, splitChanges, type GraphStore, type StoredGraph } from "../graph/port.ts";
import { CypherRequest, type CypherResponse } from "../../pipelines/contracts/cypher.ts";
import { ContractError, decode, validate } from "../../pipelines/codec.ts";
import type { Logger } from "../shared/log.ts";
import { z } from "zod";
import { followRegistryGraph, type RegistryFollower } from "./registry.ts";
import { FoldedSeqs } from "./seqs.ts";

/**
 * The hot-path schemas compiled by zod (z.compile, as in the alerts service): the same schemas parsed by generated
 * code, ~4× cheaper on discovery batches; what the fast path refuses goes through zod's runtime parser, so errors
 * read as before.
 */
const DiscoveryBatchCompiled = z.compile(DiscoveryBatch);
const TopologyDeltaCompiled = z.compile(TopologyDelta);

export const SNAPSHOT_CHUNK = 1500;

/**
 * Messages folded between two turns of the event loop. A 10k-host backlog's batch of 3000 took seconds to fold in one
 * go, and a Cypher reply that the store had ready in 10-800 ms waited behind it for up to 5 s (bench estate).
 */
const FOLD_STEP = 100;
const breathe = () => new Promise<void>((r) => setImmediate(r));
/** a delta publish that gets no answer in this long is retried from the outbox (its Nats-Msg-Id makes that safe) */
const DELTA_PUBLISH_TIMEOUT_MS = 5_000;

/**
 * A change set of at least this many items (a first scan of an estate, a restart's replay; an everyday batch is a few
 * hundred) is followed by a garbage collection. Such a write leaves tens of MB behind (decoded messages, keys,
 * deltas, store rows) and JSC lets its heap grow well past the live model before it collects. Measured on the graph
 * bench's estate (100k nodes / 533k edges): the pure stage's peak RSS 1.47 → 1.02 GiB; in the service, whose peak is
 * set by the graph store's commit, RSS after the write 1.56 → 1.33 GiB.
 */
export const COLLECT_AFTER_ITEMS = 10_000;

/**
 * A change set of at least this many items (a bulk build, not churn's few thousand) is preceded by a full, synchronous
 * collection, so the garbage of the previous one is gone before the graph store's commit, which sets the service's
 * peak memory (Kuzu checkpoints at the commit of a large COPY write). With the smaller consumer queue below, in bench
 * graph (two runs each, 100k nodes / 311k edges, the 1 GiB JS budget of the time): peak 1064 / 1115 MiB before,
 * 1054 / 1055 MiB after.
 */
export const COLLECT_BEFORE_ITEMS = 30_000;

/**
 * A change set is written in transactions of at most this many items, each with its own revs and outbox entries. A
 * first scan's change set of 3000 messages is ~60-100k items at 10k hosts and goes in one transaction: every extra
 * commit of a bulk (COPY) write costs Kuzu a checkpoint, which halved bench pipeline's rate at a 50k bound. The bound
 * caps a commit's memory and how long it holds readers back (kuzu.ts); a part the store still finds too large
 * (`too_large`) is written again in halves.
 */
export const WRITE_MAX_ITEMS = 200_000;

export interface TopologyService {
  model(): TopologyModel;
  rev(): number;
  stop(): Promise<void>;
}

export async function startTopologyService(deps: {
  bus: Bus;
  store: GraphStore;
  log: Logger;
  now?: () => number;
  /** what goes stale and when it is removed; `everyMs` is how often the model is aged */
  aging?: Partial<AgingOptions> & { everyMs?: number };
  /** the topology stage's options (flow confirmation, lastSeen persistence) */
  stage?: Partial<StageOptions>;
  /** called after a change set of `collectAfterItems` (COLLECT_AFTER_ITEMS) or more; default: Bun.gc(false) */
  collect?: () => void;
  collectAfterItems?: number;
  /** how long writes must pause before the store is asked to checkpoint (default 10 s) */
  checkpointIdleMs?: number;
  /** items per store transaction (default WRITE_MAX_ITEMS) */
  writeMaxItems?: number;
  /** follow registry.graph.v1 and write the registry's part of the graph (default true) */
  registry?: boolean;
  /**
   * Aborted when this instance may no longer write (its writer lease is lost: lease.ts): the write in flight is
   * abandoned and nothing more is written or published; the owner then stops the service.
   */
  fence?: AbortSignal;
  /** asked before each store write: false (or aborting `fence`) when the lease has lapsed on the clock meanwhile */
  stillWriter?: () => boolean;
}): Promise<TopologyService> {
  const { bus, store, log } = deps;
  const now = deps.now ?? Date.now;
  const collect = deps.collect ?? (() => Bun.gc(false));
  const collectAfter = deps.collectAfterItems ?? COLLECT_AFTER_ITEMS;
  await store.init();
  const stored = await store.load();
  let model = modelFromGraph(stored.nodes, stored.edges, deps.stage, stored.sourceIntervals);
  let rev = stored.rev;
  log.info("model loaded", { rev, nodes: stored.nodes.length, edges: stored.edges.length });
  warnUnreadable(log, stored);

  // Deltas committed with the graph (the store's outbox) but not yet confirmed as published: a previous run was
  // killed between its commit and its publish. They go out first; Nats-Msg-Id makes a second publish a no-op.
  const pending: TopologyDelta[] = (await store.outbox()).map((e) => {
    try {
      return deltaFromOutbox(e.body);
    } catch (err) {
      throw new Error(`the graph store's outbox entry for rev ${e.rev} cannot be read (${String(err)}); the graph itself is intact`, { cause: err });
    }
  });
  if (pending.length) log.info("re-publishing deltas committed but not confirmed sent", { from: pending[0]!.rev, to: pending.at(-1)!.rev });
  let sentUpTo = pending.length ? pending[0]!.rev - 1 : rev;
  const flush = async () => {
    // fenced: the next writer re-publishes these from the store's outbox (same Nats-Msg-Id, so never twice)
    while (pending.length && !deps.fence?.aborted) {
      const d = pending[0]!;
      // a publish lost in a NATS restart fails in seconds, not the client's 30 s: discovery waits on this
      await publishEvent(bus, bus.topo.subjects.topologyDelta, TopologyDeltaCompiled, "topology.delta.v1", d, `${bus.topo.prefix}:delta:${d.rev}`, DELTA_PUBLISH_TIMEOUT_MS);
      pending.shift();
      sentUpTo = d.rev;
    }
  };
  // one flush at a time: two would publish the same head and then each drop one
  let flushing: Promise<void> | undefined;
  const flushQuietly = () =>
    (flushing ??= flush()
      .catch((e) => log.warn("delta publish failed; will retry", { error: String(e) }))
      .finally(() => (flushing = undefined)));
  const retry = setInterval(() => pending.length && flushQuietly(), 1000);

  const snapshotSub = bus.nc.subscribe(bus.topo.subjects.snapshotRpc, {
    callback: (err, msg) => {
      if (err || !msg.reply) return;
      for (const chunk of snapshotChunks(model, rev, now())) msg.respond(new TextEncoder().encode(JSON.stringify(chunk)));
    },
  });

  const cypherSub = bus.nc.subscribe(bus.topo.subjects.cypherRpc, {
    callback: (err, msg) => {
      if (err || !msg.reply) return;
      void answerCypher(store, msg.data).then((r) => msg.respond(new TextEncoder().encode(JSON.stringify(r))));
    },
  });

  // Discovery batches and the aging timer both change the model and write the store: one at a time.
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const p = chain.then(f);
    chain = p.catch(() => undefined);
    return p;
  };

  // Once writes pause, the store moves its log into its data files (Kuzu checkpoints rarely on its own: see kuzu.ts),
  // so the cost falls in a quiet moment and a restart has little log to replay.
  // Idle means idle when it runs too: queued behind a long write that has just committed, it is skipped (each Kuzu
  // checkpoint makes the next one dearer, so one in the middle of a busy spell costs twice).
  const idleMs = deps.checkpointIdleMs ?? 10_000;
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  let lastCommitAt = 0;
  const idleCheckpointAfterThis = () => {
    lastCommitAt = performance.now();
    clearTimeout(idleTimer);
    idleTimer = setTimeout(
      () =>
        void serial(async () => {
          // (a commit since this timer was set has set a fresh one)
          if (performance.now() - lastCommitAt >= idleMs * 0.9) await store.checkpoint();
        }).catch((e) => log.warn("graph checkpoint failed; the next one catches up", { error: String(e) })),
      idleMs,
    );
  };

  /**
   * True after a failed write whose model could not be rebuilt (the store was down for that too): the model may hold
   * changes the store lacks, so it is rebuilt before anything else is folded in. Folded again into such a model, the
   * failed batch would change nothing, be acked, and never reach the store.
   */
  let stale = false;
  const rebuild = async () => {
    const s = await store.load();
    warnUnreadable(log, s);
    const nodesBefore = model.nodes.size;
    model = modelFromGraph(s.nodes, s.edges, deps.stage, s.sourceIntervals);
    rev = s.rev;
    // a rebuild can shrink the graph a lot (what the model had and the store lacked): one of the causes to log
    log.warn("model rebuilt from the store", { nodesBefore, nodes: model.nodes.size, edges: model.edges.size, rev });
    stale = false;
  };

  /** Aborted by stop(): the write in flight is rolled back and the rest of its change set abandoned. */
  const halt = new AbortController();
  const fenced = () => halt.abort(deps.fence?.reason);
  if (deps.fence?.aborted) fenced();
  deps.fence?.addEventListener("abort", fenced, { once: true });
  const writeMax = deps.writeMaxItems ?? WRITE_MAX_ITEMS;

  /**
   * Writes one change set durably, in parts (splitChanges; each part its own transaction with its own revs and outbox
   * entries, so every committed prefix is a graph and the deltas that lead to it), queuing each part's deltas after
   * its commit. On a failed write the model is rebuilt from the store, which holds the parts committed so far.
   */
  const commit = async (changes: Changes, t: number) => {
    if (isEmpty(changes)) return;
    const parts = splitChanges(changes, writeMax);
    try {
      while (parts.length) {
        const part = parts[0]!;
        const deltas = splitDelta(part, rev, t);
        const next = rev + deltas.length;
        try {
          // a lease that lapsed during a long synchronous step aborts `fence` here, before the write begins
          if (deps.stillWriter && !deps.stillWriter()) fenced();
          // The outbox rides in the same transaction; entries already published are dropped in it too.
          await store.apply(part, next, { entries: deltas.map((d) => ({ rev: d.rev, body: outboxBody(d) })), sentUpTo }, { signal: halt.signal });
        } catch (e) {
          const n = changeCount(part);
          if (e instanceof GraphStoreError && e.code === "too_large" && n > 1) {
            // rolled back whole: the same changes again as two transactions
            log.warn("graph write too large for the store's memory; writing it in halves", { items: n, error: e.message });
            parts.splice(0, 1, ...splitChanges(part, Math.ceil(n / 2)));
            continue;
          }
          throw e;
        }
        parts.shift();
        rev = next;
        idleCheckpointAfterThis();
        pending.push(...deltas);
        registry?.afterCommit(part);
        // The store write is the durable effect; a failed delta publish is retried and must not redeliver the batch.
        await flushQuietly();
      }
    } catch (e) {
      stale = true;
      // stopping: the batch goes back to the stream unacked; the next start loads the store and replays it
      if (halt.signal.aborted) throw e;
      // The model ran ahead of the store: rebuild it from what is durable, then let the batch be tried again (the
      // write's error, typed by the store, says whether to wait for the store or to look for a bad message).
      log.error("graph write failed; rebuilding model from store", { error: String(e) });
      await rebuild().catch((le) => log.warn("model rebuild failed; retried before the next batch", { error: String(le) }));
      throw e;
    }
  };
  /** A batch or aging pass that starts while stopping is not begun (a rebuild alone can outlast the deadline). */
  const notStopping = () => {
    if (deps.stillWriter && !deps.stillWriter()) fenced();
    if (halt.signal.aborted) throw new GraphStoreError("aborted", "the topology service is stopping");
  };

  let registry: RegistryFollower | undefined;

  /** the newest stream time folded in, and whether more discovery was waiting behind it */
  let watermark = 0;
  let behind = false;

  const folded = new FoldedSeqs();

  // Discovery must be folded in stream order: replay what a killed predecessor left unacked, in order.
  const rewound = await rewindToAckFloor(bus.jsm, bus.topo.consumers.topology);
  if (rewound) log.info("replaying discovery left unacked by the previous run, in order", { messages: rewound });

  const consumer: ConsumerHandle = await runConsumer(
    bus,
    bus.topo.consumers.topology,
    DiscoveryBatchCompiled,
    "discovery.v1",
    (batch) =>
      serial(async () => {
        // Event time: a batch counts as seen when JetStream stored it, not when a backlog let us fold it, and the
        // model is aged at that time while a backlog remains. Otherwise a service that falls a minute behind (a
        // restart, a burst) ages out sources whose next scans are already waiting in the stream, then re-adds them.
        const last = batch.at(-1)!.msg.info;
        const stored = Math.floor(last.timestampNanos / 1e6);
        const t = Math.min(now(), Number.isFinite(stored) && stored > 0 ? stored : now());
        watermark = Math.max(watermark, t);
        behind = last.pending > 0;
        // a batch about another host than its subject names is refused (dead-lettered alone, the rest folded)
        const stray = batch.find((b) => !discoverySubjectFits(bus.topo, b.msg.subject, b.value.host));
        if (stray) throw new PermanentError(`host_mismatch: a batch about host "${stray.value.host.slice(0, 200)}" came on ${stray.msg.subject.slice(0, 300)}; a source may describe only the host its subject names`);
        // redelivered after its ack was lost, behind newer scans: already in the graph
        const fresh = batch.filter((b) => b.msg.info.deliveryCount === 1 || !folded.has(b.msg.seq));
        if (fresh.length < batch.length) log.warn("discovery redelivered after it was folded; skipped", { messages: batch.length - fresh.length });
        if (!fresh.length) return;
        try {
          notStopping();
          if (stale) await rebuild();
          const nodesBefore = model.nodes.size;
          // folded in steps of FOLD_STEP messages with the event loop let run between them: Cypher, snapshot and
          // lease replies do not wait for a whole 3000-message fold
          const steps = applyDiscoverySteps(model, fresh.map((b) => b.value), t, FOLD_STEP);
          let step = steps.next();
          while (!step.done) {
            await breathe();
            step = steps.next();
          }
          const changes = step.value;
          logLargeRemoval(log, changes, nodesBefore);
          for (const reason of changes.rejected ?? []) log.warn("discovery input skipped", { reason });
          const items = changes.nodesUpserted.length + changes.edgesUpserted.length + changes.nodesRemoved.length + changes.edgesRemoved.length;
          // a bulk change set: what the last one left behind goes before the store's commit takes its own memory
          if (items >= COLLECT_BEFORE_ITEMS) Bun.gc(true);
          await commit(changes, t);
          for (const b of fresh) folded.add(b.msg.seq);
          if (items >= collectAfter) collect();
        } catch (e) {
          // this batch waits to be tried again: age by its stream time meanwhile, not by the clock (an outage of
          // the store would otherwise age out every source whose scans are waiting)
          behind = true;
          throw e;
        }
      }),
    // Up to 3000 messages per change set when a backlog builds (a first scan of a large estate, a restart): the
    // graph store's bulk write has a fixed cost per batch that grows with the graph (a COPY's commit: 1-3 s into a
    // 400k-edge table), so fewer, larger writes converge a 10k-host estate faster; but Kuzu's commit takes memory in
    // proportion (bench graph peak RSS: 1.7 GiB at 2000, 2.0-2.4 GiB at 6000). When idle, batches stay as small as
    // what arrived. While a backlog is being fetched, wait up to 50 ms for it rather than writing the first message
    // alone.
    // While one is written, one more change set's worth waits here and the client pulls 1000 at a time: a first
    // scan's messages are ~10 KB each, and with the defaults (6000 queued, 3000 pulled) ~100 MB of them sat in memory
    // during each commit.
    {
      maxBatch: 3000,
      lingerMs: 50,
      queued: 3000,
      pullWindow: 1000,
      onError: (e) => log.warn("discovery batch failed", { error: String(e) }),
      onHold: (attempt, e) => {
        log.warn("graph store unavailable; holding the discovery batch and retrying", { attempt, error: String(e) });
      },
    },
  );

  // fenced or stopping: no registry write begins either
  const registrySerial = <T>(f: () => Promise<T>) =>
    serial(async () => {
      notStopping();
      return await f();
    });
  if (deps.registry !== false) registry = await followRegistryGraph({ bus, store, log, serial: registrySerial });

  // Whether discovery is waiting to be folded: on the server (num_pending) or fetched into this client's buffer and
  // not yet acked (num_ack_pending; no batch is in progress while the ager holds the serial chain). A batch's own
  // `pending` misses the second: with thousands of messages in the pull buffer behind a long write it read 0, the
  // ager aged at the clock, and a 2,000-host estate whose scans were all waiting was removed whole (bench soak).
  const discoveryWaiting = async (): Promise<boolean> => {
    const c = bus.topo.consumers.topology;
    try {
      const info = await bus.jsm.consumers.info(c.stream, c.durable);
      return info.num_pending > 0 || info.num_ack_pending > 0 || behind;
    } catch {
      return behind;
    }
  };

  const ager = setInterval(
    () =>
      void serial(async () => {
        if (halt.signal.aborted) return;
        if (stale) await rebuild();
        const t = (await discoveryWaiting()) ? watermark : now();
        const nodesBefore = model.nodes.size;
        const aged = ageModel(model, t, deps.aging);
        logLargeRemoval(log, aged, nodesBefore);
        await commit(aged, t);
      }).catch((e) => log.warn("aging failed", { error: String(e) })),
    deps.aging?.everyMs ?? 5000,
  );

  return {
    model: () => model,
    rev: () => rev,
    stop: async () => {
      clearInterval(retry);
      clearInterval(ager);
      clearTimeout(idleTimer);
      snapshotSub.unsubscribe();
      cypherSub.unsubscribe();
      // A write in flight is rolled back within a statement (its batch is redelivered to the next run); the parts of
      // its change set already committed stay, with their outbox entries, and are flushed below.
      halt.abort();
      deps.fence?.removeEventListener("abort", fenced);
      await consumer.stop();
      await registry?.stop();
      // an aging pass or batch already running ends before the caller closes the store under it
      await chain;
      await flushing;
      await flush().catch(() => undefined);
    },
  };
}

export interface SnapshotChunk extends TopologySnapshot {
  part: number;
  parts: number;
}

/** A snapshot is sent as several messages so it fits NATS's max payload at any size of estate. */
export function snapshotChunks(model: TopologyModel, rev: number, at: number): SnapshotChunk[] {
  const nodes = [...model.nodes.values()];
  const edges = [...model.edges.values()];
  const parts = Math.max(1, Math.ceil((nodes.length + edges.length) / SNAPSHOT_CHUNK));
  const out: SnapshotChunk[] = [];
  let ni = 0;
  let ei = 0;
  for (let p = 0; p < parts; p++) {
    const n = nodes.slice(ni, ni + SNAPSHOT_CHUNK);
    ni += n.length;
    const e = edges.slice(ei, ei + (SNAPSHOT_CHUNK - n.length));
    ei += e.length;
    out.push({ schema: "topology.snapshot.v1", rev, at, nodes: n, edges: e, part: p, parts });
  }
  return out;
}

/** Answers one read-only Cypher request; every failure is a value with a code, never a crash. */
export async function answerCypher(store: GraphStore, bytes: Uint8Array): Promise<CypherResponse> {
  const t0 = performance.now();
  try {
    const req = decode(CypherRequest, "cypher.v1", bytes);
    const rows = await store.query(req.query, req.params, { timeoutMs: req.timeoutMs, maxRows: req.maxRows });
    return { ok: true, rows, ms: performance.now() - t0 };
  } catch (e) {
    if (e instanceof GraphStoreError) return { ok: false, code: e.code, error: e.message };
    if (e instanceof ContractError) return { ok: false, code: "bad_request", error: e.message };
    return { ok: false, code: "internal", error: String(e) };
  }
}

/**
 * A delta as the store's outbox keeps it: its JSON gzipped (level 1) and in base64 behind `gz1:`, so the store sees
 * an opaque string as before. A first scan's write carries ~14 MB of delta JSON (bench graph: 3000 messages, ~55k
 * items); gzipped, the commit that stores it needs about 100 MiB less memory, which keeps bench graph's peak in budget.
 */
export function outboxBody(d: TopologyDelta): string {
  return `gz1:${Buffer.from(Bun.gzipSync(new TextEncoder().encode(JSON.stringify(d)), { level: 1 })).toString("base64")}`;
}

/** The delta an outbox body holds, validated; a body written before compression (plain JSON) reads as before. */
export function deltaFromOutbox(body: string): TopologyDelta {
  const json = body.startsWith("gz1:") ? new TextDecoder().decode(Bun.gunzipSync(Buffer.from(body.slice(4), "base64"))) : body;
  return validate(TopologyDelta, "topology.delta.v1", JSON.parse(json));
}

/** Items per delta message: keeps each well under NATS's max payload. */
export const DELTA_CHUNK = 1500;

/**
 * One change set becomes one or more deltas with consecutive revs, ordered so that every prefix is a valid graph:
 * node upserts, then edge upserts, then edge removals, then node removals.
 */
export function splitDelta(c: Changes, fromRev: number, at: number): TopologyDelta[] {
  const out: TopologyDelta[] = [];
  let d: TopologyDelta | undefined;
  let n = 0;
  // Walks the four lists in that order, DELTA_CHUNK items a delta (no intermediate list of every item).
  const next = () => {
    if (!d || n === DELTA_CHUNK) {
      d = { schema: "topology.delta.v1", rev: fromRev + out.length + 1, at, nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] };
      out.push(d);
      n = 0;
    }
    n++;
    return d;
  };
  for (const x of c.nodesUpserted) next().nodesUpserted.push(x);
  for (const x of c.edgesUpserted) next().edgesUpserted.push(x);
  for (const x of c.edgesRemoved) next().edgesRemoved.push(x.id);
  for (const x of c.nodesRemoved) next().nodesRemoved.push(x);
  return out;
}

/** Entities the store gave back without readable props: said once per load, with a few of them. */
function warnUnreadable(log: Logger, g: StoredGraph): void {
  if (!g.unreadable.length) return;
  log.warn("the graph store held entities whose props are not JSON; loaded with none until their sources report them again", {
    entities: g.unreadable.length,
    examples: g.unreadable.slice(0, 5),
  });
}

/** A change set that removes a large part of the graph is logged with its causes (aging, a full state), never silently. */
function logLargeRemoval(log: Logger, c: Changes, nodesBefore: number) {
  const s = summarizeRemovals(c, nodesBefore);
  if (s) log.warn(`removing ${s.nodesRemoved} of ${s.nodesBefore} nodes (${s.edgesRemoved} edges): ${s.reason}`, { ...s });
}
