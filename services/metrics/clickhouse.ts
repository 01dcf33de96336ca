/**
 * ClickHouse adapter of SeriesStore, through @clickhouse/client only (embedded chDB owner or a real server alike).
 *
 * Tables (all ordered by (metric, entity, time) — the shape of every query we make — with time-series codecs):
 * - `samples`: raw samples, daily partitions, TTL `ttlDays` (whole parts dropped, no rewrite).
 * - `samples_1m`, `samples_1h`: rollups. Engine: AggregatingMergeTree with `SimpleAggregateFunction` columns sum,
 *   count, min, max (plain numbers on disk, merged by sum/min/max; avg = sum/count stays exact across any merge of
 *   buckets) and one `argMax` state for the last value with its timestamp. A SummingMergeTree cannot keep min/max or
 *   the last value (it would sum them), and `avgState` blobs would make every read pay for state merging that
 *   sum/count does not need. Each rollup has its own TTL.
 * - `rollup_state`: how far the rollups have got, as a block number of `samples` (see below).
 *
 * Rollups are computed in steps, not by materialized views. A view runs its GROUP BY and writes a part into each
 * rollup for every insert: at 5000-sample batches that tripled the engine's cost per sample (chDB here: ~300k
 * samples/s raw, ~100k with the two views). A step instead aggregates every raw row inserted since the previous step
 * in one INSERT … SELECT per rollup, so many batches share one GROUP BY and one part.
 *
 * "Inserted since" is MergeTree's own block number: every insert into a (non-replicated) MergeTree gets the next
 * number of the table, allocated and made visible under one lock (MergeTreeSink::commitPart), so once the newest visible part has number B, every
 * part numbered ≤ B is visible too and every later insert gets a number > B. `enable_block_number_column` keeps each
 * row's number (`_block_number`) through merges. A step covers (from, to]: `to` is the newest block at the step's
 * start; rows numbered in it are immutable, so the step is deterministic and can be redone:
 *   1. record the plan (from, to) in `rollup_state`;
 *   2. INSERT … SELECT into each rollup with the deduplication token `rollup:<table>:<from>:<to>`;
 *   3. record each rollup done up to `to` (after its own insert).
 * A crash anywhere redoes the recorded plan with the same tokens: a rollup insert that had landed is dropped as a
 * duplicate, one that had not lands now. Late samples (old timestamps, new inserts) get new block numbers and are
 * folded into their old buckets by the next step.
 *
 * Reads from a rollup add the raw rows above `done` (aggregated the same way), so answers are exact right after an
 * insert, not one step later. The raw part of such a read prunes by part name (its block range) before it looks at
 * rows. A read that overlapped a step (the plan moved while it ran) could count that step's rows twice, so it is
 * retried; while a step is in flight reads wait for it (briefly: one INSERT … SELECT).
 *
 * Batches are inserted several at a time (`insertMany`, one part for many batches), each batch marking its first row
 * per day with its batchId; a redelivered batch, in any combination, is found by its markers and not stored again
 * (see insertMany). A raw insert that stores nothing makes no block at all, so it is nothing to roll up either.
 *
 * One process writes and steps the rollups of a database (the metrics service). Every value is bound as a query parameter
 * ({name:Type}); only the database name (validated identifier) and fixed table names are part of the SQL text.
 */
import type { ClickHouseClient } from "@clickhouse/client";
import type { Sample } from "../../pipelines/contracts/metrics.ts";
import {
  type Agg,
  type LatestQuery,
  type LatestValues,
  type Point,
  type SeriesQuery,
  SeriesQueryError,
  type SeriesStore,
  type TopEntry,
  type TopQuery,
} from "./port.ts";

export type Resolution = "raw" | "1m" | "1h";

export interface ClickHouseSeriesStoreOptions {
  database: string;
  /** retention of raw samples, days */
  ttlDays: number;
  /** retention of the 1-minute rollup, days (default 90) */
  rollup1mTtlDays?: number;
  /** retention of the 1-hour rollup, days (default 730) */
  rollup1hTtlDays?: number;
}

/** Which table answers a series of this step: the coarsest rollup whose buckets divide the step. */
export function resolutionForStep(stepSeconds: number): Resolution {
  if (stepSeconds % 3600 === 0) return "1h";
  if (stepSeconds % 60 === 0) return "1m";
  return "raw";
}

/** Which table answers a top-N over this window: raw for short windows (minute edges matter), rollups beyond. */
export function resolutionForWindow(windowSeconds: number): Resolution {
  if (windowSeconds < 600) return "raw";
  if (windowSeconds <= 2 * 86_400) return "1m";
  return "1h";
}

const RAW_AGG: Record<Agg, string> = { avg: "avg(value)", min: "min(value)", max: "max(value)", last: "argMax(value, ts)" };
const ROLLUP_AGG: Record<Agg, string> = { avg: "sum(sum) / sum(count)", min: "min(min)", max: "max(max)", last: "argMaxMerge(last)" };

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The rollups: table suffix and the bucket of a raw timestamp (as the rollup's `t`, a DateTime('UTC')). */
export const ROLLUPS = [
  { r: "1m", bucket: "toStartOfMinute(ts)" },
  { r: "1h", bucket: "toStartOfHour(ts)" },
] as const;

/** The aggregate columns of a rollup row computed from raw rows (the same expressions a step and a read use). */
function rollupColumns(bucket: string): string {
  return `metric, entity, toDateTime(${bucket}, 'UTC') AS t, sum(value) AS sum, count() AS count, min(value) AS min, max(value) AS max,
          argMaxState(value, ts) AS last, max(ts) AS last_ts`;
}

/**
 * Raw rows (metric, entity, ts, value) whose block number is in (from, to], matching `where`. Parts are chosen by
 * name (`<partition>_<min block>_<max block>_<level>`; our partition ids are numbers, no underscores), so the engine
 * skips the others before it reads rows. A part wholly inside the range is read without a row filter; only a merged
 * part that straddles an end is filtered by `_block_number` row by row (that filter cost more than the aggregation).
 */
function rawRowsInBlocks(table: string, where: string, from: string, to?: string): string {
  const lo = `toUInt64(splitByChar('_', _part)[2])`;
  const hi = `toUInt64(splitByChar('_', _part)[3])`;
  const inside = `${lo} > ${from}` + (to ? ` AND ${hi} <= ${to}` : "");
  const straddles = `${hi} > ${from} AND ` + (to ? `${lo} <= ${to} AND (${lo} <= ${from} OR ${hi} > ${to})` : `${lo} <= ${from}`);
  const rows = `_block_number > ${from}` + (to ? ` AND _block_number <= ${to}` : "");
  return `(
      SELECT metric, entity, ts, value FROM ${table} WHERE ${where} AND ${inside}
      UNION ALL
      SELECT metric, entity, ts, value FROM ${table} WHERE ${where} AND ${straddles} AND ${rows}
    )`;
}

/** The DDL of the samples table, the rollup tables and the rollup state (idempotent), in order. */
export function schemaStatements(db: string, ttl: { raw: number; m1: number; h1: number }): string[] {
  if (!IDENT.test(db)) throw new Error(`database must be a ClickHouse identifier, got ${JSON.stringify(db)}`);
  const out = [
    `CREATE DATABASE IF NOT EXISTS ${db}`,
    `CREATE TABLE IF NOT EXISTS ${db}.samples (
        entity LowCardinality(String),
        metric LowCardinality(String),
        ts DateTime64(3) CODEC(DoubleDelta, ZSTD(1)),
        value Float64 CODEC(Gorilla, ZSTD(1)),
        labels Map(LowCardinality(String), String) CODEC(ZSTD(1)),
        batch String DEFAULT '' CODEC(ZSTD(1))
      ) ENGINE = MergeTree
      PARTITION BY toYYYYMMDD(ts)
      ORDER BY (metric, entity, ts)
      TTL toDateTime(ts) + INTERVAL ${ttl.raw} DAY
      SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1, enable_block_number_column = 1`,
  ];
  for (const [r, partition, days] of [
    ["1m", "toYYYYMM(t)", ttl.m1],
    ["1h", "toYear(t)", ttl.h1],
  ] as const) {
    out.push(
      `CREATE TABLE IF NOT EXISTS ${db}.samples_${r} (
          metric LowCardinality(String),
          entity LowCardinality(String),
          t DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
          sum SimpleAggregateFunction(sum, Float64) CODEC(Gorilla, ZSTD(1)),
          count SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
          min SimpleAggregateFunction(min, Float64) CODEC(Gorilla, ZSTD(1)),
          max SimpleAggregateFunction(max, Float64) CODEC(Gorilla, ZSTD(1)),
          last AggregateFunction(argMax, Float64, DateTime64(3)),
          last_ts SimpleAggregateFunction(max, DateTime64(3)) CODEC(DoubleDelta, ZSTD(1))
        ) ENGINE = AggregatingMergeTree
        PARTITION BY ${partition}
        ORDER BY (metric, entity, t)
        TTL t + INTERVAL ${days} DAY
        SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1`,
    );
  }
  // Rows 'planned', 'samples_1m', 'samples_1h' (done), each kept at its newest block (ReplacingMergeTree by to_block).
  out.push(
    `CREATE TABLE IF NOT EXISTS ${db}.rollup_state (
        step LowCardinality(String),
        from_block UInt64,
        to_block UInt64,
        at DateTime64(3) DEFAULT now64(3)
      ) ENGINE = ReplacingMergeTree(to_block)
      ORDER BY step`,
  );
  return out;
}

/**
 * The materialized views that used to keep the rollups on every insert. Not part of the schema any more: `init()`
 * drops them from a database made before the change, and the bench builds them to show what they cost.
 */
export function legacyRollupViews(db: string): string[] {
  if (!IDENT.test(db)) throw new Error(`database must be a ClickHouse identifier, got ${JSON.stringify(db)}`);
  return ROLLUPS.map(
    ({ r, bucket }) => `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.samples_${r}_mv TO ${db}.samples_${r} AS
        SELECT metric, entity, ${bucket} AS t, sum(value) AS sum, count() AS count, min(value) AS min, max(value) AS max,
               argMaxState(value, ts) AS last, max(ts) AS last_ts
        FROM ${db}.samples GROUP BY metric, entity, t`,
  );
}

export type RollupTable = "samples_1m" | "samples_1h";

/** A plan older than this is taken for one whose stepper died mid-step (steps take seconds). */
const STALE_PLAN_MS = 60_000;

/** A rollup step: raw rows with block numbers in (from, to]. */
export interface RollupPlan {
  from: number;
  to: number;
}

/**
 * The INSERT … SELECT of one step into each rollup, with its deduplication token. Sorted output, so a redone step
 * cuts its rows into the same blocks as the first attempt (the token numbers blocks in order).
 */
export function rollupStepStatements(db: string, plan: RollupPlan): { table: string; query: string; token: string }[] {
  if (!IDENT.test(db)) throw new Error(`database must be a ClickHouse identifier, got ${JSON.stringify(db)}`);
  if (!(Number.isSafeInteger(plan.from) && Number.isSafeInteger(plan.to) && plan.from >= 0 && plan.to > plan.from)) {
    throw new Error(`a rollup step needs block numbers 0 ≤ from < to, got ${JSON.stringify(plan)}`);
  }
  return ROLLUPS.map(({ r, bucket }) => ({
    table: `samples_${r}`,
    token: `rollup:samples_${r}:${plan.from}:${plan.to}`,
    query: `INSERT INTO ${db}.samples_${r} (metric, entity, t, sum, count, min, max, last, last_ts)
      SELECT ${rollupColumns(bucket)}
      FROM ${rawRowsInBlocks(`${db}.samples`, "1", String(plan.from), String(plan.to))}
      GROUP BY metric, entity, t
      ORDER BY metric, entity, t`,
  }));
}

/** Outcome of one `rollup()` call. */
export interface RollupResult {
  /** the step that ran (a redone one too), or undefined when there was nothing new */
  step?: RollupPlan;
  /** the step was a plan left by an earlier, interrupted attempt */
  redone: boolean;
  /** rollups are complete up to this block of `samples` */
  done: number;
}

/** The samples of one batch that fall on one (UTC) day, i.e. in one daily partition; the first is its marker. */
export interface MarkerGroup {
  batchId: string;
  samples: Sample[];
}

/**
 * Batches cut into batch-days, in order. A batchId seen twice in one call is kept once (the later copy is the same
 * batch published again).
 */
export function markerGroups(batches: { batchId: string; samples: Sample[] }[]): MarkerGroup[] {
  const seen = new Set<string>();
  const out: MarkerGroup[] = [];
  for (const b of batches) {
    if (seen.has(b.batchId) || !b.samples.length) continue;
    seen.add(b.batchId);
    const byDay = new Map<number, Sample[]>();
    for (const s of b.samples) {
      const day = Math.floor(s.ts / 86_400_000);
      const list = byDay.get(day);
      if (list) list.push(s);
      else byDay.set(day, [s]);
    }
    for (const samples of byDay.values()) out.push({ batchId: b.batchId, samples });
  }
  return out;
}

/** The marker lookup: a superset by primary key (metric, entity, ts range) and batch, matched exactly by the caller. */
export function storedMarkersQuery(table: string): string {
  return `SELECT batch, metric, entity, toUnixTimestamp64Milli(ts) AS t FROM ${table}
    WHERE metric IN {metrics:Array(String)} AND entity IN {entities:Array(String)}
      AND ts >= fromUnixTimestamp64Milli({lo:Int64}) AND ts <= fromUnixTimestamp64Milli({hi:Int64})
      AND batch IN {batches:Array(String)}`;
}

export function markerLookupParams(groups: MarkerGroup[]) {
  const firsts = groups.map((g) => g.samples[0]!);
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of firsts) {
    lo = Math.min(lo, s.ts);
    hi = Math.max(hi, s.ts);
  }
  return {
    metrics: [...new Set(firsts.map((s) => s.metric))],
    entities: [...new Set(firsts.map((s) => s.entity))],
    lo,
    hi,
    batches: [...new Set(groups.map((g) => g.batchId))],
  };
}

function markerKey(batchId: string, s: { metric: string; entity: string; ts: number }): string {
  return `${batchId}\u0000${s.metric}\u0000${s.entity}\u0000${s.ts}`;
}

/** A token naming exactly the batch-days an insert carries (a retry of the same insert is dropped as a duplicate). */
function combinationToken(groups: MarkerGroup[], stored: Set<string>): string {
  const h = new Bun.CryptoHasher("sha256");
  for (const g of groups) if (!stored.has(markerKey(g.batchId, g.samples[0]!))) h.update(markerKey(g.batchId, g.samples[0]!) + "\n");
  return `batches:${h.digest("hex")}`;
}

export class ClickHouseSeriesStore implements SeriesStore {
  private readonly db: string;
  private readonly ttl: { raw: number; m1: number; h1: number };

  constructor(
    private ch: ClickHouseClient,
    opts: ClickHouseSeriesStoreOptions,
  ) {
    if (!IDENT.test(opts.database)) throw new Error(`database must be a ClickHouse identifier, got ${JSON.stringify(opts.database)}`);
    this.db = opts.database;
    const days = (name: string, v: number) => {
      if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a whole number of days ≥ 1, got ${v}`);
      return v;
    };
    this.ttl = { raw: days("ttlDays", opts.ttlDays), m1: days("rollup1mTtlDays", opts.rollup1mTtlDays ?? 90), h1: days("rollup1hTtlDays", opts.rollup1hTtlDays ?? 730) };
  }

  private table(r: Resolution): string {
    return r === "raw" ? `${this.db}.samples` : `${this.db}.samples_${r}`;
  }

  async init(): Promise<void> {
    for (const query of schemaStatements(this.db, this.ttl)) await this.ch.command({ query });
    // A table made before block numbers were kept: keep them from now on (older parts read as their first block).
    await this.ch.command({ query: `ALTER TABLE ${this.db}.samples MODIFY SETTING enable_block_number_column = 1` });
    await this.ch.command({ query: `ALTER TABLE ${this.db}.samples ADD COLUMN IF NOT EXISTS batch String DEFAULT '' CODEC(ZSTD(1))` });
    await this.dropLegacyViews();
    // Retention changed in config since the tables were made: adopt it (new TTL applies to parts as they merge).
    await this.ensureTtl("samples", `toDateTime(ts) + toIntervalDay(${this.ttl.raw})`, `toDateTime(ts) + INTERVAL ${this.ttl.raw} DAY`);
    await this.ensureTtl("samples_1m", `t + toIntervalDay(${this.ttl.m1})`, `t + INTERVAL ${this.ttl.m1} DAY`);
    await this.ensureTtl("samples_1h", `t + toIntervalDay(${this.ttl.h1})`, `t + INTERVAL ${this.ttl.h1} DAY`);
  }

  /**
   * A database from before rollup steps has views that rolled up every insert so far: mark all blocks up to now
   * done, then drop the views (in that order: a crash in between leaves the views, and the next start does it again).
   * Runs before the service consumes, so no insert lands in between.
   */
  private async dropLegacyViews(): Promise<void> {
    const views = await this.rows<{ name: string }>(
      `SELECT name FROM system.tables WHERE database = {db:String} AND name IN ('samples_1m_mv', 'samples_1h_mv')`,
      { db: this.db },
    );
    if (!views.length) return;
    const top = await this.newestBlock();
    const state = await this.readState();
    if (top > state.done) for (const { r } of ROLLUPS) await this.markRolledUp({ from: state.done, to: top }, `samples_${r}`);
    for (const { name } of views) await this.ch.command({ query: `DROP VIEW IF EXISTS ${this.db}.${name}` });
  }

  private async ensureTtl(name: string, expectedFragment: string, ttlExpr: string): Promise<void> {
    const rs = await this.ch.query({
      query: `SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {name:String}`,
      query_params: { db: this.db, name },
      format: "JSONEachRow",
    });
    const rows = await rs.json<{ engine_full: string }>();
    if (rows[0] && !rows[0].engine_full.includes(`TTL ${expectedFragment}`)) {
      await this.ch.command({ query: `ALTER TABLE ${this.db}.${name} MODIFY TTL ${ttlExpr}` });
    }
  }

  async insert(samples: Sample[], batchId: string): Promise<void> {
    await this.insertMany([{ batchId, samples }]);
  }

  /**
   * Several batches as one insert (one part instead of one per batch: at 5000-sample batches the engine spent more on
   * making parts than on rows). ClickHouse's deduplication token cannot tell which batches of a combined insert were
   * stored, so each batch marks its own rows: the first sample of each day of a batch carries the batchId in `batch`
   * (empty in every other row), and is committed in the same part as that day's other rows. Before inserting, one
   * primary-key lookup finds which of these markers are stored; those batch-days are left out. A redelivered batch,
   * or one published again under a new message id, in whatever combination, is therefore stored once. The lookup
   * and the insert are not atomic: one writer per database (the metrics service, which also keeps a batch out of a
   * combination while the same batchId is being inserted).
   */
  async insertMany(batches: { batchId: string; samples: Sample[] }[]): Promise<{ samples: number; skippedBatchDays: number }> {
    const groups = markerGroups(batches);
    if (!groups.length) return { samples: 0, skippedBatchDays: 0 };
    const stored = await this.storedMarkers(groups);
    const rows: unknown[][] = [];
    let skipped = 0;
    for (const g of groups) {
      if (stored.has(markerKey(g.batchId, g.samples[0]!))) {
        skipped++;
        continue;
      }
      g.samples.forEach((s, i) => rows.push([s.entity, s.metric, s.ts, s.value, s.labels, i === 0 ? g.batchId : ""]));
    }
    if (rows.length) {
      // JSONCompactEachRow: rows as arrays, about 40% fewer bytes to encode, send and parse than JSONEachRow.
      await this.ch.insert({
        table: this.table("raw"),
        columns: ["entity", "metric", "ts", "value", "labels", "batch"],
        values: rows,
        format: "JSONCompactEachRow",
        // Idempotent retry of this exact combination; never a content-hash match with other batches' rows.
        clickhouse_settings: { insert_deduplication_token: combinationToken(groups, stored) },
      });
    }
    return { samples: rows.length, skippedBatchDays: skipped };
  }

  /** Which of these markers are stored: one lookup on the primary key (metric, entity, ts), checked exactly here. */
  private async storedMarkers(groups: MarkerGroup[]): Promise<Set<string>> {
    const rows = await this.rows<{ batch: string; metric: string; entity: string; t: string | number }>(storedMarkersQuery(this.table("raw")), markerLookupParams(groups));
    return new Set(rows.map((r) => markerKey(r.batch, { metric: r.metric, entity: r.entity, ts: Number(r.t) })));
  }

  // -------------------------------------------------------------------------------------------------------------
  // Rollup steps (see the module header)

  /** The newest block number of `samples` (0 when empty). */
  async newestBlock(): Promise<number> {
    const rows = await this.rows<{ b: string | number }>(
      `SELECT max(max_block_number) AS b FROM system.parts WHERE database = {db:String} AND table = 'samples' AND active`,
      { db: this.db },
    );
    return Number(rows[0]?.b ?? 0);
  }

  /**
   * The recorded plan (with its age, by the server's clock) and how far each rollup is done; `done` is where both
   * are (0 before the first step).
   */
  async readState(): Promise<{ planned: RollupPlan & { ageMs: number }; done: number; doneBy: Record<RollupTable, number> }> {
    const rows = await this.rows<{ step: string; f: string | number; t: string | number; age: string | number }>(
      `SELECT step, argMax(from_block, to_block) AS f, max(to_block) AS t, dateDiff('millisecond', argMax(at, to_block), now64(3)) AS age
       FROM ${this.db}.rollup_state GROUP BY step`,
      {},
    );
    const get = (step: string) => rows.find((r) => r.step === step);
    const planned = get("planned");
    const doneBy = { samples_1m: Number(get("samples_1m")?.t ?? 0), samples_1h: Number(get("samples_1h")?.t ?? 0) };
    return {
      planned: { from: Number(planned?.f ?? 0), to: Number(planned?.t ?? 0), ageMs: Number(planned?.age ?? 0) },
      done: Math.min(doneBy.samples_1m, doneBy.samples_1h),
      doneBy,
    };
  }

  private async writeState(step: "planned" | RollupTable, plan: RollupPlan): Promise<void> {
    await this.ch.insert({
      table: `${this.db}.rollup_state`,
      columns: ["step", "from_block", "to_block"],
      values: [[step, plan.from, plan.to]],
      format: "JSONCompactEachRow",
      // a repeated state row is harmless, but never let deduplication drop a new one
      clickhouse_settings: { insert_deduplicate: 0 },
    });
  }

  /**
   * Step 1: the plan to run — an interrupted one if the state has it, else (done, newest block], recorded before it
   * runs. Undefined when nothing was inserted since the last step.
   */
  async planRollup(): Promise<{ plan: RollupPlan; redone: boolean } | undefined> {
    const state = await this.readState();
    if (state.planned.to > state.done) return { plan: { from: state.planned.from, to: state.planned.to }, redone: true };
    const top = await this.newestBlock();
    if (top <= state.done) return undefined;
    const plan = { from: state.done, to: top };
    await this.writeState("planned", plan);
    return { plan, redone: false };
  }

  /** Step 2: fold the plan's raw rows into one rollup (each call is idempotent: the insert carries its token). */
  async applyRollup(plan: RollupPlan, table: RollupTable): Promise<void> {
    const s = rollupStepStatements(this.db, plan).find((x) => x.table === table)!;
    await this.ch.command({ query: s.query, clickhouse_settings: { insert_deduplication_token: s.token, max_insert_block_size: "10000000" } });
  }

  /** Step 3: record that a rollup holds the plan's rows (reads of it stop adding them from raw). */
  async markRolledUp(plan: RollupPlan, table: RollupTable): Promise<void> {
    await this.writeState(table, plan);
  }

  /** Step 3 for both rollups. */
  async completeRollup(plan: RollupPlan): Promise<void> {
    for (const { r } of ROLLUPS) await this.markRolledUp(plan, `samples_${r}`);
  }

  /**
   * One whole step: plan, then for each rollup fold and mark (so a read of the 1m rollup waits only for the 1m
   * insert, not for the whole step). Call from one process at a time.
   */
  async rollup(): Promise<RollupResult> {
    const next = await this.planRollup();
    if (!next) return { redone: false, done: (await this.readState()).done };
    for (const { r } of ROLLUPS) {
      await this.applyRollup(next.plan, `samples_${r}`);
      await this.markRolledUp(next.plan, `samples_${r}`);
    }
    return { step: next.plan, redone: next.redone, done: next.plan.to };
  }

  /**
   * A read of one rollup, exact: its rows so far plus the raw rows above where it is done. Retried when a step was
   * planned while it ran (its rows could then be in both halves); waits while that rollup's insert is in flight. A
   * plan older than a minute belongs to a stepper that died mid-step: then it answers anyway, as before the step
   * (counting that step's rows twice at worst, until the stepper is back and finishes it).
   */
  private async consistent<T>(table: RollupTable, run: (done: number) => Promise<T>): Promise<T> {
    const started = Date.now();
    for (;;) {
      const before = await this.readState();
      const done = before.doneBy[table];
      const stale = before.planned.ageMs > STALE_PLAN_MS || Date.now() - started > STALE_PLAN_MS;
      if (before.planned.to > done && !stale) {
        await Bun.sleep(25);
        continue;
      }
      const result = await run(done);
      if (stale || (await this.readState()).planned.to === before.planned.to) return result;
    }
  }

  /**
   * A rollup's rows matching `where` (written for column `t`, the bucket) plus the same aggregates over raw rows
   * above block {done:UInt64}, as one row source with the rollup's columns.
   */
  private rollupSource(r: "1m" | "1h", keys: string, where: (t: string) => string): string {
    const { bucket } = ROLLUPS.find((x) => x.r === r)!;
    const rawT = `toDateTime(${bucket}, 'UTC')`;
    return `(
        SELECT metric, entity, t, sum, count, min, max, last, last_ts FROM ${this.table(r)} WHERE ${keys} AND ${where("t")}
        UNION ALL
        SELECT ${rollupColumns(bucket)} FROM ${rawRowsInBlocks(this.table("raw"), `${keys} AND ${where(rawT)}`, "{done:UInt64}")}
        GROUP BY metric, entity, t
      )`;
  }

  async series(q: SeriesQuery): Promise<Point[]> {
    if (!(q.to > q.from)) throw new SeriesQueryError("to must be after from");
    if (!Number.isInteger(q.stepSeconds) || q.stepSeconds < 1) throw new SeriesQueryError("step must be a whole number of seconds ≥ 1");
    const agg = q.agg ?? "avg";
    const r = resolutionForStep(q.stepSeconds);
    const params = { metric: q.metric, entity: q.entity, from: q.from, to: q.to, step: q.stepSeconds };
    const toPoints = (rows: { t?: string | number; b?: string | number; v: number | string }[]) => rows.map((row) => ({ t: Number(row.t ?? row.b), v: Number(row.v) }));
    if (r === "raw") {
      return toPoints(
        await this.rows(
          `SELECT toUnixTimestamp64Milli(toDateTime64(toStartOfInterval(ts, toIntervalSecond({step:UInt32})), 3)) AS t, ${RAW_AGG[agg]} AS v
           FROM ${this.table(r)}
           WHERE metric = {metric:String} AND entity = {entity:String}
             AND ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})
           GROUP BY t ORDER BY t`,
          params,
        ),
      );
    }
    const source = this.rollupSource(
      r,
      `metric = {metric:String} AND entity = {entity:String}`,
      (t) => `${t} >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND ${t} < toDateTime(intDiv({to:Int64} + 999, 1000), 'UTC')`,
    );
    return this.consistent(`samples_${r}`, async (done) =>
      toPoints(
        await this.rows(
          `SELECT toUnixTimestamp(toStartOfInterval(t, toIntervalSecond({step:UInt32}))) * 1000 AS b, ${ROLLUP_AGG[agg]} AS v
           FROM ${source}
           GROUP BY b ORDER BY b`,
          { ...params, done },
        ),
      ),
    );
  }

  async latest(entity: string): Promise<Record<string, Point>> {
    return (await this.latestMany({ entities: [entity] }))[entity] ?? {};
  }

  async latestMany(q: LatestQuery): Promise<LatestValues> {
    if (!q.entities.length) return {};
    const lookback = q.lookbackSeconds ?? 86_400;
    const at = q.at ?? Date.now();
    // The hourly rollup keeps the last value of every hour bucket (argMax state), so the newest sample of each
    // (entity, metric) is exact and current while the scan touches one row per hour instead of every sample.
    const source = this.rollupSource(
      "1h",
      `entity IN {entities:Array(String)} AND (length({metrics:Array(String)}) = 0 OR has({metrics:Array(String)}, metric))`,
      (t) =>
        `${t} >= toStartOfHour(toDateTime(intDiv({at:Int64}, 1000) - {lookback:UInt32}, 'UTC')) AND ${t} <= toDateTime(intDiv({at:Int64}, 1000), 'UTC')`,
    );
    const rows = await this.consistent("samples_1h", (done) =>
      this.rows<{ entity: string; metric: string; lt: string | number; v: number | string }>(
        `SELECT entity, metric, toUnixTimestamp64Milli(max(last_ts)) AS lt, argMaxMerge(last) AS v
         FROM ${source}
         GROUP BY entity, metric
         HAVING max(last_ts) >= fromUnixTimestamp64Milli({at:Int64} - {lookback:UInt32} * 1000)
            AND max(last_ts) <= fromUnixTimestamp64Milli({at:Int64})`,
        { entities: q.entities, metrics: q.metrics ?? [], at, lookback, done },
      ),
    );
    const out: LatestValues = {};
    for (const row of rows) (out[row.entity] ??= {})[row.metric] = { t: Number(row.lt), v: Number(row.v) };
    return out;
  }

  async top(q: TopQuery): Promise<TopEntry[]> {
    if (!Number.isInteger(q.n) || q.n < 1) throw new SeriesQueryError("n must be a whole number ≥ 1");
    if (!(q.windowSeconds >= 1)) throw new SeriesQueryError("window must be at least 1 second");
    const by = q.by ?? "avg";
    const order = q.order === "asc" ? "ASC" : "DESC";
    const at = q.at ?? Date.now();
    const from = at - q.windowSeconds * 1000;
    const r = resolutionForWindow(q.windowSeconds);
    const params = { metric: q.metric, from, at, n: q.n };
    const toEntries = (rows: { entity: string; v: number | string }[]) => rows.map((row) => ({ entity: row.entity, v: Number(row.v) }));
    if (r === "raw") {
      return toEntries(
        await this.rows(
          `SELECT entity, ${RAW_AGG[by]} AS v
           FROM ${this.table(r)}
           WHERE metric = {metric:String} AND ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({at:Int64})
           GROUP BY entity ORDER BY v ${order}, entity LIMIT {n:UInt32}`,
          params,
        ),
      );
    }
    const source = this.rollupSource(
      r,
      `metric = {metric:String}`,
      (t) => `${t} >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND ${t} < toDateTime(intDiv({at:Int64} + 999, 1000), 'UTC')`,
    );
    return this.consistent(`samples_${r}`, async (done) =>
      toEntries(
        await this.rows(
          `SELECT entity, ${ROLLUP_AGG[by]} AS v FROM ${source}
           GROUP BY entity ORDER BY v ${order}, entity LIMIT {n:UInt32}`,
          { ...params, done },
        ),
      ),
    );
  }

  private async rows<T>(query: string, query_params: Record<string, unknown>): Promise<T[]> {
    const rs = await this.ch.query({ query, query_params, format: "JSONEachRow" });
    return rs.json<T>();
  }

  async close(): Promise<void> {
    await this.ch.close();
  }
}
