import { expect, test } from "bun:test";
import { type Changes, summarizeRemovals } from "../../../pipelines/stages/topology/index.ts";

const changes = (nodes: number, edges: number, removals?: Changes["removals"]): Changes => ({
  nodesUpserted: [],
  nodesRemoved: Array.from({ length: nodes }, (_, i) => `n${i}`),
  edgesUpserted: [],
  edgesRemoved: Array.from({ length: edges }, (_, i) => ({ id: `e${i}`, kind: "CONNECTS" as const, src: "a", dst: "b" })),
  ...(removals ? { removals } : {}),
});

test("a small removal is not summarized; a large one is, by cause, with what no cause covers", () => {
  expect(summarizeRemovals(changes(5, 20), 1000)).toBeNull();
  expect(summarizeRemovals(changes(11, 0), 1000)).not.toBeNull(); // > 1% of the nodes
  expect(summarizeRemovals(changes(1001, 0), 1_000_000)).not.toBeNull(); // > 1000 nodes
  expect(summarizeRemovals(changes(90, 5000), 10_000)).toBeNull(); // churn closing many flows is not a collapse
  const s = summarizeRemovals(
    changes(60, 200, [
      { cause: "aging", source: "agent:a", nodes: 10, edges: 40, silentMs: 61_000, intervalMs: 5000 },
      { cause: "aging", source: "agent:b", nodes: 30, edges: 100, silentMs: 75_000, intervalMs: 6000 },
      { cause: "full-state", source: "agent:c", nodes: 5, edges: 10 },
    ]),
    1000,
  )!;
  expect(s.byCause.aging).toEqual({ sources: 2, nodes: 40, edges: 140, examples: ["agent:b", "agent:a"], silentMs: { min: 61_000, max: 75_000 }, intervalMs: { min: 5000, max: 6000 } });
  expect(s.byCause["full-state"]).toEqual({ sources: 1, nodes: 5, edges: 10, examples: ["agent:c"] });
  expect(s.unexplained).toEqual({ nodes: 15, edges: 50 });
  expect(s.reason).toBe("aging of 2 sources (40 nodes, 140 edges, silent 61-75 s); full-state of 1 source (5 nodes, 10 edges); deltas: connections closed past their grace, listeners gone (15 nodes, 50 edges)");
});
