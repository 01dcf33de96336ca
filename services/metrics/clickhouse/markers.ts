/**
 * Batch markers of the ClickHouse SeriesStore: several batches go into one insert (one part instead of one per batch:
 * at 5000-sample batches the engine spent more on making parts than on rows), yet each is stored once whatever it is
 * combined with. ClickHouse's deduplication token cannot tell which batches of a combined insert were stored, so each
 * batch marks its own rows: the first sample of each day of a batch carries the batchId in `batch` (empty in every
 * other row), and is committed in the same part as that day's other rows. Before inserting, one primary-key lookup
 * finds which of these markers are stored; those batch-days are left out. A redelivered batch, or one published again
 * under a new message id, in whatever combination, is therefore stored once. The lookup and the insert are not
 * atomic: one writer per database (the metrics service, which also keeps a batch out of a combination while the same
 * batchId is being inserted).
 */
import type { Sample } from "../../../pipelines/contracts/metrics.ts";
import { type Db, rowsOf, tableOf } from "./schema.ts";

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

/** Which of these markers are stored: one lookup on the primary key (metric, entity, ts), checked exactly here. */
async function storedMarkers(d: Db, groups: MarkerGroup[]): Promise<Set<string>> {
  const rows = await rowsOf<{ batch: string; metric: string; entity: string; t: string | number }>(d, storedMarkersQuery(tableOf(d.db, "raw")), markerLookupParams(groups));
  return new Set(rows.map((r) => markerKey(r.batch, { metric: r.metric, entity: r.entity, ts: Number(r.t) })));
}

/** Inserts the batch-days of `batches` not stored yet, as one insert (see the module header). */
export async function insertBatches(d: Db, batches: { batchId: string; samples: Sample[] }[]): Promise<{ samples: number; skippedBatchDays: number }> {
  const groups = markerGroups(batches);
  if (!groups.length) return { samples: 0, skippedBatchDays: 0 };
  const stored = await storedMarkers(d, groups);
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
    await d.ch.insert({
      table: tableOf(d.db, "raw"),
      columns: ["entity", "metric", "ts", "value", "labels", "batch"],
      values: rows,
      format: "JSONCompactEachRow",
      // Idempotent retry of this exact combination; never a content-hash match with other batches' rows.
      clickhouse_settings: { insert_deduplication_token: combinationToken(groups, stored) },
    });
  }
  return { samples: rows.length, skippedBatchDays: skipped };
}
