/**
 * AlertHistory: every alert event the alerts service handled, with the entities it was mapped to. The ClickHouse
 * adapter goes through @clickhouse/client only (embedded chDB owner or a real server alike). A redelivered JetStream
 * batch is deduplicated by ClickHouse itself (insert_deduplication_token), as the metrics store does; an event stored
 * twice upstream (a retried webhook coalesced differently) has the same event id and collapses in the
 * ReplacingMergeTree (query with FINAL, or LIMIT 1 BY id, for exact counts before merges).
 *
 * A failed insert is an AlertHistoryError that says what it means to the events (see clickHouseFailure): ClickHouse
 * unavailable (the consumer holds them until it is back) or the rows refused (dead-lettered with the reason).
 */
import type { ClickHouseClient } from "@clickhouse/client";
import type { Alert } from "../../pipelines/contracts/alerts.ts";
import { clickHouseFailure } from "../clickhouse/client.ts";
import { type FailureKind, PortError } from "../shared/errors.ts";

export class AlertHistoryError extends PortError<"unavailable" | "bad_input" | "write_failed"> {
  override readonly name = "AlertHistoryError";
  get kind(): FailureKind {
    if (this.code === "unavailable") return "transient";
    if (this.code === "bad_input") return "permanent";
    return "unknown";
  }
}

export interface HistoryRow {
  alert: Alert;
  entities: string[];
}

export interface AlertHistory {
  init(): Promise<void>;
  /** `token` makes a redelivered batch a no-op; a failure is an AlertHistoryError */
  insert(rows: HistoryRow[], token: string): Promise<void>;
  close(): Promise<void>;
}

export class ClickHouseAlertHistory implements AlertHistory {
  constructor(
    private ch: ClickHouseClient,
    private opts: { database: string; ttlDays: number },
  ) {}

  get table(): string {
    return `${this.opts.database}.alerts_history`;
  }

  async init(): Promise<void> {
    await this.ch.command({ query: `CREATE DATABASE IF NOT EXISTS ${this.opts.database}` });
    await this.ch.command({
      query: `CREATE TABLE IF NOT EXISTS ${this.table} (
        at DateTime64(3) CODEC(DoubleDelta, ZSTD(1)),
        id String,
        source LowCardinality(String),
        fingerprint String,
        state LowCardinality(String),
        severity LowCardinality(String),
        summary String,
        labels Map(LowCardinality(String), String),
        host String,
        address String,
        service String,
        port UInt16,
        startsAt DateTime64(3),
        endsAt Nullable(DateTime64(3)),
        entities Array(String)
      ) ENGINE = ReplacingMergeTree
      PARTITION BY toYYYYMM(at)
      ORDER BY (fingerprint, at, id)
      TTL toDateTime(at) + INTERVAL ${Math.floor(this.opts.ttlDays)} DAY
      SETTINGS non_replicated_deduplication_window = 10000`,
    });
  }

  async insert(rows: HistoryRow[], token: string): Promise<void> {
    if (!rows.length) return;
    try {
      await this.write(rows, token);
    } catch (e) {
      const failure = clickHouseFailure(e);
      throw new AlertHistoryError(failure === "failed" ? "write_failed" : failure, `alert history insert failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }

  private async write(rows: HistoryRow[], token: string): Promise<void> {
    await this.ch.insert({
      table: this.table,
      values: rows.map(({ alert: a, entities }) => ({
        at: a.at,
        id: a.id,
        source: a.source,
        fingerprint: a.fingerprint,
        state: a.state,
        severity: a.severity,
        summary: a.summary,
        labels: a.labels,
        host: a.target.host ?? "",
        address: a.target.address ?? "",
        service: a.target.service ?? "",
        port: a.target.port ?? 0,
        startsAt: a.startsAt,
        endsAt: a.endsAt,
        entities,
      })),
      format: "JSONEachRow",
      clickhouse_settings: { insert_deduplication_token: token },
    });
  }

  async close(): Promise<void> {
    await this.ch.close();
  }
}
