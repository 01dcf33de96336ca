/**
 * ClickHouse HTTP interface → chDB translation, as plain functions.
 *
 * Everything here is pure (no chDB, no sockets) so the protocol quirks can be unit-tested: which URL parameters are
 * settings, how `param_*` values in ClickHouse's escaped text form become chDB bind values, where a SETTINGS clause
 * may go, and how an engine error becomes ClickHouse's error response.
 */

/** URL parameters with a protocol meaning; everything else that is not `param_*` is a setting. */
const RESERVED_PARAMS = new Set([
  "query",
  "query_id",
  "database",
  "default_format",
  "session_id",
  "session_timeout",
  "session_check",
  "user",
  "password",
  "quota_key",
  "role",
  "compress",
  "decompress",
  "buffer_size",
  "stacktrace",
]);

/**
 * Settings that only exist in clickhouse-server's HTTP layer. The engine rejects them with UNKNOWN_SETTING, and the
 * owner's behaviour already satisfies what they ask for (the whole result is materialised before the status line is
 * sent, which is what `wait_end_of_query` buys on a real server).
 */
const HTTP_ONLY_SETTINGS = new Set([
  "wait_end_of_query",
  "enable_http_compression",
  "http_zlib_compression_level",
  "http_response_compression_method",
  "http_native_compression_disable_checksumming_on_decompress",
  "send_progress_in_http_headers",
  "http_headers_progress_interval_ms",
  "http_send_progress_interval_ms",
  "http_response_buffer_size",
  "http_wait_end_of_query",
  "cancel_http_readonly_queries_on_client_close",
  "http_write_exception_in_output_format",
  "add_http_cors_header",
]);

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface HttpQueryRequest {
  /** SQL from the `query` URL parameter (or multipart field), if any. */
  urlQuery: string | undefined;
  queryId: string | undefined;
  database: string | undefined;
  sessionId: string | undefined;
  /** Idle seconds before a named session is dropped (ClickHouse default 60). */
  sessionTimeoutSec: number;
  defaultFormat: string | undefined;
  /** `param_<name>` values, still in ClickHouse's escaped text form. */
  params: Record<string, string>;
  /** Settings that are passed on to the engine. */
  settings: Record<string, string>;
  /** The client asked for a compressed response (`enable_http_compression=1`). */
  compressionEnabled: boolean;
  user: string | undefined;
  password: string | undefined;
}

/** Split request fields (URL search params plus multipart form fields) into protocol fields, params and settings. */
export function parseRequestFields(fields: Iterable<[string, string]>): HttpQueryRequest {
  const out: HttpQueryRequest = {
    urlQuery: undefined,
    queryId: undefined,
    database: undefined,
    sessionId: undefined,
    sessionTimeoutSec: 60,
    defaultFormat: undefined,
    params: {},
    settings: {},
    compressionEnabled: false,
    user: undefined,
    password: undefined,
  };
  for (const [key, value] of fields) {
    if (key.startsWith("param_")) {
      out.params[key.slice("param_".length)] = value;
      continue;
    }
    switch (key) {
      case "query":
        out.urlQuery = value;
        continue;
      case "query_id":
        out.queryId = value || undefined;
        continue;
      case "database":
        out.database = value || undefined;
        continue;
      case "default_format":
        out.defaultFormat = value || undefined;
        continue;
      case "session_id":
        out.sessionId = value || undefined;
        continue;
      case "session_timeout": {
        const n = Number(value);
        if (Number.isFinite(n) && n > 0) out.sessionTimeoutSec = n;
        continue;
      }
      case "user":
        out.user = value;
        continue;
      case "password":
        out.password = value;
        continue;
      case "enable_http_compression":
        out.compressionEnabled = value === "1" || value.toLowerCase() === "true";
        continue;
    }
    if (RESERVED_PARAMS.has(key) || HTTP_ONLY_SETTINGS.has(key)) continue;
    out.settings[key] = value;
  }
  return out;
}

/** `Authorization: Basic …`, or the `X-ClickHouse-User`/`X-ClickHouse-Key` pair clickhouse-server also accepts. */
export function credentialsFromHeaders(headers: Headers): { user?: string; password?: string } {
  const auth = headers.get("authorization");
  if (auth && /^basic\s+/i.test(auth)) {
    const decoded = Buffer.from(auth.replace(/^basic\s+/i, ""), "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    return colon < 0 ? { user: decoded, password: "" } : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  const user = headers.get("x-clickhouse-user") ?? undefined;
  const password = headers.get("x-clickhouse-key") ?? undefined;
  return { user, password };
}

// ---------------------------------------------------------------------------------------------------------------
// Statements

/** Upper-cased first keyword of a statement, skipping whitespace, comments and opening parentheses. */
export function statementKind(sql: string): string {
  let i = 0;
  for (;;) {
    while (i < sql.length && (/\s/.test(sql[i]!) || sql[i] === "(")) i++;
    if (sql.startsWith("--", i) || sql.startsWith("#", i)) {
      const nl = sql.indexOf("\n", i);
      if (nl < 0) return "";
      i = nl + 1;
      continue;
    }
    if (sql.startsWith("/*", i)) {
      const end = sql.indexOf("*/", i + 2);
      if (end < 0) return "";
      i = end + 2;
      continue;
    }
    break;
  }
  const m = /^[A-Za-z]+/.exec(sql.slice(i, i + 32));
  return m ? m[0].toUpperCase() : "";
}

/** Statements that never produce a result set; their HTTP response body is empty on clickhouse-server too. */
const NO_OUTPUT_KINDS = new Set([
  "CREATE", "DROP", "ALTER", "INSERT", "TRUNCATE", "RENAME", "SYSTEM", "SET", "USE", "OPTIMIZE", "GRANT", "REVOKE",
  "ATTACH", "DETACH", "DELETE", "UPDATE", "UNDROP", "EXCHANGE",
]);

export function producesOutput(kind: string): boolean {
  return !NO_OUTPUT_KINDS.has(kind);
}

/**
 * Statements whose grammar takes a trailing query-level `SETTINGS` clause (ClickHouse's ParserQueryWithOutput).
 * CREATE is left out on purpose: a trailing SETTINGS there is read as the table engine's settings.
 */
const TRAILING_SETTINGS_KINDS = new Set([
  "SELECT", "WITH", "EXPLAIN", "SHOW", "DESCRIBE", "DESC", "EXISTS", "ALTER", "OPTIMIZE", "DELETE", "DROP", "CHECK",
]);

/** A `k='v', …` list; names are checked as identifiers and values are quoted literals, so nothing is spliced raw. */
export function settingsList(settings: Record<string, string>): string {
  return Object.entries(settings)
    .map(([k, v]) => {
      if (!IDENTIFIER.test(k)) throw new ProtocolError(115, "UNKNOWN_SETTING", `Invalid setting name ${JSON.stringify(k)}`);
      return `${k}=${quoteString(v)}`;
    })
    .join(", ");
}

export function quoteString(s: string): string {
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

export function quoteIdentifier(s: string): string {
  return `\`${s.replace(/\\/g, "\\\\").replace(/`/g, "\\`")}\``;
}

/**
 * Apply per-request settings the way clickhouse-server applies URL settings: to this query only. chDB has no
 * per-query settings API and `SET` would leak into the shared connection, so the settings become a query-level
 * SETTINGS clause where the grammar has one. Returns the SQL and whether the settings were applied.
 */
export function withSettings(sql: string, settings: Record<string, string>): { sql: string; applied: boolean } {
  if (Object.keys(settings).length === 0) return { sql, applied: true };
  const clause = `SETTINGS ${settingsList(settings)}`;
  const kind = statementKind(sql);
  if (kind === "INSERT") {
    // The clause must precede the data: before `FORMAT x` or `VALUES (`; INSERT … SELECT takes it at the end.
    const header = /\b(FORMAT\s+[A-Za-z]\w*|VALUES\s*\(|SELECT|WITH)\b/i.exec(sql);
    if (header && /^(SELECT|WITH)$/i.test(header[1]!)) return { sql: `${stripTrailing(sql)}\n${clause}`, applied: true };
    if (header) return { sql: `${sql.slice(0, header.index)}${clause} ${sql.slice(header.index)}`, applied: true };
    return { sql, applied: false };
  }
  if (!TRAILING_SETTINGS_KINDS.has(kind)) return { sql, applied: false };
  // A newline first, so a trailing `-- comment` cannot swallow the clause.
  return { sql: `${stripTrailing(sql)}\n${clause}`, applied: true };
}

/** Drop trailing whitespace and semicolons: a clause after `;` would start a second statement. */
function stripTrailing(sql: string): string {
  return sql.replace(/[\s;]+$/, "");
}

/** The output format named by a trailing FORMAT clause, else the request's default, else TabSeparated (as ClickHouse). */
export function outputFormat(sql: string, defaultFormat: string | undefined): string {
  const m = /\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)\s*;?\s*$/i.exec(sql);
  return m?.[1] ?? defaultFormat ?? "TabSeparated";
}

export function contentTypeFor(format: string): string {
  const f = format.toLowerCase();
  if (f.startsWith("json")) return f.includes("eachrow") || f.includes("lines") ? "application/x-ndjson; charset=UTF-8" : "application/json; charset=UTF-8";
  if (f.startsWith("csv")) return "text/csv; charset=UTF-8; header=absent";
  if (f.startsWith("tabseparated") || f.startsWith("tsv")) return "text/tab-separated-values; charset=UTF-8";
  if (["native", "rowbinary", "parquet", "arrow", "arrowstream", "orc", "avro"].some((b) => f.startsWith(b))) return "application/octet-stream";
  return "text/plain; charset=UTF-8";
}

// ---------------------------------------------------------------------------------------------------------------
// INSERT fast path

const RAW_INSERT_FORMATS = new Set([
  "JSONEachRow", "JSONCompactEachRow", "CSV", "CSVWithNames", "TSV", "TabSeparated", "TSVWithNames", "TabSeparatedWithNames",
]);

export interface InsertTarget {
  table: string;
  columns: string[] | undefined;
  format: string;
}

const NAME = String.raw`(?:[A-Za-z_][A-Za-z0-9_]*|\x60[A-Za-z_][A-Za-z0-9_]*\x60)`;
const INSERT_RE = new RegExp(
  String.raw`^\s*INSERT\s+INTO\s+(?:TABLE\s+)?(${NAME}(?:\.${NAME})?)\s*(?:\(([^()]*)\))?\s*FORMAT\s+([A-Za-z]\w*)\s*$`,
  "i",
);

/**
 * `INSERT INTO [db.]t [(a, b)] FORMAT X` with plain names and a text format chDB's raw insert accepts, else undefined
 * (the caller then runs the statement with the data inline). clickhouse-js's insert() always produces this shape.
 */
export function parseInsertTarget(sql: string): InsertTarget | undefined {
  const m = INSERT_RE.exec(sql);
  if (!m) return undefined;
  const format = RAW_INSERT_FORMATS_CANONICAL.get(m[3]!.toLowerCase());
  if (!format) return undefined;
  const table = m[1]!.replace(/`/g, "");
  let columns: string[] | undefined;
  if (m[2] !== undefined) {
    columns = m[2].split(",").map((c) => c.trim().replace(/^`(.*)`$/, "$1"));
    if (columns.length === 0 || !columns.every((c) => IDENTIFIER.test(c))) return undefined;
  }
  return { table, columns, format };
}

const RAW_INSERT_FORMATS_CANONICAL = new Map([...RAW_INSERT_FORMATS].map((f) => [f.toLowerCase(), f]));

// ---------------------------------------------------------------------------------------------------------------
// Bound parameters

/** `{name:Type}` placeholders → declared type (the first declaration wins). */
export function placeholderTypes(sql: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const m of sql.matchAll(/\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^{}]+?)\s*\}/g)) {
    if (!types.has(m[1]!)) types.set(m[1]!, m[2]!);
  }
  return types;
}

const SIMPLE_ESCAPES: Record<string, string> = {
  "\\": "\\", "'": "'", '"': '"', "`": "`", "/": "/", "=": "=",
  t: "\t", n: "\n", r: "\r", "0": "\0", b: "\b", f: "\f", a: "\x07", v: "\v", e: "\x1b",
};

/** ClickHouse's escaped (TSV) text form → the plain string it stands for. */
export function unescapeTsv(s: string): string {
  if (!s.includes("\\")) return s;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== "\\" || i + 1 >= s.length) {
      out += c;
      continue;
    }
    const n = s[++i]!;
    if (n === "x" && /^[0-9A-Fa-f]{2}$/.test(s.slice(i + 1, i + 3))) {
      out += String.fromCharCode(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      out += SIMPLE_ESCAPES[n] ?? n;
    }
  }
  return out;
}

const COMPOSITE_TYPE = /^(Array|Map|Tuple|Nested|Point|Ring|LineString|MultiLineString|Polygon|MultiPolygon)\b/i;

function unwrapType(type: string): string {
  let t = type.trim();
  for (;;) {
    const m = /^(Nullable|LowCardinality)\s*\((.*)\)$/is.exec(t);
    if (!m) return t;
    t = m[2]!.trim();
  }
}

/**
 * Turn an HTTP `param_x` value (escaped text form, as clickhouse-js sends it) into the value chDB's queryBind expects.
 *
 * chDB TSV-escapes a top-level string before the engine parses it with the escaped-text rules; clickhouse-server
 * parses the URL value with those same rules directly. So for scalar types the value is unescaped once here and chDB's
 * escaping restores it. Composite values (Array/Map/Tuple) are read by the engine as quoted literals without a TSV
 * layer; there the backslash escapes inside quoted strings are decoded to raw characters (which chDB escapes back)
 * and an escaped quote becomes the doubled quote `''`, which survives chDB's escaping unchanged.
 */
export function toChdbParam(type: string | undefined, raw: string): string | null {
  if (raw === "\\N") return null;
  if (type !== undefined && COMPOSITE_TYPE.test(unwrapType(type))) return quotedLiteralForChdb(raw);
  return unescapeTsv(raw);
}

function quotedLiteralForChdb(raw: string): string {
  let out = "";
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== "\\" || i + 1 >= raw.length) {
      out += c;
      continue;
    }
    const n = raw[++i]!;
    if (n === "'") out += "''";
    else if (n === "x" && /^[0-9A-Fa-f]{2}$/.test(raw.slice(i + 1, i + 3))) {
      const ch = String.fromCharCode(parseInt(raw.slice(i + 1, i + 3), 16));
      out += ch === "'" ? "''" : ch;
      i += 2;
    } else out += SIMPLE_ESCAPES[n] ?? n;
  }
  return out;
}

/** All `param_*` values converted for chDB, typed by the placeholders the SQL declares. */
export function bindParams(sql: string, params: Record<string, string>): Record<string, string | null> {
  const types = placeholderTypes(sql);
  const out: Record<string, string | null> = {};
  for (const [name, raw] of Object.entries(params)) out[name] = toChdbParam(types.get(name), raw);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

/** An error the owner raises itself, carrying the ClickHouse code and type name it is reported under. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
  constructor(
    readonly code: number,
    readonly type: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface HttpError {
  status: number;
  code: number;
  /** Response body in clickhouse-server's form: `Code: N. DB::Exception: … (TYPE)`. */
  body: string;
}

/** clickhouse-server's exceptionCodeToHTTPStatus, for the codes an embedded engine can raise. */
const STATUS_BY_CODE = new Map<number, number>([
  // parse / argument errors → 400
  [6, 400], [25, 400], [26, 400], [27, 400], [38, 400], [41, 400], [72, 400], [62, 400], [36, 400], [53, 400],
  [117, 400], [130, 400], [456, 400], [457, 400], [271, 400], [43, 400], [44, 400], [42, 400], [35, 400],
  // unknown things → 404
  [46, 404], [47, 404], [50, 404], [56, 404], [60, 404], [63, 404], [73, 404], [78, 404], [81, 404], [115, 404],
  [336, 404],
  // auth → 403
  [192, 403], [193, 403], [194, 403], [516, 403],
  [48, 501],
]);

export function httpStatusForCode(code: number): number {
  return STATUS_BY_CODE.get(code) ?? 500;
}

const CODE_RE = /^Code:\s*(\d+)\./;
const TYPE_RE = /\(([A-Z0-9_]*[A-Z]{3}[A-Z0-9_]*)\)/;

/** The one mapping from anything thrown while serving a request to ClickHouse's HTTP error response. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof ProtocolError) {
    return { status: httpStatusForCode(err.code), code: err.code, body: `Code: ${err.code}. DB::Exception: ${err.message}. (${err.type})\n` };
  }
  const message = err instanceof Error ? err.message : String(err);
  const chCode = (err as { clickhouseCode?: unknown } | null)?.clickhouseCode;
  const name = err instanceof Error ? err.name : "";
  const parsed = CODE_RE.exec(message);
  const code = typeof chCode === "number" && chCode > 0 ? chCode : parsed ? Number(parsed[1]) : name === "ChdbBindError" ? 457 : 1001;
  if (parsed && TYPE_RE.test(message)) return { status: httpStatusForCode(code), code, body: `${message.trimEnd()}\n` };
  const type = code === 457 ? "BAD_QUERY_PARAMETER" : code === 1001 ? "STD_EXCEPTION" : "UNKNOWN_EXCEPTION";
  const text = parsed ? message.replace(CODE_RE, "").replace(/^\s*DB::Exception:\s*/, "") : message;
  return { status: httpStatusForCode(code), code, body: `Code: ${code}. DB::Exception: ${text.trimEnd()}. (${type})\n` };
}

// ---------------------------------------------------------------------------------------------------------------
// Response metadata

export interface QuerySummary {
  readRows: number;
  readBytes: number;
  writtenRows: number;
  writtenBytes: number;
  resultBytes: number;
  elapsedSec: number;
}

/** X-ClickHouse-Summary: every value a decimal string, as clickhouse-server sends it. */
export function summaryHeader(s: QuerySummary): string {
  return JSON.stringify({
    read_rows: String(s.readRows),
    read_bytes: String(s.readBytes),
    written_rows: String(s.writtenRows),
    written_bytes: String(s.writtenBytes),
    total_rows_to_read: String(s.readRows),
    result_rows: String(s.writtenRows > 0 ? s.writtenRows : 0),
    result_bytes: String(s.resultBytes),
    elapsed_ns: String(Math.max(0, Math.round(s.elapsedSec * 1e9))),
  });
}

export type Codec = "gzip" | "deflate" | "br";

/** The response codec to use: only when the client enabled compression and lists a codec we support. */
export function responseCodec(enabled: boolean, acceptEncoding: string | null): Codec | undefined {
  if (!enabled || !acceptEncoding) return undefined;
  const offered = acceptEncoding.toLowerCase().split(",").map((e) => e.split(";")[0]!.trim());
  return (["gzip", "deflate", "br"] as const).find((c) => offered.includes(c));
}
