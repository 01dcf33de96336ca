/**
 * `bun run bench store-ab --baseline <checkout> [--baseline <another>…] [--whole] [--profile] [--hosts 10000] [--fanout 0.45] [--ticks 4] [--batch 1400] [--segment 2]`
 *
 * This tree's discovery write path against another checkout's (a `git worktree` of an older commit with node_modules
 * linked in), in ONE process, alternating in short segments (A B, then B A, …) so the noise of a shared machine falls
 * on both alike. Bench discovery's estate is converged into a fresh Kuzu store of each side (one bulk write), then
 * its heavy-churn scans are folded into change sets of `--batch` messages (about what the topology service takes per
 * batch during that bench's churn), each written with its deltas as outbox entries, as the service writes them.
 *   default:  this tree's simulator and topology stage make the change sets; both adapters write the same ones
 *             (the Kuzu adapter alone).
 *   --whole:  each side's own simulator, stage and adapter (the code as a whole, minus what is left out below); the
 *             change sets then differ, so compare messages/s as well as items/s.
 * Reports per-segment times, per-write medians, which writes checkpointed (the WAL shrank) and the final checkpoint.
 *
 * Left out: NATS, the consumer, the topology service itself (its idle checkpoints, aging, delta publishing), and the
 * stage's time (change sets are computed before the timed part; it is reported apart). `bench discovery` is the
 * measure of the whole pipeline.
 */
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { DiscoveryBatch } from "../pipelines/contracts/discovery.ts";
import type { TopoEdge, TopoNode } from "../pipelines/contracts/topology.ts";
import type { Changes } from "../pipelines/stages/topology/index.ts";
import * as thisStage from "../pipelines/stages/topology/index.ts";
import { KuzuGraphStore } from "../services/graph/kuzu.ts";
import type { GraphStore, OutboxEntry } from "../services/graph/port.ts";
import * as thisSimulator from "../services/simulator/estate.ts";
import * as thisService from "../services/topology/service.ts";
import { tempDir } from "../test/helpers/tmp.ts";
import { median } from "./lib/stats.ts";

const HEAVY_CHURN = { restart: 0.05, reconnect: 0.3, cron: 0.05, crash: 0.02, failure: 0.002, deploy: 0.01 };

interface Write {
  changes: Changes;
  rev: number;
  outbox: { entries: OutboxEntry[]; sentUpTo: number };
  items: number;
  messages: number;
}

type Store = Pick<GraphStore, "init" | "apply" | "checkpoint" | "close">;

/** What a side's code provides, loaded from this tree or from the baseline checkout (the stage's path moved). */
interface Code {
  stage: { applyDiscovery: (m: any, b: DiscoveryBatch[], t: number) => Changes; emptyModel: () => any };
  simulator: { makeEstate: typeof thisSimulator.makeEstate; scanEstate: typeof thisSimulator.scanEstate; NO_CHURN: typeof thisSimulator.NO_CHURN };
  service: { splitDelta: typeof thisService.splitDelta; outboxBody: typeof thisService.outboxBody };
  Store: new (path: string, opts?: { bufferPoolMiB?: number }) => Store;
}

async function loadCode(dir: string): Promise<Code> {
  const stagePath = existsSync(join(dir, "pipelines/stages/topology/index.ts")) ? "pipelines/stages/topology/index.ts" : "pipelines/stages/topology.ts";
  const [stage, simulator, service, kuzu] = await Promise.all(
    [stagePath, "services/simulator/estate.ts", "services/topology/service.ts", "services/graph/kuzu.ts"].map((p) => import(join(dir, p))),
  );
  return { stage, simulator, service, Store: kuzu.KuzuGraphStore };
}

interface Prepared {
  base: { nodes: TopoNode[]; edges: TopoEdge[] };
  writes: Write[];
  messages: number;
  stageS: number;
}

/** The estate converged, then its churn scans as change sets of `per` messages, each with its revs and outbox. */
function prepare(code: Code, o: { hosts: number; fanout: number; ticks: number; per: number }): Prepared {
  const { stage, simulator, service } = code;
  const estate = simulator.makeEstate(o.hosts, { churn: simulator.NO_CHURN, fanout: o.fanout, fullEvery: 1_000_000 });
  const T = Date.now();
  const model = stage.emptyModel();
  const converge = [...simulator.scanEstate(estate, T).batches, ...simulator.scanEstate(estate, T + 5000).batches];
  for (let i = 0; i < converge.length; i += 500) stage.applyDiscovery(model, converge.slice(i, i + 500), T);
  const base = { nodes: [...model.nodes.values()] as TopoNode[], edges: [...model.edges.values()] as TopoEdge[] };
  estate.opts.churn = HEAVY_CHURN;
  const churn: DiscoveryBatch[] = [];
  for (let i = 0; i < o.ticks; i++) churn.push(...simulator.scanEstate(estate, T + 10_000 + i * 5000).batches);
  const writes: Write[] = [];
  let rev = 1;
  let stageMs = 0;
  for (let i = 0; i < churn.length; i += o.per) {
    const t = T + 10_000 + Math.floor((i / churn.length) * 20_000);
    const part = churn.slice(i, i + o.per);
    const t0 = performance.now();
    const changes = stage.applyDiscovery(model, part, t);
    stageMs += performance.now() - t0;
    const deltas = service.splitDelta(changes, rev, t);
    if (!deltas.length) continue;
    const next = rev + deltas.length;
    const items = changes.nodesUpserted.length + changes.nodesRemoved.length + changes.edgesUpserted.length + changes.edgesRemoved.length;
    // every delta before this write counts as published (the service's usual state when it keeps up)
    writes.push({ changes, rev: next, outbox: { entries: deltas.map((d) => ({ rev: d.rev, body: service.outboxBody(d) })), sentUpTo: rev }, items, messages: part.length });
    rev = next;
  }
  return { base, writes, messages: churn.length, stageS: stageMs / 1000 };
}

/**
 * Times every statement on the adapter's writer connection (`conn`, a private field of both versions), keyed by its
 * first 100 characters: where a write's time goes, statement by statement.
 */
function profileStatements(store: Store, into: Map<string, { n: number; ms: number }>): void {
  const conn = (store as unknown as { conn: Record<string, (...a: unknown[]) => Promise<unknown>> }).conn;
  const cypherOf = new WeakMap<object, string>();
  const prepare = conn.prepare!.bind(conn);
  conn.prepare = async (...a: unknown[]) => {
    const ps = (await prepare(...a)) as object;
    cypherOf.set(ps, String(a[0]));
    return ps;
  };
  for (const method of ["query", "execute"] as const) {
    const f = conn[method]!.bind(conn);
    conn[method] = async (...a: unknown[]) => {
      const key = (typeof a[0] === "string" ? a[0] : String(cypherOf.get(a[0] as object) ?? "(prepared before profiling)")).slice(0, 100);
      const t0 = performance.now();
      try {
        return await f(...a);
      } finally {
        const e = into.get(key) ?? { n: 0, ms: 0 };
        e.n++;
        e.ms += performance.now() - t0;
        into.set(key, e);
      }
    };
  }
}

function walBytes(path: string): number {
  try {
    return statSync(`${path}.wal`).size;
  } catch {
    return 0;
  }
}

export async function benchStoreAb(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      baseline: { type: "string", multiple: true },
      whole: { type: "boolean", default: false },
      hosts: { type: "string", default: "10000" },
      fanout: { type: "string", default: "0.45" },
      ticks: { type: "string", default: "4" },
      batch: { type: "string", default: "1400" },
      segment: { type: "string", default: "2" },
      profile: { type: "boolean", default: false },
      "buffer-mib": { type: "string", default: "512" },
    },
  });
  if (!values.baseline?.length) throw new Error("--baseline <checkout> is required: a checkout of the commit to compare with, its node_modules linked in");
  const baselines = await Promise.all(values.baseline.map(async (dir) => ({ dir: resolve(dir), code: await loadCode(resolve(dir)) })));
  const current: Code = { stage: thisStage, simulator: thisSimulator, service: thisService, Store: KuzuGraphStore };
  const o = { hosts: Number(values.hosts), fanout: Number(values.fanout), ticks: Number(values.ticks), per: Number(values.batch) };
  const bufferPoolMiB = Number(values["buffer-mib"]);
  const segment = Number(values.segment);

  let t = performance.now();
  const prepNew = prepare(current, o);
  console.error(`change sets prepared in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  const tmp = tempDir("orrery-bench-store-ab-");
  const sides = [
    { name: "new", dir: "(this tree)", prep: prepNew, Store: current.Store },
    ...baselines.map((b, i) => ({ name: baselines.length > 1 ? `baseline${i + 1}` : "baseline", dir: b.dir, prep: values.whole ? prepare(b.code, o) : prepNew, Store: b.code.Store })),
  ].map((s) => ({
    ...s,
    path: join(tmp.dir, s.name),
    store: new s.Store(join(tmp.dir, s.name), { bufferPoolMiB }) as Store,
    ms: [] as number[],
    checkpointed: [] as number[],
    finalCheckpointMs: 0,
    statements: new Map<string, { n: number; ms: number }>(),
  }));
  for (const s of sides) {
    const items = s.prep.writes.reduce((n, w) => n + w.items, 0);
    console.error(`${s.name} ${s.dir}: ${s.prep.base.nodes.length} nodes, ${s.prep.base.edges.length} edges; churn ${s.prep.messages} messages → ${s.prep.writes.length} writes, ${items} items; stage ${s.prep.stageS.toFixed(1)} s`);
  }
  try {
    for (const s of sides) {
      await s.store.init();
      t = performance.now();
      const all = new Set([...s.prep.base.nodes.map((n) => n.id), ...s.prep.base.edges.map((e) => e.id)]);
      await s.store.apply({ nodesUpserted: s.prep.base.nodes, edgesUpserted: s.prep.base.edges, nodesRemoved: [], edgesRemoved: [], created: all }, 1);
      await s.store.checkpoint();
      console.error(`${s.name}: converged graph written in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
    if (values.profile) for (const s of sides) profileStatements(s.store, s.statements);
    const n = Math.min(...sides.map((s) => s.prep.writes.length));
    const segments: Record<string, number>[] = [];
    for (let i = 0, k = 0; i < n; i += segment, k++) {
      // the sides in turn, the first one rotating: none always runs first (after the others' writes, on a warmer or
      // busier machine)
      const order = sides.map((_, j) => sides[(j + k) % sides.length]!);
      const seg: Record<string, number> = {};
      for (const s of order) {
        const t0 = performance.now();
        for (const w of s.prep.writes.slice(i, i + segment)) {
          const wal = walBytes(s.path);
          const t1 = performance.now();
          await s.store.apply(w.changes, w.rev, w.outbox);
          s.ms.push(performance.now() - t1);
          if (walBytes(s.path) < wal) s.checkpointed.push(s.ms.length - 1);
        }
        seg[s.name] = performance.now() - t0;
      }
      segments.push(seg);
      console.error(`segment ${k} (${order[0]!.name} first): ${sides.map((s) => `${s.name} ${seg[s.name]!.toFixed(0)} ms`).join(", ")}; WAL ${sides.map((s) => `${(walBytes(s.path) / 2 ** 20).toFixed(0)}`).join("/")} MiB`);
    }
    for (const s of sides) {
      const t0 = performance.now();
      await s.store.checkpoint();
      s.finalCheckpointMs = performance.now() - t0;
    }
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const nw = sides[0]!;
    const summary = (s: typeof nw) => {
      const done = s.prep.writes.slice(0, n);
      const items = sum(done.map((w) => w.items));
      const messages = sum(done.map((w) => w.messages));
      const seconds = (sum(s.ms) + s.finalCheckpointMs) / 1000;
      const out = {
        code: s.dir,
        writes: n,
        messages,
        items,
        writeSeconds: +(sum(s.ms) / 1000).toFixed(2),
        finalCheckpointSeconds: +(s.finalCheckpointMs / 1000).toFixed(2),
        itemsPerS: Math.round(items / seconds),
        messagesPerS: Math.round(messages / seconds),
        medianWriteMs: +median(s.ms).toFixed(0),
        checkpointedAtWrite: s.checkpointed,
        writeMs: s.ms.map((m) => Math.round(m)),
        stageSeconds: +((s.prep.stageS * n) / s.prep.writes.length).toFixed(1),
      };
      if (s === nw) return out;
      const perSegment = segments.map((g) => g.new! / g[s.name]!);
      return {
        ...out,
        newOverThisPerWriteMedian: +median(nw.ms.map((m, i) => m / s.ms[i]!)).toFixed(3),
        newOverThisPerSegmentMedian: +median(perSegment).toFixed(3),
        segmentsNewSlower: `${perSegment.filter((r) => r > 1).length}/${perSegment.length}`,
      };
    };
    const report = {
      bench: "store-ab",
      mode: values.whole ? "whole (each side's simulator, stage and adapter)" : "adapter (the same change sets)",
      batchMessages: o.per,
      segmentWrites: segment,
      sides: Object.fromEntries(sides.map((s) => [s.name, summary(s)])),
    };
    console.log(JSON.stringify(report, null, 2));
    if (values.profile)
      for (const s of sides) {
        console.log(`\n${s.name}: statements by total time (ms, count; up to 4 in flight, so a statement's time includes its wait)`);
        for (const [q, v] of [...s.statements].sort((a, b) => b[1].ms - a[1].ms).slice(0, 15)) console.log(`  ${v.ms.toFixed(0).padStart(7)} ${String(v.n).padStart(6)}  ${q}`);
      }
    console.log(`\nstore-ab (${report.mode}), ${n} churn writes each, with the final checkpoint:`);
    for (const s of sides) {
      const r = report.sides[s.name] as ReturnType<typeof summary> & { newOverThisPerWriteMedian?: number; newOverThisPerSegmentMedian?: number; segmentsNewSlower?: string };
      console.log(
        `  ${s.name.padEnd(10)} ${String(r.itemsPerS).padStart(6)} items/s ${String(r.messagesPerS).padStart(5)} msg/s, median write ${r.medianWriteMs} ms` +
          (r.newOverThisPerWriteMedian === undefined ? "" : `; new/this per write ${r.newOverThisPerWriteMedian}, per segment ${r.newOverThisPerSegmentMedian} (${r.segmentsNewSlower} slower)`),
      );
    }
  } finally {
    for (const s of sides) await s.store.close().catch(() => undefined);
    tmp.cleanup();
  }
}
