/**
 * The embedded ClickHouse owner: one process that owns a chDB data directory and serves it over ClickHouse's HTTP
 * interface on loopback.
 *
 * Why: libchdb binds one data directory per process, and two processes cannot share one, so every other Orrery
 * process reaches the embedded store through this owner with the stock `@clickhouse/client` — the same code then
 * runs unchanged against a real ClickHouse server.
 *
 * What the HTTP side supports (enough for clickhouse-js v1.x: ping, query, insert, command, exec):
 * - `GET /ping`, `GET /` → `Ok.`; queries by `POST /` (SQL in the body, or in `?query=` with the body as data) and
 *   `GET /?query=`; multipart bodies (`use_multipart_params`).
 * - `param_*` bound parameters in ClickHouse's escaped text form, bound by chDB (never spliced into the SQL).
 * - URL settings applied to that query only, as a SETTINGS clause; HTTP-layer settings (`wait_end_of_query`,
 *   `enable_http_compression`, …) are consumed here. On statements without a query-level SETTINGS clause (CREATE,
 *   SYSTEM, …) settings are dropped.
 * - `INSERT … FORMAT <text format>` with the rows as the body goes through chDB's raw-buffer insert (its fastest path);
 *   other INSERT shapes run with the data inline.
 * - gzip/deflate/br request bodies (`Content-Encoding`) and responses (`enable_http_compression=1` + `Accept-Encoding`).
 * - X-ClickHouse-Query-Id / -Format / -Summary / -Timezone headers; errors as `Code: N. DB::Exception: … (TYPE)` with
 *   X-ClickHouse-Exception-Code and ClickHouse's HTTP status for that code.
 * - `database` and `session_id`: each gets its own chDB connection on the same directory (connections have their own
 *   current database and SET state), so neither leaks into other requests. Sessions expire after `session_timeout`.
 * - Basic auth / X-ClickHouse-User+Key, checked when a password is configured.
 *
 * Not supported: streaming results (each result is materialised, then sent), progress headers, query cancellation
 * on client disconnect, readonly enforcement for GET, the native TCP protocol.
 */
import { type RawInsertFormat, Session, drainPending, version } from "chdb";
import { randomUUID, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";
import * as zlib from "node:zlib";
import {
  type Codec,
  type HttpQueryRequest,
  ProtocolError,
  bindParams,
  contentTypeFor,
  credentialsFromHeaders,
  outputFormat,
  parseInsertTarget,
  parseRequestFields,
  producesOutput,
  quoteIdentifier,
  responseCodec,
  statementKind,
  summaryHeader,
  toHttpError,
  withSettings,
} from "./http-protocol.ts";
import { isAddressInUse, PortInUseError } from "../shared/ports.ts";

export interface ClickHouseOwnerOptions {
  dataDir: string;
  /** Interface to bind; loopback by default. */
  host?: string;
  /** 0 picks a free port. Default 8123. */
  port?: number;
  /** When set, requests must authenticate as `user` with this password. */
  password?: string;
  /** User name checked together with `password`. Default `default`. */
  user?: string;
  /** chDB connections for requests without a session or database (queries on one connection run one at a time). */
  connections?: number;
  /** Largest accepted request body, after decompression. Default 1 GiB. */
  maxBodyBytes?: number;
}

export interface ClickHouseOwner {
  url: string;
  port: number;
  stop(): Promise<void>;
}

const compress: Record<Codec, (b: Uint8Array) => Promise<Buffer>> = {
  gzip: promisify(zlib.gzip),
  deflate: promisify(zlib.deflate),
  br: promisify(zlib.brotliCompress),
};
const decompress: Record<string, (b: Uint8Array) => Promise<Buffer>> = {
  gzip: promisify(zlib.gunzip),
  "x-gzip": promisify(zlib.gunzip),
  deflate: promisify(zlib.inflate),
  br: promisify(zlib.brotliDecompress),
};

interface Conn {
  session: Session;
  inflight: number;
  lastUsed: number;
  database: string;
  timeoutMs: number;
  /** A sessionless request ran SET or USE on it: replace it once idle, so that state does not leak. */
  dirty: boolean;
}

const MAX_SESSIONS = 256;

/** chDB connections on the one data directory: a default pool, one per non-default database, one per HTTP session. */
class Connections {
  private readonly pool: Conn[] = [];
  private readonly byDatabase = new Map<string, Conn>();
  private readonly bySession = new Map<string, Conn>();
  private readonly sweeper: ReturnType<typeof setInterval>;

  constructor(
    private readonly dataDir: string,
    size: number,
  ) {
    for (let i = 0; i < size; i++) this.pool.push(this.open());
    this.sweeper = setInterval(() => this.sweep(), 5_000);
    this.sweeper.unref();
  }

  private open(timeoutMs = 0): Conn {
    return { session: new Session(this.dataDir), inflight: 0, lastUsed: Date.now(), database: "default", timeoutMs, dirty: false };
  }

  /** The connection a request runs on, switched to the request's database. */
  async acquire(req: HttpQueryRequest): Promise<Conn> {
    let conn: Conn;
    let fresh = false;
    if (req.sessionId !== undefined) {
      const known = this.bySession.get(req.sessionId);
      if (!known && this.bySession.size >= MAX_SESSIONS) {
        throw new ProtocolError(202, "TOO_MANY_SIMULTANEOUS_QUERIES", `Too many open sessions (${MAX_SESSIONS})`);
      }
      conn = known ?? this.open();
      fresh = !known;
      this.bySession.set(req.sessionId, conn);
      conn.timeoutMs = req.sessionTimeoutSec * 1000;
    } else if (req.database !== undefined && req.database !== "default") {
      const known = this.byDatabase.get(req.database);
      conn = known ?? this.open();
      fresh = !known;
      this.byDatabase.set(req.database, conn);
    } else {
      conn = this.pool.reduce((a, b) => (b.inflight < a.inflight ? b : a));
    }
    conn.inflight++;
    conn.lastUsed = Date.now();
    const wanted = req.database ?? (req.sessionId !== undefined ? conn.database : "default");
    if (conn.database !== wanted) {
      try {
        await conn.session.queryAsync(`USE ${quoteIdentifier(wanted)}`);
        conn.database = wanted;
      } catch (err) {
        conn.inflight--;
        if (fresh && req.sessionId === undefined) {
          // An unknown database must not leave a connection behind per name tried.
          this.byDatabase.delete(wanted);
          conn.session.close();
        }
        throw err;
      }
    }
    return conn;
  }

  release(conn: Conn): void {
    conn.inflight--;
    conn.lastUsed = Date.now();
    if (!conn.dirty || conn.inflight > 0) return;
    const replacement = this.open();
    const i = this.pool.indexOf(conn);
    if (i >= 0) this.pool[i] = replacement;
    else {
      for (const [db, c] of this.byDatabase) if (c === conn) this.byDatabase.set(db, replacement);
    }
    conn.session.close();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, conn] of this.bySession) {
      if (conn.inflight === 0 && now - conn.lastUsed > conn.timeoutMs) {
        this.bySession.delete(id);
        conn.session.close();
      }
    }
  }

  /** Close every connection once nothing runs on it; the engine flushes on close. */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
    const all = [...this.pool, ...this.byDatabase.values(), ...this.bySession.values()];
    while (all.some((c) => c.inflight > 0)) await Bun.sleep(10);
    for (const c of all) c.session.close();
    await drainPending();
  }
}

export async function startClickHouseOwner(options: ClickHouseOwnerOptions): Promise<ClickHouseOwner> {
  const host = options.host ?? "127.0.0.1";
  const maxBodyBytes = options.maxBodyBytes ?? 1024 ** 3;
  const expectedUser = options.user ?? "default";
  const connections = new Connections(options.dataDir, Math.max(1, options.connections ?? 2));
  const engineVersion = String(version().libchdb).replace(/"/g, "");
  let timezone = "UTC";
  try {
    const probe = await connections.acquire(parseRequestFields([]));
    try {
      timezone = (await probe.session.queryAsync("SELECT timezone()", { format: "TabSeparated" })).text().trim() || timezone;
    } finally {
      connections.release(probe);
    }
  } catch (err) {
    await connections.close();
    throw err;
  }

  const checkAuth = (headers: Headers, req: HttpQueryRequest): void => {
    if (options.password === undefined) return;
    const fromHeaders = credentialsFromHeaders(headers);
    const user = fromHeaders.user ?? req.user ?? "default";
    const password = Buffer.from(fromHeaders.password ?? req.password ?? "");
    const expected = Buffer.from(options.password);
    const ok = user === expectedUser && password.length === expected.length && timingSafeEqual(password, expected);
    if (!ok) throw new ProtocolError(516, "AUTHENTICATION_FAILED", `${user}: Authentication failed: password is incorrect, or there is no user with such name`);
  };

  const readBody = async (request: Request): Promise<Uint8Array> => {
    const raw = new Uint8Array(await request.arrayBuffer());
    const encoding = request.headers.get("content-encoding")?.trim().toLowerCase();
    if (!encoding || encoding === "identity" || raw.length === 0) return raw;
    const codec = decompress[encoding];
    if (!codec) throw new ProtocolError(36, "BAD_ARGUMENTS", `Unknown Content-Encoding ${JSON.stringify(encoding)}`);
    let body: Buffer;
    try {
      body = await codec(raw);
    } catch (err) {
      throw new ProtocolError(271, "CANNOT_DECOMPRESS", `Cannot decompress ${encoding} request body: ${(err as Error).message}`, { cause: err });
    }
    if (body.length > maxBodyBytes) throw new ProtocolError(1001, "STD_EXCEPTION", `Request body exceeds ${maxBodyBytes} bytes`);
    return body;
  };

  const handle = async (request: Request, queryId: string): Promise<Response> => {
    const url = new URL(request.url);
    if (url.pathname === "/ping" || url.pathname === "/replicas_status") return new Response("Ok.\n");
    if (url.pathname !== "/") return new Response(`There is no handle ${url.pathname}\n`, { status: 404 });

    const fields: [string, string][] = [...url.searchParams];
    let body = request.method === "POST" ? await readBody(request) : new Uint8Array();
    let bodyIsQuery = true;
    const contentType = request.headers.get("content-type") ?? "";
    if (contentType.startsWith("multipart/form-data")) {
      // clickhouse-js sends long query_params this way: the query and param_* as form fields, no data.
      const form = await new Response(body as Uint8Array<ArrayBuffer>, { headers: { "content-type": contentType } }).formData();
      for (const [k, v] of form) if (typeof v === "string") fields.push([k, v]);
      body = new Uint8Array();
    }
    const req = parseRequestFields(fields);
    checkAuth(request.headers, req);
    if (req.urlQuery !== undefined) bodyIsQuery = false;
    if (req.urlQuery === undefined && body.length === 0) {
      if (request.method === "GET") return new Response("Ok.\n");
      throw new ProtocolError(62, "SYNTAX_ERROR", "Empty query");
    }

    const conn = await connections.acquire(req);
    try {
      // Fast path: INSERT … FORMAT X in the URL, rows in the body → chDB's raw-buffer insert.
      const target = !bodyIsQuery && body.length > 0 && Object.keys(req.params).length === 0 ? parseInsertTarget(req.urlQuery!) : undefined;
      if (target) {
        const s = await conn.session.insert({
          table: target.table,
          columns: target.columns,
          values: body,
          format: target.format as RawInsertFormat,
          settings: req.settings,
        });
        return reply(new Uint8Array(), queryId, "TabSeparated", undefined, {
          readRows: s.rowsWritten, readBytes: s.bytesWritten, writtenRows: s.rowsWritten, writtenBytes: s.bytesWritten, resultBytes: 0, elapsedSec: s.elapsed,
        });
      }
      if (!bodyIsQuery && body.length === 0 && statementKind(req.urlQuery!) === "INSERT" && /\bFORMAT\s+\w+\s*$/i.test(req.urlQuery!)) {
        // An empty stream insert: nothing to write (chDB would fail with "No data to insert").
        return reply(new Uint8Array(), queryId, "TabSeparated", undefined, { readRows: 0, readBytes: 0, writtenRows: 0, writtenBytes: 0, resultBytes: 0, elapsedSec: 0 });
      }
      const bodyText = new TextDecoder().decode(body);
      const base = bodyIsQuery ? bodyText : body.length > 0 ? `${req.urlQuery}\n${bodyText}` : req.urlQuery!;
      const kind = statementKind(base);
      const { sql } = withSettings(base, req.settings);
      const format = outputFormat(base, req.defaultFormat);
      const hasParams = Object.keys(req.params).length > 0;
      // clickhouse-server forgets a sessionless SET/USE after the request; a chDB connection would keep it.
      if (req.sessionId === undefined && /\b(SET|USE)\b/i.test(base)) conn.dirty = true;
      const result = hasParams
        ? await conn.session.queryBindAsync(sql, bindParams(base, req.params), { format })
        : await conn.session.queryAsync(sql, { format });
      // chDB can hand back a stale buffer for statements without output; clickhouse-server sends an empty body.
      const out = producesOutput(kind) ? result.bytes() : new Uint8Array();
      const codec = responseCodec(req.compressionEnabled, request.headers.get("accept-encoding"));
      return reply(out, queryId, format, codec, {
        readRows: result.rowsRead, readBytes: result.bytesRead, writtenRows: 0, writtenBytes: 0, resultBytes: out.length, elapsedSec: result.elapsed,
      });
    } finally {
      connections.release(conn);
    }
  };

  const reply = async (
    out: Uint8Array,
    queryId: string,
    format: string,
    codec: Codec | undefined,
    summary: Parameters<typeof summaryHeader>[0],
  ): Promise<Response> => {
    const headers: Record<string, string> = {
      "Content-Type": contentTypeFor(format),
      "X-ClickHouse-Query-Id": queryId,
      "X-ClickHouse-Format": format,
      "X-ClickHouse-Timezone": timezone,
      "X-ClickHouse-Server-Display-Name": "orrery-chdb",
      "X-ClickHouse-Summary": summaryHeader(summary),
    };
    let payload: Uint8Array = out;
    if (codec && out.length > 0) {
      payload = await compress[codec](out);
      headers["Content-Encoding"] = codec;
    }
    return new Response(payload as Uint8Array<ArrayBuffer>, { status: 200, headers });
  };

  let inflightRequests = 0;
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: host,
      port: options.port ?? 8123,
      maxRequestBodySize: maxBodyBytes,
      // Seconds a connection may stay silent; a long query is exempted per request below.
      idleTimeout: 120,
      fetch: async (request, srv) => {
        srv.timeout(request, 0);
        inflightRequests++;
        const queryId = new URL(request.url).searchParams.get("query_id") || randomUUID();
        try {
          return await handle(request, queryId);
        } catch (err) {
          const e = toHttpError(err);
          return new Response(e.body, {
            status: e.status,
            headers: {
              "Content-Type": "text/plain; charset=UTF-8",
              "X-ClickHouse-Query-Id": queryId,
              "X-ClickHouse-Exception-Code": String(e.code),
              "X-ClickHouse-Server-Display-Name": "orrery-chdb",
              "X-ClickHouse-Version": engineVersion,
            },
          });
        } finally {
          inflightRequests--;
        }
      },
    });
  } catch (err) {
    await connections.close();
    if (isAddressInUse(err)) throw new PortInUseError(host, options.port ?? 8123, { cause: err });
    throw new Error(`ClickHouse owner cannot listen on ${host}:${options.port ?? 8123}: ${(err as Error).message}`, { cause: err });
  }

  const port = server.port ?? 0;
  let stopped: Promise<void> | undefined;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    stop: () => {
      stopped ??= (async () => {
        // Stop accepting, let requests in flight finish, then drop idle keep-alive sockets.
        void server.stop(false);
        while (inflightRequests > 0) await Bun.sleep(10);
        await server.stop(true);
        await connections.close();
      })();
      return stopped;
    },
  };
}
