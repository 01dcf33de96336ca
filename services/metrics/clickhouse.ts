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
 * Several metrics services may write one database (JetStream hands each message to one of them). Steps are claimed
 * (rollup.ts planRollup: the next plan is stored once, by a deduplication token naming where it starts, and every
 * stepper runs that one), so any number of steppers fold every block once. Raw batches are stored once by their
 * markers (markers.ts), which across services leans on JetStream: a message goes to another service only after the
 * holder's ack_wait ran out, long after its insert committed or failed. Left open in this mode: two copies of one
 * batchId published as different messages and taken by two services in the same instant, or an insert a server
 * holds for longer than ack_wait after its sender died; both are shut by the `views` mode.
 *
 * Replicated tables (ReplicatedMergeTree and SharedMergeTree: a ClickHouse cluster, deploy/clickhouse/replicated.sql)
 * have no such watermark: block numbers are given out per partition through Keeper and parts appear on a replica
 * out of order. There the rollups are kept by the `views` mode (`rollups: "auto"` picks it from the engine of
 * `samples`): materialized views `samples_1m_mv`, `samples_1h_mv` fold each insert as it lands, each batch-day is
 * inserted alone with the token `metrics:<batchId>:<day>`, and ClickHouse drops a second copy of it atomically in
 * `samples` and in both views' inserts (deduplicate_blocks_in_dependent_materialized_views; Keeper's block ids
 * across replicas, non_replicated_deduplication_window on one server). Exact with any number of writers, any
 * redelivery, any replica; the price is a part and a GROUP BY per batch (the bench's "legacy" line measures it), paid
 * on a cluster's cores. Reads of a viewed rollup add nothing from raw.
 *
 * Every value is bound as a query parameter ({name:Type}); only the database name (validated identifier) and fixed
 * table names are part of the SQL text.
 *
 * The parts live in ./clickhouse/: schema.ts (tables, shared SQL), rollup.ts (steps), markers.ts (combined inserts),
 * reads.ts (series, latest, top). This class puts them behind the port.
 */
import type { ClickHouseClient } from "@clickhouse/client";
import type { Sample } from "../../pipelines/contracts/metrics.ts";
import { clickHouseFailure } from "../clickhouse/client.ts";
import { insertBatches } from "./clickhouse/markers.ts";
import { latestMany, series, top } from "./clickhouse/reads.ts";
import {
  applyRollup,
  dropLegacyViews,
  markRolledUp,
  newestBlock,
  planRollup,
  readState,
  rollupStep,
  type RollupPlan,
  type RollupResult,
  type RollupState,
} from "./clickhouse/rollup.ts";
import { adoptTtl, assertIdent, createSchema, createViews, type Db, type RollupMode, rollupModeFor, ROLLUPS, type RollupTable, samplesEngine } from "./clickhouse/schema.ts";
import { type LatestQuery, type LatestValues, type Point, type SeriesQuery, SeriesStoreError, type SeriesStore, type TopEntry, type TopQuery } from "./port.ts";

export { legacyRollupViews, rollupModeFor, rollupViews, ROLLUPS, schemaStatements, type Resolution, type RollupMode, type RollupTable } from "./clickhouse/schema.ts";
export { rollupStepStatements, type RollupPlan, type RollupResult } from "./clickhouse/rollup.ts";
export { batchDayToken, markerGroups, markerLookupParams, storedMarkersQuery, type MarkerGroup } from "./clickhouse/markers.ts";
export { resolutionForStep, resolutionForWindow } from "./clickhouse/reads.ts";

export interface ClickHouseSeriesStoreOptions {
  database: string;
  /** retention of raw samples, days */
  ttlDays: number;
  /** retention of the 1-minute rollup, days (default 90) */
  rollup1mTtlDays?: number;
  /** retention of the 1-hour rollup, days (default 730) */
  rollup1hTtlDays?: number;
  /** how the rollups are kept (default `auto`: `views` on replicated tables, `steps` on plain MergeTree) */
  rollups?: RollupMode | "auto";
}

export class ClickHouseSeriesStore implements SeriesStore {
  private readonly d: Db;
  private readonly ttl: { raw: number; m1: number; h1: number };
  private readonly wantedMode: RollupMode | "auto";
  private mode: RollupMode = "steps";

  constructor(
    private ch: ClickHouseClient,
    opts: ClickHouseSeriesStoreOptions,
  ) {
    this.d = { ch, db: assertIdent(opts.database) };
    const days = (name: string, v: number) => {
      if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a whole number of days ≥ 1, got ${v}`);
      return v;
    };
    this.ttl = { raw: days("ttlDays", opts.ttlDays), m1: days("rollup1mTtlDays", opts.rollup1mTtlDays ?? 90), h1: days("rollup1hTtlDays", opts.rollup1hTtlDays ?? 730) };
    const wanted = opts.rollups ?? "auto";
    if (!["auto", "steps", "views"].includes(wanted)) throw new Error(`rollups must be auto, steps or views, got ${JSON.stringify(wanted)}`);
    this.wantedMode = wanted;
  }

  /**
   * Tables, then the rollup mode. Switching a database between modes: stop every metrics service first (a step
   * brings the rollups current before the views are made; the views' rows are marked done before they are dropped).
   */
  async init(): Promise<void> {
    await createSchema(this.d, this.ttl);
    this.mode = rollupModeFor(this.wantedMode, await samplesEngine(this.d));
    if (this.mode === "steps") await dropLegacyViews(this.d);
    else {
      if (!(await readState(this.d)).viewed.samples_1m) await rollupStep(this.d);
      await createViews(this.d);
    }
    await adoptTtl(this.d, this.ttl);
  }

  /** The rollup mode in force (known after init). */
  rollupMode(): RollupMode {
    return this.mode;
  }

  async insert(samples: Sample[], batchId: string): Promise<void> {
    await this.insertMany([{ batchId, samples }]);
  }

  /**
   * Several batches as one insert, each stored once by its batchId whatever it is combined with (clickhouse/markers.ts).
   * A failure is a SeriesStoreError saying whether ClickHouse was unavailable (the caller waits) or refused the rows.
   */
  async insertMany(batches: { batchId: string; samples: Sample[] }[]): Promise<{ samples: number; skippedBatchDays: number }> {
    try {
      return await insertBatches(this.d, batches, { perBatchDay: this.mode === "views" });
    } catch (e) {
      const failure = clickHouseFailure(e);
      const code = failure === "failed" ? "write_failed" : failure;
      throw new SeriesStoreError(code, `metric insert failed: ${(e as Error).message}`, { cause: e });
    }
  }

  // Rollup steps (clickhouse/rollup.ts); the steps are public for tests and the bench, which crash them on purpose.

  /** The newest block number of `samples` (0 when empty). */
  newestBlock(): Promise<number> {
    return newestBlock(this.d);
  }

  /** The recorded plan (with its age, by the server's clock) and how far each rollup is done. */
  readState(): Promise<RollupState> {
    return readState(this.d);
  }

  planRollup(): Promise<{ plan: RollupPlan; redone: boolean } | undefined> {
    return planRollup(this.d);
  }

  applyRollup(plan: RollupPlan, table: RollupTable): Promise<void> {
    return applyRollup(this.d, plan, table);
  }

  markRolledUp(plan: RollupPlan, table: RollupTable): Promise<void> {
    return markRolledUp(this.d, plan, table);
  }

  /** Step 3 for both rollups. */
  async completeRollup(plan: RollupPlan): Promise<void> {
    for (const { r } of ROLLUPS) await markRolledUp(this.d, plan, `samples_${r}`);
  }

  /** A rollup step; in `views` mode there is none to run (the views are complete at every insert). */
  async rollup(): Promise<RollupResult> {
    if (this.mode === "views") return { redone: false, done: await newestBlock(this.d) };
    return rollupStep(this.d);
  }

  series(q: SeriesQuery): Promise<Point[]> {
    return series(this.d, q);
  }

  async latest(entity: string): Promise<Record<string, Point>> {
    return (await this.latestMany({ entities: [entity] }))[entity] ?? {};
  }

  latestMany(q: LatestQuery): Promise<LatestValues> {
    return latestMany(this.d, q);
  }

  top(q: TopQuery): Promise<TopEntry[]> {
    return top(this.d, q);
  }

  async close(): Promise<void> {
    await this.ch.close();
  }
}
