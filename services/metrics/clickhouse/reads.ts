/**
 * Reads of the ClickHouse SeriesStore: series, latest values, top-N. A read of a rollup is exact: the rollup's rows
 * plus the raw rows above where it is done (aggregated the same way), retried when a step was planned while it ran.
 */
import { type Agg, type LatestQuery, type LatestValues, type Point, type SeriesQuery, SeriesQueryError, type TopEntry, type TopQuery } from "../port.ts";
import { readState, STALE_PLAN_MS } from "./rollup.ts";
import { type Db, rawRowsInBlocks, type Resolution, rollupColumns, ROLLUPS, type RollupTable, rowsOf, tableOf } from "./schema.ts";

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

/**
 * A read of one rollup, exact: its rows so far plus the raw rows above where it is done. Retried when a step was
 * planned while it ran (its rows could then be in both halves); waits while that rollup's insert is in flight. A plan
 * older than a minute belongs to a stepper that died mid-step: then it answers anyway, as before the step (counting
 * that step's rows twice at worst, until the stepper is back and finishes it). In `views` mode the rollup is read alone.
 */
async function consistent<T>(d: Db, table: RollupTable, run: (done: number) => Promise<T>): Promise<T> {
  const started = Date.now();
  for (;;) {
    const before = await readState(d);
    // a view keeps the rollup complete at every insert: nothing to add from raw (no block is above "everything")
    if (before.viewed[table]) return run(Number.MAX_SAFE_INTEGER);
    const done = before.doneBy[table];
    const stale = before.planned.ageMs > STALE_PLAN_MS || Date.now() - started > STALE_PLAN_MS;
    if (before.planned.to > done && !stale) {
      await Bun.sleep(25);
      continue;
    }
    const result = await run(done);
    if (stale || (await readState(d)).planned.to === before.planned.to) return result;
  }
}

/**
 * A rollup's rows matching `where` (written for column `t`, the bucket) plus the same aggregates over raw rows above
 * block {done:UInt64}, as one row source with the rollup's columns.
 */
function rollupSource(db: string, r: "1m" | "1h", keys: string, where: (t: string) => string): string {
  const { bucket } = ROLLUPS.find((x) => x.r === r)!;
  const rawT = `toDateTime(${bucket}, 'UTC')`;
  return `(
        SELECT metric, entity, t, sum, count, min, max, last, last_ts FROM ${tableOf(db, r)} WHERE ${keys} AND ${where("t")}
        UNION ALL
        SELECT ${rollupColumns(bucket)} FROM ${rawRowsInBlocks(tableOf(db, "raw"), `${keys} AND ${where(rawT)}`, "{done:UInt64}")}
        GROUP BY metric, entity, t
      )`;
}

export async function series(d: Db, q: SeriesQuery): Promise<Point[]> {
  if (!(q.to > q.from)) throw new SeriesQueryError("to must be after from");
  if (!Number.isInteger(q.stepSeconds) || q.stepSeconds < 1) throw new SeriesQueryError("step must be a whole number of seconds ≥ 1");
  const agg = q.agg ?? "avg";
  const r = resolutionForStep(q.stepSeconds);
  const params = { metric: q.metric, entity: q.entity, from: q.from, to: q.to, step: q.stepSeconds };
  const toPoints = (rows: { t?: string | number; b?: string | number; v: number | string }[]) => rows.map((row) => ({ t: Number(row.t ?? row.b), v: Number(row.v) }));
  if (r === "raw") {
    return toPoints(
      await rowsOf(
        d,
        `SELECT toUnixTimestamp64Milli(toDateTime64(toStartOfInterval(ts, toIntervalSecond({step:UInt32})), 3)) AS t, ${RAW_AGG[agg]} AS v
         FROM ${tableOf(d.db, r)}
         WHERE metric = {metric:String} AND entity = {entity:String}
           AND ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})
         GROUP BY t ORDER BY t`,
        params,
      ),
    );
  }
  const source = rollupSource(
    d.db,
    r,
    `metric = {metric:String} AND entity = {entity:String}`,
    (t) => `${t} >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND ${t} < toDateTime(intDiv({to:Int64} + 999, 1000), 'UTC')`,
  );
  return consistent(d, `samples_${r}`, async (done) =>
    toPoints(
      await rowsOf(
        d,
        `SELECT toUnixTimestamp(toStartOfInterval(t, toIntervalSecond({step:UInt32}))) * 1000 AS b, ${ROLLUP_AGG[agg]} AS v
         FROM ${source}
         GROUP BY b ORDER BY b`,
        { ...params, done },
      ),
    ),
  );
}

export async function latestMany(d: Db, q: LatestQuery): Promise<LatestValues> {
  if (!q.entities.length) return {};
  const lookback = q.lookbackSeconds ?? 86_400;
  const at = q.at ?? Date.now();
  // The hourly rollup keeps the last value of every hour bucket (argMax state), so the newest sample of each
  // (entity, metric) is exact and current while the scan touches one row per hour instead of every sample.
  const source = rollupSource(
    d.db,
    "1h",
    `entity IN {entities:Array(String)} AND (length({metrics:Array(String)}) = 0 OR has({metrics:Array(String)}, metric))`,
    (t) => `${t} >= toStartOfHour(toDateTime(intDiv({at:Int64}, 1000) - {lookback:UInt32}, 'UTC')) AND ${t} <= toDateTime(intDiv({at:Int64}, 1000), 'UTC')`,
  );
  const rows = await consistent(d, "samples_1h", (done) =>
    rowsOf<{ entity: string; metric: string; lt: string | number; v: number | string }>(
      d,
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

export async function top(d: Db, q: TopQuery): Promise<TopEntry[]> {
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
      await rowsOf(
        d,
        `SELECT entity, ${RAW_AGG[by]} AS v
         FROM ${tableOf(d.db, r)}
         WHERE metric = {metric:String} AND ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({at:Int64})
         GROUP BY entity ORDER BY v ${order}, entity LIMIT {n:UInt32}`,
        params,
      ),
    );
  }
  const source = rollupSource(
    d.db,
    r,
    `metric = {metric:String}`,
    (t) => `${t} >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND ${t} < toDateTime(intDiv({at:Int64} + 999, 1000), 'UTC')`,
  );
  return consistent(d, `samples_${r}`, async (done) =>
    toEntries(
      await rowsOf(
        d,
        `SELECT entity, ${ROLLUP_AGG[by]} AS v FROM ${source}
         GROUP BY entity ORDER BY v ${order}, entity LIMIT {n:UInt32}`,
        { ...params, done },
      ),
    ),
  );
}
