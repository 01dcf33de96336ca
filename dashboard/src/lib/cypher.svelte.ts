/**
 * The Cypher console's state (one per page, `cypherConsole`): the query and its parameters, the last answer of
 * POST /api/cypher as rows and as a graph of the nodes and relationships it returned, and an error with the position
 * the graph store gave (Kuzu: `(line: 2, offset: 4)`, Neo4j: `(line 2, column 5 (offset: 14))`). The graph store
 * runs the query read-only (a write is refused with `read_only`). Anything may open it with a query, e.g. the
 * drawer's "open in Cypher".
 */
import { z } from "zod";
import { CypherResponse } from "../../../pipelines/contracts/cypher.ts";
import { errorPosition, type QueryError } from "./cypher.ts";

export { entityQuery } from "./cypher.ts";

const ParamsText = z.record(z.string(), z.unknown());

export const DEFAULT_QUERY = "MATCH (n:Entity)\nWHERE n.kind = $kind\nRETURN n.id AS id, n.name AS name\nLIMIT 25";

export class CypherConsoleState {
  open = $state(false);
  query = $state(DEFAULT_QUERY);
  /** parameters as JSON text (an object) */
  params = $state('{"kind": "host"}');
  running = $state(false);
  rows = $state.raw<Record<string, unknown>[] | null>(null);
  ms = $state<number | null>(null);
  error = $state.raw<QueryError | null>(null);
  /** "table" or "graph" */
  tab = $state<"table" | "graph">("table");
  /** bumped by every openWith, so the console can run what it was opened with */
  asked = $state(0);
  #abort: AbortController | null = null;

  /** Opens the console with a query and its parameters (not run: the operator reads it first, then runs). */
  openWith(query: string, params: Record<string, unknown> = {}, tab: "table" | "graph" = "graph"): void {
    this.query = query;
    this.params = JSON.stringify(params, null, 1).replace(/\n\s*/g, " ");
    this.tab = tab;
    this.open = true;
    this.asked++;
  }

  async run(fetchImpl: (url: string, init?: RequestInit) => Promise<Response> = (u, i) => fetch(u, i)): Promise<void> {
    const parsed = this.#params();
    if (!parsed.ok) {
      this.error = { code: "bad_params", message: parsed.error };
      this.rows = null;
      return;
    }
    this.#abort?.abort();
    const ac = new AbortController();
    this.#abort = ac;
    this.running = true;
    this.error = null;
    try {
      const res = await fetchImpl("/api/cypher", {
        method: "POST",
        signal: ac.signal,
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ query: this.query, params: parsed.params, maxRows: 5000 }),
      });
      let body: unknown;
      try {
        body = await res.json();
      } catch {
        body = null;
      }
      if (ac.signal.aborted) return;
      const r = CypherResponse.safeParse(body);
      if (r.success && r.data.ok) {
        this.rows = r.data.rows;
        this.ms = r.data.ms;
        return;
      }
      this.rows = null;
      const code = r.success && !r.data.ok ? r.data.code : `http_${res.status}`;
      const message = r.success && !r.data.ok ? r.data.error : typeof (body as { error?: unknown } | null)?.error === "string" ? (body as { error: string }).error : `HTTP ${res.status}`;
      const pos = errorPosition(message);
      this.error = { code, message, ...(pos ?? {}) };
    } catch (e) {
      if (ac.signal.aborted) return;
      this.rows = null;
      this.error = { code: "unavailable", message: e instanceof Error ? e.message : String(e) };
    } finally {
      if (this.#abort === ac) {
        this.running = false;
        this.#abort = null;
      }
    }
  }

  #params(): { ok: true; params: Record<string, unknown> } | { ok: false; error: string } {
    const t = this.params.trim();
    if (!t) return { ok: true, params: {} };
    let json: unknown;
    try {
      json = JSON.parse(t);
    } catch (e) {
      return { ok: false, error: `parameters are not JSON: ${(e as Error).message}` };
    }
    const r = ParamsText.safeParse(json);
    return r.success ? { ok: true, params: r.data } : { ok: false, error: 'parameters must be a JSON object, e.g. {"id": "host:web-1"}' };
  }
}

/** The page's one console. */
export const cypherConsole = new CypherConsoleState();

