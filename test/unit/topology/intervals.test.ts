// A source that declares how often it reports (a scheduled job) is aged by that interval, not the agents' seconds —
// also after a restart, from the intervals the store keeps.
import { expect, test } from "bun:test";
import type { TopoEdge, TopoNode } from "../../../pipelines/contracts/topology.ts";
import { ageModel, applyDiscovery, emptyModel, modelFromGraph, type Changes } from "../../../pipelines/stages/topology/index.ts";
import { batch, hostSeen, listen } from "../../helpers/discovery.ts";

const HOUR = 3_600_000;
const aging = { intervalMs: 5000, staleAfter: 3, removeAfter: 12 };
const job = "job:tcp-scan:db1";

/** What a graph store keeps of the changes (nodes, edges, source intervals). */
function store() {
  const nodes = new Map<string, TopoNode>();
  const edges = new Map<string, TopoEdge>();
  const intervals: Record<string, number> = {};
  return {
    nodes,
    intervals,
    apply(c: Changes) {
      for (const n of c.nodesUpserted) nodes.set(n.id, n);
      for (const e of c.edgesUpserted) edges.set(e.id, e);
      for (const id of c.nodesRemoved) nodes.delete(id);
      for (const e of c.edgesRemoved) edges.delete(e.id);
      for (const [id, ms] of Object.entries(c.sourceIntervals ?? {})) ms > 0 ? (intervals[id] = ms) : delete intervals[id];
    },
    graph: (): [TopoNode[], TopoEdge[]] => [[...nodes.values()], [...edges.values()]],
  };
}

const scanResult = (t: number, intervalMs?: number) =>
  batch([hostSeen([], "db1"), listen(5432, null, "10.0.0.5")], { source: job, host: "db1", full: true, at: t, ...(intervalMs ? { intervalMs } : {}) });

test("an hourly job's results stay between its runs; an undeclared one ages by the agents' interval", () => {
  const m = emptyModel({ confirmScans: 1 });
  const s = store();
  const first = applyDiscovery(m, scanResult(0, HOUR), 0);
  expect(first.sourceIntervals).toEqual({ [job]: HOUR });
  s.apply(first);
  expect(s.nodes.has("listener:db1:tcp:10.0.0.5:5432")).toBe(true);
  // 10 minutes of silence: nothing goes stale (3 × 1 h), nothing is removed
  s.apply(ageModel(m, 10 * 60_000, aging));
  expect(s.nodes.get("listener:db1:tcp:10.0.0.5:5432")?.props.health).toBeUndefined();
  // the same run again declares the same interval: nothing to write for it
  expect(applyDiscovery(m, scanResult(HOUR, HOUR), HOUR).sourceIntervals).toBeUndefined();
  // silent for 3 h → stale, 12 h → removed, and its interval with it
  s.apply(ageModel(m, HOUR + 3 * HOUR, aging));
  expect(s.nodes.get("listener:db1:tcp:10.0.0.5:5432")?.props.health).toBe("stale");
  const gone = ageModel(m, HOUR + 12 * HOUR, aging);
  expect(gone.nodesRemoved).toContain("listener:db1:tcp:10.0.0.5:5432");
  expect(gone.sourceIntervals).toEqual({ [job]: 0 });
  s.apply(gone);
  expect(s.intervals).toEqual({});

  // without a declared interval the same result is removed after 12 × 5 s
  const m2 = emptyModel({ confirmScans: 1 });
  applyDiscovery(m2, scanResult(0), 0);
  expect(ageModel(m2, 60_000, aging).nodesRemoved).toContain("listener:db1:tcp:10.0.0.5:5432");
});

test("after a restart the declared interval comes back from the store", () => {
  const m = emptyModel({ confirmScans: 1 });
  const s = store();
  s.apply(applyDiscovery(m, scanResult(0, HOUR), 0));
  const [nodes, edges] = s.graph();
  const restarted = modelFromGraph(nodes, edges, { confirmScans: 1 }, s.intervals);
  ageModel(restarted, 1000, aging); // the clock of recovered sources starts at the first ageing
  expect(changedIds(ageModel(restarted, 1000 + 30 * 60_000, aging))).toEqual([]);
  expect(ageModel(restarted, 1000 + 12 * HOUR, aging).nodesRemoved).toContain("listener:db1:tcp:10.0.0.5:5432");
  // and without it the restarted model would have dropped the job's results a minute later
  const forgetful = modelFromGraph(nodes, edges, { confirmScans: 1 });
  ageModel(forgetful, 1000, aging);
  expect(ageModel(forgetful, 1000 + 60_000, aging).nodesRemoved).toContain("listener:db1:tcp:10.0.0.5:5432");
});

test("a batch with an out-of-range interval is refused by the contract", async () => {
  const { DiscoveryBatch } = await import("../../../pipelines/contracts/discovery.ts");
  expect(DiscoveryBatch.safeParse({ ...scanResult(0), intervalMs: 10 }).success).toBe(false);
  expect(DiscoveryBatch.safeParse({ ...scanResult(0), intervalMs: HOUR }).success).toBe(true);
});

function changedIds(c: Changes): string[] {
  return [...c.nodesUpserted.map((n) => n.id), ...c.nodesRemoved, ...c.edgesUpserted.map((e) => e.id), ...c.edgesRemoved.map((e) => e.id)];
}
