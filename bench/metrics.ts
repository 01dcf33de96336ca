/**
 * `bun run bench metrics [--seconds 60] [--batch 5000] [--entities 5000] [--metrics 20]`
 *
 * End-to-end samples/s: a load generator publishes metrics.v1 batches to JetStream for N seconds while the metrics
 * service (services/metrics/main.ts, its own process, as deployed) writes them into ClickHouse through the embedded
 * owner (its own process); the time runs until the last sample is stored and acked. Next to it, in the same run:
 * - raw client: the same rows inserted straight into the same owner with @clickhouse/client (same schema with
 *   rollups, same batch size, two inserts in flight) — the limit of what the service wraps;
 * - raw chDB: the same rows through chDB's `session.insert` (raw buffer) in a child process, the engine's own limit;
 * - raw chDB without rollups: what the two materialized views cost.
 * Ends with a count check: every published sample is in `samples` and counted once in each rollup.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import { makeClickHouseClient } from "../services/clickhouse/client.ts";
import { schemaStatements } from "../services/metrics/clickhouse.ts";
import { connectBus } from "../services/shared/bus.ts";
import { startNats } from "../test/helpers/nats.ts";
import { tempDir, uniquePrefix } from "../test/helpers/tmp.ts";

const METRIC_NAMES = ["cpu_util", "load1", "load5", "mem_used_bytes", "mem_free_bytes", "disk_read_bytes", "disk_write_bytes", "net_rx_bytes", "net_tx_bytes", "tcp_established", "tcp_time_wait", "procs_running", "procs_blocked", "fd_open", "ctx_switches", "interrupts", "swap_used", "fs_used_ratio", "entropy", "uptime_seconds"];

interface Shape {
  entities: number;
  metrics: number;
  batch: number;
  base: number;
}

/** The g-th sample of the synthetic estate as a JSONCompactEachRow row and as a metrics.v1 sample (same values). */
function sampleAt(shape: Shape, g: number) {
  const series = g % (shape.entities * shape.metrics);
  const tick = Math.floor(g / (shape.entities * shape.metrics));
  const entity = `host:web-${String(Math.floor(series / shape.metrics)).padStart(5, "0")}`;
  const metric = METRIC_NAMES[series % shape.metrics % METRIC_NAMES.length]! + (shape.metrics > METRIC_NAMES.length ? `_${Math.floor((series % shape.metrics) / METRIC_NAMES.length)}` : "");
  return { entity, metric, ts: shape.base + tick * 1000 + (series % 1000), value: ((g * 7919) % 100_000) / 100, labels: { job: "node" } };
}

/** Batch k as metrics.v1 JSON, built as a string: the generator must cost little next to the service it feeds. */
function batchPayload(shape: Shape, k: number): Uint8Array {
  const parts: string[] = [];
  for (let g = k * shape.batch; g < (k + 1) * shape.batch; g++) {
    const s = sampleAt(shape, g);
    parts.push(`{"entity":"${s.entity}","metric":"${s.metric}","ts":${s.ts},"value":${s.value},"labels":{"job":"node"}}`);
  }
  return new TextEncoder().encode(`{"schema":"metrics.v1","source":"bench","batchId":"bench-${k}","samples":[${parts.join(",")}]}`);
}

function batchRows(shape: Shape, k: number): unknown[][] {
  const rows: unknown[][] = [];
  for (let g = k * shape.batch; g < (k + 1) * shape.batch; g++) {
    const s = sampleAt(shape, g);
    rows.push([s.entity, s.metric, s.ts, s.value, s.labels]);
  }
  return rows;
}

async function readyLine(proc: Subprocess<"ignore", "pipe", "pipe">, what: string): Promise<Record<string, unknown>> {
  const reader = proc.stdout.getReader();
  let out = "";
  const deadline = Date.now() + 60_000;
  while (!out.includes("\n") && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  if (!out.includes("\n")) {
    proc.kill();
    throw new Error(`${what} did not become ready: ${out}${await new Response(proc.stderr).text()}`);
  }
  void proc.stderr.pipeTo(new WritableStream()).catch(() => undefined);
  return JSON.parse(out.split("\n")[0]!) as Record<string, unknown>;
}

function spawn(args: string[], env: Record<string, string> = {}) {
  return Bun.spawn([process.execPath, ...args], {
    cwd: join(import.meta.dir, ".."),
    env: { ...process.env, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
}

export async function benchMetrics(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: { seconds: { type: "string", default: "60" }, batch: { type: "string", default: "5000" }, entities: { type: "string", default: "5000" }, metrics: { type: "string", default: "20" } },
  });
  const seconds = Number(values.seconds);
  const shape: Shape = { entities: Number(values.entities), metrics: Number(values.metrics), batch: Number(values.batch), base: Date.now() - 3_600_000 };
  if (!(seconds > 0) || !(shape.batch > 0 && shape.batch <= 10_000)) throw new Error("--seconds must be > 0 and --batch in 1..10000");
  const nats = await startNats();
  const tmp = tempDir("orrery-bench-metrics-");
  const owner = spawn(["services/clickhouse/main.ts", "--data-dir", join(tmp.dir, "owner"), "--port", "0"]);
  const children: Subprocess[] = [owner];
  try {
    const ownerUrl = String((await readyLine(owner, "ClickHouse owner")).url);
    const ch = makeClickHouseClient({ url: ownerUrl });
    const prefix = uniquePrefix("benchm");
    const db = prefix.replace(/-/g, "_");
    const count = async (query: string) => Number((await (await ch.query({ query, format: "JSONEachRow" })).json<{ c: string | number }>())[0]!.c);

    // 1. End to end: generator → JetStream → metrics service (own process) → owner → chDB
    const svc = spawn(["services/metrics/main.ts"], { NATS_URL: nats.url, ORRERY_PREFIX: prefix, CLICKHOUSE_URL: ownerUrl, CLICKHOUSE_DATABASE: db, ORRERY_LOG_QUIET: "1" });
    children.push(svc);
    await readyLine(svc, "metrics service");
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
    const stored = await count(`SELECT count() AS c FROM ${db}.samples`);
    const in1m = await count(`SELECT sum(count) AS c FROM ${db}.samples_1m`);
    const in1h = await count(`SELECT sum(count) AS c FROM ${db}.samples_1h`);
    const dlq = (await bus.jsm.streams.info(bus.topo.streams.dlq.name)).state.messages;
    await bus.close();
    svc.kill("SIGTERM");
    await svc.exited;

    // 2. Raw client: the same rows, same batch size, into the same owner (same schema with rollups), 2 in flight
    const rawDb = `${db}_raw`;
    for (const q of schemaStatements(rawDb, { raw: 30, m1: 90, h1: 730 })) await ch.command({ query: q });
    const rawSeconds = Math.max(5, Math.min(20, seconds / 3));
    let rawRows = 0;
    let rk = 0;
    const rawStart = performance.now();
    const rawUntil = rawStart + rawSeconds * 1000;
    const rawWorker = async () => {
      while (performance.now() < rawUntil) {
        const id = rk++;
        const rows = batchRows(shape, id);
        await ch.insert({ table: `${rawDb}.samples`, columns: ["entity", "metric", "ts", "value", "labels"], values: rows, format: "JSONCompactEachRow", clickhouse_settings: { insert_deduplication_token: `raw-${id}` } });
        rawRows += rows.length;
      }
    };
    await Promise.all([rawWorker(), rawWorker()]);
    const rawClientS = (performance.now() - rawStart) / 1000;
    const rawStored = await count(`SELECT count() AS c FROM ${rawDb}.samples`);
    await ch.close();
    owner.kill("SIGTERM");
    await owner.exited;

    // 3. Raw chDB in a child process (chDB allows one data directory per process)
    const rawChdb = async (rollups: boolean) => {
      const dir = join(tmp.dir, rollups ? "chdb-raw" : "chdb-raw-plain");
      mkdirSync(dir, { recursive: true });
      const p = spawn(["bench/metrics.ts", "--raw-chdb", dir, String(rawSeconds), JSON.stringify(shape), rollups ? "1" : "0"]);
      children.push(p);
      return (await readyLine(p, "raw chDB child")) as { rows: number; seconds: number };
    };
    const chdbWith = await rawChdb(true);
    const chdbPlain = await rawChdb(false);

    const total = k * shape.batch;
    const e2eRate = published / e2eS;
    const rawClientRate = rawRows / rawClientS;
    const chdbRate = chdbWith.rows / chdbWith.seconds;
    const report = {
      bench: "metrics",
      shape: { entities: shape.entities, metricsPerEntity: shape.metrics, samplesPerBatch: shape.batch, bytesPerBatch: batchPayload(shape, 0).byteLength },
      endToEnd: {
        publishSeconds: +publishedS.toFixed(1),
        drainedAfterSeconds: +e2eS.toFixed(1),
        published,
        samplesPerS: Math.round(e2eRate),
        storedByDeadlinePerS: Math.round(storedAtDeadline / publishedS),
      },
      rawClientSameOwner: { rows: rawRows, seconds: +rawClientS.toFixed(1), samplesPerS: Math.round(rawClientRate) },
      rawChdbSessionInsert: { rows: chdbWith.rows, seconds: +chdbWith.seconds.toFixed(1), samplesPerS: Math.round(chdbRate) },
      rawChdbWithoutRollups: { samplesPerS: Math.round(chdbPlain.rows / chdbPlain.seconds) },
      ratioToRawClient: +(e2eRate / rawClientRate).toFixed(3),
      ratioToRawChdb: +(e2eRate / chdbRate).toFixed(3),
      countCheck: { published: total, stored, rollup1m: in1m, rollup1h: in1h, deadLettered: dlq, rawClientStored: rawStored, ok: stored === total && in1m === total && in1h === total && rawStored === rawRows && dlq === 0 },
      // Issue 5's goal: ≥ 150k samples/s sustained end to end, and ≥ 50% of the raw insert rate of what it wraps.
      goal: { samplesPerS: 150_000, ratioToRawClient: 0.5 },
      goalMet: false,
    };
    report.goalMet = report.endToEnd.samplesPerS >= report.goal.samplesPerS && report.ratioToRawClient >= report.goal.ratioToRawClient && report.countCheck.ok;
    console.log(JSON.stringify(report, null, 2));
    console.log(
      `\nmetrics end to end (JetStream → service → owner → chDB, with 1m/1h rollups): ${report.endToEnd.samplesPerS} samples/s over ${report.endToEnd.drainedAfterSeconds} s` +
        `\nraw @clickhouse/client inserts into the same owner: ${report.rawClientSameOwner.samplesPerS} samples/s → ratio ${report.ratioToRawClient}` +
        `\nraw chDB session.insert in-process: ${report.rawChdbSessionInsert.samplesPerS} samples/s → ratio ${report.ratioToRawChdb} (without rollups: ${report.rawChdbWithoutRollups.samplesPerS}/s)` +
        `\ncount check: ${report.countCheck.ok ? "ok" : "MISMATCH"} (published ${total}, stored ${stored}, 1m ${in1m}, 1h ${in1h}, DLQ ${dlq})` +
        `\ngoal (≥ ${report.goal.samplesPerS} samples/s and ≥ ${report.goal.ratioToRawClient} of raw, nothing lost): ${report.goalMet ? "met" : "NOT met"}`,
    );
    if (!report.countCheck.ok) process.exitCode = 1;
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    await nats.stop();
    tmp.cleanup();
  }
}

/** Child: raw chDB inserts of the same rows for N seconds; prints {rows, seconds}. */
async function rawChdbChild(dir: string, secondsArg: string, shapeArg: string, rollups: boolean) {
  const { Session } = await import("chdb");
  const shape = JSON.parse(shapeArg) as Shape;
  const session = new Session(dir);
  const statements = schemaStatements("raw", { raw: 30, m1: 90, h1: 730 });
  for (const q of rollups ? statements : statements.slice(0, 2)) session.query(q);
  const until = performance.now() + Number(secondsArg) * 1000;
  const start = performance.now();
  let rows = 0;
  for (let k = 0; performance.now() < until; k++) {
    const body = Buffer.from(batchRows(shape, k).map((r) => JSON.stringify(r)).join("\n"));
    await session.insert({ table: "raw.samples", values: body, format: "JSONCompactEachRow" });
    rows += shape.batch;
  }
  const seconds = (performance.now() - start) / 1000;
  session.close();
  process.stdout.write(JSON.stringify({ rows, seconds }) + "\n");
}

if (import.meta.main) {
  const [flag, dir, secs, shape, rollups] = process.argv.slice(2);
  if (flag !== "--raw-chdb" || !dir || !secs || !shape) {
    console.error("bench/metrics.ts is run by `bun run bench metrics`");
    process.exit(2);
  }
  await rawChdbChild(dir, secs, shape, rollups === "1");
  process.exit(0);
}
