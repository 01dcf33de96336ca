import { expect, test } from "bun:test";
import { applyDiscovery, emptyModel, modelFromGraph } from "../../../pipelines/stages/topology/index.ts";
import { batch, conn, edgesOf, hostSeen, listen, proc } from "../../helpers/discovery.ts";

test("after a restart, the first full scan confirms what exists (edges included, no flicker) and sweeps the rest of that source", () => {
  const m1 = emptyModel();
  const ev = [hostSeen(["10.0.0.1"]), listen(22, proc(1, "sshd")), listen(81, proc(2, "old")), conn("10.0.0.1", 40000, "10.0.0.7", 443, proc(1, "sshd"))];
  applyDiscovery(m1, batch(ev), 1);
  applyDiscovery(m1, batch([]), 2);
  expect(edgesOf(m1, "CONNECTS")).toEqual(["CONNECTS service:h1:sshd:22 external:10.0.0.7:443"]);
  const m2 = modelFromGraph([...m1.nodes.values()], [...m1.edges.values()]);
  const c = applyDiscovery(m2, batch([ev[0]!, ev[1]!, ev[3]!], { full: true }), 3);
  expect(c.nodesRemoved.sort()).toEqual(["listener:h1:tcp:0.0.0.0:81", "service:h1:old:81"]);
  expect(c.nodesUpserted).toEqual([]);
  expect(c.edgesUpserted).toEqual([]);
  expect(edgesOf(m2, "CONNECTS")).toEqual(["CONNECTS service:h1:sshd:22 external:10.0.0.7:443"]);
});
