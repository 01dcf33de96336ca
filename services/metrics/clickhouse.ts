/**
 * ClickHouse adapter of SeriesStore, through @clickhouse/client only (embedded chDB owner or a real server alike).
 * Samples are ordered by (metric, entity, ts) — the shape of every query we make — with time-series codecs and TTL.
 * Redelivered JetStream batches are deduplicated by ClickHouse itself (insert_deduplication_token).
 */
import type { ClickHouseClient } from "@clickhouse/client";
import type { Sample } from "../../pipelines/contracts/metrics.ts";
import type { Point, SeriesQuery, SeriesStore } from "./port.ts";

export class ClickHouseSeriesStore implements SeriesStore {
  constructor(
    private ch: ClickHouseClient,
    private opts: { database: string; ttlDays: number },
  ) {}

  private get t() {
    return `${this.opts.database}.samples`;
  }

  async init(): Promise<void> {
    await this.ch.command({ query: `CREATE DATABASE IF NOT EXISTS ${this.opts.database}` });
    await this.ch.command({
      query: `CREATE TABLE IF NOT EXISTS ${this.t} (
        entity LowCardinality(String),
        metric LowCardinality(String),
        ts DateTime64(3) CODEC(DoubleDelta, ZSTD(1)),
        value Float64 CODEC(Gorilla, ZSTD(1)),
        labels Map(LowCardinality(String), String)
      ) ENGINE = MergeTree
      PARTITION BY toYYYYMMDD(ts)
      ORDER BY (metric, entity, ts)
      TTL toDateTime(ts) + INTERVAL ${Math.floor(this.opts.ttlDays)} DAY
      SETTINGS non_replicated_deduplication_window = 10000`,
    });
  }

  async insert(samples: Sample[], batchId: string): Promise<void> {
    await this.ch.insert({
      table: this.t,
      values: samples.map((s) => ({ entity: s.entity, metric: s.metric, ts: s.ts, value: s.value, labels: s.labels })),
      format: "JSONEachRow",
      clickhouse_settings: { insert_deduplication_token: batchId },
    });
  }

  async series(q: SeriesQuery): Promise<Point[]> {
    const rs = await this.ch.query({
      query: `SELECT toUnixTimestamp64Milli(toDateTime64(toStartOfInterval(ts, toIntervalSecond({step:UInt32})), 3)) AS t, avg(value) AS v
              FROM ${this.t}
              WHERE metric = {metric:String} AND entity = {entity:String}
                AND ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})
              GROUP BY t ORDER BY t`,
      query_params: { metric: q.metric, entity: q.entity, from: q.from, to: q.to, step: q.stepSeconds },
      format: "JSONEachRow",
    });
    const rows = await rs.json<{ t: string | number; v: number }>();
    return rows.map((r) => ({ t: Number(r.t), v: Number(r.v) }));
  }

  async latest(entity: string): Promise<Record<string, Point>> {
    const rs = await this.ch.query({
      query: `SELECT metric, toUnixTimestamp64Milli(max(ts)) AS t, argMax(value, ts) AS v
              FROM ${this.t} WHERE entity = {entity:String} AND ts > now() - INTERVAL 1 DAY GROUP BY metric`,
      query_params: { entity },
      format: "JSONEachRow",
    });
    const rows = await rs.json<{ metric: string; t: string | number; v: number }>();
    return Object.fromEntries(rows.map((r) => [r.metric, { t: Number(r.t), v: Number(r.v) }]));
  }

  async close(): Promise<void> {
    await this.ch.close();
  }
}
