import { expect, test } from "bun:test";
import type { DiscoveryEvent } from "../../../pipelines/contracts/discovery.ts";
import { applyDiscovery, emptyModel } from "../../../pipelines/stages/topology/index.ts";
import { batch, changed, hostSeen, listen, proc } from "../../helpers/discovery.ts";

test("seeing the same thing again is not a change (only lastSeen moves)", () => {
  const m = emptyModel();
  const ev: DiscoveryEvent[] = [hostSeen([]), listen(80, proc(1, "nginx"))];
  applyDiscovery(m, batch(ev), 1);
  const again = applyDiscovery(m, batch(ev), 2);
  expect(again).toEqual({ nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [], created: new Set() });
  expect(m.nodes.get("listener:h1:tcp:0.0.0.0:80")!.lastSeen).toBe(2);
});

test("a full scan removes what its source no longer lists, and nothing of another source", () => {
  const m = emptyModel();
  applyDiscovery(m, batch([hostSeen([]), listen(22, proc(1, "sshd")), listen(80, proc(2, "nginx"))]), 1);
  applyDiscovery(m, batch([hostSeen([], "h9"), listen(80, proc(3, "x"))], { host: "h9" }), 1);
  // two-part full scan: the removal happens only when both parts are in
  const p0 = applyDiscovery(m, batch([hostSeen([])], { full: true, scanId: 7, part: 0, parts: 2 }), 2);
  expect(p0.nodesRemoved).toEqual([]);
  const p1 = applyDiscovery(m, batch([listen(22, proc(1, "sshd"))], { full: true, scanId: 7, part: 1, parts: 2 }), 2);
  expect(p1.nodesRemoved.sort()).toEqual(["listener:h1:tcp:0.0.0.0:80", "service:h1:nginx:80"]);
  expect(m.nodes.has("listener:h9:tcp:0.0.0.0:80")).toBe(true);
});

test("several batches applied together net out: added then removed is no change at all", () => {
  const m = emptyModel();
  applyDiscovery(m, batch([hostSeen([])]), 1);
  const c = applyDiscovery(m, [batch([listen(8080, null, "::")]), batch([{ type: "listener.gone", proto: "tcp", ip: "::", port: 8080 }])], 2);
  expect(changed(c)).toBe(0);
  const d = applyDiscovery(m, batch([listen(8080, null, "::")]), 3);
  expect([...d.created!].sort()).toEqual(["LISTENS:host:h1->listener:h1:tcp:[::]:8080", "listener:h1:tcp:[::]:8080"]);
});
