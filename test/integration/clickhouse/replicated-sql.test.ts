/**
 * deploy/clickhouse/replicated.sql, the cluster's tables, on the embedded engine: there is no Keeper here, so each
 * statement runs with `ON CLUSTER` taken out and each Replicated* engine replaced by its plain MergeTree family
 * member (the same arguments after the Keeper path and replica name). What that still checks: every statement parses
 * and runs in the ClickHouse version we ship, the columns and types of every table are the ones the services create
 * themselves (a service started on the cluster finds its tables with CREATE TABLE IF NOT EXISTS and uses them as
 * they are), and the metrics service in `views` mode (what replicated tables get) keeps exact rollups on them,
 * a batch inserted twice stored once. Replication itself (Keeper, failover) is not tested here.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ClickHouseClient } from "@clickhouse/client";
import { ClickHouseAlertHistory } from "../../../services/alerts/history.ts";
import { ClickHouseHistoryStore } from "../../../services/history/clickhouse.ts";
import { ClickHouseSeriesStore } from "../../../services/metrics/clickhouse.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { tempDir, uniquePrefix } from "../../helpers/tmp.ts";

const SQL = join(import.meta.dir, "../../../deploy/clickhouse/replicated.sql");
const TABLES = ["samples", "samples_1m", "samples_1h", "rollup_state", "topology_changes", "alerts_history"];

const tmp = tempDir("orrery-replicated-sql-");
let ch: TestClickHouse;
let client: ClickHouseClient;

beforeAll(async () => {
  ch = await startClickHouse(join(tmp.dir, "ch"), { embedded: true });
  client = ch.client();
}, 60_000);
afterAll(async () => {
  await client?.close();
  await ch?.stop();
  tmp.cleanup();
});

/** The file's statements for one server without Keeper, in database `db`. */
function localStatements(db: string): string[] {
  const text = readFileSync(SQL, "utf8")
    .split("\n")
    .filter((l) => !l.trimStart().startsWith("--"))
    .join("\n");
  return text
    .split(/;\s*\n/)
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) =>
      s
        .replaceAll(" ON CLUSTER orrery", "")
        .replace(/\bReplicated(\w*MergeTree)\('[^']*',\s*'\{replica\}'(?:,\s*([^)]*))?\)/g, (_m, engine: string, rest?: string) => `${engine}(${rest ?? ""})`)
        .replace(/\borrery\./g, `${db}.`)
        .replace(/DATABASE IF NOT EXISTS orrery\b/, `DATABASE IF NOT EXISTS ${db}`),
    );
}

const columnsOf = async (db: string) =>
  (await (
    await client.query({
      query: "SELECT table, name, type FROM system.columns WHERE database = {db:String} AND table IN ({tables:Array(String)}) ORDER BY table, position",
      query_params: { db, tables: TABLES },
      format: "JSONEachRow",
    })
  ).json()) as { table: string; name: string; type: string }[];

test("replicated.sql runs, and its tables have the columns the services create", async () => {
  const db = uniquePrefix("sql").replace(/-/g, "_");
  const statements = localStatements(db);
  // every table and both rollup views
  expect(statements.length).toBeGreaterThanOrEqual(TABLES.length + 3);
  for (const query of statements) expect(query).not.toContain("Replicated");
  for (const query of statements) await client.command({ query });

  const own = `${db}_own`;
  await client.command({ query: `CREATE DATABASE ${own}` });
  await new ClickHouseSeriesStore(client, { database: own, ttlDays: 30, rollups: "views" }).init();
  await new ClickHouseHistoryStore(client, { database: own, ttlDays: 90 }).init();
  await new ClickHouseAlertHistory(client, { database: own, ttlDays: 90 }).init();

  const fromSql = await columnsOf(db);
  const fromServices = await columnsOf(own);
  expect(new Set(fromSql.map((c) => c.table))).toEqual(new Set(TABLES));
  expect(fromSql).toEqual(fromServices);
}, 120_000);

test("the metrics service in views mode on replicated.sql's tables: exact rollups, a batch inserted twice stored once", async () => {
  const db = uniquePrefix("sqlv").replace(/-/g, "_");
  for (const query of localStatements(db)) await client.command({ query });
  const store = new ClickHouseSeriesStore(client, { database: db, ttlDays: 30, rollups: "views" });
  await store.init();
  expect(store.rollupMode()).toBe("views");
  const base = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 2 * 3_600_000;
  const samples = Array.from({ length: 600 }, (_, i) => ({ entity: `host:h${i % 3}`, metric: "cpu", ts: base + i * 10_000, value: i, labels: {} }));
  await store.insert(samples, "b1");
  await store.insert(samples, "b1");
  await store.insertMany([{ batchId: "b1", samples }, { batchId: "b2", samples: samples.map((s) => ({ ...s, metric: "mem" })) }]);
  const sums = async (table: string) =>
    (await (
      await client.query({ query: `SELECT metric, ${table === "samples" ? "count()" : "sum(count)"} AS n, ${table === "samples" ? "sum(value)" : "sum(sum)"} AS s FROM ${db}.${table} GROUP BY metric ORDER BY metric`, format: "JSONEachRow" })
    ).json()) as { metric: string; n: string | number; s: number }[];
  const raw = await sums("samples");
  const total = samples.reduce((n, s) => n + s.value, 0);
  expect(raw.map((r) => [r.metric, Number(r.n), r.s])).toEqual([
    ["cpu", 600, total],
    ["mem", 600, total],
  ]);
  for (const t of ["samples_1m", "samples_1h"]) expect((await sums(t)).map((r) => [r.metric, Number(r.n), r.s])).toEqual(raw.map((r) => [r.metric, Number(r.n), r.s]));
}, 120_000);
