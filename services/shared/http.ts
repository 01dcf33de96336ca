/**
 * What every HTTP surface shares (gateway, ingest): routes as Bun.serve `routes` objects, typed errors, and one
 * mapping from errors to responses. A handler throws — an HttpError, a port's error, a ContractError — and the
 * server's `error` hook (`httpErrors(log)`) answers; no route carries its own try/catch. An error nobody expected is
 * logged with an id and answered 500 with that id only: its message may hold internals a caller must not see.
 */
import type { z } from "zod";
import { ContractError } from "../../pipelines/codec.ts";
import { formatIssues } from "../../pipelines/issues.ts";
import { AlertsClientError } from "../alerts/client.ts";
import { GraphStoreError, type GraphStoreErrorCode } from "../graph/port.ts";
import { HistoryStoreError } from "../history/port.ts";
import { SeriesQueryError, SeriesStoreError } from "../metrics/port.ts";
import type { Logger } from "./log.ts";

/** An answer other than 2xx that a handler chose, with the reason a caller can act on. */
export class HttpError extends Error {
  override readonly name: string = "HttpError";
  constructor(
    readonly status: number,
    message: string,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }
}

export type Handler = (req: Request) => Response | Promise<Response>;
/** Bun.serve's `routes` shape: a path (with `:params`) → a handler, or a handler per method. */
export type Routes = Record<string, Handler | Partial<Record<"GET" | "POST" | "PUT" | "PATCH" | "DELETE", Handler>>>;

/** The graph port's codes; the topology service's Cypher replies carry the same codes. */
export const GRAPH_STATUS: Record<GraphStoreErrorCode, number> = {
  read_only: 400,
  bad_request: 400,
  query_failed: 400,
  too_many_rows: 413,
  timeout: 504,
  write_failed: 503,
  unavailable: 503,
  // write-side codes: a reply carries them only if a write's failure reaches a route
  aborted: 503,
  too_large: 413,
};
/** null: the failure is ours (a stored row that does not fit the schema) */
const HISTORY_STATUS: Record<HistoryStoreError["code"], number | null> = { query_failed: 503, write_failed: 503, unavailable: 503, bad_input: 400, bad_row: null };
const SERIES_STATUS: Record<SeriesStoreError["code"], number> = { unavailable: 503, write_failed: 503, bad_input: 400 };
const ALERTS_STATUS: Record<AlertsClientError["code"], number> = { unavailable: 503, not_ready: 503, refused: 400, bad_reply: 502 };

interface Mapped {
  status: number;
  /** a port's code goes along (e.g. not_ready), so a reader can tell a replaying service from a failed one */
  code?: string;
  headers?: Record<string, string>;
}

/** The one mapping from errors to HTTP; null for an error that is ours (a bug, a bad stored row). */
function mapped(e: unknown): Mapped | null {
  if (e instanceof HttpError) return { status: e.status, headers: e.headers };
  if (e instanceof ContractError) return { status: 400, code: e.code };
  if (e instanceof SeriesQueryError) return { status: 400 };
  if (e instanceof SeriesStoreError) return { status: SERIES_STATUS[e.code], code: e.code };
  if (e instanceof GraphStoreError) return { status: GRAPH_STATUS[e.code], code: e.code };
  if (e instanceof HistoryStoreError) {
    const status = HISTORY_STATUS[e.code];
    return status === null ? null : { status, code: e.code };
  }
  // replaying after a restart: the answer would be incomplete, so say when to ask again
  if (e instanceof AlertsClientError) return { status: ALERTS_STATUS[e.code], code: e.code, headers: e.code === "not_ready" ? { "retry-after": "1" } : undefined };
  return null;
}

export function toHttpError(e: unknown, log: Logger): Response {
  const m = mapped(e);
  if (m) return Response.json({ error: (e as Error).message, ...(m.code ? { code: m.code } : {}) }, { status: m.status, headers: m.headers });
  const id = crypto.randomUUID();
  log.error("request failed", { id, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e), stack: e instanceof Error ? e.stack : undefined });
  return Response.json({ error: "internal error", id }, { status: 500 });
}

/** Bun.serve's `error` hook: every error a route throws goes through toHttpError. */
export function httpErrors(log: Logger): (e: Error) => Response {
  return (e) => toHttpError(e, log);
}

/** A query string validated by `schema`; `multi` keys keep every value (repeated, or comma-separated when listed in `commaSeparated`). */
export function parseQuery<S extends z.ZodType>(schema: S, req: Request, opts: { multi?: string[]; commaSeparated?: string[] } = {}): z.infer<S> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of new URL(req.url).searchParams) {
    if (opts.multi?.includes(k)) o[k] = [...((o[k] as string[] | undefined) ?? []), ...(opts.commaSeparated?.includes(k) ? v.split(",").filter(Boolean) : [v])];
    else o[k] = v;
  }
  const r = schema.safeParse(o);
  if (!r.success) throw new HttpError(400, formatIssues(r.error, { root: "query" }));
  return r.data;
}

/** A JSON body validated by `schema`; `hint` says what a body looks like when it is not JSON at all. */
/** Deeper than any body an API here accepts; a deeper one would exhaust the stack of whatever re-encodes or walks it. */
export const MAX_JSON_DEPTH = 64;

/** Nesting depth of a parsed JSON value, walked without recursion (so a hostile body cannot overflow the stack here). */
export function jsonDepth(v: unknown, stopAt = Infinity): number {
  let max = 0;
  const todo: [unknown, number][] = [[v, 1]];
  while (todo.length) {
    const [x, d] = todo.pop()!;
    if (x === null || typeof x !== "object") continue;
    if (d > max) max = d;
    if (max > stopAt) return max;
    for (const c of Array.isArray(x) ? x : Object.values(x)) todo.push([c, d + 1]);
  }
  return max;
}

/** A request's JSON body, refused with a 400 when it is not JSON or nests deeper than MAX_JSON_DEPTH. */
export async function readJsonBody(req: Request, hint?: string): Promise<unknown> {
  let body: unknown;
  try {
    body = await req.json();
  } catch {
    throw new HttpError(400, hint ? `body must be JSON: ${hint}` : "body must be JSON");
  }
  if (jsonDepth(body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) throw new HttpError(400, `body nests deeper than ${MAX_JSON_DEPTH} levels`);
  return body;
}

export async function parseBody<S extends z.ZodType>(schema: S, req: Request, hint: string): Promise<z.infer<S>> {
  const body = await readJsonBody(req, hint);
  const r = schema.safeParse(body);
  if (!r.success) throw new HttpError(400, formatIssues(r.error, { root: "body" }));
  return r.data;
}
