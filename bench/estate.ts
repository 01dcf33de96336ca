/**
 * `bun run bench estate [--hosts 10000] [--churn-seconds 120] [--converge-timeout 900] [--seed 1] [--query-every-ms 500]
 *  [--snapshot-clients 3] [--tolerance 0.01] [--keep]`
 *
 * The platform as `npm run demo` runs it, measured from outside as a user meets it: the supervisor
 * (services/supervisor/main.ts) as a child process with every service it starts — nats-server, the ClickHouse owner,
 * topology, metrics, history, alerts, ingest, gateway, this host's own agent, jobs, and the simulator at its real
 * cadence (ORRERY_SIM_HOSTS, default interval and churn, aging on) — and a WebSocket client on the gateway's /ws.
 * It reports, each beside its goal and the raw reference where one exists:
 *   - converge: seconds from starting the supervisor until the graph the WebSocket client holds has every node and
 *     edge kind of the simulated estate (sources `agent:sim-*`) within --tolerance of its ground truth
 *     (services/simulator/truth.ts) and no phantom external (an external node at a simulated host's address); the
 *     store's own counts through the Cypher API at that moment; against a raw bulk write of the same graph into a
 *     fresh store of the same kind, and raw JetStream publish+consume of the simulator's first two ticks;
 *   - churn, for --churn-seconds after converging: topology changes/s reaching the WebSocket client, the consumers'
 *     backlogs, how far the counts stray from the truth;
 *   - NOC queries during churn: the README's five Cypher questions POSTed to /api/cypher in turn, p50/p99 per query,
 *     and beside them the store's own time for each answered one (the reply's `ms`: the rest is transport and queueing);
 *   - WebSocket time to the first full snapshot (a whole `topology.snapshot.v1` or the `end` of a streamed one): the
 *     client opened at start (a small graph), and --snapshot-clients fresh clients opened one after another during
 *     churn (the converged estate: the one the goal is about);
 *   - every service's CPU seconds, peak cores (5 s window) and peak RSS, from /proc of the supervisor's children;
 *   - metrics: samples the simulator published (a core subscription on its subject, counted by sample time) against
 *     samples of the simulated estate stored in ClickHouse for the same times (queried through the owner's URL from
 *     the banner), once the consumer has drained: per second of the churn window, and in total;
 *   - shutdown: SIGINT to the supervisor's process group (a terminal's Ctrl-C) until it exits, its exit status, and
 *     each child's stop time from its log.
 * Left out: a browser (rendering, the dashboard's own parse; test/browser covers those), alert load (bench alerts),
 * time travel (bench graph), a real agent fleet (the simulator stands in for it; the local agent is this machine).
 * At convergence the bench GETs /api/snapshot once (kept on disk for the raw write): the gateway's one large answer
 * comes before the churn window, not in it. The raw bulk write goes through the store's adapter, which copies in bulk
 * from 4,000 new nodes up and writes a smaller graph row by row, so below ~1,000 hosts that reference is slow.
 * Ports are free ones, not 4222/7070 (other work may hold them), and the data directory is a fresh temporary one:
 * the run starts from nothing, as a first `npm run demo` does. The raw references run after the platform has stopped,
 * on a nats-server and a store of their own, so neither competes with what is measured.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import type { DiscoveryBatch } from "../pipelines/contracts/discovery.ts";
import { discoveryMessages } from "../pipelines/contracts/split.ts";
import type { TopoEdge, TopoNode } from "../pipelines/contracts/topology.ts";
import { topologyFor } from "../pipelines/streams.ts";
import { makeClickHouseClient } from "../services/clickhouse/client.ts";
import { NatsCredentialsFile } from "../services/shared/nats-auth.ts";
import { loadSimConfig, parseChurn } from "../services/simulator/config.ts";
import { makeEstate, scanEstate } from "../services/simulator/estate.ts";
import { estateTruth } from "../services/simulator/truth.ts";
import { loadTopologyConfig } from "../services/topology/config.ts";
import { NOC_QUERIES as CONTRACT_NOC } from "../services/graph/noc-queries.ts";
import { startNats } from "../test/helpers/nats.ts";
import { spawnUntilReady } from "../test/helpers/process.ts";
import { tempDir } from "../test/helpers/tmp.ts";
import { allWithin, compareCounts, type KindRow } from "./lib/counts.ts";
import { benchGraph } from "./lib/graph-store.ts";
import { summarizeLog } from "./lib/log-summary.ts";
import { ServiceSampler } from "./lib/proc.ts";
import { rawJetStream } from "./lib/raw-jetstream.ts";
import { summary } from "./lib/stats.ts";
import { WsClient } from "./lib/ws-client.ts";

const t0 = performance.now();
const since0 = () => +((performance.now() - t0) / 1000).toFixed(1);
/** Progress on stderr; the report goes to stdout. */
const step = (msg: string) => process.stderr.write(`[${since0().toFixed(1)} s] ${msg}\n`);

/** The simulated estate's entities: every simulated agent reports as `agent:sim-<tier>-<n>`. */
const simulated = (source: string) => source.startsWith("agent:sim-");
const PREFIX = "orrery";

/** The README's NOC questions, as a user sends them (README "Questions a NOC engineer asks"). */
const NOC_QUERIES: { name: string; query: string; params: (now: number) => Record<string, unknown> }[] = [
  { name: "dependants of sim-db-1", query: CONTRACT_NOC.dependsOnDatabase, params: () => ({ host: "sim-db-1", port: 5432 }) },
  { name: "paths sim-lb-1 → sim-db-1", query: CONTRACT_NOC.lbToDatabase, params: () => ({ lb: "sim-lb-1", db: "sim-db-1", from: 443, to: 5432 }) },
  { name: "services with no owner", query: CONTRACT_NOC.servicesWithoutOwner, params: () => ({}) },
  { name: "edges not seen for a day", query: CONTRACT_NOC.edgesNotSeenSince, params: (now) => ({ since: now - 86_400_000 }) },
  { name: "callers of sim-db-1", query: CONTRACT_NOC.callersOfDatabase, params: () => ({ host: "sim-db-1", port: 5432 }) },
];

interface CypherResult {
  ms: number;
  /** the store's own time for the query, as the topology service reports it (the rest is transport and queueing) */
  storeMs?: number;
  status: number;
  rows: number;
  error?: string;
}

async function cypher(gateway: string, query: string, params: Record<string, unknown> = {}, timeoutMs = 10_000): Promise<CypherResult & { body?: { rows: Record<string, unknown>[] } }> {
  const t = performance.now();
  try {
    const res = await fetch(`${gateway}/api/cypher`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query, params, timeoutMs }) });
    const body = (await res.json()) as { ok?: boolean; rows?: Record<string, unknown>[]; error?: string; ms?: number };
    const ms = performance.now() - t;
    if (res.ok && body.rows) return { ms, ...(typeof body.ms === "number" ? { storeMs: body.ms } : {}), status: res.status, rows: body.rows.length, body: { rows: body.rows } };
    return { ms, status: res.status, rows: 0, error: String(body.error ?? res.statusText).slice(0, 200) };
  } catch (e) {
    return { ms: performance.now() - t, status: 0, rows: 0, error: String(e).slice(0, 200) };
  }
}

/** The store's own counts of the simulated estate, per kind, through the Cypher API (portable Cypher, no label()). */
async function storeCounts(gateway: string): Promise<{ nodes: Record<string, number>; edges: Record<string, number>; ms: number; errors: string[] }> {
  const t = performance.now();
  const errors: string[] = [];
  const nodes: Record<string, number> = {};
  const edges: Record<string, number> = {};
  const n = await cypher(gateway, "MATCH (n:Entity) WHERE n.source STARTS WITH 'agent:sim-' RETURN n.kind AS kind, count(*) AS n", {}, 60_000);
  if (n.error) errors.push(`nodes: ${n.error}`);
  for (const r of n.body?.rows ?? []) nodes[String(r.kind)] = Number(r.n);
  for (const kind of ["RUNS", "LISTENS", "CONNECTS", "DEPENDS_ON"]) {
    const e = await cypher(gateway, `MATCH (:Entity)-[e:${kind}]->(:Entity) WHERE e.source STARTS WITH 'agent:sim-' RETURN count(*) AS n`, {}, 60_000);
    if (e.error) errors.push(`${kind}: ${e.error}`);
    else edges[kind] = Number(e.body?.rows[0]?.n ?? 0);
  }
  return { nodes, edges, ms: Math.round(performance.now() - t), errors };
}

/** An external node at a simulated host's address: a listener the graph failed to resolve. */
const phantomTest = (ips: Set<string>) => (id: string) => {
  const addr = id.slice("external:".length);
  const ip = addr.slice(0, addr.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  return ips.has(ip);
};

async function backlogOf(jsm: JetStreamManager, stream: string, durable: string): Promise<number | null> {
  try {
    const i = await jsm.consumers.info(stream, durable);
    return i.num_pending + i.num_ack_pending;
  } catch {
    return null;
  }
}

export async function benchEstate(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      hosts: { type: "string", default: "10000" },
      "churn-seconds": { type: "string", default: "120" },
      "converge-timeout": { type: "string", default: "900" },
      seed: { type: "string", default: "1" },
      "query-every-ms": { type: "string", default: "500" },
      "snapshot-clients": { type: "string", default: "3" },
      tolerance: { type: "string", default: "0.01" },
      "sim-churn": { type: "string" },
      keep: { type: "boolean", default: false },
    },
  });
  const hosts = Number(values.hosts);
  const seed = Number(values.seed);
  const churnS = Number(values["churn-seconds"]);
  const convergeTimeoutS = Number(values["converge-timeout"]);
  const tolerance = Number(values.tolerance);
  const queryEveryMs = Number(values["query-every-ms"]);
  const snapshotClients = Number(values["snapshot-clients"]);
  const goals = { convergeS: 120, snapshotS: 10, nocP99Ms: 1000 };

  const truth = estateTruth({ hosts, seed });
  const expected = { nodes: truth.nodes as Record<string, number>, edges: truth.edges as Record<string, number> };
  const isPhantom = phantomTest(truth.ips);
  step(`ground truth of ${hosts} simulated hosts: ${JSON.stringify(truth.nodes)} ${JSON.stringify(truth.edges)}`);

  const tmp = tempDir("orrery-bench-estate-");
  const dataDir = join(tmp.dir, "data");
  const logFile = join(tmp.dir, "demo.log");
  const snapFile = join(tmp.dir, "snapshot.json");
  // the demo's environment, on free ports and a fresh data directory; an outer NATS_URL / CLICKHOUSE_URL would take
  // the embedded servers out of the run, so they are dropped
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !["NATS_URL", "CLICKHOUSE_URL", "ORRERY_SIMULATE"].includes(k)) env[k] = v;
  Object.assign(env, { ORRERY_PREFIX: PREFIX, ORRERY_DATA_DIR: dataDir, ORRERY_NATS_PORT: "0", CLICKHOUSE_OWNER_PORT: "0", ORRERY_GATEWAY_PORT: "0", ORRERY_INGEST_PORT: "0", ORRERY_SIM_HOSTS: String(hosts), ORRERY_SIM_SEED: String(seed), ORRERY_AUTH: "off" });
  // the demo's default churn unless asked (ORRERY_SIM_CHURN: "none", "default" or JSON per-host per-tick rates)
  if (values["sim-churn"] !== undefined) env.ORRERY_SIM_CHURN = values["sim-churn"];

  step(`starting the supervisor (log: ${logFile})`);
  const demo = await spawnUntilReady([process.execPath, "run", "services/supervisor/main.ts"], {
    cwd: join(import.meta.dir, ".."),
    env,
    // its own process group, as a demo started from a terminal: Ctrl-C is SIGINT to the group
    detached: true,
    ready: /^(\{"event":"ready","service":"orrery".*)\n/m,
    timeoutMs: 300_000,
    stderrFile: logFile,
    name: "the supervisor",
  });
  try {
    await measure();
  } finally {
    // a failed run leaves nothing running: Ctrl-C, then SIGKILL to the group after the supervisor's own deadlines
    if (demo.proc.exitCode === null && demo.proc.signalCode === null) {
      process.kill(-demo.proc.pid, "SIGINT");
      if (!(await Promise.race([demo.proc.exited.then(() => true), Bun.sleep(30_000).then(() => false)]))) process.kill(-demo.proc.pid, "SIGKILL");
    }
    if (!values.keep) tmp.cleanup();
    else step(`kept ${tmp.dir}`);
  }

  async function measure() {
    const banner = JSON.parse(demo.match[1]!) as { dashboard: string; nats: string; clickhouse: string; ingest: string };
    const readyS = since0();
    step(`ready: ${JSON.stringify(banner)}`);
    const sampler = new ServiceSampler(demo.proc.pid);
    sampler.start(1000);
    const cpuAtReady = sampler.cpuNow();

    // as an operator's tool would: the admin user the supervisor wrote at first start (NATS credentials are on, as
    // in `npm run demo`), or none when the run turned them off
    const credsFile = join(dataDir, "nats", "credentials.json");
    const admin = existsSync(credsFile) ? NatsCredentialsFile.parse(JSON.parse(readFileSync(credsFile, "utf8"))).admin : undefined;
    const nc = await connect({ servers: banner.nats, name: "bench-estate", ...(admin ? { user: admin.user, pass: admin.password } : {}) });
    const jsm = await jetstreamManager(nc);
    const topo = topologyFor(PREFIX);
    // what the simulator published: its metric messages, counted on a core subscription (JetStream stores them too)
    // (by message id, as JetStream deduplicates: a retried publish is stored once); those published before the
    // subscription are read back from the stream. Counted by sample time, so a time range compares exactly with
    // what ClickHouse holds for it, whatever is still in flight.
    const published = { samples: 0, messages: 0, byTs: new Map<number, number>() };
    const publishedIn = (from: number, to: number) => [...published.byTs].reduce((n, [ts, k]) => (ts >= from && ts < to ? n + k : n), 0);
    const seenIds = new Set<string>();
    const simSubject = topo.subjects.metrics("sim");
    const countPublished = (id: string | undefined, data: Uint8Array) => {
      if (id !== undefined && seenIds.has(id)) return;
      if (id !== undefined) seenIds.add(id);
      published.messages++;
      const { samples } = JSON.parse(new TextDecoder().decode(data)) as { samples: { ts: number }[] };
      published.samples += samples.length;
      for (const x of samples) published.byTs.set(x.ts, (published.byTs.get(x.ts) ?? 0) + 1);
    };
    nc.subscribe(simSubject, { callback: (_e, m) => countPublished(m.headers?.get("Nats-Msg-Id") || undefined, m.data) });
    {
      const st = (await jsm.streams.info(topo.streams.metrics.name)).state;
      for (let seq = st.first_seq; st.messages > 0 && seq <= st.last_seq; seq++) {
        const m = await jsm.streams.getMessage(topo.streams.metrics.name, { seq }).catch(() => null);
        if (m && m.subject === simSubject) countPublished(m.header?.get("Nats-Msg-Id") || undefined, m.data);
      }
    }
    const ch = makeClickHouseClient({ url: banner.clickhouse, requestTimeoutMs: 120_000 });
    const database = /^[A-Za-z_][A-Za-z0-9_]*$/.test(env.CLICKHOUSE_DATABASE ?? "") ? env.CLICKHOUSE_DATABASE! : "orrery";
    const storedSamples = async (from = 0, to = 8.64e15): Promise<number | null> => {
      try {
        const rs = await ch.query({
          query: `SELECT count() AS n FROM ${database}.samples WHERE entity LIKE '%:sim-%' AND ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})`,
          query_params: { from, to },
          format: "JSONEachRow",
        });
        return Number(((await rs.json()) as { n: string }[])[0]?.n ?? 0);
      } catch {
        return null;
      }
    };

    const wsUrl = `${banner.dashboard.replace(/^http/, "ws")}/ws`;
    let client = new WsClient(wsUrl, simulated);
    const startClient = client;
    const firstClientMs = await client.firstSnapshot(120_000).catch((e: Error) => e.message);
    step(`first WebSocket snapshot: ${typeof firstClientMs === "number" ? `${firstClientMs} ms, ${client.stats.firstSnapshotItems} items` : firstClientMs}`);
    const wsCloses: string[] = [];

    // ---- converge
    const timeline: { t: number; nodes: Record<string, number>; edges: Record<string, number>; phantoms: number; topologyBacklog: number | null }[] = [];
    let convergeS: number | null = null;
    let lastRows: KindRow[] = [];
    // the largest fall of the simulated estate's node count from one second to the next: a collapse shows here
    const drop = { nodes: 0, at: 0, from: 0 };
    let lastNodes = 0;
    const watchDrop = (nodes: number) => {
      if (lastNodes - nodes > drop.nodes) Object.assign(drop, { nodes: lastNodes - nodes, at: since0(), from: lastNodes });
      lastNodes = nodes;
    };
    const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
    for (let i = 0; ; i++) {
      if (client.stats.closed) {
        wsCloses.push(`${since0()} s: ${client.stats.closed}`);
        step(`the WebSocket client was closed (${client.stats.closed}); opening another`);
        client = new WsClient(wsUrl, simulated);
        await client.firstSnapshot(120_000).catch(() => undefined);
      }
      const c = client.count.counts();
      watchDrop(sum(c.nodes));
      const phantoms = client.count.nodeIds("external", isPhantom).length;
      lastRows = [...compareCounts(c.nodes, expected.nodes, tolerance), ...compareCounts(c.edges, expected.edges, tolerance)];
      if (i % 5 === 0) {
        const backlog = await backlogOf(jsm, topo.consumers.topology.stream, topo.consumers.topology.durable);
        timeline.push({ t: since0(), nodes: c.nodes, edges: c.edges, phantoms, topologyBacklog: backlog });
        step(`nodes ${JSON.stringify(c.nodes)} edges ${JSON.stringify(c.edges)} phantoms ${phantoms} topology backlog ${backlog}`);
      }
      if (allWithin(lastRows) && phantoms === 0) {
        convergeS = since0();
        break;
      }
      if (since0() > convergeTimeoutS) break;
      if (demo.proc.exitCode !== null) throw new Error(`the supervisor exited (${demo.proc.exitCode}) while converging; log: ${logFile}`);
      await Bun.sleep(1000);
    }
    const cpuAtConverge = sampler.cpuNow();
    step(convergeS === null ? `did not converge within ${convergeTimeoutS} s` : `converged at ${convergeS} s`);
    const atConverge = { rows: lastRows, store: await storeCounts(banner.dashboard) };
    step(`store counts (Cypher, ${atConverge.store.ms} ms): ${JSON.stringify(atConverge.store.nodes)} ${JSON.stringify(atConverge.store.edges)} ${atConverge.store.errors.join("; ")}`);
    // the graph as the gateway holds it, kept on disk for the raw bulk write after the platform has stopped
    let restSnapshot: { ms: number; nodes: number; edges: number; bytes: number } | { error: string };
    {
      const t = performance.now();
      try {
        const res = await fetch(`${banner.dashboard}/api/snapshot`);
        const text = await res.text();
        writeFileSync(snapFile, text);
        const s = JSON.parse(text) as { nodes: unknown[]; edges: unknown[] };
        restSnapshot = { ms: Math.round(performance.now() - t), nodes: s.nodes.length, edges: s.edges.length, bytes: text.length };
      } catch (e) {
        restSnapshot = { error: String(e) };
      }
    }

    // ---- churn: NOC queries, fresh WebSocket clients, changes and metrics, for churnS
    step(`churn for ${churnS} s: NOC queries every ${queryEveryMs} ms, ${snapshotClients} fresh WebSocket clients`);
    const churn0 = performance.now();
    const items0 = client.count.deltaItems;
    const consumed = async () => (await jsm.consumers.info(topo.consumers.topology.stream, topo.consumers.topology.durable).catch(() => null))?.ack_floor.stream_seq ?? null;
    const acked0 = await consumed();
    const churnFrom = Date.now();
    const churnCpu0 = sampler.cpuNow();
    const off: Record<string, { min: number; max: number }> = {};
    const backlogs: { topology: (number | null)[]; metrics: (number | null)[] } = { topology: [], metrics: [] };
    const latencies = new Map<string, number[]>(NOC_QUERIES.map((q) => [q.name, []]));
    const storeLatencies: number[] = [];
    const errors = new Map<string, Map<string, number>>(NOC_QUERIES.map((q) => [q.name, new Map()]));
    const rows = new Map<string, number>();
    const churnEnd = churn0 + churnS * 1000;
    const queries = (async () => {
      for (let k = 0; performance.now() < churnEnd; k++) {
        const q = NOC_QUERIES[k % NOC_QUERIES.length]!;
        const next = performance.now() + queryEveryMs;
        const r = await cypher(banner.dashboard, q.query, q.params(Date.now()));
        latencies.get(q.name)!.push(r.ms);
        if (r.storeMs !== undefined) storeLatencies.push(r.storeMs);
        rows.set(q.name, r.rows);
        if (r.error) {
          const m = errors.get(q.name)!;
          const key = `${r.status} ${r.error}`;
          m.set(key, (m.get(key) ?? 0) + 1);
        }
        await Bun.sleep(Math.max(0, next - performance.now()));
      }
    })();
    const fresh: { ms: number | null; items: number | null; frames: number | null; bytes: number | null; error?: string }[] = [];
    const snapshots = (async () => {
      for (let k = 0; k < snapshotClients && performance.now() < churnEnd; k++) {
        const c = new WsClient(wsUrl, simulated);
        try {
          const ms = await c.firstSnapshot(Math.max(30_000, goals.snapshotS * 10_000));
          fresh.push({ ms, items: c.stats.firstSnapshotItems, frames: c.stats.snapshotFrames, bytes: c.stats.snapshotBytes });
        } catch (e) {
          fresh.push({ ms: null, items: null, frames: c.stats.frames, bytes: c.stats.bytes, error: (e as Error).message });
        } finally {
          c.close();
        }
        step(`fresh WebSocket client ${k + 1}: ${JSON.stringify(fresh.at(-1))}`);
        await Bun.sleep(Math.max(1000, (churnS * 1000) / (snapshotClients + 1) - (fresh.at(-1)?.ms ?? 0)));
      }
    })();
    while (performance.now() < churnEnd) {
      const c = client.count.counts();
      watchDrop(sum(c.nodes));
      for (const r of [...compareCounts(c.nodes, expected.nodes, tolerance), ...compareCounts(c.edges, expected.edges, tolerance)]) {
        const o = (off[r.kind] ??= { min: r.off, max: r.off });
        o.min = Math.min(o.min, r.off);
        o.max = Math.max(o.max, r.off);
      }
      backlogs.topology.push(await backlogOf(jsm, topo.consumers.topology.stream, topo.consumers.topology.durable));
      backlogs.metrics.push(await backlogOf(jsm, topo.consumers.metrics.stream, topo.consumers.metrics.durable));
      await Bun.sleep(2000);
    }
    await queries;
    await snapshots;
    const churnSeconds = (performance.now() - churn0) / 1000;
    const churnItems = client.count.deltaItems - items0;
    const acked1 = await consumed();
    const discoveryMsgsPerS = acked0 !== null && acked1 !== null ? Math.round((acked1 - acked0) / churnSeconds) : null;
    const churnTo = Date.now();
    const churnCpu1 = sampler.cpuNow();
    const phantomsAfterChurn = client.count.nodeIds("external", isPhantom);
    const endCounts = client.count.counts();
    if (client.stats.closed) wsCloses.push(`${since0()} s: ${client.stats.closed}`);
    step(`churn done: ${churnItems} changes in ${churnSeconds.toFixed(1)} s`);

    // ---- metrics: every sample published with a time before the end of churn stored? The simulator publishes a
    // tick's samples over its interval, so two intervals go by, then the metrics consumer drains (up to 60 s).
    await Bun.sleep(2 * loadSimConfig(env).intervalMs);
    const drain0 = performance.now();
    while (performance.now() - drain0 < 60_000) {
      const b = await backlogOf(jsm, topo.consumers.metrics.stream, topo.consumers.metrics.durable);
      if (b === 0) break;
      await Bun.sleep(1000);
    }
    await Bun.sleep(2000); // the last insert's rows visible
    const publishedTotal = publishedIn(0, churnTo);
    const storedTotal = await storedSamples(0, churnTo);
    const publishedChurn = publishedIn(churnFrom, churnTo);
    const storedChurn = await storedSamples(churnFrom, churnTo);
    await ch.close();
    await nc.close();
    client.close();
    startClient.close();

    // ---- shutdown: Ctrl-C as a terminal sends it
    step("SIGINT to the supervisor's process group");
    sampler.sample();
    sampler.stop();
    const stop0 = performance.now();
    process.kill(-demo.proc.pid, "SIGINT");
    const exitCode = await demo.proc.exited;
    const shutdownS = (performance.now() - stop0) / 1000;
    const log = summarizeLog(readFileSync(logFile, "utf8"));
    step(`stopped in ${shutdownS.toFixed(1)} s, exit ${exitCode}`);

    // ---- raw references, on their own servers now that the platform is gone
    step("raw references: JetStream publish+consume of the simulator's first two ticks; a bulk write of the converged graph");
    const estate = makeEstate(hosts, { seed, churn: parseChurn(env.ORRERY_SIM_CHURN ?? "default") });
    const now = Date.now();
    const messages: Uint8Array[] = [];
    for (const k of [0, 1]) {
      const byHost = new Map<string, DiscoveryBatch[]>();
      for (const b of scanEstate(estate, now + k * 5000).batches) byHost.set(b.host, [...(byHost.get(b.host) ?? []), b]);
      for (const g of byHost.values()) for (const m of discoveryMessages(g)) messages.push(m.bytes);
    }
    const nats = await startNats();
    let raw: Awaited<ReturnType<typeof rawJetStream>>;
    try {
      raw = await rawJetStream(nats.url, messages);
    } finally {
      await nats.stop();
    }
    const graph = benchGraph(loadTopologyConfig(process.env));
    let rawStore: { label: string; items: number; seconds: number; itemsPerS: number } | { error: string };
    try {
      const snap = JSON.parse(readFileSync(snapFile, "utf8")) as { nodes: TopoNode[]; edges: TopoEdge[] };
      await graph.clear();
      const store = graph.open(join(tmp.dir, "kuzu-raw"), { bufferPoolMiB: loadTopologyConfig(process.env).ORRERY_KUZU_BUFFER_MIB });
      await store.init();
      const t = performance.now();
      await store.apply({ nodesUpserted: snap.nodes, edgesUpserted: snap.edges, nodesRemoved: [], edgesRemoved: [], created: new Set([...snap.nodes.map((n) => n.id), ...snap.edges.map((e) => e.id)]) }, 1);
      await store.checkpoint();
      const seconds = (performance.now() - t) / 1000;
      await store.close();
      const items = snap.nodes.length + snap.edges.length;
      rawStore = { label: graph.label, items, seconds: +seconds.toFixed(2), itemsPerS: Math.round(items / seconds) };
    } catch (e) {
      rawStore = { error: String(e) };
    }

    // ---- report
    const cpuDelta = (a: Record<string, number>, b: Record<string, number>, s: number) => Object.fromEntries(Object.keys(b).map((k) => [k, +((b[k]! - (a[k] ?? 0)) / s).toFixed(2)]));
    const q = Object.fromEntries(NOC_QUERIES.map((x) => [x.name, { ...summary(latencies.get(x.name)!), rows: rows.get(x.name) ?? 0, errors: Object.fromEntries(errors.get(x.name)!) }]));
    const allLat = [...latencies.values()].flat();
    const nocAll = summary(allLat);
    const nocErrors = [...errors.values()].reduce((n, m) => n + [...m.values()].reduce((a, b) => a + b, 0), 0);
    const freshMs = fresh.map((f) => f.ms).filter((x): x is number => x !== null);
    const snapshotMaxMs = fresh.length && freshMs.length === fresh.length ? Math.max(...freshMs) : null;
    const firstTicksS = raw.messages / raw.publishThenConsumeMsgsPerS;
    const services = sampler.report();
    const worst = Object.entries(off).sort((a, b) => Math.max(Math.abs(b[1].min), Math.abs(b[1].max)) - Math.max(Math.abs(a[1].min), Math.abs(a[1].max)))[0];
    const churnWithin = Object.values(off).every((o) => Math.abs(o.min) <= tolerance && Math.abs(o.max) <= tolerance);
    const report = {
      bench: "estate",
      command: `npm run bench -- estate ${argv.join(" ")}`.trim(),
      hosts,
      seed,
      goals,
      truth: { nodes: truth.nodes, edges: truth.edges },
      startup: { readySeconds: readyS, firstWsSnapshotMs: firstClientMs, firstWsSnapshotItems: startClient.stats.firstSnapshotItems },
      converge: {
        seconds: convergeS,
        met: convergeS !== null && convergeS <= goals.convergeS,
        tolerance,
        kinds: atConverge.rows,
        storeCounts: atConverge.store,
        timeline,
        rawJetStreamFirstTwoTicksSeconds: +firstTicksS.toFixed(2),
        rawStoreBulkWriteSeconds: "seconds" in rawStore ? rawStore.seconds : null,
        ratioRawStoreToConverge: "seconds" in rawStore && convergeS ? +(rawStore.seconds / convergeS).toFixed(3) : null,
        restSnapshot,
      },
      churn: {
        seconds: +churnSeconds.toFixed(1),
        topologyChanges: churnItems,
        changesPerS: Math.round(churnItems / churnSeconds),
        /** discovery messages the topology service acked per second (the stream's sequence, every publisher's) */
        discoveryMsgsPerS,
        ratioDiscoveryMsgsToRawJetStream: discoveryMsgsPerS !== null ? +(discoveryMsgsPerS / raw.publishThenConsumeMsgsPerS).toFixed(3) : null,
        /** per kind, the lowest and highest (actual − truth) / truth seen while churning, every 2 s */
        offFromTruth: off,
        withinTolerance: churnWithin,
        countsAtEnd: endCounts,
        phantomExternalsAtEnd: phantomsAfterChurn.length,
        phantomExamples: phantomsAfterChurn.slice(0, 5),
        backlog: { topology: summary(backlogs.topology.filter((x): x is number => x !== null)), metrics: summary(backlogs.metrics.filter((x): x is number => x !== null)) },
        wsCloses,
        wsAnomalies: client.count.anomalies.slice(0, 10),
      },
      noc: { everyMs: queryEveryMs, all: nocAll, errors: nocErrors, met: nocAll.n > 0 && nocAll.p99 <= goals.nocP99Ms && nocErrors === 0, byQuery: q, storeOnly: summary(storeLatencies) },
      wsSnapshot: { fresh, maxMs: snapshotMaxMs, met: snapshotMaxMs !== null && snapshotMaxMs <= goals.snapshotS * 1000 },
      metrics: {
        /** samples stamped within the churn window, per second of it: published, and stored once the consumer drained */
        churnPublishedPerS: Math.round(publishedChurn / ((churnTo - churnFrom) / 1000)),
        churnStoredPerS: storedChurn !== null ? Math.round(storedChurn / ((churnTo - churnFrom) / 1000)) : null,
        /** every sample stamped before the end of churn */
        published: publishedTotal,
        publishedMessages: published.messages,
        stored: storedTotal,
        storedShare: storedTotal !== null && publishedTotal ? +(storedTotal / publishedTotal).toFixed(4) : null,
      },
      services: services.map((s) => ({
        ...s,
        coresConverging: cpuDelta(cpuAtReady, cpuAtConverge, Math.max(1, (convergeS ?? since0()) - readyS))[s.name] ?? null,
        coresChurn: cpuDelta(churnCpu0, churnCpu1, churnSeconds)[s.name] ?? null,
        restarts: s.pids.length - 1,
      })),
      shutdown: { seconds: +shutdownS.toFixed(1), exitCode, stopped: log.stopped, killed: log.killed },
      log: { lines: log.lines, byService: log.byService, top: log.top },
      raw: { jetStream: raw, store: rawStore },
    /** the largest fall of the simulated estate's node count from one second to the next, converging or churning */
    largestNodeDrop: drop,
    benchProcessCpuSeconds: +((process.cpuUsage().user + process.cpuUsage().system) / 1e6).toFixed(1),
    };
    console.log(JSON.stringify(report, null, 2));

    const mark = (b: boolean) => (b ? "met" : "MISSED");
    const kinds = atConverge.rows.map((r) => `${r.kind} ${r.actual}/${r.expected}${r.within ? "" : " ✗"}`).join(", ");
    const table = [
      ["converge to truth", convergeS === null ? `not in ${convergeTimeoutS} s` : `${convergeS} s (ready at ${readyS} s)`, `≤ ${goals.convergeS} s: ${mark(report.converge.met)}`, `raw ${graph.label} bulk write of the same graph ${"seconds" in rawStore ? `${rawStore.seconds} s` : "failed"}; raw JetStream, first two ticks ${firstTicksS.toFixed(1)} s`],
      ["counts (sim, at converge)", kinds, `within ${tolerance * 100}%`, `store via Cypher: ${JSON.stringify(atConverge.store.nodes)} ${JSON.stringify(atConverge.store.edges)}`],
      ["counts during churn", worst ? `${worst[0]} ${(worst[1].min * 100).toFixed(1)}% … ${(worst[1].max * 100).toFixed(1)}% off the truth (the kind furthest off)` : "none", `within ${tolerance * 100}%: ${mark(churnWithin)}`, ""],
      ["phantom externals", `${phantomsAfterChurn.length} after churn${phantomsAfterChurn.length ? ` (e.g. ${phantomsAfterChurn[0]})` : ""}`, `0: ${mark(phantomsAfterChurn.length === 0)}`, ""],
      ["churn", `${report.churn.changesPerS} changes/s`, "", `${discoveryMsgsPerS} discovery msg/s acked vs raw JetStream ${raw.publishThenConsumeMsgsPerS} msg/s; topology backlog p50 ${report.churn.backlog.topology.p50}, max ${report.churn.backlog.topology.max}; largest node drop ${drop.nodes} at ${drop.at} s`],
      ["NOC queries (churn)", `p50 ${nocAll.p50} ms, p99 ${nocAll.p99} ms, ${nocErrors} errors of ${nocAll.n}`, `p99 ≤ ${goals.nocP99Ms} ms: ${mark(report.noc.met)}`, `the store's own time (answered queries): p50 ${report.noc.storeOnly.p50} ms, p99 ${report.noc.storeOnly.p99} ms; p99 by query: ${Object.entries(q).map(([n, x]) => `${n} ${x.p99} ms${Object.keys(x.errors).length ? ` (${Object.keys(x.errors).join("; ")})` : ""}`).join(", ")}`],
      ["WS first full snapshot", fresh.map((f) => (f.ms === null ? `failed (${f.error})` : `${(f.ms / 1000).toFixed(1)} s / ${f.items} items / ${f.frames} frames`)).join("; ") || "none", `≤ ${goals.snapshotS} s: ${mark(report.wsSnapshot.met)}`, ""],
      ["metrics samples/s (churn)", `stored ${report.metrics.churnStoredPerS} vs published ${report.metrics.churnPublishedPerS}`, "", `in total ${storedTotal} of ${publishedTotal} stored`],
      ["shutdown", `${report.shutdown.seconds} s, exit ${exitCode}${log.killed.length ? `, killed ${log.killed.join(", ")}` : ""}`, `exit 0: ${mark(exitCode === 0)}`, ""],
      ["raw JetStream", `${raw.publishThenConsumeMsgsPerS} msg/s publish+consume (${raw.messages} msgs)`, "", "reference"],
    ];
    const w = [0, 1, 2].map((i) => Math.max(...table.map((r) => r[i]!.length)));
    console.log(`\nbench estate: ${hosts} simulated hosts through the demo's path (supervisor, simulator, gateway, WebSocket)`);
    for (const r of table) console.log(`${r[0]!.padEnd(w[0]!)}  ${r[1]!.padEnd(w[1]!)}  ${r[2]!.padEnd(w[2]!)}  ${r[3]}`);
    console.log("services (peak RSS MiB / peak cores / cores converging / cores churn / CPU s / restarts):");
    for (const s of report.services) console.log(`  ${s.name.padEnd(10)} ${String(s.peakRssMiB).padStart(6)}  ${s.peakCores.toFixed(2)}  ${s.coresConverging}  ${s.coresChurn}  ${s.cpuSeconds}  ${s.restarts}`);
  }
}
