/**
 * Rollup steps of the ClickHouse SeriesStore: fold the raw rows of a block range into samples_1m and samples_1h, exactly
 * once across crashes (plan → fold with a deduplication token → mark done; see ../clickhouse.ts for why), and the
 * state reads use to stay exact while a step is in flight.
 */
import { assertIdent, type Db, rawRowsInBlocks, rollupColumns, ROLLUPS, type RollupTable, rowsOf } from "./schema.ts";

/** A rollup step: raw rows with block numbers in (from, to]. */
export interface RollupPlan {
  from: number;
  to: number;
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

export interface RollupState {
  planned: RollupPlan & { ageMs: number };
  /** where both rollups are (0 before the first step) */
  done: number;
  doneBy: Record<RollupTable, number>;
  /** rollups a materialized view fills at insert time (`views` mode): complete, no raw rows to add, no step to wait for */
  viewed: Record<RollupTable, boolean>;
}

/** A plan older than this is taken for one whose stepper died mid-step (steps take seconds). */
export const STALE_PLAN_MS = 60_000;

/**
 * The INSERT … SELECT of one step into each rollup, with its deduplication token. Sorted output, so a redone step
 * cuts its rows into the same blocks as the first attempt (the token numbers blocks in order).
 */
export function rollupStepStatements(db: string, plan: RollupPlan): { table: string; query: string; token: string }[] {
  assertIdent(db);
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

/** The newest block number of `samples` (0 when empty). */
export async function newestBlock(d: Db): Promise<number> {
  const rows = await rowsOf<{ b: string | number }>(
    d,
    `SELECT max(max_block_number) AS b FROM system.parts WHERE database = {db:String} AND table = 'samples' AND active`,
    { db: d.db },
  );
  return Number(rows[0]?.b ?? 0);
}

/** The recorded plan (with its age, by the server's clock) and how far each rollup is done. */
export async function readState(d: Db): Promise<RollupState> {
  // the views are rows here too (step = the view's table), so a read costs one query whatever the mode
  const rows = await rowsOf<{ step: string; f: string | number; t: string | number; age: string | number }>(
    d,
    `SELECT step, argMax(from_block, to_block) AS f, max(to_block) AS t, dateDiff('millisecond', argMax(at, to_block), now64(3)) AS age
     FROM ${d.db}.rollup_state GROUP BY step
     UNION ALL
     SELECT concat('view:', name), 0, 0, 0 FROM system.tables WHERE database = {db:String} AND name IN ('samples_1m_mv', 'samples_1h_mv')`,
    { db: d.db },
  );
  const get = (step: string) => rows.find((r) => r.step === step);
  const planned = get("planned");
  const doneBy = { samples_1m: Number(get("samples_1m")?.t ?? 0), samples_1h: Number(get("samples_1h")?.t ?? 0) };
  return {
    planned: { from: Number(planned?.f ?? 0), to: Number(planned?.t ?? 0), ageMs: Number(planned?.age ?? 0) },
    done: Math.min(doneBy.samples_1m, doneBy.samples_1h),
    doneBy,
    viewed: { samples_1m: get("view:samples_1m_mv") !== undefined, samples_1h: get("view:samples_1h_mv") !== undefined },
  };
}

/** A state row; `token` set: stored only if no row with that token was (the claim of a plan), else always. */
async function writeState(d: Db, step: "planned" | RollupTable, plan: RollupPlan, token?: string): Promise<void> {
  await d.ch.insert({
    table: `${d.db}.rollup_state`,
    columns: ["step", "from_block", "to_block"],
    values: [[step, plan.from, plan.to]],
    format: "JSONCompactEachRow",
    // a repeated "done" row is harmless, but never let deduplication drop a new one
    clickhouse_settings: token ? { insert_deduplicate: 1, insert_deduplication_token: token } : { insert_deduplicate: 0 },
  });
}

/**
 * Step 1: the plan to run — an interrupted one if the state has it, else (done, newest block], recorded before it
 * runs. Undefined when nothing was inserted since the last step.
 *
 * Several metrics services step the same database: each claims the next plan with the token `plan:<from>`. Two that
 * read the same `done` race with different ends; ClickHouse stores the first claim and drops the others as duplicates
 * (the check and the commit are one step under the table's lock, or one Keeper transaction), so every stepper reads
 * back the one stored plan and runs that, each insert of it deduplicated by its own token. Plans never overlap.
 */
export async function planRollup(d: Db): Promise<{ plan: RollupPlan; redone: boolean } | undefined> {
  const state = await readState(d);
  if (state.planned.to > state.done) return { plan: { from: state.planned.from, to: state.planned.to }, redone: true };
  const top = await newestBlock(d);
  if (top <= state.done) return undefined;
  await writeState(d, "planned", { from: state.done, to: top }, `plan:${state.done}`);
  const claimed = await readState(d);
  // another stepper's plan won the claim (then ours was dropped), or ran to completion already
  if (claimed.planned.to <= claimed.done) return undefined;
  const plan = { from: claimed.planned.from, to: claimed.planned.to };
  return { plan, redone: plan.from !== state.done || plan.to !== top };
}

/** Step 2: fold the plan's raw rows into one rollup (each call is idempotent: the insert carries its token). */
export async function applyRollup(d: Db, plan: RollupPlan, table: RollupTable): Promise<void> {
  const s = rollupStepStatements(d.db, plan).find((x) => x.table === table)!;
  await d.ch.command({ query: s.query, clickhouse_settings: { insert_deduplication_token: s.token, max_insert_block_size: "10000000" } });
}

/** Step 3: record that a rollup holds the plan's rows (reads of it stop adding them from raw). */
export async function markRolledUp(d: Db, plan: RollupPlan, table: RollupTable): Promise<void> {
  await writeState(d, table, plan);
}

/**
 * One whole step: plan, then for each rollup fold and mark (so a read of the 1m rollup waits only for the 1m insert,
 * not for the whole step). Safe from any number of processes at once (planRollup).
 */
export async function rollupStep(d: Db): Promise<RollupResult> {
  const next = await planRollup(d);
  if (!next) return { redone: false, done: (await readState(d)).done };
  for (const { r } of ROLLUPS) {
    await applyRollup(d, next.plan, `samples_${r}`);
    await markRolledUp(d, next.plan, `samples_${r}`);
  }
  return { step: next.plan, redone: next.redone, done: next.plan.to };
}

/**
 * A database from before rollup steps has views that rolled up every insert so far: mark all blocks up to now done,
 * then drop the views (in that order: a crash in between leaves the views, and the next start does it again). Runs
 * before the service consumes, so no insert lands in between.
 */
export async function dropLegacyViews(d: Db): Promise<void> {
  const views = await rowsOf<{ name: string }>(d, `SELECT name FROM system.tables WHERE database = {db:String} AND name IN ('samples_1m_mv', 'samples_1h_mv')`, {
    db: d.db,
  });
  if (!views.length) return;
  const top = await newestBlock(d);
  const state = await readState(d);
  if (top > state.done) for (const { r } of ROLLUPS) await markRolledUp(d, { from: state.done, to: top }, `samples_${r}`);
  for (const { name } of views) await d.ch.command({ query: `DROP VIEW IF EXISTS ${d.db}.${name}` });
}
