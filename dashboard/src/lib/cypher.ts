/**
 * What the Cypher console reads from an answer (pure): the nodes and relationships anywhere in the rows, cell text,
 * and the error position the graph store gives (Kuzu: `(line: 2, offset: 4)`, Neo4j: `(line 2, column 5 (offset:
 * 14))`). The console's state is cypher.svelte.ts.
 */
export interface QueryError {
  code: string;
  message: string;
  /** 1-based, when the store said where */
  line?: number;
  column?: number;
}

/** Where in the query an error is, from the store's message; null when it does not say. */
export function errorPosition(message: string): { line: number; column: number } | null {
  // Neo4j: "(line 1, column 11 (offset: 10))"
  const neo = /line:? (\d+), column:? (\d+)/i.exec(message);
  if (neo) return { line: Number(neo[1]), column: Number(neo[2]) };
  // Kuzu: "(line: 2, offset: 0)", the offset being the 0-based column in that line
  const kuzu = /\(line: (\d+), offset: (\d+)\)/.exec(message);
  if (kuzu) return { line: Number(kuzu[1]), column: Number(kuzu[2]) + 1 };
  return null;
}

export interface GraphNode {
  key: string;
  /** the topology id when the node has one */
  id: string | null;
  label: string;
  kind: string;
}
export interface GraphRel {
  key: string;
  src: string;
  dst: string;
  type: string;
}

export type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
/** Kuzu's internal ids are `{offset, table}`, Neo4j's element ids strings: either becomes one key. */
const keyOf = (v: unknown): string => (isObj(v) ? `${String(v.table)}:${String(v.offset)}` : String(v));
const isNode = (v: Obj) => "_label" in v && "_id" in v && !("_src" in v);
const isRel = (v: Obj) => "_src" in v && "_dst" in v;

/**
 * The nodes and relationships anywhere in the rows (columns, lists, paths), each once. A relationship whose ends
 * were not returned gets placeholder nodes, so every drawn line has two ends.
 */
export function graphOf(rows: Obj[], limit = 500): { nodes: GraphNode[]; rels: GraphRel[]; truncated: boolean } {
  const nodes = new Map<string, GraphNode>();
  const rels = new Map<string, GraphRel>();
  let truncated = false;
  const visit = (v: unknown, depth: number) => {
    if (depth > 6) return;
    if (Array.isArray(v)) return v.forEach((x) => visit(x, depth + 1));
    if (!isObj(v)) return;
    if (isRel(v)) {
      const key = keyOf(v._id);
      if (!rels.has(key)) rels.set(key, { key, src: keyOf(v._src), dst: keyOf(v._dst), type: String(v._label ?? "") });
      return;
    }
    if (isNode(v)) {
      const key = keyOf(v._id);
      if (nodes.has(key)) return;
      if (nodes.size >= limit) {
        truncated = true;
        return;
      }
      const id = typeof v.id === "string" ? v.id : null;
      nodes.set(key, { key, id, label: String(v.name ?? v.id ?? v._label ?? key), kind: String(v.kind ?? v._label ?? "") });
      return;
    }
    // a path ({_nodes, _rels}) or a map: look inside
    for (const x of Object.values(v)) visit(x, depth + 1);
  };
  for (const r of rows) visit(r, 0);
  for (const r of rels.values())
    for (const end of [r.src, r.dst]) if (!nodes.has(end)) nodes.set(end, { key: end, id: null, label: "…", kind: "" });
  return { nodes: [...nodes.values()], rels: [...rels.values()].filter((r) => nodes.has(r.src) && nodes.has(r.dst)), truncated };
}

/** A cell of the result table: nodes and relationships by name, values as they are. */
export function cellText(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return `[${v.map(cellText).join(", ")}]`;
  if (isObj(v)) {
    if (isRel(v)) return `-[:${String(v._label)}]->`;
    if (isNode(v)) return `(${String(v.name ?? v.id ?? v._label)})`;
    if ("_nodes" in v && Array.isArray(v._nodes)) return `path of ${v._nodes.length} nodes`;
    return JSON.stringify(v);
  }
  return String(v);
}

/** The query "open in Cypher" starts from: the entity and what it is linked to, both ways. */
export function entityQuery(id: string): { query: string; params: Record<string, unknown> } {
  return { query: "MATCH (n:Entity {id: $id})-[r]-(m:Entity)\nRETURN n, r, m\nLIMIT 50", params: { id } };
}
