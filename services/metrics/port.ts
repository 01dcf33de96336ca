/** SeriesStore: where metric samples are kept and asked for. The ClickHouse adapter is the only one today. */
import type { Sample } from "../../pipelines/contracts/metrics.ts";
import { PortError, type FailureKind } from "../shared/errors.ts";

/** How samples inside one bucket (series) or one window (top) are folded into one value. */
export const AGGS = ["avg", "min", "max", "last"] as const;
export type Agg = (typeof AGGS)[number];

export interface SeriesQuery {
  entity: string;
  metric: string;
  /** ms epoch, inclusive */
  from: number;
  /** ms epoch, exclusive */
  to: number;
  stepSeconds: number;
  /** default avg */
  agg?: Agg;
}

export interface Point {
  t: number;
  v: number;
}

export interface TopQuery {
  metric: string;
  windowSeconds: number;
  n: number;
  /** default avg */
  by?: Agg;
  /** end of the window, ms epoch; default now */
  at?: number;
  /** default desc (highest first) */
  order?: "asc" | "desc";
}

export interface TopEntry {
  entity: string;
  v: number;
}

export interface LatestQuery {
  entities: string[];
  /** only these metrics; all when absent or empty */
  metrics?: string[];
  /** how far back a value still counts as the latest, seconds; default one day */
  lookbackSeconds?: number;
  /** ms epoch the lookback ends at; default now */
  at?: number;
}

/** entity → metric → latest point; entities with no value in the lookback are absent. */
export type LatestValues = Record<string, Record<string, Point>>;

export interface SeriesStore {
  init(): Promise<void>;
  /** Inserts one batch; `batchId` makes a redelivered batch a no-op (rollups included). */
  insert(samples: Sample[], batchId: string): Promise<void>;
  /** Inserts several batches in one write, each stored once by its batchId whatever it is combined with. */
  insertMany(batches: { batchId: string; samples: Sample[] }[]): Promise<unknown>;
  /**
   * Folds what was inserted since the last call into the rollups, exactly once even across crashes. Reads are exact
   * whether or not it has run; it keeps them cheap. One process calls it per store.
   */
  rollup(): Promise<{ done: number }>;
  series(q: SeriesQuery): Promise<Point[]>;
  /** The latest value of every metric of one entity (within a day). */
  latest(entity: string): Promise<Record<string, Point>>;
  /** The latest values of many entities in one query (the map's colouring). */
  latestMany(q: LatestQuery): Promise<LatestValues>;
  /** The n entities with the highest (or lowest) value of a metric over a window ending at `at`. */
  top(q: TopQuery): Promise<TopEntry[]>;
  close(): Promise<void>;
}

/**
 * A write the store did not take. `unavailable`: down, unreachable or refusing work for now (the metrics service
 * waits it out, holding the batch); `bad_input`: the store refused the samples themselves (dead-lettered);
 * `write_failed`: anything else.
 */
export class SeriesStoreError extends PortError<"unavailable" | "bad_input" | "write_failed"> {
  override readonly name = "SeriesStoreError";
  get kind(): FailureKind {
    if (this.code === "unavailable") return "transient";
    if (this.code === "bad_input") return "permanent";
    return "unknown";
  }
}

/** A query the store refuses (bad range, unknown aggregation); the HTTP layer maps it to 400. */
export class SeriesQueryError extends Error {
  override readonly name = "SeriesQueryError";
}
