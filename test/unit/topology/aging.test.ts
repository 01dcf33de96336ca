import { expect, test } from "bun:test";
import { ageModel, applyDiscovery, emptyModel, modelFromGraph } from "../../../pipelines/stages/topology/index.ts";
import { batch, changed, conn, edgesOf, hostSeen, listen, proc } from "../../helpers/discovery.ts";

test("aging: a silent source goes stale (a change), comes back fresh, and is removed after removeAfter — only its own entities", () => {
  const m = emptyModel({ confirmScans: 1 });
  const aging = { intervalMs: 1000, staleAfter: 3, removeAfter: 6 };
  applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), listen(80, proc(1, "nginx"))], { at: 0 }), 0);
  applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "h2"), listen(5432, proc(1, "postgres")), conn("10.0.0.2", 40000, "10.0.0.1", 80, proc(9, "cli"))], { host: "h2", at: 0 }), 0);
  expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h2:cli:client listener:h1:tcp:0.0.0.0:80"]);
  // h2 keeps scanning, h1 goes silent
  const keepH2 = (t: number) => applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "h2")], { host: "h2", at: t }), t);
  keepH2(1000);
  expect(changed(ageModel(m, 2000, aging))).toBe(0);
  keepH2(2000);
  const stale = ageModel(m, 3000, aging);
  expect(stale.nodesUpserted.map((n) => [n.id, n.props.health]).sort()).toEqual([
    ["host:h1", "stale"],
    ["listener:h1:tcp:0.0.0.0:80", "stale"],
    ["service:h1:nginx:80", "stale"],
  ]);
  expect(changed(ageModel(m, 3500, aging))).toBe(0); // stale once
  // h1 speaks again: fresh
  const back = applyDiscovery(m, batch([hostSeen(["10.0.0.1"])], { at: 3600 }), 3600);
  expect(back.nodesUpserted.every((n) => n.props.health === undefined)).toBe(true);
  expect(back.nodesUpserted.length).toBe(3);
  // then silent for good: removed with everything it reported; h2's flow now leads to an external endpoint
  keepH2(8000);
  ageModel(m, 8000, aging);
  keepH2(9600);
  const removed = ageModel(m, 9600, aging);
  expect(removed.nodesRemoved.sort()).toEqual(["host:h1", "listener:h1:tcp:0.0.0.0:80", "service:h1:nginx:80"]);
  expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h2:cli:client external:10.0.0.1:80"]);
  expect(m.nodes.has("host:h2")).toBe(true);
  expect(m.sources.has("agent:h1")).toBe(false);
});

test("a source recovered from the store ages from the first ageModel after the restart, not from its old lastSeen", () => {
  const m1 = emptyModel();
  applyDiscovery(m1, batch([hostSeen([]), listen(22, proc(1, "sshd"))]), 1);
  const m2 = modelFromGraph([...m1.nodes.values()], [...m1.edges.values()]);
  const aging = { intervalMs: 1000, staleAfter: 3, removeAfter: 6 };
  expect(changed(ageModel(m2, 1_000_000, aging))).toBe(0);
  expect(changed(ageModel(m2, 1_002_000, aging))).toBe(0);
  expect(ageModel(m2, 1_003_000, aging).nodesUpserted.length).toBe(3);
  expect(ageModel(m2, 1_006_000, aging).nodesRemoved.length).toBe(3);
  expect(m2.nodes.size).toBe(0);
});
