/**
 * How topology nodes and edges become rows of the Kuzu schema (services/graph/kuzu.ts) and back, and the helper that
 * keeps a few per-row statements in flight on the writer's connection.
 */
import type { EdgeKind, TopoEdge, TopoNode } from "../../pipelines/contracts/topology.ts";
import { storedProps } from "./port.ts";

export const CREATE_NODE =
  "CREATE (n:Entity {id: $id, kind: $kind, name: $name, source: $source, host: $host, port: $port, exe: $exe, props: $props, firstSeen: $firstSeen, lastSeen: $lastSeen, owner: $owner, updateTag: $updateTag})";

/**
 * Statements of one phase of a write (rows independent of each other) kept in flight on the writer's connection.
 * Kuzu runs them one at a time under the connection's lock, each binding its own parameters; having the next one
 * queued hides the binding's hand-off between them (bench discovery's churn rate rose by about 70% with 4 in flight).
 */
const IN_FLIGHT = 4;

/** Runs `f` over `rows` with up to IN_FLIGHT at once; on a failure, starts no more and rethrows once all settled. */
export async function inFlight<T>(rows: T[], f: (row: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: { error: unknown } | null = null;
  const worker = async () => {
    while (!failed && next < rows.length) {
      const row = rows[next++]!;
      try {
        await f(row);
      } catch (error) {
        failed ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, rows.length) }, worker));
  if (failed) throw (failed as { error: unknown }).error;
}
/** An Entity's string columns: a node whose strings are all as stored is written without a string set (rewriteNodes). */
export const NODE_STRINGS = ["kind", "name", "source", "host", "exe", "props", "owner"] as const;
/** Column order of the tables, as COPY from a file takes them (migrated columns were appended in this order too). */
export const NODE_COPY_COLS = ["id", "kind", "name", "source", "host", "port", "exe", "props", "firstSeen", "lastSeen", "owner", "updateTag"] as const;
export const EDGE_COPY_COLS = ["src", "dst", "id", "source", "props", "firstSeen", "lastSeen", "updateTag"] as const;

export const NODE_COLS = "n.id AS id, n.kind AS kind, n.name AS name, n.source AS source, n.props AS props, n.firstSeen AS firstSeen, n.lastSeen AS lastSeen";

export function edgeQuery(k: EdgeKind, where: string): string {
  return `MATCH (a:Entity)-[e:${k}]->(b:Entity) ${where} RETURN e.id AS id, a.id AS src, b.id AS dst, e.source AS source, e.props AS props, e.firstSeen AS firstSeen, e.lastSeen AS lastSeen`;
}

export const toNode = (r: Record<string, unknown>, unreadable?: string[]) => ({ ...r, props: storedProps(r.props, r.id, unreadable) }) as TopoNode;
export const toEdge = (r: Record<string, unknown>, kind: EdgeKind, unreadable?: string[]) => ({ ...r, kind, props: storedProps(r.props, r.id, unreadable) }) as TopoEdge;

/** A row as stored; `updateTag` is the topology rev of the write (cartography's update tag). */
export function nodeRow(n: TopoNode, updateTag: number) {
  const p = n.props;
  return {
    id: n.id,
    kind: n.kind,
    name: n.name,
    source: n.source,
    // Kuzu cannot bind an UNWIND column whose values are all null: '' and 0 stand for "none".
    host: typeof p.host === "string" ? p.host : n.kind === "host" ? n.id.slice(5) : "",
    port: typeof p.port === "number" ? p.port : 0,
    exe: typeof p.exe === "string" ? p.exe : "",
    owner: typeof p.owner === "string" ? p.owner : "",
    props: JSON.stringify(p),
    firstSeen: n.firstSeen,
    lastSeen: n.lastSeen,
    updateTag,
  };
}

export function edgeRow(e: TopoEdge, updateTag: number) {
  return { id: e.id, src: e.src, dst: e.dst, source: e.source, props: JSON.stringify(e.props), firstSeen: e.firstSeen, lastSeen: e.lastSeen, updateTag };
}

/**
 * Kuzu returns BigInt for INT64 and node/rel objects with internal ids: make rows JSON-safe. A path (a recursive rel)
 * already arrives as {_nodes, _rels}, the shape the Neo4j adapter gives its paths.
 */
export function plain(v: any): any {
  if (typeof v === "bigint") return Number(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = plain(x);
    return o;
  }
  return v;
}
