// lastSeen reaches the graph store in a bounded trickle: at most lastSeenPersistMs behind the model, a capped number
// of refreshes per call, so "edges not seen for a day" in Cypher is right to within that period.
import { expect, test } from "bun:test";
import type { TopoEdge, TopoNode } from "../../../pipelines/contracts/topology.ts";
import { ageModel, applyDiscovery, emptyModel, modelFromGraph, type Changes, type TopologyModel } from "../../../pipelines/stages/topology/index.ts";
import { batch, changed, conn, hostSeen, listen, proc } from "../../helpers/discovery.ts";

/** What the graph store holds: the changes written to it. */
function store() {
  const rows = new Map<string, TopoNode | TopoEdge>();
  return {
    rows,
    apply(c: Changes) {
      for (const n of c.nodesUpserted) rows.set(n.id, { ...n });
      for (const e of c.edgesUpserted) rows.set(e.id, { ...e });
      for (const id of c.nodesRemoved) rows.delete(id);
      for (const e of c.edgesRemoved) rows.delete(e.id);
    },
  };
}
/** The most the store's lastSeen trails the model's, over everything. */
function maxLag(m: TopologyModel, s: ReturnType<typeof store>) {
  let lag = 0;
  for (const x of [...m.nodes.values(), ...m.edges.values()]) lag = Math.max(lag, x.lastSeen - s.rows.get(x.id)!.lastSeen);
  return lag;
}

test("refreshes come once lastSeenPersistMs after the last write, capped per call, oldest first, only lastSeen changed", () => {
  const m = emptyModel({ confirmScans: 1, lastSeenPersistMs: 1000, lastSeenPersistMaxPerBatch: 2 });
  const s = store();
  const scan = (t: number) => applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), listen(80, proc(1, "nginx"))], { at: t }), t);
  s.apply(scan(0));
  expect(s.rows.size).toBe(5); // host, listener, service, LISTENS, RUNS
  for (let t = 100; t < 1000; t += 100) expect(changed(scan(t))).toBe(0); // seen again: model only
  const refreshes: string[][] = [];
  for (let t = 1000; t <= 1400; t += 100) {
    const c = scan(t);
    expect(c.nodesUpserted.length + c.edgesUpserted.length).toBeLessThanOrEqual(2);
    expect(c.created!.size).toBe(0);
    for (const x of [...c.nodesUpserted, ...c.edgesUpserted]) {
      const before = s.rows.get(x.id)!;
      expect({ ...x, lastSeen: 0 }).toEqual({ ...before, lastSeen: 0 }); // nothing else differs
      expect(x.lastSeen).toBe(t);
    }
    s.apply(c);
    refreshes.push([...c.nodesUpserted, ...c.edgesUpserted].map((x) => x.id));
  }
  expect(refreshes.map((r) => r.length)).toEqual([2, 2, 1, 0, 0]);
  expect(new Set(refreshes.flat()).size).toBe(5);
  expect(maxLag(m, s)).toBeLessThanOrEqual(1000);
});

test("an open connection's edge, DEPENDS_ON and external node are seen at each scan of their source; what nothing sees is not rewritten", () => {
  const m = emptyModel({ confirmScans: 1, lastSeenPersistMs: 1000, lastSeenPersistMaxPerBatch: 50 });
  const s = store();
  s.apply(applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "db"), listen(5432, proc(1, "postgres"))], { host: "db", at: 0 }), 0));
  s.apply(applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), conn("10.0.0.1", 40000, "10.0.0.9", 443, proc(2, "app")), conn("10.0.0.1", 40001, "10.0.0.2", 5432, proc(2, "app"))], { at: 0 }), 0));
  // h1 keeps scanning (deltas with nothing new: its connections stay open); db goes quiet
  for (let t = 100; t <= 2500; t += 100) s.apply(applyDiscovery(m, batch([], { at: t }), t));
  const ids = ["CONNECTS:service:h1:app:client->external:10.0.0.9:443", "DEPENDS_ON:service:h1:app:client->service:db:postgres:5432", "external:10.0.0.9:443"];
  for (const id of ids) expect(s.rows.get(id)!.lastSeen).toBeGreaterThanOrEqual(2500 - 1000);
  expect(s.rows.get("host:h1")!.lastSeen).toBe(0); // no host.seen since
  expect(s.rows.get("host:db")!.lastSeen).toBe(0);
  // h1 goes silent too: they reach its last scan, and advance no further however often the model is aged
  for (let t = 2600; t <= 6000; t += 100) s.apply(ageModel(m, t, { intervalMs: 100_000 }));
  for (const id of ids) expect(s.rows.get(id)!.lastSeen).toBe(2500);
  expect(maxLag(m, s)).toBe(0);
});

test("at scale the trickle is bounded per call and keeps every stored lastSeen within the period", () => {
  const P = 10_000;
  const m = emptyModel({ confirmScans: 1, lastSeenPersistMs: P, lastSeenPersistMaxPerBatch: 200 });
  const s = store();
  const hosts = 150; // 1350 entities: 135 due a second, within the cap of 200 per call at one call a second
  const scanAll = (t: number) => {
    const bs = Array.from({ length: hosts }, (_, i) => batch([hostSeen([`10.1.${i >> 8}.${i & 255}`], `h${i}`), listen(80, proc(1, "nginx")), listen(22, proc(2, "sshd"))], { host: `h${i}`, at: t }));
    return applyDiscovery(m, bs, t);
  };
  s.apply(scanAll(0));
  const total = m.nodes.size + m.edges.size;
  let refreshed = 0;
  for (let t = 1000; t <= 60_000; t += 1000) {
    const c = scanAll(t);
    const n = c.nodesUpserted.length + c.edgesUpserted.length;
    expect(n).toBeLessThanOrEqual(200);
    refreshed += n;
    s.apply(c);
    // Everything was written at t=0, so the first period ends in a burst, worked off 200 a call; after that the
    // writes are spread out and the lag stays within the period plus one call's spacing.
    expect(maxLag(m, s)).toBeLessThanOrEqual(P + Math.ceil(total / 200) * 1000);
    if (t >= 2 * P) expect(maxLag(m, s)).toBeLessThanOrEqual(P + 1000);
  }
  // about one write per entity per period, not one per scan
  expect(refreshed).toBeLessThanOrEqual(total * (60_000 / P + 1));
  expect(refreshed).toBeGreaterThanOrEqual(total * (60_000 / P - 2));
});

test("after a restart, what the store holds is what was written: old lastSeen values are refreshed first", () => {
  const m1 = emptyModel({ confirmScans: 1 });
  applyDiscovery(m1, batch([hostSeen([], "old"), listen(22, proc(1, "sshd"))], { host: "old", at: 0 }), 0);
  applyDiscovery(m1, batch([hostSeen([], "new"), listen(22, proc(1, "sshd"))], { host: "new", at: 0 }), 5000);
  const m2 = modelFromGraph([...m1.nodes.values()], [...m1.edges.values()], { confirmScans: 1, lastSeenPersistMs: 1000, lastSeenPersistMaxPerBatch: 3 });
  const c = applyDiscovery(m2, [batch([hostSeen([], "old"), listen(22, proc(1, "sshd"))], { host: "old", full: true, at: 9000 }), batch([hostSeen([], "new"), listen(22, proc(1, "sshd"))], { host: "new", full: true, at: 9000 })], 9000);
  expect(c.nodesUpserted.length + c.edgesUpserted.length).toBe(3);
  expect([...c.nodesUpserted, ...c.edgesUpserted].every((x) => x.id.includes("old"))).toBe(true);
});

test("lastSeenPersistMs 0 keeps lastSeen in the model only", () => {
  const m = emptyModel({ confirmScans: 1, lastSeenPersistMs: 0 });
  applyDiscovery(m, batch([hostSeen([])], { at: 0 }), 0);
  expect(changed(applyDiscovery(m, batch([hostSeen([])], { at: 1e9 }), 1e9))).toBe(0);
  expect(m.nodes.get("host:h1")!.lastSeen).toBe(1e9);
});
