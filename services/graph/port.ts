/**
 * GraphStore: the port every graph adapter implements (Kuzu embedded, Neo4j). The topology service writes net changes
 * in batches; readers ask read-only Cypher. One contract suite (./contract.ts) runs against every adapter.
 */
import type { EdgeKind, NodeKind, TopoEdge, TopologySnapshot, TopoNode } from "../../pipelines/contracts/topology.ts";
import type { Changes } from "../../pipelines/stages/topology/index.ts";
import { PortError, type FailureKind } from "../shared/errors.ts";

export interface StoredGraph {
  /** last topology rev written */
  rev: number;
  nodes: TopoNode[];
  edges: TopoEdge[];
  /** declared reporting intervals of sources (Changes.sourceIntervals), ms */
  sourceIntervals: Record<string, number>;
  /**
   * ids of entities whose stored props were not a JSON object (a store damaged under it: Kuzu after its buffer pool
   * ran out mid-write and the process crashed): loaded with props {}, so the service starts and the sources' next
   * scans write them again, rather than every start failing on them
   */
  unreadable: string[];
}

/** Stored props back as an object; text that is not a JSON object gives {} and its id goes to `unreadable`. */
export function storedProps(raw: unknown, id: unknown, unreadable?: string[]): Record<string, unknown> {
  if (raw === null || raw === undefined) return {};
  try {
    const v: unknown = JSON.parse(String(raw));
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // below
  }
  if (!unreadable) throw new Error(`stored props of ${String(id)} are not a JSON object: ${JSON.stringify(String(raw).slice(0, 80))}`);
  unreadable.push(String(id));
  return {};
}

/** OrreryMeta keys holding source intervals: `interval:<source>`. */
export const INTERVAL_KEY = "interval:";
/** Changes.sourceIntervals (they always come with graph changes) as rows to set and keys to delete (0 = the source is gone). */
export function intervalRows(c: Changes): { set: { key: string; value: number }[]; del: string[] } {
  const set: { key: string; value: number }[] = [];
  const del: string[] = [];
  for (const [id, ms] of Object.entries(c.sourceIntervals ?? {})) (ms > 0 ? set.push({ key: INTERVAL_KEY + id, value: ms }) : del.push(INTERVAL_KEY + id));
  return { set, del };
}
export function intervalsFrom(rows: Record<string, unknown>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rows) out[String(r.k).slice(INTERVAL_KEY.length)] = Number(r.v);
  return out;
}

export interface OutboxEntry {
  rev: number;
  body: string;
}

export interface ApplyOptions {
  /**
   * Aborting it abandons the write: the store rolls it back whole (nothing of it, rev or outbox included, is stored)
   * and it fails with `aborted`, unless it has already committed. For a service that must stop within a deadline.
   */
  signal?: AbortSignal;
}

export interface QueryOptions {
  /** abort the query after this many ms */
  timeoutMs?: number;
  /** refuse to return more rows than this */
  maxRows?: number;
}

export interface NeighbourhoodOptions {
  /** edges away from the entity, either direction, 1..MAX_HOPS */
  hops: number;
  /** follow only these edge kinds (all when absent or empty) */
  kinds?: EdgeKind[];
}

/** The entity, everything within `hops` edges of it, and the edges among them. */
export interface Neighbourhood {
  nodes: TopoNode[];
  edges: TopoEdge[];
}

export interface ImpactOptions {
  /** upstream: what depends on the entity (its blast radius); downstream: what it depends on */
  direction: "upstream" | "downstream" | "both";
  /** 1..MAX_HOPS */
  maxHops: number;
  /** report only these node kinds (traversal passes through every kind) */
  kinds?: NodeKind[];
}

export interface ImpactedEntity {
  id: string;
  kind: NodeKind;
  name: string;
  /** length of the shortest dependency path from the entity */
  hops: number;
}

export interface StoreImpact {
  upstream: ImpactedEntity[];
  downstream: ImpactedEntity[];
}

export interface GraphStore {
  readonly name: string;
  /** Creates schema/constraints idempotently (and migrates older schemas). */
  init(): Promise<void>;
  /**
   * Writes one batch of net changes atomically, together with the topology rev it brings the store to and the
   * outbox: the serialized deltas of this batch (published after the commit) — and drops outbox entries up to
   * `sentUpTo`, already published. A kill between commit and publish loses nothing: the next start re-publishes them.
   * A write that does not fit the store's memory fails with `too_large`, having stored nothing: the caller writes it
   * again in parts (splitChanges), each its own transaction with its own revs.
   */
  apply(changes: Changes, rev: number, outbox?: { entries: OutboxEntry[]; sentUpTo: number }, opts?: ApplyOptions): Promise<void>;
  /**
   * Moves what the store keeps in its log into its data files now, where it defers that (Kuzu's WAL, checkpointed
   * rarely since each checkpoint is costly); the topology service calls it when idle. Nothing changes for readers.
   */
  checkpoint(): Promise<void>;
  /** Outbox entries not yet confirmed as published, in rev order. */
  outbox(): Promise<OutboxEntry[]>;
  /** Everything stored, for rebuilding the live model after a restart. */
  load(): Promise<StoredGraph>;
  /** Read-only Cypher with bound parameters. */
  query(cypher: string, params?: Record<string, unknown>, opts?: QueryOptions): Promise<Record<string, unknown>[]>;
  /** The entity and its surroundings up to `hops` edges away (empty when the entity is not stored). */
  neighbourhood(id: string, opts: NeighbourhoodOptions): Promise<Neighbourhood>;
  /**
   * Impact over the stored graph, with the dependency semantics of pipelines/stages/impact.ts on the raw edges
   * (CONNECTS: src depends on dst; LISTENS and RUNS: dst depends on src). Each entity once, at its shortest distance.
   */
  impact(id: string, opts: ImpactOptions): Promise<StoreImpact>;
  /** The stored graph as a topology.snapshot.v1 at the stored rev. */
  exportSnapshot(): Promise<TopologySnapshot>;
  /**
   * Makes the registry's part of the graph (Component nodes, MATCHES to Entity nodes, DECLARES_DEPENDENCY between
   * components) equal to `g`, writing only what differs from what is stored, in one transaction. It is no part of
   * discovery: apply(), load() and exportSnapshot() neither touch nor return it, except that removing an Entity
   * removes the MATCHES edges to it. A match whose entity the store lacks is not written (the next put tries again).
   */
  putRegistry(g: RegistryGraphRows): Promise<RegistryWrite>;
  /** The registry's part as stored (rows sorted by id, src/dst). */
  loadRegistry(): Promise<RegistryGraphRows>;
  close(): Promise<void>;
}

/** A component as a graph node: the properties Cypher filters on (lists as lists). */
export interface RegistryComponentRow {
  id: string;
  name: string;
  category: string;
  lifecycle: string;
  privacy: string;
  location: string;
  language: string;
  framework: string;
  /** the first group among the owners (`payments`), '' when none */
  team: string;
  owners: string[];
  maintainers: string[];
  tags: string[];
  /** the registry's revision of the component */
  rev: number;
}

export interface RegistryGraphRows {
  components: RegistryComponentRow[];
  /** Component → Entity (a discovered service/process node) */
  matches: { component: string; entity: string }[];
  /** Component → Component */
  declares: { src: string; dst: string }[];
}

export interface RegistryWrite {
  componentsUpserted: number;
  componentsRemoved: number;
  matchesAdded: number;
  matchesRemoved: number;
  declaresAdded: number;
  declaresRemoved: number;
}

/** What turns the stored registry part into the wanted one (components first, their edges after). */
export interface RegistryDiff {
  upsert: RegistryComponentRow[];
  remove: string[];
  addMatches: { component: string; entity: string }[];
  delMatches: { component: string; entity: string }[];
  addDeclares: { src: string; dst: string }[];
  delDeclares: { src: string; dst: string }[];
}

const sameComponent = (a: RegistryComponentRow, b: RegistryComponentRow) =>
  (Object.keys(a) as (keyof RegistryComponentRow)[]).every((k) => JSON.stringify(a[k]) === JSON.stringify(b[k]));

/**
 * The difference between the stored registry part and the wanted one. Edges of removed components go with their
 * node (DETACH), so they are not listed; declared dependencies on components that are not wanted are dropped.
 */
/** What a registry write changes, as putRegistry answers it (both adapters). */
export function registryWriteCounts(d: RegistryDiff): RegistryWrite {
  return {
    componentsUpserted: d.upsert.length,
    componentsRemoved: d.remove.length,
    matchesAdded: d.addMatches.length,
    matchesRemoved: d.delMatches.length,
    declaresAdded: d.addDeclares.length,
    declaresRemoved: d.delDeclares.length,
  };
}

export function registryDiff(stored: RegistryGraphRows, wanted: RegistryGraphRows): RegistryDiff {
  const have = new Map(stored.components.map((c) => [c.id, c]));
  const want = new Map(wanted.components.map((c) => [c.id, c]));
  const upsert = [...want.values()].filter((c) => !have.has(c.id) || !sameComponent(have.get(c.id)!, c));
  const remove = [...have.keys()].filter((id) => !want.has(id));
  const mk = (m: { component: string; entity: string }) => `${m.component}\u0000${m.entity}`;
  const dk = (d: { src: string; dst: string }) => `${d.src}\u0000${d.dst}`;
  const haveM = new Set(stored.matches.map(mk));
  const wantM = new Map(wanted.matches.filter((m) => want.has(m.component)).map((m) => [mk(m), m]));
  const haveD = new Set(stored.declares.map(dk));
  const wantD = new Map(wanted.declares.filter((d) => want.has(d.src) && want.has(d.dst) && d.src !== d.dst).map((d) => [dk(d), d]));
  return {
    upsert,
    remove,
    addMatches: [...wantM].filter(([k]) => !haveM.has(k)).map(([, m]) => m),
    delMatches: stored.matches.filter((m) => want.has(m.component) && !wantM.has(mk(m))),
    addDeclares: [...wantD].filter(([k]) => !haveD.has(k)).map(([, d]) => d),
    delDeclares: stored.declares.filter((d) => want.has(d.src) && want.has(d.dst) && !wantD.has(dk(d))),
  };
}

/** A Component row as the port gives it (Kuzu stores an empty list as null). */
export function toComponent(r: Record<string, unknown>): RegistryComponentRow {
  const s = (v: unknown) => (v == null ? "" : String(v));
  const l = (v: unknown) => (Array.isArray(v) ? v.map(String) : []);
  return {
    id: s(r.id),
    name: s(r.name),
    category: s(r.category),
    lifecycle: s(r.lifecycle),
    privacy: s(r.privacy),
    location: s(r.location),
    language: s(r.language),
    framework: s(r.framework),
    team: s(r.team),
    owners: l(r.owners),
    maintainers: l(r.maintainers),
    tags: l(r.tags),
    rev: Number(r.rev ?? 0),
  };
}

export const sortRegistry = (g: RegistryGraphRows): RegistryGraphRows => ({
  components: [...g.components].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
  matches: [...g.matches].sort((a, b) => (a.component + "\u0000" + a.entity < b.component + "\u0000" + b.entity ? -1 : 1)),
  declares: [...g.declares].sort((a, b) => (a.src + "\u0000" + a.dst < b.src + "\u0000" + b.dst ? -1 : 1)),
});

export type GraphStoreErrorCode =
  | "read_only"
  | "timeout"
  | "too_many_rows"
  | "query_failed"
  | "write_failed"
  | "too_large"
  | "aborted"
  | "bad_request"
  | "unavailable";

/**
 * `unavailable`: the store cannot be reached or is refusing work for now (a consumer waits it out); `aborted`: the
 * caller abandoned the write (it is stopping; its input is redelivered); `bad_request` and `read_only`: the request
 * itself is wrong (never retried); `too_large`: the write did not fit the store's memory (split it); the rest are not
 * known to be either.
 */
export class GraphStoreError extends PortError<GraphStoreErrorCode> {
  override readonly name = "GraphStoreError";
  get kind(): FailureKind {
    if (this.code === "unavailable" || this.code === "aborted") return "transient";
    if (this.code === "bad_request" || this.code === "read_only") return "permanent";
    return "unknown";
  }
}

/** Items of a change set: what splitChanges counts. */
export function changeCount(c: Changes): number {
  return c.nodesUpserted.length + c.edgesUpserted.length + c.edgesRemoved.length + c.nodesRemoved.length;
}

/**
 * One change set as consecutive parts of at most `maxItems` items, in the order in which every prefix is a valid
 * graph (node upserts, edge upserts, edge removals, node removals: as the deltas are split), so each part can be its
 * own transaction. `created` is shared; the source intervals ride with the last part.
 */
export function splitChanges(c: Changes, maxItems: number): Changes[] {
  const max = Math.max(1, Math.floor(maxItems));
  if (changeCount(c) <= max) return [c];
  const parts: Changes[] = [];
  let cur: Changes | undefined;
  let n = 0;
  const next = () => {
    if (!cur || n === max) {
      cur = { nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [], created: c.created };
      parts.push(cur);
      n = 0;
    }
    n++;
    return cur;
  };
  for (const x of c.nodesUpserted) next().nodesUpserted.push(x);
  for (const x of c.edgesUpserted) next().edgesUpserted.push(x);
  for (const x of c.edgesRemoved) next().edgesRemoved.push(x);
  for (const x of c.nodesRemoved) next().nodesRemoved.push(x);
  if (c.sourceIntervals) parts.at(-1)!.sourceIntervals = c.sourceIntervals;
  if (c.rejected) parts[0]!.rejected = c.rejected;
  return parts;
}

/** Upper bound of variable-length patterns (neighbourhood, impact). */
export const MAX_HOPS = 10;

/**
 * A hop count that is about to be spliced into Cypher (`*1..N`: bounds of variable-length patterns cannot be
 * parameters in either engine). Only an integer 1..MAX_HOPS passes.
 */
export function validHops(n: unknown, what = "hops"): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > MAX_HOPS)
    throw new GraphStoreError("bad_request", `${what} must be an integer from 1 to ${MAX_HOPS} (got ${JSON.stringify(n)})`);
  return n;
}

export type CypherToken = { t: "word"; v: string } | { t: "punct"; v: string } | { t: "string" } | { t: "name" } | { t: "number" };

/**
 * Lexes Cypher the way Kuzu and Neo4j do, in ONE left-to-right pass: '…' and "…" strings with backslash escapes,
 * `…` names with `` as the escaped backtick (no backslash escapes there), // comments to the end of the line and
 * /* *\/ comments. Where the engines could disagree this errs toward seeing more code: a line comment ends at any
 * line or paragraph separator, and words are ASCII runs (a non-ASCII letter splits a word, never hides a keyword).
 * An unterminated string, name or comment is refused.
 */
export function tokenizeCypher(q: string): CypherToken[] {
  const out: CypherToken[] = [];
  let i = 0;
  const n = q.length;
  const unterminated = (what: string) => new GraphStoreError("query_failed", `unterminated ${what} in the query`);
  while (i < n) {
    const c = q[i]!;
    if (c === "'" || c === '"') {
      let j = i + 1;
      for (;;) {
        if (j >= n) throw unterminated("string literal");
        const d = q[j]!;
        if (d === "\\") j += 2;
        else if (d === c) break;
        else j++;
      }
      out.push({ t: "string" });
      i = j + 1;
    } else if (c === "`") {
      let j = i + 1;
      for (;;) {
        if (j >= n) throw unterminated("`name`");
        if (q[j] === "`") {
          if (q[j + 1] === "`") j += 2;
          else break;
        } else j++;
      }
      out.push({ t: "name" });
      i = j + 1;
    } else if (c === "/" && q[i + 1] === "/") {
      let j = i + 2;
      while (j < n && !/[\n\r\u2028\u2029\u0085\u000b\u000c]/.test(q[j]!)) j++;
      i = j;
    } else if (c === "/" && q[i + 1] === "*") {
      const end = q.indexOf("*/", i + 2);
      if (end < 0) throw unterminated("/* comment");
      i = end + 2;
    } else if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_]/.test(q[j]!)) j++;
      out.push({ t: "word", v: q.slice(i, j) });
      i = j;
    } else if (/[0-9]/.test(c)) {
      let j = i + 1;
      while (j < n && /[0-9]/.test(q[j]!)) j++;
      out.push({ t: "number" });
      i = j;
    } else if (/\s/.test(c)) i++;
    else {
      out.push({ t: "punct", v: c });
      i++;
    }
  }
  return out;
}

/** Clauses and commands that write data or schema, change sessions or transactions, or administer the server. */
const REFUSED = new Set(
  [
    "CREATE", "MERGE", "DELETE", "DETACH", "SET", "REMOVE", "DROP", "ALTER", "RENAME", "COPY", "LOAD", "INSTALL", "UNINSTALL",
    "ATTACH", "CHECKPOINT", "BEGIN", "COMMIT", "ROLLBACK", "IMPORT", "EXPORT", "FOREACH", "TERMINATE", "USE", "SHOW",
    "GRANT", "DENY", "REVOKE", "START", "STOP", "ENABLE", "DEALLOCATE", "REALLOCATE", "TRANSACTIONS",
  ],
);

/** Read-only procedures and table functions a user query may CALL (Kuzu table functions; Neo4j built-ins). */
const CALLABLE = new Set(
  [
    // Kuzu
    "show_tables", "table_info", "show_connection", "show_functions", "show_indexes", "show_sequences", "show_attached_databases",
    "show_projected_graphs", "show_loaded_extensions", "show_macros", "db_version", "current_setting",
    // Neo4j
    "db.labels", "db.relationshipTypes", "db.propertyKeys", "db.schema.visualization", "db.schema.nodeTypeProperties",
    "db.schema.relTypeProperties", "dbms.components",
  ].map((s) => s.toLowerCase()),
);

/**
 * Refuses Cypher that could write, or change or administer anything. Adapters also run user queries where the engine
 * refuses writes itself (Neo4j READ access mode, a Kuzu READ ONLY transaction); this check gives a clear error first.
 */
export function assertReadOnly(cypher: string): void {
  const toks = tokenizeCypher(cypher);
  const refuse = (why: string) => {
    throw new GraphStoreError("read_only", `read-only queries only: ${why}`);
  };
  for (let i = 0; i < toks.length; i++) {
    const tk = toks[i]!;
    if (tk.t === "punct" && tk.v === ";" && toks.slice(i + 1).length) refuse("one statement per query");
    if (tk.t !== "word") continue;
    const w = tk.v.toUpperCase();
    if (REFUSED.has(w)) refuse(`"${w}" is a write or admin clause`);
    if (w === "CALL") {
      const next = toks[i + 1];
      if (next?.t === "punct" && next.v === "{") continue; // a subquery: its clauses are checked like the rest
      const parts: string[] = [];
      let j = i + 1;
      for (;;) {
        const p = toks[j];
        if (p?.t !== "word") break;
        parts.push(p.v);
        const dot = toks[j + 1];
        if (dot?.t === "punct" && dot.v === ".") j += 2;
        else {
          j++;
          break;
        }
      }
      const name = parts.join(".");
      if (!CALLABLE.has(name.toLowerCase())) refuse(`CALL ${name || "of this"} is not allowed (read-only procedures only: ${[...CALLABLE].join(", ")})`);
      i = j - 1;
    }
  }
}
