/**
 * Pure pieces of the time slider's replay (lib/timetravel.svelte.ts): change rows from GET /api/topology/replay back
 * into topology.delta.v1 frames, and where the next page starts when a page was cut at its row limit.
 */
import type { TopoEdge, TopoNode, TopologyDelta } from "../../../pipelines/contracts/topology.ts";
import type { ChangeRow } from "../../../pipelines/stages/history.ts";

/** One rev's change rows → the delta they came from (rows of one rev share its ts and come in changeRows order). */
export function deltaOfRows(rows: ChangeRow[]): TopologyDelta {
  const first = rows[0];
  if (!first) throw new Error("no rows");
  const d: TopologyDelta = { schema: "topology.delta.v1", rev: first.rev, at: first.ts, nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] };
  for (const r of rows) {
    if (r.rev !== first.rev) throw new Error(`rows of revs ${first.rev} and ${r.rev} in one delta`);
    if (r.op === "remove") (r.entity === "node" ? d.nodesRemoved : d.edgesRemoved).push(r.id);
    else if (r.entity === "node")
      d.nodesUpserted.push({ id: r.id, kind: r.kind as TopoNode["kind"], name: r.name, source: r.source, props: JSON.parse(r.props), firstSeen: r.firstSeen, lastSeen: r.lastSeen });
    else
      d.edgesUpserted.push({ id: r.id, kind: r.kind as TopoEdge["kind"], src: r.src, dst: r.dst, source: r.source, props: JSON.parse(r.props), firstSeen: r.firstSeen, lastSeen: r.lastSeen });
  }
  return d;
}

/** Consecutive rows of one rev, in order. */
export function groupByRev(rows: ChangeRow[]): ChangeRow[][] {
  const out: ChangeRow[][] = [];
  for (const r of rows) {
    const last = out[out.length - 1];
    if (last && last[0]!.rev === r.rev) last.push(r);
    else out.push([r]);
  }
  return out;
}

/**
 * What a replay page for (from, to] adds. `fetchedTo`: every row with ts ≤ it is now known. A page cut at its limit
 * keeps only whole milliseconds (a delta's rows share its ts, and ts grows with rev) and the next page asks from the
 * last kept one — replay's `from` is exclusive, so asking from the last row's own ts would skip the rest of its delta.
 * When one millisecond holds more rows than a page, `jumpTo` says to load the state at that time instead.
 */
export function cutPage(page: { changes: ChangeRow[]; truncated: boolean }, to: number): { rows: ChangeRow[]; fetchedTo: number } | { jumpTo: number } {
  if (!page.truncated || !page.changes.length) return { rows: page.changes, fetchedTo: to };
  const lastTs = page.changes[page.changes.length - 1]!.ts;
  const rows = page.changes.filter((r) => r.ts < lastTs);
  return rows.length ? { rows, fetchedTo: lastTs - 1 } : { jumpTo: lastTs };
}
