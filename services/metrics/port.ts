/** SeriesStore: where metric samples are kept and asked for. The ClickHouse adapter is the only one today. */
import type { Sample } from "../../pipelines/contracts/metrics.ts";

export interface SeriesQuery {
  entity: string;
  metric: string;
  from: number;
  to: number;
  stepSeconds: number;
}

export interface Point {
  t: number;
  v: number;
}

export interface SeriesStore {
  init(): Promise<void>;
  /** Inserts one batch; `batchId` makes a redelivered batch a no-op. */
  insert(samples: Sample[], batchId: string): Promise<void>;
  series(q: SeriesQuery): Promise<Point[]>;
  latest(entity: string): Promise<Record<string, Point>>;
  close(): Promise<void>;
}
