/**
 * `bun run bench metrics [--seconds 60] [--batch 5000] [--entities 5000] [--metrics 20] [--rollup-ms 15000] [--max-insert 100000] [--cpu-prof DIR]`
 *
 * End-to-end samples/s: a load generator publishes metrics.v1 batches to JetStream for N seconds while the metrics
 * service (services/metrics/main.ts, its own process, as deployed) writes them into ClickHouse through the embedded
 * owner (its own process) and steps the 1m/1h rollups; the time runs until the last sample is stored and acked (reads
 * are exact from then on; the time until the rollup tables themselves hold everything is reported too). Next to it,
 * in the same run, with the same strategy (up to `--max-insert` samples per insert — 20 batches of 5000 — with the per-batch
 * markers and their lookup, and a rollup step every `--rollup-ms`):
 * - raw client: the same rows inserted straight into the same owner through the store's insertMany (@clickhouse/client,
 *   same schema, two inserts in flight, the store's rollup step alongside) — the limit of what the service wraps;
 * - raw chDB: the same rows through chDB's `session.insert` (raw buffer) in a child process, same combination, lookup
 *   and steps (on a second connection) — the engine's own limit.
 * And, labelled legacy, the strategy before: one insert per batch with its batchId as deduplication token and the
 * two per-insert materialized views (raw client and raw chDB), and raw chDB with one insert per batch and no rollups.
 * Ends with a count check: every published sample is in `samples` and counted once in each rollup.
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import { makeClickHouseClient } from "../services/clickhouse/client.ts";
import { ClickHouseSeriesStore, legacyRollupViews, markerGroups, markerLookupParams, rollupStepStatements, schemaStatements, storedMarkersQuery } from "../services/metrics/clickhouse.ts";
import { connectBus } from "../services/shared/bus.ts";
import type { Sample } from "../pipelines/contracts/metrics.ts";
import { startNats } from "../test/helpers/nats.ts";
import { tempDir, uniquePrefix } from "../test/helpers/tmp.ts";
import { startChild } from "./lib/child.ts";

const METRIC_NAMES = ["cpu_util", "load1", "load5", "mem_used_bytes", "mem_free_bytes", "disk_read_bytes", "disk_write_bytes", "net_rx_bytes", "net_tx_bytes", "tcp_established", "tcp_time_wait", "procs_running", "procs_blocked", "fd_open", "ctx_switches", "interrupts", "swap_used", "fs_used_ratio", "entropy", "uptime_seconds"];

interface Shape {
  entities: number;
  metrics: number;
  batch: number;
  base: number;
}

/** Entity and metric of a series, and its sample's JSON up to the timestamp: built once per series, not per sample. */
const seriesCache = new Map<string, { entity: string; metric: string; head: string }[]>();
function seriesOf(shape: Shape, series: number) {
  const key = `${shape.entities}x${shape.metrics}`;
  let all = seriesCache.get(key);
  if (!all) {
    all = Array.from({ length: shape.entities * shape.metrics }, (_, i) => {
      const entity = `host:web-${String(Math.floor(i / shape.metrics)).padStart(5, "0")}`;
      const metric = METRIC_NAMES[i % shape.metrics % METRIC_NAMES.length]! + (shape.metrics > METRIC_NAMES.length ? `_${Math.floor((i % shape.metrics) / METRIC_NAMES.length)}` : "");
      return { entity, metric, head: `{"entity":"${entity}","metric":"${metric}","ts":` };
    });
    seriesCache.set(key, all);
  }
  return all[series]!;
}

/** The g-th sample of the synthetic estate as a JSONCompactEachRow row and as a metrics.v1 sample (same values). */
function sampleAt(shape: Shape, g: number) {
  const series = g % (shape.entities * shape.metrics);
  const tick = Math.floor(g / (shape.entities * shape.metrics));
  const { entity, metric } = seriesOf(shape, series);
  return { entity, metric, ts: shape.base + tick * 1000 + (series % 1000), value: ((g * 7919) % 100_000) / 100, labels: { job: "node" } };
}

/** Batch k as metrics.v1 JSON, built as a string: the generator must cost little next to the service it feeds. */
function batchPayload(shape: Shape, k: number): Uint8Array {
  const n = shape.entities * shape.metrics;
  let out = `{"schema":"metrics.v1","source":"bench","batchId":"bench-${k}","samples":[`;
  for (let g = k * shape.batch; g < (k + 1) * shape.batch; g++) {
    const series = g % n;
    const ts = shape.base + Math.floor(g / n) * 1000 + (series % 1000);
    out += `${g === k * shape.batch ? "" : ","}${seriesOf(shape, series).head}${ts},"value":${((g * 7919) % 100_000) / 100},"labels":{"job":"node"}}`;
  }
  return new TextEncoder().encode(out + "]}");
}

function batchSamples(shape: Shape, k: number): { batchId: string; samples: Sample[] } {
  const samples: Sample[] = [];
  for (let g = k * shape.batch; g < (k + 1) * shape.batch; g++) samples.push(sampleAt(shape, g));
  return { batchId: `raw-${k}`, samples };
}

function batchRows(shape: Shape, k: number): unknown[][] {
  const rows: unknown[][] = [];
  for (let g = k * shape.batch; g < (k + 1) * shape.batch; g++) {
    const s = sampleAt(shape, g);
    rows.push([s.entity, s.metric, s.ts, s.value, s.labels]);
  }
  return rows;
}

/** --cpu-prof DIR: the service and owner children write a markdown CPU profile there when they exit */
let cpuProfDir: string | null = null;

/** A child started once its first line is out: that line is its ready line (services) or its result (raw chDB). */
function spawn(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000) {
  return startChild(args, { env, timeoutMs, cpuProfDir: args[0]!.startsWith("services/") ? cpuProfDir : null });
}

export async function benchMetrics(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: "string", default: "60" },
      batch: { type: "string", default: "5000" },
      entities: { type: "string", default: "5000" },
      metrics: { type: "string", default: "20" },
      "rollup-ms": { type: "string", default: "15000" },
      "max-insert": { type: "string", default: "100000" },
      "cpu-prof": { type: "string" },
    },
  });
  cpuProfDir = values["cpu-prof"] ? resolve(values["cpu-prof"]) : null;
  const seconds = Number(values.seconds);
  const rollupMs = Number(values["rollup-ms"]);
  // batches per insert in the raw references: what the service combines at most (its maxInsertSamples)
  const maxInsert = Number(values["max-insert"]);
  if (!(maxInsert >= 1)) throw new Error("--max-insert must be ≥ 1");
  const combine = Math.max(1, Math.floor(maxInsert / Number(values.batch)));
  if (!(rollupMs > 0)) throw new Error("--rollup-ms must be > 0");
  const shape: Shape = { entities: Number(values.entities), metrics: Number(values.metrics), batch: Number(values.batch), base: Date.now() - 3_600_000 };
  if (!(seconds > 0) || !(shape.batch > 0 && shape.batch <= 10_000)) throw new Error("--seconds must be > 0 and --batch in 1..10000");
  const nats = await startNats();
  const tmp = tempDir("orrery-bench-metrics-");
  const ownerChild = await spawn(["services/clickhouse/main.ts", "--data-dir", join(tmp.dir, "owner"), "--port", "0"]);
  const owner = ownerChild.proc;
  const children: Subprocess[] = [owner];
  try {
    const ownerUrl = String(ownerChild.ready.url);
    const ch = makeClickHouseClient({ url: ownerUrl });
    const prefix = uniquePrefix("benchm");
    const db = prefix.replace(/-/g, "_");
    const count = async (query: string) => Number((await (await ch.query({ query, format: "JSONEachRow" })).json<{ c: string | number }>())[0]!.c);

    // 1. End to end: generator → JetStream → metrics service (own process) → owner → chDB
    const svc = (await spawn(["services/metrics/main.ts"], { NATS_URL: nats.url, ORRERY_PREFIX: prefix, CLICKHOUSE_URL: ownerUrl, CLICKHOUSE_DATABASE: db, ORRERY_LOG_QUIET: "1", ORRERY_METRICS_ROLLUP_MS: String(rollupMs), ORRERY_METRICS_MAX_INSERT_SAMPLES: String(maxInsert) })).proc;
    children.push(svc);
    const bus = await connectBus({ url: nats.url, prefix, name: "bench-metrics" });
    const spec = bus.topo.consumers.metrics;
    const subject = bus.topo.subjects.metrics("bench");
    let published = 0;
    let k = 0;
    const t0 = performance.now();
    const until = t0 + seconds * 1000;
    let lastReport = t0;
    // Closed loop: the generator keeps at most `maxBacklog` messages unacked, so this measures what the service
    // sustains rather than how fast a generator can fill a stream (JetStream would buffer the rest).
    const maxBacklog = 48;
    let backlog = 0;
    let kAtPoll = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const before = k;
        const info = await bus.jsm.consumers.info(spec.stream, spec.durable);
        backlog = info.num_pending + info.num_ack_pending;
        kAtPoll = before;
        await Bun.sleep(100);
      }
    })();
    const publisher = async () => {
      while (performance.now() < until) {
        if (backlog + (k - kAtPoll) >= maxBacklog) {
          await Bun.sleep(10);
          continue;
        }
        const id = k++;
        await bus.js.publish(subject, batchPayload(shape, id), { msgID: `bench-${id}`, timeout: 60_000 });
        published += shape.batch;
      }
    };
    const progress = setInterval(async () => {
      const now = performance.now();
      if (now - lastReport < 4500) return;
      lastReport = now;
      const stored = await count(`SELECT count() AS c FROM ${db}.samples`).catch(() => NaN);
      process.stderr.write(`  ${((now - t0) / 1000).toFixed(0)} s: published ${published}, stored ${stored} (${Math.round(stored / ((now - t0) / 1000))}/s)\n`);
    }, 5000);
    await Promise.all(Array.from({ length: 8 }, publisher));
    polling = false;
    await poller;
    const publishedS = (performance.now() - t0) / 1000;
    const storedAtDeadline = await count(`SELECT count() AS c FROM ${db}.samples`);
    while (true) {
      const info = await bus.jsm.consumers.info(spec.stream, spec.durable);
      if (info.num_pending === 0 && info.num_ack_pending === 0) break;
      await Bun.sleep(50);
    }
    const e2eS = (performance.now() - t0) / 1000;
    clearInterval(progress);
    // Reads are exact from here on; the rollup tables catch up at the service's next step.
    const stateClient = makeClickHouseClient({ url: ownerUrl });
    const e2eStore = new ClickHouseSeriesStore(stateClient, { database: db, ttlDays: 30 });
    while ((await e2eStore.readState()).done < (await e2eStore.newestBlock())) await Bun.sleep(50);
    const rolledUpS = (performance.now() - t0) / 1000;
    // every insert takes the table's next block number: messages per insert as the service combined them
    const e2eInserts = await e2eStore.newestBlock();
    await e2eStore.close();
    const stored = await count(`SELECT count() AS c FROM ${db}.samples`);
    const in1m = await count(`SELECT sum(count) AS c FROM ${db}.samples_1m`);
    const in1h = await count(`SELECT sum(count) AS c FROM ${db}.samples_1h`);
    const dlq = (await bus.jsm.streams.info(bus.topo.streams.dlq.name)).state.messages;
    await bus.close();
    svc.kill("SIGTERM");
    await svc.exited;

    // 2. Raw client: the same rows, same batch size, into the same owner, 2 in flight
    const rawSeconds = Math.max(5, Math.min(20, seconds / 3));
    const rawClient = async (strategy: "steps" | "legacy-mv") => {
      const rawDb = `${db}_raw${strategy === "steps" ? "" : "_mv"}`;
      for (const q of [...schemaStatements(rawDb, { raw: 30, m1: 90, h1: 730 }), ...(strategy === "steps" ? [] : legacyRollupViews(rawDb))]) await ch.command({ query: q });
      // the same rollup steps the service runs, on the same cadence, against the same owner
      const stepClient = makeClickHouseClient({ url: ownerUrl });
      const store = new ClickHouseSeriesStore(stepClient, { database: rawDb, ttlDays: 30 });
      let rows = 0;
      let rk = 0;
      const start = performance.now();
      const until = start + rawSeconds * 1000;
      const worker = async () => {
        while (performance.now() < until) {
          if (strategy === "steps") {
            // as the service does: several batches per insert (store.insertMany, markers and lookup included)
            const group = Array.from({ length: combine }, () => batchSamples(shape, rk++));
            await store.insertMany(group);
            rows += combine * shape.batch;
            continue;
          }
          const id = rk++;
          const batch = batchRows(shape, id);
          await ch.insert({
            table: `${rawDb}.samples`,
            columns: ["entity", "metric", "ts", "value", "labels"],
            values: batch,
            format: "JSONCompactEachRow",
            clickhouse_settings: { insert_deduplication_token: `raw-${id}`, deduplicate_blocks_in_dependent_materialized_views: 1 },
          });
          rows += batch.length;
        }
      };
      let stepping = strategy === "steps";
      const stepper = (async () => {
        while (stepping) {
          await Bun.sleep(Math.min(rollupMs, Math.max(0, until - performance.now())));
          if (stepping) await store.rollup();
        }
      })();
      await Promise.all([worker(), worker()]);
      const s = (performance.now() - start) / 1000;
      stepping = false;
      await stepper;
      if (strategy === "steps") await store.rollup();
      await store.close();
      const stored = await count(`SELECT count() AS c FROM ${rawDb}.samples`);
      const rolled = Math.min(await count(`SELECT sum(count) AS c FROM ${rawDb}.samples_1m`), await count(`SELECT sum(count) AS c FROM ${rawDb}.samples_1h`));
      return { rows, seconds: s, ok: stored === rows && rolled === rows };
    };
    const rawSteps = await rawClient("steps");
    const rawLegacy = await rawClient("legacy-mv");
    await ch.close();
    owner.kill("SIGTERM");
    await owner.exited;

    // 3. Raw chDB in a child process (chDB allows one data directory per process)
    const rawChdb = async (mode: ChdbMode) => {
      const dir = join(tmp.dir, `chdb-${mode}`);
      mkdirSync(dir, { recursive: true });
      // its one line is its result, after rawSeconds of inserting
      const p = await spawn(["bench/metrics.ts", "--raw-chdb", dir, String(rawSeconds), JSON.stringify(shape), mode, String(rollupMs), String(combine)], {}, rawSeconds * 1000 + 120_000);
      children.push(p.proc);
      return p.ready as { rows: number; seconds: number; rolledUp: number };
    };
    const chdbSteps = await rawChdb("steps");
    const chdbLegacy = await rawChdb("legacy-mv");
    const chdbPlain = await rawChdb("none");

    const total = k * shape.batch;
    const e2eRate = published / e2eS;
    const rate = (x: { rows: number; seconds: number }) => x.rows / x.seconds;
    const rawClientRate = rate(rawSteps);
    const chdbRate = rate(chdbSteps);
    const report = {
      bench: "metrics",
      shape: { entities: shape.entities, metricsPerEntity: shape.metrics, samplesPerBatch: shape.batch, bytesPerBatch: batchPayload(shape, 0).byteLength, rollupStepMs: rollupMs, maxInsertSamples: maxInsert },
      endToEnd: {
        publishSeconds: +publishedS.toFixed(1),
        drainedAfterSeconds: +e2eS.toFixed(1),
        rollupTablesCompleteAfterSeconds: +rolledUpS.toFixed(1),
        published,
        samplesPerS: Math.round(e2eRate),
        storedByDeadlinePerS: Math.round(storedAtDeadline / publishedS),
        messagesPerInsert: +(k / Math.max(1, e2eInserts)).toFixed(1),
      },
      // same strategy as the service: up to maxInsertSamples per insert with batch markers, a rollup step every rollupStepMs
      rawClientSameOwner: { rows: rawSteps.rows, seconds: +rawSteps.seconds.toFixed(1), samplesPerS: Math.round(rawClientRate) },
      rawChdbSessionInsert: { rows: chdbSteps.rows, seconds: +chdbSteps.seconds.toFixed(1), samplesPerS: Math.round(chdbRate) },
      // the strategy before (two materialized views fired by every insert), and no rollups at all
      legacy: {
        rawClientWithViews: { samplesPerS: Math.round(rate(rawLegacy)) },
        rawChdbWithViews: { samplesPerS: Math.round(rate(chdbLegacy)) },
        rawChdbWithoutRollups: { samplesPerS: Math.round(rate(chdbPlain)) },
      },
      ratioToRawClient: +(e2eRate / rawClientRate).toFixed(3),
      ratioToRawChdb: +(e2eRate / chdbRate).toFixed(3),
      countCheck: {
        published: total,
        stored,
        rollup1m: in1m,
        rollup1h: in1h,
        deadLettered: dlq,
        rawReferencesStoredAndRolledUpOnce: rawSteps.ok && rawLegacy.ok && chdbSteps.rolledUp === chdbSteps.rows && chdbLegacy.rolledUp === chdbLegacy.rows,
        ok: false,
      },
      // Issue 5's goal: ≥ 150k samples/s sustained end to end, and ≥ 50% of the raw insert rate of what it wraps.
      goal: { samplesPerS: 150_000, ratioToRawClient: 0.5 },
      goalMet: false,
    };
    const c = report.countCheck;
    c.ok = stored === total && in1m === total && in1h === total && dlq === 0 && c.rawReferencesStoredAndRolledUpOnce;
    report.goalMet = report.endToEnd.samplesPerS >= report.goal.samplesPerS && report.ratioToRawClient >= report.goal.ratioToRawClient && c.ok;
    console.log(JSON.stringify(report, null, 2));
    console.log(
      `\nmetrics end to end (JetStream → service → owner → chDB, 1m/1h rollups stepped every ${rollupMs} ms): ${report.endToEnd.samplesPerS} samples/s over ${report.endToEnd.drainedAfterSeconds} s (rollup tables complete at ${report.endToEnd.rollupTablesCompleteAfterSeconds} s)` +
        `\nraw @clickhouse/client inserts into the same owner, same rollup steps: ${report.rawClientSameOwner.samplesPerS} samples/s → ratio ${report.ratioToRawClient}` +
        `\nraw chDB session.insert in-process, same rollup steps: ${report.rawChdbSessionInsert.samplesPerS} samples/s → ratio ${report.ratioToRawChdb}` +
        `\nlegacy (per-insert materialized views): raw client ${report.legacy.rawClientWithViews.samplesPerS}/s, raw chDB ${report.legacy.rawChdbWithViews.samplesPerS}/s; raw chDB without rollups ${report.legacy.rawChdbWithoutRollups.samplesPerS}/s` +
        `\ncount check: ${c.ok ? "ok" : "MISMATCH"} (published ${total}, stored ${stored}, 1m ${in1m}, 1h ${in1h}, DLQ ${dlq}, raw references ${c.rawReferencesStoredAndRolledUpOnce ? "ok" : "MISMATCH"})` +
        `\ngoal (≥ ${report.goal.samplesPerS} samples/s and ≥ ${report.goal.ratioToRawClient} of raw, nothing lost): ${report.goalMet ? "met" : "NOT met"}`,
    );
    if (!c.ok) process.exitCode = 1;
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    await nats.stop();
    tmp.cleanup();
  }
}

type ChdbMode = "steps" | "legacy-mv" | "none";

/**
 * Child: raw chDB inserts of the same rows for N seconds; prints {rows, seconds, rolledUp}. "steps" runs the
 * service's rollup steps (same statements and tokens, state rows included) on a second connection every rollupMs.
 */
/** {name:Type} placeholders as literals: the child talks to chDB directly, with the bench's own (plain) values. */
function inlineParams(sql: string, params: Record<string, unknown>): string {
  const lit = (v: unknown): string => (Array.isArray(v) ? `[${v.map(lit).join(",")}]` : typeof v === "number" ? String(v) : `'${String(v).replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`);
  return sql.replace(/\{(\w+):[^}]+\}/g, (_, name: string) => lit(params[name]));
}

async function rawChdbChild(dir: string, secondsArg: string, shapeArg: string, mode: ChdbMode, rollupMs: number, combine: number) {
  const { Session } = await import("chdb");
  const shape = JSON.parse(shapeArg) as Shape;
  const session = new Session(dir);
  const statements = schemaStatements("raw", { raw: 30, m1: 90, h1: 730 });
  for (const q of mode === "none" ? statements.slice(0, 2) : mode === "legacy-mv" ? [...statements, ...legacyRollupViews("raw")] : statements) session.query(q);
  const stepper = new Session(dir);
  let done = 0;
  const step = async () => {
    const top = Number(stepper.query(`SELECT max(max_block_number) FROM system.parts WHERE database = 'raw' AND table = 'samples' AND active`, "TSV").trim());
    if (top <= done) return;
    const plan = { from: done, to: top };
    await stepper.queryAsync(`INSERT INTO raw.rollup_state (step, from_block, to_block) VALUES ('planned', ${plan.from}, ${plan.to})`);
    for (const s of rollupStepStatements("raw", plan)) await stepper.queryAsync(`${s.query}\nSETTINGS insert_deduplication_token = '${s.token}', max_insert_block_size = 10000000`);
    await stepper.queryAsync(`INSERT INTO raw.rollup_state (step, from_block, to_block) VALUES ('done', ${plan.from}, ${plan.to})`);
    done = top;
  };
  const until = performance.now() + Number(secondsArg) * 1000;
  const start = performance.now();
  let rows = 0;
  let inserting = true;
  const steps = (async () => {
    while (mode === "steps" && inserting) {
      await Bun.sleep(Math.min(rollupMs, Math.max(0, until - performance.now())));
      if (inserting) await step();
    }
  })();
  for (let k = 0; performance.now() < until; ) {
    if (mode !== "steps") {
      const body = Buffer.from(batchRows(shape, k).map((r) => JSON.stringify(r)).join("\n"));
      await session.insert({ table: "raw.samples", values: body, format: "JSONCompactEachRow", columns: ["entity", "metric", "ts", "value", "labels"], settings: { insert_deduplication_token: `raw-${k}`, ...(mode === "legacy-mv" ? { deduplicate_blocks_in_dependent_materialized_views: 1 } : {}) } });
      rows += shape.batch;
      k++;
      continue;
    }
    // as the service's store does: `combine` batches per insert, a marker per batch-day, one marker lookup first
    const groups = markerGroups(Array.from({ length: combine }, () => batchSamples(shape, k++)));
    await session.queryAsync(inlineParams(storedMarkersQuery("raw.samples"), markerLookupParams(groups)), { format: "JSONEachRow" });
    const lines: string[] = [];
    for (const g of groups) g.samples.forEach((x, i) => lines.push(JSON.stringify([x.entity, x.metric, x.ts, x.value, x.labels, i === 0 ? g.batchId : ""])));
    await session.insert({ table: "raw.samples", values: Buffer.from(lines.join("\n")), format: "JSONCompactEachRow", columns: ["entity", "metric", "ts", "value", "labels", "batch"], settings: { insert_deduplication_token: `raw-${k}` } });
    rows += combine * shape.batch;
  }
  const seconds = (performance.now() - start) / 1000;
  inserting = false;
  await steps;
  if (mode === "steps") await step();
  const rolledUp = mode === "none" ? 0 : Math.min(...["samples_1m", "samples_1h"].map((t) => Number(session.query(`SELECT sum(count) FROM raw.${t}`, "TSV").trim())));
  stepper.close();
  session.close();
  process.stdout.write(JSON.stringify({ rows, seconds, rolledUp }) + "\n");
}

if (import.meta.main) {
  const [flag, dir, secs, shape, mode, rollupMs, combine] = process.argv.slice(2);
  if (flag !== "--raw-chdb" || !dir || !secs || !shape || !["steps", "legacy-mv", "none"].includes(mode ?? "") || !(Number(rollupMs) > 0) || !(Number(combine) >= 1)) {
    console.error("bench/metrics.ts is run by `bun run bench metrics`");
    process.exit(2);
  }
  await rawChdbChild(dir, secs, shape, mode as ChdbMode, Number(rollupMs), Number(combine));
  process.exit(0);
}
