/**
 * Large removals, explained: a change set that removes many nodes (a collapse in the graph's counts) is summarized
 * with the causes the stage recorded (Changes.removals), so the service can log why the graph shrank.
 */
import type { Changes, Removal } from "./model.ts";

/**
 * A removal is large when it takes more than this share of the graph's nodes, or more than LARGE_REMOVAL_ITEMS nodes.
 * Edges do not count: ordinary churn at 10k hosts closes thousands of flows per change set, and a warning on every
 * one would bury the collapses this is for.
 */
export const LARGE_REMOVAL_SHARE = 0.01;
export const LARGE_REMOVAL_ITEMS = 1000;

export interface CauseSummary {
  /** sources it removed entities of */
  sources: number;
  nodes: number;
  edges: number;
  /** a few of those sources, the largest first */
  examples: string[];
  /** aging: the longest and shortest silence of the sources removed, and the intervals they were judged by */
  silentMs?: { min: number; max: number };
  intervalMs?: { min: number; max: number };
}

export interface RemovalSummary {
  nodesRemoved: number;
  edgesRemoved: number;
  /** nodes in the graph before the change set */
  nodesBefore: number;
  byCause: Partial<Record<Removal["cause"], CauseSummary>>;
  /** what no recorded cause covers: flows closed past their grace, listeners and services gone in deltas */
  unexplained: { nodes: number; edges: number };
  /** one line: the causes, largest first */
  reason: string;
}

/** The summary of a change set's removals when they are large (see LARGE_REMOVAL_SHARE), else null. */
export function summarizeRemovals(c: Changes, nodesBefore: number): RemovalSummary | null {
  const nodes = c.nodesRemoved.length;
  const edges = c.edgesRemoved.length;
  if (nodes <= LARGE_REMOVAL_SHARE * nodesBefore && nodes <= LARGE_REMOVAL_ITEMS) return null;
  const byCause: RemovalSummary["byCause"] = {};
  const range = (r: { min: number; max: number } | undefined, v: number | undefined) => (v === undefined ? r : { min: Math.min(r?.min ?? v, v), max: Math.max(r?.max ?? v, v) });
  let explainedNodes = 0;
  let explainedEdges = 0;
  const sorted = [...(c.removals ?? [])].sort((a, b) => b.nodes + b.edges - (a.nodes + a.edges));
  for (const r of sorted) {
    const s = (byCause[r.cause] ??= { sources: 0, nodes: 0, edges: 0, examples: [] });
    s.sources++;
    s.nodes += r.nodes;
    s.edges += r.edges;
    if (s.examples.length < 5) s.examples.push(r.source);
    const silent = range(s.silentMs, r.silentMs);
    const interval = range(s.intervalMs, r.intervalMs);
    if (silent) s.silentMs = silent;
    if (interval) s.intervalMs = interval;
    explainedNodes += r.nodes;
    explainedEdges += r.edges;
  }
  const unexplained = { nodes: Math.max(0, nodes - explainedNodes), edges: Math.max(0, edges - explainedEdges) };
  const parts = Object.entries(byCause)
    .sort(([, a], [, b]) => b.nodes + b.edges - (a.nodes + a.edges))
    .map(([cause, s]) => `${cause} of ${s.sources} source${s.sources === 1 ? "" : "s"} (${s.nodes} nodes, ${s.edges} edges${s.silentMs ? `, silent ${Math.round(s.silentMs.min / 1000)}-${Math.round(s.silentMs.max / 1000)} s` : ""})`);
  if (unexplained.nodes || unexplained.edges) parts.push(`deltas: connections closed past their grace, listeners gone (${unexplained.nodes} nodes, ${unexplained.edges} edges)`);
  return { nodesRemoved: nodes, edgesRemoved: edges, nodesBefore, byCause, unexplained, reason: parts.join("; ") };
}
