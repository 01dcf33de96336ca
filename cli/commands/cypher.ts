/**
 * `orrery cypher "<query>"` — asks the live graph a read-only Cypher question through the gateway's /api/cypher
 * (cypher.v1) and prints the rows as an aligned table, or as JSON with --json.
 *
 *   orrery cypher "MATCH (c:Entity)-[:CONNECTS]->(l:Entity) WHERE l.port = \$port RETURN c.name AS client, l.id AS listener" --param port=5432
 *
 * Exit codes: 0 rows printed, 1 the query or the gateway failed, 2 bad command-line arguments.
 */
import { defineCommand, runMain } from "citty";
import { CypherRequest, CypherResponse } from "../../pipelines/contracts/cypher.ts";
import { formatIssues } from "../../pipelines/issues.ts";
import { bearer, CliConfigError, gatewayTarget } from "../config.ts";

export class UsageError extends Error {
  override readonly name = "UsageError";
}

/**
 * `k=v` pairs from every `--param` / `-p` (citty keeps only the last of a repeated flag, so they are read from the raw
 * arguments). v is JSON when it parses (`5432`, `true`, `["a","b"]`, `"5432"` for the string), else the text itself.
 */
export function parseParams(rawArgs: string[]): Record<string, unknown> {
  const values: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i]!;
    if (a === "--") break;
    if (a === "--param" || a === "-p") {
      const v = rawArgs[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value: ${a} name=value`);
      values.push(v);
    } else if (a.startsWith("--param=")) values.push(a.slice("--param=".length));
  }
  const params: Record<string, unknown> = {};
  for (const kv of values) {
    const eq = kv.indexOf("=");
    const key = eq < 0 ? "" : kv.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new UsageError(`bad --param "${kv}": expected name=value with a Cypher parameter name`);
    const raw = kv.slice(eq + 1);
    try {
      params[key] = JSON.parse(raw);
    } catch {
      params[key] = raw;
    }
  }
  return params;
}

function positiveInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer (got "${v}")`);
  return n;
}

/** One cell as text: strings as they are, numbers/booleans printed, null as `null`, lists and maps as compact JSON. */
function cell(v: unknown): string {
  const s = typeof v === "string" ? v : v === undefined ? "" : JSON.stringify(v);
  return s.replace(/\r?\n/g, "\\n");
}

/** Rows as an aligned text table; columns in order of first appearance, numeric columns right-aligned. */
export function formatTable(rows: Record<string, unknown>[]): string {
  if (rows.length === 0) return "(no rows)\n";
  const cols: string[] = [];
  const seen = new Set<string>();
  for (const r of rows)
    for (const k of Object.keys(r))
      if (!seen.has(k)) {
        seen.add(k);
        cols.push(k);
      }
  const numeric = cols.map((c) => rows.every((r) => r[c] === null || r[c] === undefined || typeof r[c] === "number"));
  const body = rows.map((r) => cols.map((c) => cell(r[c])));
  const widths = cols.map((c, i) => Math.max(c.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((s, i) => (numeric[i] ? s.padStart(widths[i]!) : s.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(cols), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n") + "\n";
}

export interface CypherCliOptions {
  query: string;
  params: Record<string, unknown>;
  url: string;
  /** API token (Authorization: Bearer) */
  token?: string;
  json: boolean;
  timeoutMs?: number;
  maxRows?: number;
}

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** Sends one cypher.v1 request and prints the answer; returns the exit code. */
export async function runCypher(o: CypherCliOptions, io: Io): Promise<number> {
  const req = CypherRequest.safeParse({ query: o.query, params: o.params, timeoutMs: o.timeoutMs, maxRows: o.maxRows });
  if (!req.success) {
    io.err(`error: ${formatIssues(req.error, { root: "request" })}\n`);
    return 2;
  }
  const endpoint = `${o.url.replace(/\/+$/, "")}/api/cypher`;
  let res: Response;
  try {
    // The gateway waits timeoutMs plus its own margin for the store; give it a little more before giving up here.
    res = await fetch(endpoint, {
      method: "POST",
      headers: { "content-type": "application/json", ...bearer(o.token) },
      body: JSON.stringify(req.data),
      signal: AbortSignal.timeout(req.data.timeoutMs + 10_000),
    });
  } catch (e) {
    io.err(`error: cannot reach the gateway at ${endpoint}: ${(e as Error).message}\n`);
    return 1;
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    io.err(`error: the gateway answered HTTP ${res.status} with a body that is not JSON: ${text.slice(0, 200)}\n`);
    return 1;
  }
  const parsed = CypherResponse.safeParse(body);
  if (parsed.success && parsed.data.ok) {
    io.out(o.json ? JSON.stringify(parsed.data.rows, null, 2) + "\n" : formatTable(parsed.data.rows) + `${parsed.data.rows.length} row${parsed.data.rows.length === 1 ? "" : "s"} (${parsed.data.ms.toFixed(1)} ms)\n`);
    return 0;
  }
  if (res.status === 401 || res.status === 403) {
    io.err(`error: ${(body as { error?: string }).error ?? "not allowed"} (HTTP ${res.status}); ${o.token ? "check the token" : "give a token: --token, ORRERY_TOKEN, or `orrery login`"}\n`);
    return 1;
  }
  if (parsed.success && !parsed.data.ok) {
    io.err(`error [${parsed.data.code}]: ${parsed.data.error} (HTTP ${res.status})\n`);
    return 1;
  }
  // Errors from the gateway itself (bad request body, store unavailable) are {error}.
  const msg = body && typeof body === "object" && typeof (body as { error?: unknown }).error === "string" ? (body as { error: string }).error : text.slice(0, 200);
  io.err(`error: ${msg} (HTTP ${res.status})\n`);
  return 1;
}

export const cypher = defineCommand({
  meta: { name: "cypher", description: "Ask the live graph a read-only Cypher question (through the gateway)" },
  args: {
    query: { type: "positional", description: "read-only Cypher, e.g. \"MATCH (n:Entity {kind: 'host'}) RETURN n.name AS host\"", required: true },
    param: { type: "string", alias: "p", valueHint: "name=value", description: "bound parameter $name; repeatable; value parsed as JSON when it parses, else a string" },
    json: { type: "boolean", description: "print the rows as JSON", default: false },
    url: { type: "string", description: "gateway base URL (env ORRERY_URL, the config file, default http://127.0.0.1:7070)" },
    token: { type: "string", description: "API token (env ORRERY_TOKEN, or the config file `orrery login` writes)" },
    "timeout-ms": { type: "string", description: "query timeout in ms (server default 10000, at most 60000)" },
    "max-rows": { type: "string", description: "refuse results larger than this (server default 10000)" },
  },
  async run({ args, rawArgs }) {
    const io: Io = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };
    let opts: CypherCliOptions;
    try {
      const target = gatewayTarget({ url: args.url, token: args.token });
      opts = {
        query: String(args.query),
        params: parseParams(rawArgs),
        url: target.url,
        token: target.token,
        json: Boolean(args.json),
        timeoutMs: positiveInt("timeout-ms", args["timeout-ms"]),
        maxRows: positiveInt("max-rows", args["max-rows"]),
      };
    } catch (e) {
      if (!(e instanceof UsageError || e instanceof CliConfigError)) throw e;
      io.err(`error: ${e.message}\n`);
      process.exitCode = 2;
      return;
    }
    // exitCode rather than exit(): stdout is flushed before the process ends, even when piped.
    process.exitCode = await runCypher(opts, io);
  },
});

if (import.meta.main) await runMain(cypher);
