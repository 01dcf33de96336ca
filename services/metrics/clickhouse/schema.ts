/**
 * The tables of the ClickHouse SeriesStore (see ../clickhouse.ts for the design) and the SQL fragments the rollup
 * steps and the reads share: a rollup row's aggregates, and the raw rows of a block range.
 */
import type { ClickHouseClient } from "@clickhouse/client";

/** A database of the store, and the client to reach it: what every module here works on. */
export interface Db {
  ch: ClickHouseClient;
  /** the database name, a validated identifier */
  db: string;
}

export type Resolution = "raw" | "1m" | "1h";

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The database name is spliced into SQL (identifiers cannot be bound): only an identifier passes. */
export function assertIdent(db: string): string {
  if (!IDENT.test(db)) throw new Error(`database must be a ClickHouse identifier, got ${JSON.stringify(db)}`);
  return db;
}

export function tableOf(db: string, r: Resolution): string {
  return r === "raw" ? `${db}.samples` : `${db}.samples_${r}`;
}

/** A query's rows as JSON objects, parameters bound. */
export async function rowsOf<T>(d: Db, query: string, query_params: Record<string, unknown>): Promise<T[]> {
  const rs = await d.ch.query({ query, query_params, format: "JSONEachRow" });
  return rs.json<T>();
}

/** The rollups: table suffix and the bucket of a raw timestamp (as the rollup's `t`, a DateTime('UTC')). */
export const ROLLUPS = [
  { r: "1m", bucket: "toStartOfMinute(ts)" },
  { r: "1h", bucket: "toStartOfHour(ts)" },
] as const;

export type RollupTable = "samples_1m" | "samples_1h";

/** The aggregate columns of a rollup row computed from raw rows (the same expressions a step and a read use). */
export function rollupColumns(bucket: string): string {
  return `metric, entity, toDateTime(${bucket}, 'UTC') AS t, sum(value) AS sum, count() AS count, min(value) AS min, max(value) AS max,
          argMaxState(value, ts) AS last, max(ts) AS last_ts`;
}

/**
 * Raw rows (metric, entity, ts, value) whose block number is in (from, to], matching `where`. Parts are chosen by
 * name (`<partition>_<min block>_<max block>_<level>`; our partition ids are numbers, no underscores), so the engine
 * skips the others before it reads rows. A part wholly inside the range is read without a row filter; only a merged
 * part that straddles an end is filtered by `_block_number` row by row (that filter cost more than the aggregation).
 */
export function rawRowsInBlocks(table: string, where: string, from: string, to?: string): string {
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
  assertIdent(db);
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
  // Deduplication on: a plan is claimed with a token naming where it starts, so concurrent steppers agree (rollup.ts).
  out.push(
    `CREATE TABLE IF NOT EXISTS ${db}.rollup_state (
        step LowCardinality(String),
        from_block UInt64,
        to_block UInt64,
        at DateTime64(3) DEFAULT now64(3)
      ) ENGINE = ReplacingMergeTree(to_block)
      ORDER BY step
      SETTINGS non_replicated_deduplication_window = 10000`,
  );
  return out;
}

/**
 * How the rollups are kept (see ../clickhouse.ts):
 * - `steps`: rollup steps over MergeTree block numbers, several batches per insert (the embedded default: fastest);
 * - `views`: materialized views fill the rollups as each batch is inserted, one insert per batch-day with a
 *   deduplication token derived from its batchId (what replicated tables need: block numbers are no watermark there).
 */
export type RollupMode = "steps" | "views";

/** `auto` picks `views` on replicated (or shared) tables, `steps` on plain MergeTree. */
export function rollupModeFor(wanted: RollupMode | "auto", samplesEngine: string | undefined): RollupMode {
  if (wanted !== "auto") return wanted;
  return samplesEngine !== undefined && /^(Replicated|Shared)/.test(samplesEngine) ? "views" : "steps";
}

/** The engine of `samples` (undefined before the table exists). */
export async function samplesEngine(d: Db): Promise<string | undefined> {
  const rows = await rowsOf<{ engine: string }>(d, `SELECT engine FROM system.tables WHERE database = {db:String} AND name = 'samples'`, { db: d.db });
  return rows[0]?.engine;
}

/**
 * The materialized views that keep the rollups on every insert: the `views` mode's schema. In `steps` mode `init()`
 * drops them (a database made before steps, or switched back), and the bench builds them to show what they cost.
 */
export function rollupViews(db: string): string[] {
  assertIdent(db);
  return ROLLUPS.map(
    ({ r, bucket }) => `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.samples_${r}_mv TO ${db}.samples_${r} AS
        SELECT metric, entity, ${bucket} AS t, sum(value) AS sum, count() AS count, min(value) AS min, max(value) AS max,
               argMaxState(value, ts) AS last, max(ts) AS last_ts
        FROM ${db}.samples GROUP BY metric, entity, t`,
  );
}

/** The same views under the name the bench and older tests know them by. */
export const legacyRollupViews = rollupViews;

/** Creates the tables, or brings tables made by an older version to the current columns and settings. */
export async function createSchema(d: Db, ttl: { raw: number; m1: number; h1: number }): Promise<void> {
  const { ch, db } = d;
  for (const query of schemaStatements(db, ttl)) await ch.command({ query });
  // A table made before block numbers were kept: keep them from now on (older parts read as their first block).
  await ch.command({ query: `ALTER TABLE ${db}.samples MODIFY SETTING enable_block_number_column = 1` });
  await ch.command({ query: `ALTER TABLE ${db}.samples ADD COLUMN IF NOT EXISTS batch String DEFAULT '' CODEC(ZSTD(1))` });
  // A state table made before plans were claimed by token: deduplicate from now on (replicated tables always do).
  const state = await rowsOf<{ engine: string }>(d, `SELECT engine FROM system.tables WHERE database = {db:String} AND name = 'rollup_state'`, { db });
  if (!/^(Replicated|Shared)/.test(state[0]?.engine ?? "")) {
    await ch.command({ query: `ALTER TABLE ${db}.rollup_state MODIFY SETTING non_replicated_deduplication_window = 10000` });
  }
}

/** The views of `views` mode (idempotent; on a cluster deploy/clickhouse/replicated.sql made them on every replica). */
export async function createViews(d: Db): Promise<void> {
  for (const query of rollupViews(d.db)) await d.ch.command({ query });
}

/** Retention changed in config since the tables were made: adopt it (a new TTL applies to parts as they merge). */
export async function adoptTtl(d: Db, ttl: { raw: number; m1: number; h1: number }): Promise<void> {
  await ensureTtl(d, "samples", `toDateTime(ts) + toIntervalDay(${ttl.raw})`, `toDateTime(ts) + INTERVAL ${ttl.raw} DAY`);
  await ensureTtl(d, "samples_1m", `t + toIntervalDay(${ttl.m1})`, `t + INTERVAL ${ttl.m1} DAY`);
  await ensureTtl(d, "samples_1h", `t + toIntervalDay(${ttl.h1})`, `t + INTERVAL ${ttl.h1} DAY`);
}

async function ensureTtl(d: Db, name: string, expectedFragment: string, ttlExpr: string): Promise<void> {
  const rows = await rowsOf<{ engine_full: string }>(d, `SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {name:String}`, {
    db: d.db,
    name,
  });
  if (rows[0] && !rows[0].engine_full.includes(`TTL ${expectedFragment}`)) {
    await d.ch.command({ query: `ALTER TABLE ${d.db}.${name} MODIFY TTL ${ttlExpr}` });
  }
}
