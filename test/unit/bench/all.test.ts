// `bench all`: finding each bench's report in its output, the rows read from sample reports of every bench (shaped
// as each bench prints them), a bench that fails or runs out of time, and the markdown.
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BENCHES, failureLine, findReport, fmt, jsonValues, machineLine, markdown, ratioOf, ReportShapeError, runOne, selectBenches, UsageError, type Bench, type Row } from "../../../bench/all.ts";

const benchOf = (name: string): Bench => BENCHES.find((b) => b.name === name)!;
const rowsOf = (name: string, report: unknown) => benchOf(name).extract(report);
const only = (rows: Row[], figure: string) => rows.find((r) => r.figure.startsWith(figure))!;

const pipeline = {
  bench: "pipeline",
  messages: 2000,
  events: 80000,
  avgMessageBytes: 9000,
  raw: { publishMsgsPerS: 9000, consumeMsgsPerS: 20000, publishThenConsumeMsgsPerS: 4000, eventsPerS: 160000 },
  pipeline: { seconds: 4.2, msgsPerS: 476, eventsPerS: 19048, deltas: 2000, nodes: 24000, edges: 60000 },
  rawGraph: { seconds: 1.1, itemsPerS: 76000 },
  ratioToRawJetStream: 0.119,
  ratioToComposite: 0.41,
};

const discovery = (hosts: number, convergeS: number, changesPerS: number) => ({
  bench: "discovery",
  graphStore: "Kuzu",
  estate: { hosts, messages: 2 * hosts, events: 40 * hosts, avgMessageBytes: 5000, simulateSeconds: 2 },
  graph: { nodes: 10.4 * hosts, edges: 30.1 * hosts, storedNodes: 10.4 * hosts },
  converge: { seconds: convergeS, publishSeconds: 30, graphWriteSeconds: 40, checkpointSeconds: 5, deltaItems: 405000, itemsPerS: 6000, msgsPerS: 300, goalSeconds: 60 },
  churn: { ticks: 4, messages: 40000, events: 1e6, seconds: 90, graphWriteSeconds: 60, checkpointSeconds: 10, edgesRemoved: 70000, topologyChanges: 150000, changesPerS: changesPerS, msgsPerS: 440, goalChangesPerS: 2000, storeShareOfTime: 0.8 },
  pureStage: { seconds: 10, msgsPerS: 2000 },
  rawJetStream: { messages: hosts, publishMsgsPerS: 9000, consumeMsgsPerS: 20000, publishThenConsumeMsgsPerS: 4769 },
  ratioConvergeMsgsToRawJetStream: 0.063,
  ratioChurnMsgsToRawJetStream: 0.092,
  graphStoreAtThisSize: { checkpointSeconds: 7 },
  rawStoreBulkWrite: { items: 405000, seconds: 7, itemsPerS: 58000 },
  ratioConvergeItemsToRawStore: 0.103,
  agentScan: { sockets: 2200, childProcesses: 50, socketsOwnedByChildren: 2050, expectedChildSockets: 2050, processesWalked: 300, scanMs: 30, diffMs: 4, rawSocketTablesMs: 11, rawFdWalkMs: 15, ratioScanToRawTables: 2.7, ratioScanToRawTablesPlusFdWalk: 1.15 },
});

const metrics = (publishSeconds: number, goalMet: boolean) => ({
  bench: "metrics",
  shape: { entities: 5000, metricsPerEntity: 20, samplesPerBatch: 5000, bytesPerBatch: 500000, rollupStepMs: 15000, maxInsertSamples: 100000 },
  endToEnd: { publishSeconds, drainedAfterSeconds: publishSeconds + 1, rollupTablesCompleteAfterSeconds: publishSeconds + 9, published: 7_660_000, samplesPerS: 126_000, storedByDeadlinePerS: 120_000, messagesPerInsert: 12 },
  rawClientSameOwner: { rows: 3e6, seconds: 20, samplesPerS: 165_000 },
  rawChdbSessionInsert: { rows: 4e6, seconds: 20, samplesPerS: 201_000 },
  legacy: { rawClientWithViews: { samplesPerS: 90_000 }, rawChdbWithViews: { samplesPerS: 100_000 }, rawChdbWithoutRollups: { samplesPerS: 300_000 } },
  ratioToRawClient: 0.764,
  ratioToRawChdb: 0.627,
  countCheck: { published: 7_660_000, stored: 7_660_000, rollup1m: 7_660_000, rollup1h: 7_660_000, deadLettered: 0, rawReferencesStoredAndRolledUpOnce: true, ok: true },
  goal: { samplesPerS: 150_000, ratioToRawClient: 0.5 },
  goalMet,
});

const graph = (nodes: number) => ({
  bench: "graph",
  graphStore: "Kuzu",
  estate: { hosts: 11111, servicesPerHost: 4, callsPerHost: 9, messages: 22222, events: 300000 },
  graph: { nodes, edges: 3 * nodes, rev: 22223, deltas: 22222 },
  write: { seconds: 46, itemsPerS: 8900, eventsPerS: 6000, rawStoreBulkSeconds: 7, rawStoreItemsPerS: 59000, ratioToRawStore: 0.149 },
  impact: { queries: 1000, hops: 6, direction: "both", p50Ms: 0.2, p99Ms: 1.44, maxMs: 3, avgAffected: 40, up3HopsP50Ms: 0.05, up3HopsP99Ms: 0.3, rawStore3HopP50Ms: 120, ratioP50ToStore3Hop: 2400, foldDeltasSeconds: 2, rebuildFromMirrorMs: 300, indexMatchesRebuild: true, goalP99Ms: 50 },
  history: { rows: 400000, serviceSeconds: 10, serviceRowsPerS: 40000, rawInsertRowsPerS: 100000, ratioToRawInsert: 0.4, stateAtLatestMs: 2800, stateAtLatest: { nodes, edges: 3 * nodes, matchesDeltaFold: true }, stateAtMidMs: 2000, stateAtMid: { nodes: 50000, edges: 150000 }, engineOnlyMs: 1070, goalMs: 2000 },
  memory: { topologyServiceRssMiB: 703, topologyServicePeakRssMiB: 983, goalMiB: 1024 },
});

const jobs = { bench: "jobs", runs: 3000, concurrency: 32, raw_workqueue_msgs_per_s: 5688, job_runs_per_s: 5105, ratio_to_raw: 0.9, place_10k_jobs_500_workers_ms: 700, replace_after_one_death_ms: 90 };

const latency = (p50: number | null, p99: number | null, n = 630000) => ({ n, p50, p90: p99, p99, max: p99 });
const alerts = (rate: number, goalMet: boolean) => ({
  bench: "alerts",
  target: { rate, seconds: 60, events: rate * 60, hosts: 5000, fingerprints: 300000, holdSeconds: 7.5 },
  mix: { group: 25, singles: 0.2, requests: 100000, genericRequests: 60000, alertmanagerRequests: 40000, buildSeconds: 3 },
  http: { sent: rate * 60, requests: 100000, accepted: rate * 60, failed: 0, unanswered: 0, errors: null, sendSeconds: 60, offeredRate: rate, achievedRate: rate - 100, maxInFlight: 200 },
  acceptedMs: latency(3, 40),
  alertToWallboardMs: latency(104, 547),
  wallboardTimeline: [],
  alertToHealthDeltaMs: null,
  observed: { wallboard: rate * 60, natsSubject: null, of: rate * 60 },
  websocket: { frames: 1000, healthFrames: 900, megabytes: 40, closed: false },
  healthDeltasOnSubject: 900,
  alertMessagesStored: 100000,
  snapshotRequests: 2,
  drainSeconds: 1,
  cpuSeconds: { ingest: 30 },
  loadavg1m: 3,
  rawNatsPubSubMs: latency(1, 10.8),
  p99VsRawNats: 50.6,
  goal: "alert received → wallboard p99 ≤ 250 ms at ≥ 10k events/s achieved, ≥ 99% of events observed",
  goalMet,
});

const estate = (hosts: number) => ({
  bench: "estate",
  command: "npm run bench -- estate",
  hosts,
  seed: 1,
  goals: { convergeS: 120, snapshotS: 10, nocP99Ms: 1000 },
  truth: { nodes: {}, edges: {} },
  startup: { readySeconds: 8, firstWsSnapshotMs: 40, firstWsSnapshotItems: 10 },
  converge: { seconds: 134.8, met: false, tolerance: 0.01, kinds: [], storeCounts: {}, timeline: [], rawJetStreamFirstTwoTicksSeconds: 1, rawStoreBulkWriteSeconds: 3.65, ratioRawStoreToConverge: 0.027, restSnapshot: {} },
  churn: { seconds: 120, topologyChanges: 60000, changesPerS: 500, discoveryMsgsPerS: 189, ratioDiscoveryMsgsToRawJetStream: 0.094, offFromTruth: {}, withinTolerance: true, countsAtEnd: {}, phantomExternalsAtEnd: 0, phantomExamples: [], backlog: {}, wsCloses: 0, wsAnomalies: [] },
  noc: { everyMs: 500, all: latency(900, 11600, 200), errors: 0, met: false, byQuery: {} },
  wsSnapshot: { fresh: [], maxMs: 3000, met: true },
  metrics: { churnPublishedPerS: 11700, churnStoredPerS: 11650, published: 1e6, publishedMessages: 200, stored: 1e6, storedShare: 0.996 },
  services: [
    { name: "gateway", cpuSeconds: 30, peakCores: 0.5, peakRssMiB: 300, pids: [1], coresConverging: 0.2, coresChurn: 0.1, restarts: 0 },
    { name: "topology", cpuSeconds: 90, peakCores: 1, peakRssMiB: 640, pids: [2], coresConverging: 0.6, coresChurn: 0.5, restarts: 0 },
  ],
  shutdown: { seconds: 9.2, exitCode: 0, stopped: [], killed: [] },
  log: { lines: 10, byService: {}, top: [] },
  raw: { jetStream: { messages: 2000, publishThenConsumeMsgsPerS: 2018 }, store: { label: "Kuzu", items: 40000, seconds: 3.65, itemsPerS: 11000 } },
  largestNodeDrop: { nodes: 0, at: 0 },
  benchProcessCpuSeconds: 100,
});

const viewRow = (cpu: number, marks: number, bytes: number) => ({ wall_ms: { p50: cpu, p90: cpu }, cpu_ms: cpu, ratio_to_raw_pass: 1, marks, links: 10, marks_with_note: 0, frame_bytes: bytes });
const views = [1000, 10000].map((hosts) => ({
  hosts,
  nodes: hosts * 10.4,
  edges: hosts * 46,
  raw_pass_ms: { wall: { p50: 5, p90: 6 }, cpu: hosts === 1000 ? 4.9 : 117 },
  index_build_ms: 200,
  raw_snapshot_bytes: hosts * 18_750,
  views: { "groups by tier": viewRow(hosts === 1000 ? 15.5 : 47.5, 8, 4700), "groups by team": viewRow(10, 40, 5000), "db group opened": viewRow(13, 108, 9000), "hosts level": viewRow(hosts === 1000 ? 40.9 : 156.6, 1012, 90000), "focus 2 hops, services": viewRow(30, 481, 50000) },
  delta_tick: { one_delta_wall_ms: 14, one_delta_cpu_ms: hosts === 1000 ? 13.8 : 145, ratio_to_raw_pass: 2.8, ten_deltas_wall_ms: 40, view_delta_frame_bytes: 800 },
  page_heap_kib: { "groups by tier": 30, "hosts level": 900 },
}));

const draw = (fps: number | null, p50: number | null) => ({ fps, frames: 100, drawP50: p50, drawP99: p50, viewFrames: 3 });
const dashboard = (hosts: number) => ({
  bench: "dashboard",
  results: [
    {
      hosts,
      runs: [
        { view: "groups (default)", fmpMs: 9000, timeline: { open: 8000, snapshot: 8500, snapshotBytes: 4700, layout: 8600 }, layoutMs: 3, marks: 9, links: 18, deltas: draw(48.8, 2), pan: draw(16.6, 20), bare: draw(24, 10) },
        // NaN in the page (no draw in the window) reaches the report as null
        { view: "hosts (largest)", fmpMs: 13700, timeline: {}, layoutMs: null, marks: 1019, links: 10000, deltas: draw(12.6, null), pan: draw(4.2, 200), bare: draw(0.38, 2600) },
      ],
      heap: { startMiB: 3.1, endMiB: 6.6, maxMiB: 6.6, minutes: 2 },
      gatewayCoresPerWallboard: 0.004,
      gatewayCoresIdle: 0.1,
      convergeS: 120,
    },
  ],
});

const registry = { bench: "registry", rows: 10000, format: "csv", fileBytes: 2.2e6, rawParseMs: 139, dryRunMs: 3900, applyMs: 5300, applyRowsPerS: 1887, replayMs: 2000, exportMs: 1500, exportBytes: 2.2e6, applyVsRawParse: 38.1 };
const exporters = { bench: "exporters", vendor: "servicenow", deltas: 1000, entities: 5000, exporter: { seconds: 3.4, entitiesPerSec: 1450, requests: 5000 }, raw: { seconds: 0.5, entitiesPerSec: 10000 }, ratio: 0.145, duplicates: 0, violations: 0 };

test("the report is found among human lines, pretty-printed or on one line, an array too", () => {
  const out = [
    "[0.0 s] estate of 1000 hosts",
    JSON.stringify({ bench: "other", n: 1 }),
    JSON.stringify({ bench: "pipeline", note: "a } and a ] and a \" inside a string", nested: { a: [1, { b: 2 }] } }, null, 2),
    "",
    "pipeline: 19048 discovery events/s",
    "| a | b |",
  ].join("\n");
  expect(jsonValues(out)).toHaveLength(2);
  expect(findReport("pipeline", out)).toEqual({ bench: "pipeline", note: 'a } and a ] and a " inside a string', nested: { a: [1, { b: 2 }] } });
  // views prints an array with no bench name: the last JSON value
  expect(findReport("views", `[1.0 s] step\n${JSON.stringify([{ hosts: 1 }], null, 2)}\n`)).toEqual([{ hosts: 1 }]);
  // the last report naming the bench wins over a later unrelated value
  expect(findReport("jobs", `${JSON.stringify({ bench: "jobs", runs: 1 })}\n{"other":true}\n`)).toEqual({ bench: "jobs", runs: 1 });
  expect(findReport("jobs", "no report here\n{ not json\n")).toBeUndefined();
});

test("a failure's reason: the error's own line, not Bun's stack after it", () => {
  const bunUncaught = ["[40.9 s] ready: {}", "110 |                 return new AuthorizationError(s);", "                             ^", "AuthorizationError: Authorization Violation", "      at parse (/x/errors.js:110:24)", "", "Bun v1.4.5 (Linux x64)"].join("\n");
  expect(failureLine(bunUncaught)).toBe("AuthorizationError: Authorization Violation");
  expect(failureLine("step 1\nerror: --hosts: expected a comma-separated list\n")).toBe("error: --hosts: expected a comma-separated list");
  expect(failureLine("one\ntwo\nthree\nfour\n    at x (y.ts:1:1)\n")).toBe("two / three / four");
});

test("number formatting and ratios: missing figures are a dash, ratios rounded", () => {
  expect(fmt(19048.4)).toBe("19,048");
  expect(fmt(1.449, 2)).toBe("1.45");
  expect(fmt(null)).toBe("—");
  expect(fmt(Number.NaN)).toBe("—");
  expect(ratioOf(1, 3)).toBe(0.333);
  expect(ratioOf(2400, 1)).toBe(2400);
  expect(ratioOf(1, 0)).toBeNull();
  expect(ratioOf(null, 2)).toBeNull();
});

test("pipeline: events/s beside raw JetStream, and the time beside the raw parts'", () => {
  const rows = rowsOf("pipeline", pipeline);
  expect(rows).toHaveLength(2);
  expect(rows[0]).toMatchObject({ bench: "pipeline", value: "19,048 events/s (476 msg/s)", rawValue: "4,000 msg/s", ratio: 0.119, met: null });
  expect(rows[1]!.ratio).toBe(0.41);
});

test("discovery: the goals are judged at 10k hosts only", () => {
  const full = rowsOf("discovery", discovery(10_000, 67.1, 1497));
  expect(only(full, "converge (").met).toBe(false);
  expect(only(full, "converge (").ratio).toBe(0.103);
  expect(only(full, "churn").met).toBe(false);
  expect(only(rowsOf("discovery", discovery(10_000, 55, 2100)), "churn").met).toBe(true);
  const small = rowsOf("discovery", discovery(500, 9.7, 477));
  expect(small.filter((r) => r.goal !== "—").every((r) => r.met === null)).toBe(true);
  // the agent scan beside the raw reads it is made of
  expect(only(full, "agent /proc scan")).toMatchObject({ value: "30 ms (+4 ms diff)", rawValue: "11 + 15 ms", ratio: 0.867 });
});

test("metrics: its own goal verdict over a sustained run, the count check always", () => {
  const rows = rowsOf("metrics", metrics(60, false));
  expect(only(rows, "samples end to end (")).toMatchObject({ value: "126,000 samples/s", rawValue: "165,000 samples/s", ratio: 0.764, met: false });
  expect(only(rows, "samples end to end vs the engine").ratio).toBe(0.627);
  expect(only(rows, "count check").met).toBe(true);
  const quick = rowsOf("metrics", { ...metrics(10, false), countCheck: { ...metrics(10, false).countCheck, stored: 1, ok: false } });
  expect(only(quick, "samples end to end (").met).toBeNull();
  expect(only(quick, "count check").met).toBe(false);
});

test("graph: write, impact, history, state at T and RSS, goals at 100k nodes", () => {
  const rows = rowsOf("graph", graph(104_000));
  expect(rows).toHaveLength(5);
  expect(only(rows, "write").ratio).toBe(0.149);
  expect(only(rows, "impact").met).toBe(true);
  expect(only(rows, "state at T")).toMatchObject({ value: "2,800 ms", rawValue: "1,070 ms", ratio: 0.382, met: false });
  expect(only(rows, "topology service peak RSS").met).toBe(true);
  expect(rowsOf("graph", graph(9000)).filter((r) => r.goal !== "—").every((r) => r.met === null)).toBe(true);
});

test("jobs, registry and exporters", () => {
  expect(rowsOf("jobs", jobs)[0]).toMatchObject({ value: "5,105 runs/s", rawValue: "5,688 msg/s", ratio: 0.9 });
  const reg = rowsOf("registry", registry);
  expect(reg[0]).toMatchObject({ value: "5,300 ms (1,887 rows/s)", rawValue: "139 ms", ratio: 0.026, met: true });
  expect(rowsOf("registry", { ...registry, rows: 1000, applyMs: 800 })[0]!.met).toBeNull();
  expect(rowsOf("exporters", exporters)[0]).toMatchObject({ ratio: 0.145, met: true });
  expect(rowsOf("exporters", { ...exporters, duplicates: 3 })[0]!.met).toBe(false);
});

test("alerts: p99 beside raw NATS, judged only at the goal's rate", () => {
  const [row] = rowsOf("alerts", alerts(10_500, false));
  expect(row).toMatchObject({ rawValue: "10.8 ms", ratio: 0.02, met: false });
  expect(row!.value).toContain("p99 547 ms (p50 104)");
  expect(rowsOf("alerts", alerts(2000, false))[0]!.met).toBeNull();
});

test("estate: converge, churn, NOC, snapshot, metrics, RSS, shutdown", () => {
  const rows = rowsOf("estate", estate(10_000));
  expect(rows).toHaveLength(7);
  expect(only(rows, "converge to the truth")).toMatchObject({ ratio: 0.027, met: false });
  expect(only(rows, "NOC queries").met).toBe(false);
  expect(only(rows, "WebSocket first full snapshot").met).toBe(true);
  expect(only(rows, "largest service peak RSS").value).toBe("topology 640 MiB");
  expect(only(rows, "Ctrl-C shutdown").met).toBe(true);
  expect(only(rowsOf("estate", estate(1000)), "NOC queries").met).toBeNull();
});

test("views: per estate size, CPU time beside a raw pass", () => {
  const rows = rowsOf("views", views);
  expect(rows).toHaveLength(8);
  const big = rows.filter((r) => r.figure.includes("10,000 hosts"));
  expect(only(big, "groups view (")).toMatchObject({ value: "47.5 ms, 8 marks", rawValue: "117 ms", ratio: 2.463 });
  expect(only(big, "one churn delta").ratio).toBe(0.807);
});

test("dashboard: first paint, fps beside a bare canvas loop, heap; missing draws are dashes", () => {
  const rows = rowsOf("dashboard", dashboard(1000));
  expect(rows).toHaveLength(8);
  expect(only(rows, "groups (default): fps panning")).toMatchObject({ rawValue: "24 fps (draw p50 10 ms)", ratio: 0.692, met: null });
  expect(only(rows, "hosts (largest): fps while deltas").value).toBe("12.6 fps (draw p50 — ms)");
  expect(only(rows, "page JS heap").met).toBe(true);
  const full = rowsOf("dashboard", dashboard(10_000));
  expect(only(full, "groups (default): first paint").met).toBe(false);
  expect(only(full, "groups (default): fps while deltas").met).toBe(true);
});

test("a report that changed shape fails with the field's path", () => {
  const { pipeline: _, ...noPipeline } = pipeline;
  expect(() => rowsOf("pipeline", noPipeline)).toThrow(ReportShapeError);
  expect(() => rowsOf("pipeline", noPipeline)).toThrow(/pipeline/);
  expect(() => rowsOf("jobs", { ...jobs, job_runs_per_s: "fast" })).toThrow(/job_runs_per_s/);
  expect(() => rowsOf("views", { bench: "views" })).toThrow(ReportShapeError);
});

test("--only: unknown names and store-ab are refused with what to do", () => {
  expect(selectBenches(undefined)).toBe(BENCHES);
  expect(selectBenches("views, pipeline").map((b) => b.name)).toEqual(["pipeline", "views"]);
  expect(() => selectBenches("pipline")).toThrow(UsageError);
  expect(() => selectBenches("pipline")).toThrow(/available: pipeline/);
  expect(() => selectBenches("store-ab")).toThrow(/--baseline/);
});

test("every bench has quick arguments, time limits and what it leaves out", () => {
  expect(BENCHES.map((b) => b.name).sort()).toEqual(["alerts", "dashboard", "discovery", "estate", "exporters", "graph", "jobs", "metrics", "pipeline", "registry", "views"]);
  for (const b of BENCHES) {
    expect(b.quick.length).toBeGreaterThan(0);
    expect(b.quickTimeoutS).toBeLessThanOrEqual(b.timeoutS);
    expect(b.leavesOut.length).toBeGreaterThan(10);
  }
});

// A stand-in for a bench: a tiny script run the way bench all runs one, so failure handling is tested without servers.
const fake = (script: string) => [process.execPath, "-e", script];

test("a bench's report becomes rows; a failure, a missing report and a timeout become rows saying so", async () => {
  const ok = await runOne(benchOf("jobs"), [], 30, fake(`console.log("warming up"); console.log(JSON.stringify(${JSON.stringify(jobs)}, null, 2)); console.log("5105 runs/s")`));
  expect(ok.status).toBe("ok");
  expect(ok.rows[0]!.value).toBe("5,105 runs/s");

  const failed = await runOne(benchOf("jobs"), [], 30, fake(`console.error("nats-server did not start"); process.exit(3)`));
  expect(failed).toMatchObject({ status: "failed", reason: "exit code 3: nats-server did not start" });
  expect(failed.rows).toHaveLength(1);
  expect(failed.rows[0]!.figure).toContain("**failed**");

  const silent = await runOne(benchOf("jobs"), [], 30, fake(`console.log("done")`));
  expect(silent).toMatchObject({ status: "failed", reason: "printed no JSON report" });

  const changed = await runOne(benchOf("jobs"), [], 30, fake(`console.log(JSON.stringify({ bench: "jobs", runs: 1 }))`));
  expect(changed.status).toBe("failed");
  expect(changed.reason).toContain("job_runs_per_s");

  // out of time: the bench is stopped with what it started, even a child in a process group of its own (the
  // supervisor is started that way)
  const pidFile = join(mkdtempSync(join(tmpdir(), "bench-all-")), "pid");
  const t0 = performance.now();
  const slow = await runOne(benchOf("jobs"), [], 3, fake(`const c = Bun.spawn(["sleep", "300"], { detached: true }); await Bun.write(${JSON.stringify(pidFile)}, String(c.pid)); setInterval(() => {}, 1000)`));
  expect(slow).toMatchObject({ status: "timeout" });
  expect(slow.rows[0]!.figure).toContain("timed out");
  expect(performance.now() - t0).toBeLessThan(20_000);
  const child = Number(readFileSync(pidFile, "utf8"));
  let gone = false;
  for (let i = 0; i < 50 && !gone; i++) {
    try {
      process.kill(child, 0);
      await Bun.sleep(100);
    } catch {
      gone = true;
    }
  }
  expect(gone).toBe(true);
}, 60_000);

test("the markdown: machine line, one table of figures, one of benches, pipes escaped", () => {
  const rows = rowsOf("jobs", jobs).map((r) => ({ ...r, figure: `${r.figure} | piped` }));
  const md = markdown({
    outcomes: [
      { bench: benchOf("jobs"), args: ["--runs", "500"], seconds: 9.5, loadAtStart: 3.2, status: "ok", reason: null, rows },
      { bench: benchOf("alerts"), args: [], seconds: 900, loadAtStart: 4, status: "timeout", reason: "no result in 900 s", rows: [{ bench: "alerts", figure: "**timed out** after 900 s", value: "—", raw: "—", rawValue: "—", ratio: null, goal: "—", met: null }] },
    ],
    command: "npm run bench -- all --quick",
    quick: true,
    startedAt: new Date("2026-12-07T04:00:00Z"),
    machine: machineLine(),
    git: "commit abc1234",
    skipped: ["pipeline"],
    pending: ["views"],
  });
  expect(md).toContain(`Machine: ${machineLine()}.`);
  expect(machineLine()).toMatch(/\d+ cores, \d+ GiB RAM, .*Bun \d/);
  expect(md).toContain("on 2026-12-07 04:00 UTC (commit abc1234)");
  expect(md).toContain("| `jobs` | job runs (3,000, concurrency 32) \\| piped | 5,105 runs/s |");
  expect(md).toContain("| `alerts` | **timed out** after 900 s |");
  expect(md).toContain("| `alerts` | alert POSTed to ingest → health frame on the gateway WebSocket | (defaults) | 900 s | **timeout** | 4 |");
  expect(md).toContain("Not run: `store-ab`");
  expect(md).toContain("Left out by --only: `pipeline`.");
  expect(md).toContain("still to run when this was written: `views`.");
});
