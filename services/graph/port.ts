/**
 * GraphStore: the port every graph adapter implements (Kuzu embedded, Neo4j). The topology service writes net changes
 * in batches; readers ask read-only Cypher. One contract suite (./contract.ts) runs against every adapter.
 */
import type { TopoEdge, TopoNode } from "../../pipelines/contracts/topology.ts";
import type { Changes } from "../../pipelines/stages/topology.ts";

export interface StoredGraph {
  /** last topology rev written */
  rev: number;
  nodes: TopoNode[];
  edges: TopoEdge[];
}

export interface OutboxEntry {
  rev: number;
  body: string;
}

export interface QueryOptions {
  /** abort the query after this many ms */
  timeoutMs?: number;
  /** refuse to return more rows than this */
  maxRows?: number;
}

export interface GraphStore {
  readonly name: string;
  /** Creates schema/constraints idempotently. */
  init(): Promise<void>;
  /**
   * Writes one batch of net changes atomically, together with the topology rev it brings the store to and the
   * outbox: the serialized deltas of this batch (published after the commit) — and drops outbox entries up to
   * `sentUpTo`, already published. A kill between commit and publish loses nothing: the next start re-publishes them.
   */
  apply(changes: Changes, rev: number, outbox?: { entries: OutboxEntry[]; sentUpTo: number }): Promise<void>;
  /** Outbox entries not yet confirmed as published, in rev order. */
  outbox(): Promise<OutboxEntry[]>;
  /** Everything stored, for rebuilding the live model after a restart. */
  load(): Promise<StoredGraph>;
  /** Read-only Cypher with bound parameters. */
  query(cypher: string, params?: Record<string, unknown>, opts?: QueryOptions): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

export class GraphStoreError extends Error {
  override readonly name = "GraphStoreError";
  constructor(
    readonly code: "read_only" | "timeout" | "too_many_rows" | "query_failed" | "write_failed",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Refuses Cypher that writes. Adapters also run queries in read mode where the engine has one (Neo4j READ access);
 * this check gives a clear error first and covers engines without a read mode (Kuzu).
 */
const WRITE_CLAUSE = /\b(CREATE|MERGE|DELETE|DETACH|SET|REMOVE|DROP|ALTER|COPY|LOAD|INSTALL|ATTACH|DETACH|CHECKPOINT|BEGIN|COMMIT|ROLLBACK|IMPORT|EXPORT|FOREACH)\b/i;
export function assertReadOnly(cypher: string): void {
  // Ignore string literals and comments so `WHERE n.name = 'CREATE'` is allowed.
  const stripped = cypher
    .replace(/'(?:[^'\\]|\\.)*'/g, "''")
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/`[^`]*`/g, "``")
    .replace(/\/\/.*$/gm, "")
    .replace(/\/\*[\s\S]*?\*\//g, "");
  const m = WRITE_CLAUSE.exec(stripped);
  if (m) throw new GraphStoreError("read_only", `read-only queries only: "${m[1]!.toUpperCase()}" is a write or admin clause`);
  if (/\bCALL\b/i.test(stripped) && !/\bCALL\s+(show_|table_info|db\.|dbms\.components)/i.test(stripped))
    throw new GraphStoreError("read_only", "read-only queries only: CALL of procedures is not allowed");
}
