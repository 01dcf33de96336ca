/**
 * The embedded ClickHouse owner, driven by the stock @clickhouse/client over real HTTP.
 *
 * The owner runs as its own process (services/clickhouse/main.ts), as in production: chDB binds one data directory
 * per process, so an in-process owner would collide with any other test file that opens chDB. The pure protocol
 * functions are tested without a server first.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ClickHouseClient, ClickHouseError, type ClickHouseSettings } from "@clickhouse/client";
import type { Subprocess } from "bun";
import { Readable } from "node:stream";
import { gunzipSync, gzipSync } from "node:zlib";
import { makeClickHouseClient } from "../../../services/clickhouse/client.ts";
import {
  ProtocolError,
  bindParams,
  outputFormat,
  parseInsertTarget,
  parseRequestFields,
  statementKind,
  toChdbParam,
  toHttpError,
  unescapeTsv,
  withSettings,
} from "../../../services/clickhouse/http-protocol.ts";
import { EXIT_PORT_IN_USE } from "../../../services/shared/ports.ts";
import { spawnUntilReady } from "../../helpers/process.ts";
import { tempDir, uniquePrefix } from "../../helpers/tmp.ts";

// ---------------------------------------------------------------------------------------------------------------
// Protocol translation, no server

describe("http-protocol", () => {
  test("URL fields split into protocol fields, bound params and per-query settings", () => {
    const r = parseRequestFields([
      ["query", "SELECT 1"],
      ["query_id", "q1"],
      ["database", "db1"],
      ["param_id", "a\\'b"],
      ["wait_end_of_query", "1"],
      ["enable_http_compression", "1"],
      ["date_time_input_format", "best_effort"],
      ["session_id", "s1"],
      ["session_timeout", "30"],
    ]);
    expect(r).toMatchObject({ urlQuery: "SELECT 1", queryId: "q1", database: "db1", sessionId: "s1", sessionTimeoutSec: 30, compressionEnabled: true });
    expect(r.params).toEqual({ id: "a\\'b" });
    expect(r.settings).toEqual({ date_time_input_format: "best_effort" });
  });

  test("param values in escaped text form become what chDB's binder expects", () => {
    expect(unescapeTsv("a\\tb\\nc\\\\d\\'e")).toBe("a\tb\nc\\d'e");
    expect(toChdbParam("String", "x\\' OR 1=1 --")).toBe("x' OR 1=1 --");
    expect(toChdbParam("Nullable(String)", "\\N")).toBeNull();
    // Composite literals keep their quoting; an escaped quote becomes the doubled quote chDB leaves alone.
    expect(toChdbParam("Array(String)", "['a','b\\'c','d\\\\e']")).toBe("['a','b''c','d\\e']");
    expect(toChdbParam("LowCardinality(Nullable(String))", "v\\tw")).toBe("v\tw");
    expect(bindParams("SELECT {ids:Array(String)}, {ts:DateTime64(3)}", { ids: "['x']", ts: "1700000000.123" })).toEqual({ ids: "['x']", ts: "1700000000.123" });
  });

  test("settings go where the grammar takes a query-level SETTINGS clause", () => {
    expect(withSettings("SELECT 1 -- c\n;", { max_threads: "1" }).sql).toBe("SELECT 1 -- c\nSETTINGS max_threads='1'");
    expect(withSettings("INSERT INTO t (a) FORMAT JSONEachRow", { x: "1" }).sql).toBe("INSERT INTO t (a) SETTINGS x='1' FORMAT JSONEachRow");
    expect(withSettings("INSERT INTO t SELECT * FROM values('a UInt8', 1)", { x: "1" }).sql).toEndWith("\nSETTINGS x='1'");
    expect(withSettings("CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY a", { x: "1" })).toEqual({
      sql: "CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY a",
      applied: false,
    });
    expect(withSettings("SELECT 1", { x: "it's" }).sql).toBe("SELECT 1\nSETTINGS x='it\\'s'");
    expect(() => withSettings("SELECT 1", { "x=1; DROP": "1" })).toThrow(ProtocolError);
  });

  test("statement kinds, output formats and the raw-insert fast path", () => {
    expect(statementKind("  /* c */ -- d\n (SELECT 1)")).toBe("SELECT");
    expect(outputFormat("SELECT 1 \nFORMAT JSONEachRow", undefined)).toBe("JSONEachRow");
    expect(outputFormat("SELECT 1", undefined)).toBe("TabSeparated");
    expect(parseInsertTarget("INSERT INTO db.`t` (a, `b`) FORMAT JSONEachRow")).toEqual({ table: "db.t", columns: ["a", "b"], format: "JSONEachRow" });
    expect(parseInsertTarget("INSERT INTO t (* EXCEPT (a)) FORMAT JSONEachRow")).toBeUndefined();
    expect(parseInsertTarget("INSERT INTO t FORMAT Native")).toBeUndefined();
  });

  test("errors map to ClickHouse's body, code and HTTP status", () => {
    const engine = Object.assign(new Error("Code: 62. DB::Exception: Syntax error: failed at position 1. (SYNTAX_ERROR)"), { clickhouseCode: 62 });
    expect(toHttpError(engine)).toEqual({ status: 400, code: 62, body: "Code: 62. DB::Exception: Syntax error: failed at position 1. (SYNTAX_ERROR)\n" });
    expect(toHttpError(new ProtocolError(516, "AUTHENTICATION_FAILED", "nope"))).toMatchObject({ status: 403, code: 516 });
    expect(toHttpError(new Error("boom")).body).toBe("Code: 1001. DB::Exception: boom. (STD_EXCEPTION)\n");
  });
});

// ---------------------------------------------------------------------------------------------------------------
// A real owner process

interface OwnerProcess {
  url: string;
  proc: Subprocess<"ignore", "pipe", "pipe">;
  stop(): Promise<number>;
}

async function startOwnerProcess(dataRoot: string, env: Record<string, string> = {}): Promise<OwnerProcess> {
  const { proc, match } = await spawnUntilReady([process.execPath, "services/clickhouse/main.ts", "--data-dir", dataRoot, "--port", "0"], {
    cwd: `${import.meta.dir}/../../..`,
    env: { ...process.env, ...env },
    ready: /^(.*)\n/,
    timeoutMs: 30_000,
    name: "the owner",
  });
  const ready = JSON.parse(match[1]!) as { event: string; service: string; url: string };
  expect(ready).toMatchObject({ event: "ready", service: "clickhouse" });
  expect(ready.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  return {
    url: ready.url,
    proc,
    stop: async () => {
      proc.kill("SIGTERM");
      return await proc.exited;
    },
  };
}

async function caught(p: Promise<unknown>): Promise<ClickHouseError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ClickHouseError) return e;
    throw e;
  }
  throw new Error("expected a ClickHouseError");
}

describe("ClickHouse owner with @clickhouse/client", () => {
  const tmp = tempDir("orrery-ch-owner-");
  let owner: OwnerProcess;
  let ch: ClickHouseClient;
  let chz: ClickHouseClient;

  beforeAll(async () => {
    owner = await startOwnerProcess(tmp.dir);
    ch = makeClickHouseClient({ url: owner.url, logErrors: false });
    chz = makeClickHouseClient({ url: owner.url, compression: true, logErrors: false });
  });

  afterAll(async () => {
    await ch?.close();
    await chz?.close();
    const code = await owner?.stop();
    tmp.cleanup();
    expect(code).toBe(0);
  });

  const createSamples = async (table: string) => {
    await ch.command({
      query: `CREATE TABLE ${table} (
        entity LowCardinality(String),
        ts DateTime64(3) CODEC(DoubleDelta, ZSTD(1)),
        value Float64 CODEC(Gorilla, ZSTD(1)),
        tags Array(String)
      ) ENGINE = MergeTree ORDER BY (entity, ts) TTL toDateTime(ts) + INTERVAL 30 DAY`,
    });
  };

  test("ping answers both forms", async () => {
    expect(await ch.ping()).toEqual({ success: true });
    expect(await ch.ping({ select: true })).toEqual({ success: true });
  });

  test("MergeTree with DateTime64(3), codecs and TTL takes epoch-ms JSONEachRow rows", async () => {
    const t = uniquePrefix("samples_");
    await createSamples(t);
    const ddl = await ch.query({ query: "SELECT create_table_query FROM system.tables WHERE name = {t:String}", query_params: { t }, format: "JSONEachRow" });
    const create_table_query = (await ddl.json<{ create_table_query: string }>())[0]?.create_table_query;
    expect(create_table_query).toContain("CODEC(DoubleDelta, ZSTD(1))");
    expect(create_table_query).toContain("TTL toDateTime(ts) + toIntervalDay(30)");

    const base = Date.UTC(2030, 0, 2, 3, 4, 5, 678);
    const rows = Array.from({ length: 1000 }, (_, i) => ({ entity: `e${i % 10}`, ts: base + i, value: i / 2, tags: [`t${i % 3}`] }));
    const ins = await ch.insert({ table: t, values: rows, format: "JSONEachRow" });
    expect(ins.summary?.written_rows).toBe("1000");

    const rs = await ch.query({
      query: `SELECT count() AS n, toUnixTimestamp64Milli(min(ts)) AS lo, toString(max(ts)) AS hi, sum(value) AS s FROM ${t}`,
      format: "JSONEachRow",
    });
    expect(await rs.json()).toEqual([{ n: 1000, lo: base, hi: "2030-01-02 03:04:06.677", s: 249750 }]);
  });

  test("bound parameters are values, never SQL", async () => {
    const t = uniquePrefix("params_");
    await createSamples(t);
    const evil = "x' OR '1'='1";
    const tricky = "tab\there\nnew line \\ back\\slash 'quoted'";
    const now = Date.now();
    await ch.insert({ table: t, values: [{ entity: evil, ts: now, value: 1, tags: [] }, { entity: tricky, ts: now, value: 2, tags: [] }, { entity: "plain", ts: now, value: 3, tags: [] }], format: "JSONEachRow" });

    const q = (entity: string) =>
      ch.query({ query: `SELECT value FROM ${t} WHERE entity = {entity:String}`, query_params: { entity }, format: "JSONEachRow" }).then((r) => r.json<{ value: number }>());
    expect(await q("nobody' OR '1'='1")).toEqual([]);
    expect(await q(evil)).toEqual([{ value: 1 }]);
    expect(await q(tricky)).toEqual([{ value: 2 }]);

    const arr = await ch.query({
      query: `SELECT entity FROM ${t} WHERE entity IN {ids:Array(String)} AND ts >= {since:DateTime64(3)} ORDER BY entity`,
      query_params: { ids: [evil, "plain", "absent'"], since: new Date(now - 1000) },
      format: "JSONEachRow",
    });
    expect(await arr.json()).toEqual([{ entity: "plain" }, { entity: evil }]);

    const echo = await ch.query({ query: "SELECT {s:String} AS s, {n:Nullable(UInt8)} AS n, {m:Map(String, UInt8)} AS m", query_params: { s: tricky, n: null, m: { "k'": 1 } }, format: "JSONEachRow" });
    expect(await echo.json()).toEqual([{ s: tricky, n: null, m: { "k'": 1 } }]);
  });

  test("long query_params sent as multipart still bind", async () => {
    const ids = Array.from({ length: 3000 }, (_, i) => `id-${i}`);
    const rs = await ch.query({ query: "SELECT length({ids:Array(String)}) AS n", query_params: { ids }, format: "JSONEachRow", use_multipart_params: true } as Parameters<ClickHouseClient["query"]>[0]);
    expect(await rs.json()).toEqual([{ n: 3000 }]);
  });

  test("query formats: JSON, JSONCompactEachRow, CSV, TabSeparated", async () => {
    const sql = "SELECT number AS n, toString(number * 2) AS s FROM numbers(2)";
    // ClickHouse 26.x no longer quotes 64-bit integers in JSON by default (output_format_json_quote_64bit_integers=0).
    const json = await (await ch.query({ query: sql, format: "JSON" })).json<{ n: number; s: string }>();
    expect(json.data).toEqual([{ n: 0, s: "0" }, { n: 1, s: "2" }]);
    expect(json.rows).toBe(2);
    expect(json.meta?.map((m) => m.name)).toEqual(["n", "s"]);
    expect(await (await ch.query({ query: sql, format: "JSONCompactEachRow" })).json()).toEqual([[0, "0"], [1, "2"]]);
    expect(await (await ch.query({ query: sql, format: "CSV" })).text()).toBe('0,"0"\n1,"2"\n');
    expect(await (await ch.query({ query: sql, format: "TabSeparated" })).text()).toBe("0\t0\n1\t2\n");
  });

  test("errors arrive as ClickHouseError with the engine's code", async () => {
    const syntax = await caught(ch.query({ query: "SELEC 1" }));
    expect(syntax.code).toBe("62");
    expect(syntax.type).toBe("SYNTAX_ERROR");
    const unknown = await caught(ch.query({ query: "SELECT * FROM no_such_table_anywhere" }));
    expect(unknown.code).toBe("60");
    expect(unknown.type).toBe("UNKNOWN_TABLE");
    const badInsert = await caught(ch.insert({ table: "no_such_table_anywhere", values: [{ a: 1 }], format: "JSONEachRow" }));
    expect(badInsert.code).toBe("60");

    // The wire shape itself, for anything that is not clickhouse-js.
    const res = await fetch(`${owner.url}/?query_id=q-err`, { method: "POST", body: "SELEC 1" });
    expect(res.status).toBe(400);
    expect(res.headers.get("x-clickhouse-exception-code")).toBe("62");
    expect(res.headers.get("x-clickhouse-query-id")).toBe("q-err");
    expect(await res.text()).toStartWith("Code: 62. DB::Exception: Syntax error");
  });

  test("responses carry query id, format and summary headers", async () => {
    const rs = await ch.query({ query: "SELECT 1 AS x", format: "JSONEachRow", query_id: "orrery-q-1" });
    expect(rs.query_id).toBe("orrery-q-1");
    expect(rs.response_headers["x-clickhouse-query-id"]).toBe("orrery-q-1");
    expect(rs.response_headers["x-clickhouse-format"]).toBe("JSONEachRow");
    expect(JSON.parse(String(rs.response_headers["x-clickhouse-summary"]))).toMatchObject({ read_rows: "1" });
    expect(await rs.json()).toEqual([{ x: 1 }]);
  });

  test("URL settings apply to their query only; HTTP-layer settings are accepted", async () => {
    const q = (settings?: ClickHouseSettings) =>
      ch.query({ query: "SELECT getSetting('max_block_size') AS b", format: "JSONEachRow", clickhouse_settings: settings }).then((r) => r.json<{ b: number }>());
    expect(await q({ max_block_size: "1234", wait_end_of_query: 1, date_time_input_format: "best_effort" })).toEqual([{ b: 1234 }]);
    expect((await q())[0]!.b).not.toBe(1234);
    const unknown = await caught(ch.query({ query: "SELECT 1", clickhouse_settings: { no_such_setting_here: 1 } as ClickHouseSettings }));
    expect(unknown.code).toBe("115");
  });

  test("command(), CREATE DATABASE, qualified names and the database option", async () => {
    const db = uniquePrefix("db_");
    await ch.command({ query: `CREATE DATABASE ${db}` });
    await ch.command({ query: `CREATE TABLE ${db}.kv (k String, v UInt32) ENGINE = MergeTree ORDER BY k` });
    await ch.insert({ table: `${db}.kv`, values: [{ k: "a", v: 1 }], format: "JSONEachRow" });
    const scoped = makeClickHouseClient({ url: owner.url, database: db, logErrors: false });
    try {
      await scoped.insert({ table: "kv", values: [{ k: "b", v: 2 }], format: "JSONEachRow" });
      const rs = await scoped.query({ query: "SELECT currentDatabase() AS d, sum(v) AS s FROM kv", format: "JSONEachRow" });
      expect(await rs.json()).toEqual([{ d: db, s: 3 }]);
      // The database option does not leak into other clients' requests.
      const def = await ch.query({ query: "SELECT currentDatabase() AS d", format: "JSONEachRow" });
      expect(await def.json()).toEqual([{ d: "default" }]);
    } finally {
      await scoped.close();
    }
    const missing = makeClickHouseClient({ url: owner.url, database: "no_such_db_here", logErrors: false });
    try {
      expect((await caught(missing.query({ query: "SELECT 1" }))).code).toBe("81");
    } finally {
      await missing.close();
    }
  });

  test("exec() returns the raw stream, and takes data", async () => {
    const t = uniquePrefix("exec_");
    await ch.command({ query: `CREATE TABLE ${t} (a UInt32) ENGINE = MergeTree ORDER BY a` });
    const put = await ch.exec({ query: `INSERT INTO ${t} FORMAT CSV`, values: Readable.from(["1\n2\n", "3\n"]) });
    await new Response(put.stream as unknown as ReadableStream).arrayBuffer();
    const out = await ch.exec({ query: `SELECT sum(a) AS s FROM ${t} FORMAT JSONEachRow` });
    expect(await new Response(out.stream as unknown as ReadableStream).text()).toBe('{"s":6}\n');
  });

  test("insert() from a stream of rows", async () => {
    const t = uniquePrefix("stream_");
    await createSamples(t);
    const now = Date.now();
    const rows = Readable.from(Array.from({ length: 500 }, (_, i) => ({ entity: "s", ts: now + i, value: 1, tags: [] })), { objectMode: true });
    await ch.insert({ table: t, values: rows, format: "JSONEachRow" });
    const rs = await ch.query({ query: `SELECT count() AS n, sum(value) AS s FROM ${t}`, format: "JSONEachRow" });
    expect(await rs.json()).toEqual([{ n: 500, s: 500 }]);
  });

  test("gzip both ways: compressed inserts and compressed responses", async () => {
    const t = uniquePrefix("gz_");
    await createSamples(t);
    const now = Date.now();
    const rows = Array.from({ length: 2000 }, (_, i) => ({ entity: "gz", ts: now + i, value: i, tags: ["a", "b"] }));
    await chz.insert({ table: t, values: rows, format: "JSONEachRow" });
    const rs = await chz.query({ query: `SELECT count() AS n, max(value) AS m FROM ${t}`, format: "JSONEachRow" });
    expect(rs.response_headers["content-encoding"]).toBe("gzip");
    expect(await rs.json()).toEqual([{ n: 2000, m: 1999 }]);

    // On the wire: a gzip'ed body in, a gzip'ed result out only when asked for.
    const ins = await fetch(`${owner.url}/?query=${encodeURIComponent(`INSERT INTO ${t} FORMAT JSONEachRow`)}`, {
      method: "POST",
      headers: { "Content-Encoding": "gzip" },
      body: gzipSync(`{"entity":"wire","ts":${now},"value":7,"tags":[]}\n`),
    });
    expect(ins.status).toBe(200);
    const asked = await fetch(`${owner.url}/?enable_http_compression=1`, {
      method: "POST",
      headers: { "Accept-Encoding": "gzip" },
      body: `SELECT value FROM ${t} WHERE entity = 'wire' FORMAT TabSeparated`,
      decompress: false,
    } as RequestInit);
    expect(asked.headers.get("content-encoding")).toBe("gzip");
    expect(gunzipSync(Buffer.from(await asked.arrayBuffer())).toString()).toBe("7\n");
    const plain = await fetch(owner.url, { method: "POST", headers: { "Accept-Encoding": "gzip" }, body: "SELECT 1" });
    expect(plain.headers.get("content-encoding")).toBeNull();
    expect(await plain.text()).toBe("1\n");
  });

  test("session_id keeps SET state for that session only", async () => {
    const session_id = uniquePrefix("sess_");
    await ch.command({ query: "SET max_block_size = 4321", session_id });
    const inSession = await ch.query({ query: "SELECT getSetting('max_block_size') AS b", format: "JSONEachRow", session_id });
    expect(await inSession.json()).toEqual([{ b: 4321 }]);
    const outside = await ch.query({ query: "SELECT getSetting('max_block_size') AS b", format: "JSONEachRow" });
    expect((await outside.json<{ b: number }>())[0]!.b).not.toBe(4321);
  });

  test("sessionless SET and USE do not outlive their request", async () => {
    await ch.command({ query: "SET max_block_size = 999" });
    await ch.command({ query: "USE system" });
    const rs = await ch.query({ query: "SELECT getSetting('max_block_size') AS b, currentDatabase() AS d", format: "JSONEachRow" });
    const [row] = await rs.json<{ b: number; d: string }>();
    expect(row?.b).not.toBe(999);
    expect(row?.d).toBe("default");
  });

  test("a long query does not block other requests", async () => {
    const started = performance.now();
    const long = ch.query({ query: "SELECT max(sipHash64(number)) AS m FROM numbers(40000000)", format: "JSONEachRow" }).then(async (r) => {
      await r.json();
      return performance.now() - started;
    });
    await Bun.sleep(50);
    const pingStarted = performance.now();
    expect(await ch.ping({ select: true })).toEqual({ success: true });
    const pingMs = performance.now() - pingStarted;
    const longMs = await long;
    expect(pingMs).toBeLessThan(longMs);
  });
});

describe("ClickHouse owner lifecycle", () => {
  test("data survives an owner restart on the same directory", async () => {
    const tmp = tempDir("orrery-ch-restart-");
    const running: OwnerProcess[] = [];
    try {
      const first = await startOwnerProcess(tmp.dir);
      running.push(first);
      const a = makeClickHouseClient({ url: first.url });
      await a.command({ query: "CREATE TABLE kept (id UInt32, ts DateTime64(3)) ENGINE = MergeTree ORDER BY id" });
      await a.insert({ table: "kept", values: [{ id: 1, ts: 1_700_000_000_123 }, { id: 2, ts: 1_700_000_000_456 }], format: "JSONEachRow" });
      await a.close();
      expect(await first.stop()).toBe(0);

      const second = await startOwnerProcess(tmp.dir);
      running.push(second);
      const b = makeClickHouseClient({ url: second.url });
      const rs = await b.query({ query: "SELECT id, toUnixTimestamp64Milli(ts) AS ms FROM kept ORDER BY id", format: "JSONEachRow" });
      expect(await rs.json()).toEqual([{ id: 1, ms: 1700000000123 }, { id: 2, ms: 1700000000456 }]);
      await b.close();
      expect(await second.stop()).toBe(0);
    } finally {
      for (const o of running) if (o.proc.exitCode === null) await o.stop();
      tmp.cleanup();
    }
  });

  test("a configured password is enforced", async () => {
    const tmp = tempDir("orrery-ch-auth-");
    const owner = await startOwnerProcess(tmp.dir, { CLICKHOUSE_OWNER_PASSWORD: "s3cret" });
    const good = makeClickHouseClient({ url: owner.url, password: "s3cret" });
    const bad = makeClickHouseClient({ url: owner.url, password: "wrong", logErrors: false });
    try {
      expect(await (await good.query({ query: "SELECT 1 AS x", format: "JSONEachRow" })).json()).toEqual([{ x: 1 }]);
      const err = await caught(bad.query({ query: "SELECT 1" }));
      expect(err.code).toBe("516");
      expect(err.type).toBe("AUTHENTICATION_FAILED");
    } finally {
      await good.close();
      await bad.close();
      await owner.stop();
      tmp.cleanup();
    }
  });

  test("the owner refuses a port that is taken, clearly", async () => {
    const blocker = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("x") });
    const tmp = tempDir("orrery-ch-port-");
    try {
      const proc = Bun.spawn([process.execPath, "services/clickhouse/main.ts", "--data-dir", tmp.dir, "--port", String(blocker.port)], {
        cwd: `${import.meta.dir}/../../..`,
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(await proc.exited).toBe(EXIT_PORT_IN_USE);
      expect(await new Response(proc.stdout).text()).toBe("");
      expect(await new Response(proc.stderr).text()).toContain(`cannot listen on 127.0.0.1:${blocker.port}: the port is in use`);
    } finally {
      await blocker.stop(true);
      tmp.cleanup();
    }
  });
});
