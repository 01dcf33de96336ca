/**
 * `bun run bench discovery [--hosts 10000] [--ticks 4] [--churn-seconds 60] [--fanout 0.45] [--scan-pairs 1000] [--scan-procs 50] [--agent-only]`
 *
 * A simulated estate (services/simulator/estate.ts: agents' own diff, full state then deltas) through a real
 * nats-server → the topology service in-process (pure stage + graph store + delta stream), as bench/pipeline.ts does:
 *   1. converge: the first two scans of every host (the second confirms the flows) published as fast as possible;
 *      seconds until the service's model holds exactly the graph the pure stage computes from the same batches,
 *      every message is acked (written to the store) and the store has checkpointed; against the same store's raw
 *      bulk write of the final graph.
 *   2. churn: `ticks` scans with heavy churn (restarts, reconnects, cron jobs, crashes, failures, deploys with IP reuse);
 *      topology changes/s = items in the published deltas / seconds to drain them and checkpoint what they wrote.
 *   3. raw JetStream: the same first-round messages published (pipelined) and consumed (ack each), same run.
 *   4. agent scan: /proc scans of this machine with ~2k extra loopback sockets held by 50 child processes, vs the raw
 *      read of the socket tables it must parse and a bare fd walk (`--agent-only` runs just this part).
 * The graph store is Kuzu, or Neo4j with ORRERY_GRAPH=neo4j and NEO4J_URL (NEO4J_USER, NEO4J_PASSWORD, NEO4J_DATABASE):
 * a disposable database, since the bench deletes its whole graph before each write.
 *
 * This bench takes a short cut and is not the product's path: aging is held off while converging, sources are judged
 * by a 60 s interval during churn, the simulator's metrics are not sent, and there is no gateway, no WebSocket client
 * and no browser; the topology service runs in the bench's own process. It measures the topology stage and the graph
 * store at scale. `bench estate` runs the platform as `npm run demo` does (supervisor, simulator at its real cadence
 * with aging on, gateway, a WebSocket client) and is the measure of what a user gets.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { AckPolicy } from "@nats-io/jetstream";
import { DiscoveryBatch, type DiscoveryBatch as Batch } from "../pipelines/contracts/discovery.ts";
import { TopologyDelta } from "../pipelines/contracts/topology.ts";
import { decode, encode } from "../pipelines/codec.ts";
import { applyDiscovery, emptyModel } from "../pipelines/stages/topology/index.ts";
import { scanToBatches, emptyAgentState } from "../pipelines/stages/agent-diff.ts";
import { scanHost } from "../services/agent/scan.ts";
import type { GraphStore } from "../services/graph/port.ts";
import { connectBus, type Bus } from "../services/shared/bus.ts";
import { makeLogger } from "../services/shared/log.ts";
import { makeEstate, NO_CHURN, scanEstate } from "../services/simulator/estate.ts";
import { startTopologyService } from "../services/topology/service.ts";
import { loadTopologyConfig } from "../services/topology/config.ts";
import { startNats } from "../test/helpers/nats.ts";
import { spawnUntilReady } from "../test/helpers/process.ts";
import { tempDir, uniquePrefix } from "../test/helpers/tmp.ts";
import { benchGraph } from "./lib/graph-store.ts";
import { median } from "./lib/stats.ts";

const HEAVY_CHURN = { restart: 0.05, reconnect: 0.3, cron: 0.05, crash: 0.02, failure: 0.002, deploy: 0.01 };

/**
 * Times a graph store's writes, to say where the pipeline's time goes. It wraps the instance's own methods, so it
 * times whichever adapter the bench runs (Kuzu or Neo4j). `writeS` and `checkpointS` sum each call's time, including
 * any wait behind another store call (the service's idle checkpoint can queue behind the bench's own); `busyS` is
 * the time with at least one call in flight, the store's share of the wall clock.
 */
function timeWrites(store: GraphStore) {
  const timing = { writeS: 0, checkpointS: 0, busyS: 0, removedEdges: 0 };
  const checkpoint = store.checkpoint.bind(store);
  const apply = store.apply.bind(store);
  let inFlight = 0;
  let busySince = 0;
  const enter = () => {
    if (inFlight++ === 0) busySince = performance.now();
  };
  const leave = () => {
    if (--inFlight === 0) timing.busyS += (performance.now() - busySince) / 1000;
  };
  store.checkpoint = async () => {
    const t = performance.now();
    enter();
    try {
      await checkpoint();
    } finally {
      leave();
      timing.checkpointS += (performance.now() - t) / 1000;
      if (process.env.ORRERY_BENCH_TRACE) console.error(`checkpoint: ${(performance.now() - t).toFixed(0)} ms`);
    }
  };
  store.apply = async (...a: Parameters<GraphStore["apply"]>) => {
    const t = performance.now();
    enter();
    try {
      await apply(...a);
    } finally {
      leave();
      const ms = performance.now() - t;
      timing.writeS += ms / 1000;
      timing.removedEdges += a[0].edgesRemoved.length;
      if (process.env.ORRERY_BENCH_TRACE) {
        const c = a[0];
        const kinds: Record<string, number> = {};
        for (const e of c.edgesUpserted) kinds[e.kind] = (kinds[e.kind] ?? 0) + 1;
        console.error(`write rev ${a[1]}: ${ms.toFixed(0)} ms, nodes +${c.nodesUpserted.length} (new ${[...(c.created ?? [])].filter((id) => !id.includes("->")).length}) -${c.nodesRemoved.length}, edges ${JSON.stringify(kinds)} -${c.edgesRemoved.length}`);
      }
    }
  };
  return timing;
}

async function publishAll(bus: Bus, batches: Batch[], payloads: Uint8Array[], tag: string, inFlight = 1000): Promise<void> {
  let i = 0;
  const worker = async () => {
    while (i < payloads.length) {
      const k = i++;
      const b = batches[k]!;
      await bus.js.publish(bus.topo.subjects.discovery(b.host), payloads[k]!, { msgID: `${tag}:${b.source}:${b.scanId}:${b.part}`, timeout: 60_000 });
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

async function backlog(bus: Bus): Promise<number> {
  const spec = bus.topo.consumers.topology;
  const info = await bus.jsm.consumers.info(spec.stream, spec.durable);
  return info.num_pending + info.num_ack_pending;
}

async function drained(bus: Bus): Promise<void> {
  while ((await backlog(bus)) > 0) await Bun.sleep(50);
}

/**
 * Publishes like a fleet of agents does — steadily — rather than dumping everything at once: at most `window`
 * messages wait in the stream. (A backlog the consumer cannot work off within its ack_wait gets redelivered.)
 */
async function publishPaced(bus: Bus, batches: Batch[], payloads: Uint8Array[], tag: string, window = 3000, maxMs = Infinity): Promise<number> {
  const t0 = performance.now();
  const step = Math.max(1, Math.floor(window / 2));
  let i = 0;
  for (; i < payloads.length && performance.now() - t0 < maxMs; i += step) {
    while ((await backlog(bus)) > step) await Bun.sleep(20);
    const end = Math.min(payloads.length, i + step);
    await publishAll(bus, batches.slice(i, end), payloads.slice(i, end), `${tag}${i}`);
  }
  return Math.min(i, payloads.length);
}

/**
 * Times the store's basic writes on the converged graph: changing nodes, removing edges (99 one by one, and 3000 in one
 * write, which the Kuzu adapter deletes by one hash join), creating edges.
 */
async function probeStore(store: GraphStore, model: ReturnType<typeof emptyModel>) {
  const n = 100;
  const connects = [...model.edges.values()].filter((e) => e.kind === "CONNECTS");
  const edges = connects.slice(0, n);
  const few = edges.slice(0, n - 1);
  const many = connects.slice(n, n + 3000);
  const nodes = [...model.nodes.values()].filter((x) => x.kind === "listener").slice(0, n);
  const time = async (count: number, c: Parameters<GraphStore["apply"]>[0]) => {
    const t = performance.now();
    await store.apply(c, 0);
    return Math.round((count / (performance.now() - t)) * 1000);
  };
  const none = { nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] };
  const removal = (es: typeof edges) => ({ ...none, edgesRemoved: es.map((e) => ({ id: e.id, kind: e.kind, src: e.src, dst: e.dst })) });
  const changedNodesPerS = await time(n, { ...none, nodesUpserted: nodes.map((x) => ({ ...x, props: { ...x.props, probe: 1 } })) });
  const removedEdgesPerS = await time(few.length, removal(few));
  const createdEdgesPerS = await time(few.length, { ...none, edgesUpserted: few, created: new Set(few.map((e) => e.id)) });
  const removedEdgesPerSAt3000 = await time(many.length, removal(many));
  // put the probed entities back as they were (the service's model is the truth)
  await store.apply({ ...none, edgesUpserted: many, created: new Set(many.map((e) => e.id)) }, 0);
  await store.apply({ ...none, nodesUpserted: nodes }, 0);
  return { changedNodesPerS, removedEdgesPerS, removedEdgesPerSAt3000, createdEdgesPerS };
}


/**
 * One scan of this machine with many sockets open, spread over `procs` child processes (each listens on loopback and
 * holds its share of connections to itself, both ends), so the /proc/<pid>/fd walk has many processes to cover: the
 * agent's cost per scan, next to the raw cost of reading the socket tables it must parse and of walking the fds.
 */
async function agentScan(pairs: number, procs: number) {
  const per = Math.max(1, Math.ceil(pairs / procs));
  const js = `const net = require("node:net");
    const srv = net.createServer((s) => s.on("error", () => {}));
    srv.listen(0, "127.0.0.1", async () => {
      const port = srv.address().port;
      const cs = [];
      for (let i = 0; i < ${per}; i++) cs.push(new Promise((r) => { const c = net.connect(port, "127.0.0.1", r); c.on("error", () => {}); }));
      await Promise.all(cs);
      console.log("ready");
    });
    process.stdin.on("data", () => {}); process.stdin.on("end", () => process.exit(0));`;
  const started = await Promise.allSettled(Array.from({ length: procs }, () => spawnUntilReady([process.execPath, "--smol", "-e", js], { stdin: "pipe", ready: /ready/, timeoutMs: 60_000, name: "socket holder" })));
  const children = started.flatMap((r) => (r.status === "fulfilled" ? [r.value.proc] : []));
  try {
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    const childPids = new Set(children.map((c) => c.pid));
    const scanMs: number[] = [];
    const diffMs: number[] = [];
    const rawTablesMs: number[] = [];
    const rawFdWalkMs: number[] = [];
    let sockets = 0;
    let childSockets = 0;
    let pids = 0;
    let state = emptyAgentState();
    for (let i = 0; i < 7; i++) {
      let t = performance.now();
      for (const f of ["tcp", "tcp6", "udp", "udp6"]) readFileSync(`/proc/net/${f}`, "utf8");
      rawTablesMs.push(performance.now() - t);
      t = performance.now();
      pids = rawFdWalk();
      rawFdWalkMs.push(performance.now() - t);
      t = performance.now();
      const s = await scanHost();
      scanMs.push(performance.now() - t);
      sockets = s.sockets.length;
      childSockets = s.sockets.filter((x) => x.pid !== null && childPids.has(x.pid)).length;
      t = performance.now();
      state = scanToBatches(state, s, { source: "agent:bench", host: "bench", scanId: i, full: i === 0 }).state;
      diffMs.push(performance.now() - t);
    }
    const m = (xs: number[]) => +median(xs).toFixed(1);
    return {
      sockets,
      childProcesses: procs,
      socketsOwnedByChildren: childSockets,
      expectedChildSockets: procs * (2 * per + 1),
      processesWalked: pids,
      scanMs: m(scanMs),
      diffMs: m(diffMs),
      rawSocketTablesMs: m(rawTablesMs),
      rawFdWalkMs: m(rawFdWalkMs),
      ratioScanToRawTables: +(median(scanMs) / median(rawTablesMs)).toFixed(1),
      ratioScanToRawTablesPlusFdWalk: +(median(scanMs) / (median(rawTablesMs) + median(rawFdWalkMs))).toFixed(2),
    };
  } finally {
    for (const c of children) c.kill();
    await Promise.all(children.map((c) => c.exited));
  }
}

/** The least any owner lookup costs: readdir + readlink of every fd of every process, synchronously. */
function rawFdWalk(): number {
  let n = 0;
  for (const name of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(name)) continue;
    n++;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${name}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        readlinkSync(`/proc/${name}/fd/${fd}`);
      } catch {
        // closed meanwhile
      }
    }
  }
  return n;
}

function printAgentScan(scan: Awaited<ReturnType<typeof agentScan>>) {
  return (
    `agent scan with ${scan.sockets} sockets (${scan.socketsOwnedByChildren}/${scan.expectedChildSockets} in ${scan.childProcesses} child processes, ${scan.processesWalked} processes walked): ` +
    `${scan.scanMs} ms (+${scan.diffMs} ms diff); raw socket-table read ${scan.rawSocketTablesMs} ms, raw fd walk ${scan.rawFdWalkMs} ms`
  );
}

export async function benchDiscovery(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      hosts: { type: "string", default: "10000" },
      ticks: { type: "string", default: "4" },
      "churn-seconds": { type: "string", default: "60" },
      // 0.45: the estate, 10k hosts → ~104k nodes / ~301k edges (1 gives ~466k edges: DEPENDS_ON doubles the
      // CONNECTS edges the fanout makes)
      fanout: { type: "string", default: "0.45" },
      "scan-pairs": { type: "string", default: "1000" },
      "scan-procs": { type: "string", default: "50" },
      "agent-only": { type: "boolean", default: false },
    },
  });
  if (values["agent-only"]) {
    const scan = await agentScan(Number(values["scan-pairs"]), Number(values["scan-procs"]));
    console.log(JSON.stringify({ bench: "discovery", agentScan: scan }, null, 2));
    console.log(`\n${printAgentScan(scan)}`);
    return;
  }
  const hosts = Number(values.hosts);
  const ticks = Number(values.ticks);
  const log = makeLogger("bench", true);
  const cfg = loadTopologyConfig(process.env);
  const graph = benchGraph(cfg);
  console.error(`graph store: ${graph.label}`);
  const nats = await startNats();
  const tmp = tempDir("orrery-bench-discovery-");
  try {
    // The estate and its first two scans; the pure stage's result on them is what "converged" means.
    let t = performance.now();
    const estate = makeEstate(hosts, { churn: NO_CHURN, fanout: Number(values.fanout), fullEvery: 1_000_000 });
    const T = Date.now();
    const round1 = scanEstate(estate, T).batches;
    const round2 = scanEstate(estate, T + 5000).batches;
    const simS = (performance.now() - t) / 1000;
    const converge = [...round1, ...round2];
    const payloads = converge.map((b) => encode(DiscoveryBatch, "discovery.v1", b));
    t = performance.now();
    const ref = emptyModel();
    for (let i = 0; i < converge.length; i += 500) applyDiscovery(ref, converge.slice(i, i + 500), T);
    const stageS = (performance.now() - t) / 1000;
    const want = { nodes: ref.nodes.size, edges: ref.edges.size };
    const events = converge.reduce((n, b) => n + b.events.length, 0);
    console.error(`estate: ${estate.hosts.length} hosts, ${converge.length} messages, ${events} events → ${want.nodes} nodes, ${want.edges} edges (pure stage ${stageS.toFixed(1)} s)`);

    // Raw JetStream: the first round's messages alone, pipelined publish then a durable consumer acking each (the
    // limit of the bus itself; the pipeline publishes paced, so its ratio also carries the pacing).
    const raw = await connectBus({ url: nats.url, prefix: uniquePrefix("raw"), name: "bench-raw" });
    const rawN = round1.length;
    t = performance.now();
    await publishAll(raw, round1, payloads.slice(0, rawN), "raw");
    const rawPubS = (performance.now() - t) / 1000;
    await raw.jsm.consumers.add(raw.topo.streams.discovery.name, { durable_name: "rawbench", ack_policy: AckPolicy.Explicit });
    const rc = await raw.js.consumers.get(raw.topo.streams.discovery.name, "rawbench");
    t = performance.now();
    let got = 0;
    for await (const m of await rc.consume({ max_messages: 1000 })) {
      m.ack();
      if (++got === rawN) break;
    }
    const rawConS = (performance.now() - t) / 1000;
    await raw.jsm.streams.delete(raw.topo.streams.discovery.name);
    await raw.close();
    const rawMsgsPerS = rawN / (rawPubS + rawConS);

    // The pipeline: topology service in-process, the graph store (Kuzu, or Neo4j with ORRERY_GRAPH=neo4j), delta stream.
    const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("disc"), name: "bench" });
    let deltaItems = 0;
    const sub = bus.nc.subscribe(bus.topo.subjects.topologyDelta, {
      callback: (_e, m) => {
        const d = decode(TopologyDelta, "topology.delta.v1", m.data);
        deltaItems += d.nodesUpserted.length + d.nodesRemoved.length + d.edgesUpserted.length + d.edgesRemoved.length;
      },
    });
    // the topology service's own store settings (Kuzu's buffer pool: services/topology/config.ts)
    await graph.clear();
    const store = graph.open(join(tmp.dir, "kuzu"), { bufferPoolMiB: cfg.ORRERY_KUZU_BUFFER_MIB, checkpointThresholdMiB: cfg.ORRERY_KUZU_CHECKPOINT_MIB });
    const timing = timeWrites(store);
    // The two converging scans are published back to back (not 5 s apart, as agents send them), and each churn tick
    // follows the last as fast as the pipeline takes it: aging at the agents' 5 s would mark hosts stale merely for
    // waiting their turn in the stream. So aging is held off while converging, and during churn a source is judged
    // by a 60 s interval (as for agents scanning every minute): churn counts real changes, not pacing artefacts.
    const aging = { intervalMs: 1e12, staleAfter: 3, removeAfter: 12, everyMs: 5000 };
    const svc = await startTopologyService({ bus, store, log, aging });
    t = performance.now();
    await publishPaced(bus, converge, payloads, "c");
    const pubS = (performance.now() - t) / 1000;
    await drained(bus);
    while (svc.model().nodes.size !== want.nodes || svc.model().edges.size !== want.edges) {
      if (performance.now() - t > 600_000) throw new Error(`did not converge: ${svc.model().nodes.size}/${want.nodes} nodes, ${svc.model().edges.size}/${want.edges} edges`);
      await Bun.sleep(50);
    }
    // the store's deferred work (Kuzu's checkpoint of its WAL) is counted in, not left for the idle timer
    await store.checkpoint();
    const convergeS = (performance.now() - t) / 1000;
    console.error(`converged in ${convergeS.toFixed(1)} s (graph writes ${timing.writeS.toFixed(1)} s, checkpoint ${timing.checkpointS.toFixed(1)} s)`);
    const stored = await store.query("MATCH (n:Entity) RETURN count(n) AS n");
    await Bun.sleep(300);
    const convergeItems = deltaItems;
    const convergeWriteS = timing.writeS;
    const convergeCheckpointS = timing.checkpointS;

    // What single writes cost the store at this size (the service's churn path is made of these).
    const probe = await probeStore(store, svc.model());
    // The probe's own writes are checkpointed here, not by the service's idle checkpoint once churn has begun (~7 s
    // at 10k hosts: its 3000 created and 3000 removed edges touch most of the CONNECTS lists).
    const t1 = performance.now();
    await store.checkpoint();
    const probeCheckpointS = (performance.now() - t1) / 1000;
    console.error(`graph store at this size: ${JSON.stringify(probe)} (then checkpointed in ${probeCheckpointS.toFixed(1)} s)`);

    // Churn: scans with heavy churn, generated up front so only the pipeline is timed; published steadily for at most
    // --churn-seconds, then drained.
    estate.opts.churn = HEAVY_CHURN;
    aging.intervalMs = 60_000;
    const churnBatches: Batch[] = [];
    for (let i = 0; i < ticks; i++) churnBatches.push(...scanEstate(estate, T + 10_000 + i * 5000).batches);
    const churnPayloads = churnBatches.map((b) => encode(DiscoveryBatch, "discovery.v1", b));
    deltaItems = 0;
    timing.writeS = 0;
    timing.checkpointS = 0;
    timing.busyS = 0;
    timing.removedEdges = 0;
    t = performance.now();
    const sent = await publishPaced(bus, churnBatches, churnPayloads, "x", 3000, Number(values["churn-seconds"]) * 1000);
    await drained(bus);
    // Counted in: the checkpoint of everything churn wrote (Kuzu defers it to a 64 MiB WAL or an idle moment, and
    // a sustained rate must pay for it).
    await store.checkpoint();
    await Bun.sleep(200); // let the last deltas arrive on the subscription
    const churnS = (performance.now() - t) / 1000 - 0.2;
    churnBatches.length = sent;
    const churnEvents = churnBatches.reduce((n, b) => n + b.events.length, 0);
    const churnItems = deltaItems;
    sub.unsubscribe();
    const final = { nodes: [...svc.model().nodes.values()], edges: [...svc.model().edges.values()] };
    await svc.stop();
    await store.close();
    await bus.close();

    // The same store's raw limit: the final graph bulk-written into a fresh store of the same kind (one change set,
    // every entity new), as bench graph measures it.
    await graph.clear();
    const rawStore = graph.open(join(tmp.dir, "kuzu-raw"), { bufferPoolMiB: cfg.ORRERY_KUZU_BUFFER_MIB });
    await rawStore.init();
    t = performance.now();
    await rawStore.apply({ nodesUpserted: final.nodes, edgesUpserted: final.edges, nodesRemoved: [], edgesRemoved: [], created: new Set([...final.nodes.map((n) => n.id), ...final.edges.map((e) => e.id)]) }, 1);
    await rawStore.checkpoint();
    const rawStoreS = (performance.now() - t) / 1000;
    await rawStore.close();
    const rawStoreItemsPerS = Math.round((final.nodes.length + final.edges.length) / rawStoreS);

    const scan = await agentScan(Number(values["scan-pairs"]), Number(values["scan-procs"]));
    const report = {
      bench: "discovery",
      graphStore: graph.label,
      estate: { hosts: estate.hosts.length, messages: converge.length, events, avgMessageBytes: Math.round(payloads.reduce((n, p) => n + p.byteLength, 0) / payloads.length), simulateSeconds: +simS.toFixed(1) },
      graph: { nodes: want.nodes, edges: want.edges, storedNodes: stored[0]?.n },
      converge: { seconds: +convergeS.toFixed(1), publishSeconds: +pubS.toFixed(1), graphWriteSeconds: +convergeWriteS.toFixed(1), checkpointSeconds: +convergeCheckpointS.toFixed(1), deltaItems: convergeItems, itemsPerS: Math.round(convergeItems / convergeS), msgsPerS: Math.round(converge.length / convergeS), goalSeconds: 60 },
      churn: { ticks, messages: churnBatches.length, events: churnEvents, seconds: +churnS.toFixed(2), graphWriteSeconds: +timing.writeS.toFixed(2), checkpointSeconds: +timing.checkpointS.toFixed(2), edgesRemoved: timing.removedEdges, topologyChanges: churnItems, changesPerS: Math.round(churnItems / churnS), msgsPerS: Math.round(churnBatches.length / churnS), goalChangesPerS: 2000, storeShareOfTime: +(timing.busyS / churnS).toFixed(2) },
      pureStage: { seconds: +stageS.toFixed(1), msgsPerS: Math.round(converge.length / stageS) },
      rawJetStream: { messages: rawN, publishMsgsPerS: Math.round(rawN / rawPubS), consumeMsgsPerS: Math.round(rawN / rawConS), publishThenConsumeMsgsPerS: Math.round(rawMsgsPerS) },
      ratioConvergeMsgsToRawJetStream: +(converge.length / convergeS / rawMsgsPerS).toFixed(3),
      ratioChurnMsgsToRawJetStream: +(churnBatches.length / churnS / rawMsgsPerS).toFixed(3),
      graphStoreAtThisSize: { ...probe, checkpointSeconds: +probeCheckpointS.toFixed(1) },
      /** the final graph bulk-written into a fresh store of the same kind: the store's own raw write rate */
      rawStoreBulkWrite: { items: final.nodes.length + final.edges.length, seconds: +rawStoreS.toFixed(1), itemsPerS: rawStoreItemsPerS },
      ratioConvergeItemsToRawStore: +(convergeItems / convergeS / rawStoreItemsPerS).toFixed(3),
      agentScan: scan,
    };
    console.log(JSON.stringify(report, null, 2));
    console.log(
      `\ngraph store: ${graph.label}` +
        `\nconverge: ${report.graph.nodes} nodes / ${report.graph.edges} edges from ${report.estate.hosts} hosts in ${report.converge.seconds} s (goal ≤ 60 s); ${report.converge.itemsPerS} items/s vs the store's raw bulk write ${rawStoreItemsPerS} items/s → ratio ${report.ratioConvergeItemsToRawStore}` +
        `\nchurn: ${report.churn.changesPerS} topology changes/s sustained (${report.churn.topologyChanges} changes in ${report.churn.seconds} s; goal ≥ 2000/s; ${Math.round(report.churn.storeShareOfTime * 100)}% of the time in graph-store writes, whose single-write rates at this size are ${JSON.stringify(probe)})` +
        `\nraw JetStream publish+consume of the same messages: ${report.rawJetStream.publishThenConsumeMsgsPerS} msg/s → converge ratio ${report.ratioConvergeMsgsToRawJetStream}, churn ratio ${report.ratioChurnMsgsToRawJetStream}` +
        `\n${printAgentScan(scan)}`,
    );
  } finally {
    await nats.stop();
    tmp.cleanup();
  }
}
