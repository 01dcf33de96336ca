/**
 * `bun run bench graph [--nodes 100000 --edges 300000]` — the graph at estate scale, each number next to the raw limit
 * of what it wraps, measured in the same run:
 *   - write: discovery batches through JetStream → topology service (a child process, as in production) → the graph
 *     store → deltas, against a bulk write of the same final graph into the same kind of store;
 *   - impact: p50/p99 of upstream+downstream walks from 1000 random entities on the ImpactIndex folded from the delta
 *     stream, against the store's variable-length 3-hop query on the same graph;
 *   - history: the history service storing every delta's change rows in ClickHouse (owner child process), against one
 *     raw insert of the same rows; then stateAt(T) end to end, against the same aggregation counted inside ClickHouse;
 *   - memory: peak RSS of the topology service process.
 * The graph store is Kuzu, or Neo4j with ORRERY_GRAPH=neo4j and NEO4J_URL (NEO4J_USER, NEO4J_PASSWORD, NEO4J_DATABASE):
 * a disposable database, since the bench deletes its whole graph before each write.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { encode, decode } from "../pipelines/codec.ts";
import type { ProcessIdentity } from "../pipelines/contracts/common.ts";
import { DiscoveryBatch as DiscoveryBatchSchema, type DiscoveryBatch, type DiscoveryEvent } from "../pipelines/contracts/discovery.ts";
import { TopologyDelta } from "../pipelines/contracts/topology.ts";
import { applyDelta, emptyMirror } from "../pipelines/stages/apply-delta.ts";
import { changeRows } from "../pipelines/stages/history.ts";
import { impact, ImpactIndex } from "../pipelines/stages/impact.ts";
import { makeClickHouseClient } from "../services/clickhouse/client.ts";
import { fetchSnapshot } from "../services/topology/client.ts";
import { ClickHouseHistoryStore } from "../services/history/clickhouse.ts";
import { historyConsumer, startHistoryService } from "../services/history/service.ts";
import { connectBus, type Bus } from "../services/shared/bus.ts";
import { topologyLaunchEnv } from "../services/topology/client.ts";
import { makeLogger } from "../services/shared/log.ts";
import { loadTopologyConfig } from "../services/topology/config.ts";
import { startNats } from "../test/helpers/nats.ts";
import { tempDir, uniquePrefix } from "../test/helpers/tmp.ts";
import { startChild, type BenchChild } from "./lib/child.ts";
import { benchGraph as graphStoreOf } from "./lib/graph-store.ts";
import { rssOf } from "./lib/proc.ts";
import { median, pct } from "./lib/stats.ts";

const SERVICES = 4;
const t0 = performance.now();
/** Progress on stderr; the report goes to stdout. */
const step = (msg: string) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${msg}\n`);

/**
 * Hosts running SERVICES services each (one listener per service); a host's services make `calls` calls to services on other
 * hosts. Per host: 1 + 2·SERVICES nodes (the host, a process and a listener per service) and 2·SERVICES + 2·calls
 * edges (RUNS and LISTENS per service; per call a CONNECTS edge and the DEPENDS_ON edge the stage derives from it),
 * the host's `calls` spread over its services. Two full scans per host, since a flow becomes an edge once it was seen
 * in two scans.
 */
function estate(nodes: number, edges: number): { hosts: number; calls: number; rounds: DiscoveryBatch[][] } {
  const hosts = Math.max(2, Math.round(nodes / (1 + 2 * SERVICES)));
  const calls = Math.max(1, Math.min(SERVICES * (hosts - 1), Math.round((edges / hosts - 2 * SERVICES) / 2)));
  const callsOf = (s: number) => Math.floor(calls / SERVICES) + (s < calls % SERVICES ? 1 : 0);
  const ip = (h: number) => `10.${(h >> 16) & 255}.${(h >> 8) & 255}.${h & 255}`;
  const proc = (h: number, s: number): ProcessIdentity => ({ pid: 1000 + s, exe: `/usr/bin/svc${s}`, comm: `svc${s}`, cmdline: [`svc${s}`, "--serve"], user: "app", uid: 1000, startTime: 1_700_000_000_000 + h, containerId: null });
  const rounds: DiscoveryBatch[][] = [[], []];
  for (let h = 0; h < hosts; h++) {
    const events: DiscoveryEvent[] = [{ type: "host.seen", hostname: `h${h}`, os: "Debian 12", kernel: "6.1", cpus: 4, memTotalBytes: 8e9, ips: [ip(h)] }];
    for (let s = 0; s < SERVICES; s++) events.push({ type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 8000 + s, process: proc(h, s) });
    for (let s = 0; s < SERVICES; s++)
      for (let c = 0; c < callsOf(s); c++) {
        // callees: hosts announced earlier (the first few hosts call later ones), spread so there are no tight clusters.
        // Calls to hosts not yet seen would become external nodes first and move later, through the slow MERGE path.
        const span = h > callsOf(s) ? h : hosts - 1;
        const peer = (h + hosts - 1 - ((c * 7919 + s * 104729 + h) % span)) % hosts;
        events.push({ type: "connection.seen", proto: "tcp", localIp: ip(h), localPort: 30000 + s * 1000 + c, remoteIp: ip(peer), remotePort: 8000 + ((s + c) % SERVICES), process: proc(h, s) });
      }
    // Scans an hour apart (an hourly discovery job): the stage learns the interval and does not age hosts out while
    // the bench runs.
    for (const [r, round] of rounds.entries())
      round.push({ schema: "discovery.v1", source: `agent:h${h}`, host: `h${h}`, scanId: r, part: 0, parts: 1, full: true, at: Date.now() - (1 - r) * 3600_000, events });
  }
  return { hosts, calls, rounds };
}

async function publishAll(bus: Bus, payloads: { subject: string; data: Uint8Array; id: string }[], inFlight = 500): Promise<void> {
  let i = 0;
  const worker = async () => {
    while (i < payloads.length) {
      const p = payloads[i++]!;
      await bus.js.publish(p.subject, p.data, { msgID: p.id, timeout: 60_000 });
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

/** A service as its own process; its log (stderr) goes to a file, printed if the bench fails. */
function spawn(args: string[], env: Record<string, string>, logFile: string, name: string): Promise<BenchChild> {
  logs.push(logFile);
  return startChild(args, { env, stderrFile: logFile, timeoutMs: 120_000, name });
}
const logs: string[] = [];

const sameIds = (a: { id: string }[], b: Map<string, unknown>) => a.length === b.size && a.every((x) => b.has(x.id));
const ms = (x: number) => +x.toFixed(2);

/** Until the consumer has acked `total` messages; fails at once if `worker` (the process consuming) exits. */
async function drained(bus: Bus, stream: string, durable: string, total: number, worker?: BenchChild["proc"]): Promise<void> {
  while (true) {
    if (worker && (worker.exitCode !== null || worker.signalCode)) throw new Error(`the consumer ended (${worker.signalCode ?? `exit code ${worker.exitCode}`}) before draining ${stream}; the last lines of its log are above`);
    // A busy event loop (the in-process history service decoding large deltas) can time out one info request.
    const i = await bus.jsm.consumers.info(stream, durable).catch(() => null);
    if (i && i.num_pending === 0 && i.num_ack_pending === 0 && i.delivered.stream_seq >= total) return;
    await Bun.sleep(50);
  }
}

export async function benchGraph(argv: string[]) {
  const { values } = parseArgs({ args: argv, options: { nodes: { type: "string", default: "100000" }, edges: { type: "string", default: "300000" }, queries: { type: "string", default: "1000" } } });
  const wantNodes = Number(values.nodes);
  const wantEdges = Number(values.edges);
  const queries = Number(values.queries);
  const tmp = tempDir("orrery-bench-graph-");
  const nats = await startNats();
  const prefix = uniquePrefix("graph");
  const children: BenchChild["proc"][] = [];
  const log = makeLogger("bench", true);
  // the store the topology service writes to, and the raw write it is compared with
  const graph = graphStoreOf(loadTopologyConfig(process.env));
  step(`graph store: ${graph.label}`);
  try {
    const chChild = await spawn(["services/clickhouse/main.ts", "--data-dir", join(tmp.dir, "ch"), "--port", "0"], {}, join(tmp.dir, "clickhouse.log"), "the ClickHouse owner");
    children.push(chChild.proc);
    const chUrl = String(chChild.ready.url);

    const { hosts, calls, rounds } = estate(wantNodes, wantEdges);
    // Each host's two scans back to back, so a host never looks silent between them.
    const payloads = rounds[0]!.flatMap((_, h) => rounds.map((round, r) => ({ subject: `${prefix}.discovery.v1.${round[h]!.host}`, data: encode(DiscoveryBatchSchema, "discovery.v1", round[h]!), id: `${r}:${round[h]!.host}` })));
    const events = rounds.reduce((n, round) => n + round.reduce((k, b) => k + b.events.length, 0), 0);

    // ---- write: the topology service as its own process, as the supervisor runs it
    step(`estate: ${hosts} hosts, ${payloads.length} messages, ${events} events; starting the topology service`);
    await graph.clear();
    const topo = (await spawn(["services/topology/main.ts"], { ...topologyLaunchEnv(), ...graph.env, NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_DATA_DIR: join(tmp.dir, "data"), ORRERY_LOG_QUIET: "1" }, join(tmp.dir, "topology.log"), "the topology service")).proc;
    children.push(topo);
    const bus = await connectBus({ url: nats.url, prefix, name: "bench-graph" });
    let peak = { rssMiB: 0, peakMiB: 0 };
    const sampler = setInterval(() => void rssOf(topo.pid).then((r) => (peak = r)).catch(() => undefined), 500);
    let t = performance.now();
    await publishAll(bus, payloads);
    const spec = bus.topo.consumers.topology;
    await drained(bus, spec.stream, spec.durable, payloads.length, topo);
    const writeS = (performance.now() - t) / 1000;
    clearInterval(sampler);
    const rss = await rssOf(topo.pid);
    step(`written in ${writeS.toFixed(1)} s; fetching the snapshot`);
    const snap = await fetchSnapshot(bus, 120_000);
    const items = snap.nodes.length + snap.edges.length;

    // ---- impact: fold the delta stream (what the gateway does) into a mirror and the index, then query
    step(`snapshot: ${snap.nodes.length} nodes, ${snap.edges.length} edges; reading the delta stream`);
    const deltaInfo = await bus.jsm.streams.info(bus.topo.streams.topology.name);
    // Read straight from the stream by sequence: an ordered consumer stalled here on ~400 KB deltas.
    const deltas: TopologyDelta[] = [];
    for (let seq = deltaInfo.state.first_seq; seq <= deltaInfo.state.last_seq; seq++) {
      const m = await bus.jsm.streams.getMessage(bus.topo.streams.topology.name, { seq });
      if (m) deltas.push(decode(TopologyDelta, "topology.delta.v1", m.data, 64 * 1024 * 1024));
    }
    step(`${deltas.length} deltas; folding them into the impact index and querying`);
    const mirror = emptyMirror();
    const index = new ImpactIndex();
    t = performance.now();
    for (const d of deltas) {
      applyDelta(mirror, d);
      index.applyDelta(d);
    }
    const foldS = (performance.now() - t) / 1000;
    t = performance.now();
    const rebuilt = ImpactIndex.fromMirror(mirror);
    const rebuildMs = performance.now() - t;
    const ids = [...mirror.nodes.keys()];
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const sample = Array.from({ length: queries }, () => ids[Math.floor(rnd() * ids.length)]!);
    const lat: number[] = [];
    let reached = 0;
    for (const id of sample) {
      const q0 = performance.now();
      const r = impact(index, { ids: [id], direction: "both", hops: 6 });
      lat.push(performance.now() - q0);
      reached += r.upstream.length + r.downstream.length;
    }
    const lat3: number[] = [];
    for (const id of sample) {
      const q0 = performance.now();
      impact(index, { ids: [id], direction: "up", hops: 3 });
      lat3.push(performance.now() - q0);
    }

    // ---- history: the history service stores the delta stream; then state at T
    step("impact done; storing history");
    const history = new ClickHouseHistoryStore(makeClickHouseClient({ url: chUrl, requestTimeoutMs: 300_000 }), { database: "bench", ttlDays: 30 });
    t = performance.now();
    const hsvc = await startHistoryService({ bus, store: history, log });
    const hspec = historyConsumer(bus.topo);
    await drained(bus, hspec.stream, hspec.durable, deltaInfo.state.messages);
    const historyS = (performance.now() - t) / 1000;
    const rows = deltas.flatMap(changeRows);
    const ch = makeClickHouseClient({ url: chUrl, requestTimeoutMs: 300_000 });
    await ch.command({ query: "CREATE TABLE bench.raw_rows AS bench.topology_changes" });
    t = performance.now();
    await ch.insert({ table: "bench.raw_rows", values: rows, format: "JSONEachRow" });
    const rawInsertS = (performance.now() - t) / 1000;
    step(`history stored in ${historyS.toFixed(1)} s, raw insert ${rawInsertS.toFixed(1)} s; state at T`);
    const lastAt = Math.max(...deltas.map((d) => d.at));
    const stateRuns: number[] = [];
    let state = await history.stateAt(lastAt);
    for (let i = 0; i < 3; i++) {
      const s0 = performance.now();
      state = await history.stateAt(lastAt);
      stateRuns.push(performance.now() - s0);
    }
    const midAt = deltas[Math.floor(deltas.length / 2)]!.at;
    const m0 = performance.now();
    const midState = await history.stateAt(midAt);
    const midMs = performance.now() - m0;
    const engineRuns: number[] = [];
    for (let i = 0; i < 3; i++) {
      const e0 = performance.now();
      await (await ch.query({ query: `SELECT count() FROM (SELECT entity, id, argMax(tuple(op, kind, src, dst, name, source, props, firstSeen, lastSeen), tuple(rev, seq)) AS s FROM bench.topology_changes WHERE ts <= fromUnixTimestamp64Milli({t:Int64}) GROUP BY entity, id HAVING tupleElement(s, 1) = 'upsert')`, query_params: { t: lastAt }, format: "JSONEachRow", clickhouse_settings: { optimize_aggregation_in_order: 0 } })).json();
      engineRuns.push(performance.now() - e0);
    }
    await hsvc.stop();
    await history.close();
    await ch.close();
    await bus.close();

    // ---- raw graph store: the topology service lets go of its store; the same graph bulk-written fresh into the same kind
    step(`raw ${graph.label} bulk write`);
    topo.kill("SIGTERM");
    await topo.exited;
    await graph.clear();
    const rawStore = graph.open(join(tmp.dir, "kuzu-raw"));
    await rawStore.init();
    t = performance.now();
    await rawStore.apply({ nodesUpserted: snap.nodes, edgesUpserted: snap.edges, nodesRemoved: [], edgesRemoved: [], created: new Set([...snap.nodes.map((n) => n.id), ...snap.edges.map((e) => e.id)]) }, 1);
    const rawGraphS = (performance.now() - t) / 1000;
    const storeLat: number[] = [];
    for (const id of sample.slice(0, 20)) {
      const q0 = performance.now();
      await rawStore.query("MATCH (a:Entity {id: $id})<-[*1..3]-(b:Entity) RETURN count(DISTINCT b.id) AS n", { id }, { timeoutMs: 60_000 });
      storeLat.push(performance.now() - q0);
    }
    await rawStore.close();

    const report = {
      bench: "graph",
      graphStore: graph.label,
      estate: { hosts, servicesPerHost: SERVICES, callsPerHost: calls, messages: payloads.length, events },
      graph: { nodes: snap.nodes.length, edges: snap.edges.length, rev: snap.rev, deltas: deltas.length },
      write: {
        seconds: ms(writeS),
        itemsPerS: Math.round(items / writeS),
        eventsPerS: Math.round(events / writeS),
        rawStoreBulkSeconds: ms(rawGraphS),
        rawStoreItemsPerS: Math.round(items / rawGraphS),
        ratioToRawStore: +(rawGraphS / writeS).toFixed(3),
      },
      impact: {
        queries,
        hops: 6,
        direction: "both",
        p50Ms: ms(pct(lat, 50)),
        p99Ms: ms(pct(lat, 99)),
        maxMs: ms(Math.max(...lat)),
        avgAffected: Math.round(reached / queries),
        up3HopsP50Ms: ms(pct(lat3, 50)),
        up3HopsP99Ms: ms(pct(lat3, 99)),
        rawStore3HopP50Ms: ms(median(storeLat)),
        ratioP50ToStore3Hop: +(median(storeLat) / pct(lat3, 50)).toFixed(1),
        foldDeltasSeconds: ms(foldS),
        rebuildFromMirrorMs: Math.round(rebuildMs),
        indexMatchesRebuild: JSON.stringify(index.size) === JSON.stringify(rebuilt.size),
        goalP99Ms: 50,
      },
      history: {
        rows: rows.length,
        serviceSeconds: ms(historyS),
        serviceRowsPerS: Math.round(rows.length / historyS),
        rawInsertRowsPerS: Math.round(rows.length / rawInsertS),
        ratioToRawInsert: +(rawInsertS / historyS).toFixed(3),
        stateAtLatestMs: Math.round(median(stateRuns)),
        stateAtLatest: { nodes: state.nodes.length, edges: state.edges.length, matchesDeltaFold: sameIds(state.nodes, mirror.nodes) && sameIds(state.edges, mirror.edges) },
        stateAtMidMs: Math.round(midMs),
        stateAtMid: { nodes: midState.nodes.length, edges: midState.edges.length },
        engineOnlyMs: Math.round(median(engineRuns)),
        goalMs: 2000,
      },
      memory: { topologyServiceRssMiB: rss.rssMiB, topologyServicePeakRssMiB: Math.max(rss.peakMiB, peak.peakMiB), goalMiB: 1024 },
    };
    console.log(JSON.stringify(report, null, 2));
    const ok = (b: boolean) => (b ? "ok" : "MISSED");
    console.log(
      `\ngraph: ${report.graph.nodes} nodes, ${report.graph.edges} edges from ${hosts} hosts (${payloads.length} discovery messages, ${events} events)` +
        `\nwrite: ${report.write.itemsPerS} items/s through JetStream → topology → ${graph.label} (${report.write.seconds} s); raw ${graph.label} bulk write ${report.write.rawStoreItemsPerS} items/s → ratio ${report.write.ratioToRawStore}` +
        `\nimpact (both, 6 hops, ${queries} random entities): p50 ${report.impact.p50Ms} ms, p99 ${report.impact.p99Ms} ms [${ok(report.impact.p99Ms <= 50)} ≤ 50 ms]; 3-hop upstream p50 ${report.impact.up3HopsP50Ms} ms vs ${graph.label} 3-hop query ${report.impact.rawStore3HopP50Ms} ms` +
        `\nhistory: ${report.history.serviceRowsPerS} change rows/s via the history service vs raw insert ${report.history.rawInsertRowsPerS} rows/s → ratio ${report.history.ratioToRawInsert}` +
        `\nstate at T (latest, ${state.nodes.length} nodes): ${report.history.stateAtLatestMs} ms [${ok(report.history.stateAtLatestMs <= 2000)} ≤ 2000 ms]; the aggregation alone in ClickHouse ${report.history.engineOnlyMs} ms` +
        `\ntopology service RSS: ${rss.rssMiB} MiB, peak ${report.memory.topologyServicePeakRssMiB} MiB [${ok(report.memory.topologyServicePeakRssMiB <= 1024)} ≤ 1024 MiB]`,
    );
  } catch (e) {
    for (const f of logs) process.stderr.write(`--- ${f} (last 3000 bytes)\n${(await Bun.file(f).text().catch(() => "")).slice(-3000)}\n`);
    for (const c of children) process.stderr.write(`child ${c.pid} exit code ${c.exitCode} signal ${c.signalCode}\n`);
    throw e;
  } finally {
    for (const c of children) {
      c.kill("SIGTERM");
      await c.exited;
    }
    await nats.stop();
    tmp.cleanup();
  }
}
