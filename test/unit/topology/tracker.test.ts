import { expect, test } from "bun:test";
import type { TopoNode } from "../../../pipelines/contracts/topology.ts";
import { emptyModel } from "../../../pipelines/stages/topology/model.ts";
import { Tracker } from "../../../pipelines/stages/topology/tracker.ts";

const node = (id: string, props: TopoNode["props"] = {}, lastSeen = 1): TopoNode => ({ id, kind: "host", name: id, source: "agent:h1", props, firstSeen: 1, lastSeen });

test("only net changes: a node touched and put back as it was is no change; lastSeen alone is none either", () => {
  const m = emptyModel();
  m.nodes.set("host:a", node("host:a", { os: "Debian" }));
  const t = new Tracker(m);
  t.touchNode("host:a");
  m.nodes.delete("host:a");
  m.nodes.set("host:a", node("host:a", { os: "Debian" }, 9));
  expect(t.result()).toEqual({ nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [], created: new Set() });
});

test("new, changed and removed entities, with the new ones in created; a forced id is emitted though unchanged", () => {
  const m = emptyModel();
  m.nodes.set("host:a", node("host:a", { os: "Debian" }));
  m.nodes.set("host:b", node("host:b"));
  m.nodes.set("host:c", node("host:c"));
  const t = new Tracker(m);
  t.touchNode("host:a");
  m.nodes.set("host:a", node("host:a", { os: "Alpine" }));
  t.touchNode("host:b");
  m.nodes.delete("host:b");
  t.touchNode("host:new");
  m.nodes.set("host:new", node("host:new"));
  t.force("host:c", false);
  const c = t.result();
  expect(c.nodesUpserted.map((n) => n.id)).toEqual(["host:a", "host:new", "host:c"]);
  expect(c.nodesRemoved).toEqual(["host:b"]);
  expect([...c.created!]).toEqual(["host:new"]);
});

test("the state before the call is what the first touch saw", () => {
  const m = emptyModel();
  m.nodes.set("host:a", node("host:a", { os: "Debian" }));
  const t = new Tracker(m);
  t.touchNode("host:a");
  m.nodes.set("host:a", node("host:a", { os: "Alpine" }));
  t.touchNode("host:a");
  expect(t.nodeBefore("host:a")!.props.os).toBe("Debian");
});
