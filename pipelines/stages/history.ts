/**
 * Topology history (pure): every node/edge change of a topology delta becomes one change row, the unit of the change
 * log in ClickHouse. "State at T" is, per entity id, its last row (by rev, then position in the delta) with ts ≤ T,
 * kept when that row is an upsert. Diff and replay are defined on the same rows:
 *   replay(from, to) = the rows with from < ts ≤ to, in rev order, so stateAt(from) + replay(from, to) = stateAt(to);
 *   diff(from, to)   = entities whose state differs between stateAt(from) and stateAt(to) (lastSeen ignored).
 */
import { z } from "zod";
import { EdgeKind, NodeKind, Props, TopoEdge, TopoNode, type TopologyDelta } from "../contracts/topology.ts";

export const ChangeOp = z.enum(["upsert", "remove"]);
export const ChangeEntity = z.enum(["node", "edge"]);

/** One row of the change log, as stored and as replayed to the dashboard's time slider. */
export const ChangeRow = z.object({
  rev: z.number().int().positive(),
  /** position of the item within its delta: orders two changes of one id in one rev */
  seq: z.number().int().nonnegative(),
  ts: z.number().int().nonnegative(),
  op: ChangeOp,
  entity: ChangeEntity,
  id: z.string().min(1),
  /** node kind or edge kind; '' when a removal's id does not say */
  kind: z.string(),
  src: z.string(),
  dst: z.string(),
  name: z.string(),
  source: z.string(),
  /** JSON of the entity's props ('{}' for removals) */
  props: z.string(),
  firstSeen: z.number().int().nonnegative(),
  lastSeen: z.number().int().nonnegative(),
});
export type ChangeRow = z.infer<typeof ChangeRow>;

const NODE_PREFIX = /^(host|process|listener|external):/;

/** Node kind from an id (`process:h1:42:7` → process); ids are built by the topology stage. */
export function nodeKindOfId(id: string): string {
  return NODE_PREFIX.exec(id)?.[1] ?? "";
}

/** `CONNECTS:src->dst` → its parts (edge ids are `${kind}:${src}->${dst}`, see topology.ts edgeId). */
export function parseEdgeId(id: string): { kind: EdgeKind; src: string; dst: string } | null {
  const colon = id.indexOf(":");
  const kind = EdgeKind.safeParse(id.slice(0, colon));
  const arrow = id.indexOf("->", colon);
  if (colon < 0 || !kind.success || arrow < 0) return null;
  return { kind: kind.data, src: id.slice(colon + 1, arrow), dst: id.slice(arrow + 2) };
}

/** The change rows of one delta, in the order the delta applies them. */
export function changeRows(d: Pick<TopologyDelta, "rev" | "at" | "nodesUpserted" | "nodesRemoved" | "edgesUpserted" | "edgesRemoved">): ChangeRow[] {
  const rows: ChangeRow[] = [];
  let seq = 0;
  const base = { rev: d.rev, ts: d.at };
  for (const n of d.nodesUpserted)
    rows.push({ ...base, seq: seq++, op: "upsert", entity: "node", id: n.id, kind: n.kind, src: "", dst: "", name: n.name, source: n.source, props: JSON.stringify(n.props), firstSeen: n.firstSeen, lastSeen: n.lastSeen });
  for (const e of d.edgesUpserted)
    rows.push({ ...base, seq: seq++, op: "upsert", entity: "edge", id: e.id, kind: e.kind, src: e.src, dst: e.dst, name: "", source: e.source, props: JSON.stringify(e.props), firstSeen: e.firstSeen, lastSeen: e.lastSeen });
  for (const id of d.edgesRemoved) {
    const p = parseEdgeId(id);
    rows.push({ ...base, seq: seq++, op: "remove", entity: "edge", id, kind: p?.kind ?? "", src: p?.src ?? "", dst: p?.dst ?? "", name: "", source: "", props: "{}", firstSeen: 0, lastSeen: 0 });
  }
  for (const id of d.nodesRemoved)
    rows.push({ ...base, seq: seq++, op: "remove", entity: "node", id, kind: nodeKindOfId(id), src: "", dst: "", name: "", source: "", props: "{}", firstSeen: 0, lastSeen: 0 });
  return rows;
}

export class HistoryRowError extends Error {
  override readonly name = "HistoryRowError";
}

/** The fields of a stored upsert row that make up an entity (what stateAt returns per id). */
export interface EntityRow {
  entity: "node" | "edge";
  id: string;
  kind: string;
  src: string;
  dst: string;
  name: string;
  source: string;
  /** the stored JSON text, or that text already parsed (state at T parses every row's props in one JSON.parse) */
  props: string | object;
  firstSeen: number;
  lastSeen: number;
}

const NODE_KINDS = new Set<string>(NodeKind.options);
const EDGE_KINDS = new Set<string>(EdgeKind.options);

/**
 * Props back from the store, checked against the Props contract (string ≤ 8192 | number | boolean | null, keys ≤ 128).
 * Checked by hand rather than with Props.safeParse: state at T parses hundreds of thousands of rows, and the schema
 * walk cost ~8 µs a row against ~0.5 µs for this loop.
 */
function parseProps(id: string, json: string | object): Props {
  let v: unknown = json;
  if (typeof json === "string") {
    try {
      v = JSON.parse(json);
    } catch {
      throw new HistoryRowError(`history row ${id}: props is not JSON`);
    }
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new HistoryRowError(`history row ${id}: props is not an object`);
  for (const k in v) {
    const x = (v as Record<string, unknown>)[k];
    const ok = k.length <= 128 && (x === null || typeof x === "number" || typeof x === "boolean" || (typeof x === "string" && x.length <= 8192));
    if (!ok) throw new HistoryRowError(`history row ${id}: props.${k.slice(0, 128)} is not a string, number, boolean or null within limits`);
  }
  return v as Props;
}

/**
 * A stored row back into a TopoNode / TopoEdge, checked on the way out of the store: the kinds against the contract's
 * enums, the props as above; the plain strings and numbers are typed by the query's column types.
 */
export function toNode(r: EntityRow): TopoNode {
  if (!NODE_KINDS.has(r.kind)) throw new HistoryRowError(`history row ${r.id}: node kind "${r.kind}" is not one of ${NodeKind.options.join(", ")}`);
  return { id: r.id, kind: r.kind as NodeKind, name: r.name, source: r.source, props: parseProps(r.id, r.props), firstSeen: r.firstSeen, lastSeen: r.lastSeen };
}

export function toEdge(r: EntityRow): TopoEdge {
  if (!EDGE_KINDS.has(r.kind)) throw new HistoryRowError(`history row ${r.id}: edge kind "${r.kind}" is not one of ${EdgeKind.options.join(", ")}`);
  return { id: r.id, kind: r.kind as EdgeKind, src: r.src, dst: r.dst, source: r.source, props: parseProps(r.id, r.props), firstSeen: r.firstSeen, lastSeen: r.lastSeen };
}

/** Same entity state, ignoring the hot lastSeen/firstSeen stamps. */
export function sameState(a: TopoNode | TopoEdge, b: TopoNode | TopoEdge): boolean {
  if (a.kind !== b.kind || a.source !== b.source) return false;
  if ("name" in a && "name" in b && a.name !== b.name) return false;
  if ("src" in a && "src" in b && (a.src !== b.src || a.dst !== b.dst)) return false;
  const ka = Object.keys(a.props);
  return ka.length === Object.keys(b.props).length && ka.every((k) => a.props[k] === b.props[k]);
}

export type DiffClass = "added" | "removed" | "changed" | null;

/** How one id's state moved between two times (undefined = absent then). */
export function classify<T extends TopoNode | TopoEdge>(before: T | undefined, after: T | undefined): DiffClass {
  if (!before) return after ? "added" : null;
  if (!after) return "removed";
  return sameState(before, after) ? null : "changed";
}

export interface DiffSet<T> {
  added: T[];
  removed: T[];
  changed: { before: T; after: T }[];
}

export interface TopologyDiff {
  from: number;
  to: number;
  nodes: DiffSet<TopoNode>;
  edges: DiffSet<TopoEdge>;
}

export const TopologyDiffSchema = z.object({
  from: z.number(),
  to: z.number(),
  nodes: z.object({ added: z.array(TopoNode), removed: z.array(TopoNode), changed: z.array(z.object({ before: TopoNode, after: TopoNode })) }),
  edges: z.object({ added: z.array(TopoEdge), removed: z.array(TopoEdge), changed: z.array(z.object({ before: TopoEdge, after: TopoEdge })) }),
});

export function emptyDiff(from: number, to: number): TopologyDiff {
  return { from, to, nodes: { added: [], removed: [], changed: [] }, edges: { added: [], removed: [], changed: [] } };
}

/** Adds one id's before/after to a diff. */
export function addToDiff(diff: TopologyDiff, entity: "node" | "edge", before: EntityRow | undefined, after: EntityRow | undefined): void {
  if (entity === "node") {
    const b = before && toNode(before);
    const a = after && toNode(after);
    const c = classify(b, a);
    if (c === "added") diff.nodes.added.push(a!);
    else if (c === "removed") diff.nodes.removed.push(b!);
    else if (c === "changed") diff.nodes.changed.push({ before: b!, after: a! });
  } else {
    const b = before && toEdge(before);
    const a = after && toEdge(after);
    const c = classify(b, a);
    if (c === "added") diff.edges.added.push(a!);
    else if (c === "removed") diff.edges.removed.push(b!);
    else if (c === "changed") diff.edges.changed.push({ before: b!, after: a! });
  }
}
