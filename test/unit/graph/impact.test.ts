/** Impact analysis on a hand-built estate (lb → web → app → db, each on its host) and against a brute-force oracle. */
import { describe, expect, test } from "bun:test";
import type { EdgeKind, NodeKind, TopoEdge, TopoNode, TopologyDelta } from "../../../pipelines/contracts/topology.ts";
import { applyDelta, emptyMirror, type Mirror } from "../../../pipelines/stages/apply-delta.ts";
import { dependencyOf, impact, ImpactIndex } from "../../../pipelines/stages/impact.ts";
import { HealthImpact } from "../../../pipelines/stages/health-impact.ts";
import { edgeId } from "../../../pipelines/stages/topology/ids.ts";

const node = (id: string, kind: NodeKind): TopoNode => ({ id, kind, name: id, source: "test", props: {}, firstSeen: 1, lastSeen: 1 });
const edge = (kind: EdgeKind, src: string, dst: string): TopoEdge => ({ id: edgeId(kind, src, dst), kind, src, dst, source: "test", props: {}, firstSeen: 1, lastSeen: 1 });

/** lb → web → app → db: each tier a process on its own host, serving one listener, calling the next tier's listener. */
function chain(): Mirror {
  const m = emptyMirror();
  const nodes: TopoNode[] = [];
  const edges: TopoEdge[] = [];
  const tiers = ["lb", "web", "app", "db"];
  for (const t of tiers) {
    nodes.push(node(`host:${t}`, "host"), node(`process:${t}`, "process"), node(`listener:${t}`, "listener"));
    edges.push(edge("RUNS", `host:${t}`, `process:${t}`), edge("LISTENS", `process:${t}`, `listener:${t}`));
  }
  for (let i = 0; i + 1 < tiers.length; i++) edges.push(edge("CONNECTS", `process:${tiers[i]}`, `listener:${tiers[i + 1]}`));
  nodes.push(node("external:8.8.8.8:53", "external"));
  edges.push(edge("CONNECTS", "process:app", "external:8.8.8.8:53"));
  applyDelta(m, { rev: 1, nodesUpserted: nodes, edgesUpserted: edges, nodesRemoved: [], edgesRemoved: [] });
  return m;
}

const hopsOf = (a: { id: string; hops: number }[]) => Object.fromEntries(a.map((x) => [x.id, x.hops]));

describe("dependency semantics", () => {
  test("CONNECTS: caller depends on callee; LISTENS and RUNS: the served/run end depends on its server/host", () => {
    expect(dependencyOf({ kind: "CONNECTS", src: "p", dst: "l" })).toEqual({ dependant: "p", dependency: "l" });
    expect(dependencyOf({ kind: "LISTENS", src: "p", dst: "l" })).toEqual({ dependant: "l", dependency: "p" });
    expect(dependencyOf({ kind: "RUNS", src: "h", dst: "p" })).toEqual({ dependant: "p", dependency: "h" });
  });
});

describe("impact on the lb → web → app → db chain", () => {
  const ix = ImpactIndex.fromMirror(chain());

  test("upstream of the database process: its listener, then every caller tier, with path lengths", () => {
    const r = impact(ix, { ids: ["process:db"], direction: "up", hops: 10 });
    expect(hopsOf(r.upstream)).toEqual({ "listener:db": 1, "process:app": 2, "listener:app": 3, "process:web": 4, "listener:web": 5, "process:lb": 6, "listener:lb": 7 });
    expect(r.downstream).toEqual([]);
    expect(r.upstream.find((a) => a.id === "process:app")).toEqual({ id: "process:app", kind: "process", hops: 2, via: "listener:db" });
    expect(r.truncated).toBe(false);
  });

  test("a host's failure reaches its processes and their dependants; hosts of callers are not affected", () => {
    const r = impact(ix, { ids: ["host:db"], direction: "up", hops: 10 });
    expect(hopsOf(r.upstream)).toEqual({ "process:db": 1, "listener:db": 2, "process:app": 3, "listener:app": 4, "process:web": 5, "listener:web": 6, "process:lb": 7, "listener:lb": 8 });
  });

  test("downstream of the load balancer: everything it relies on, hosts and the external endpoint included", () => {
    const r = impact(ix, { ids: ["process:lb"], direction: "down", hops: 10 });
    expect(hopsOf(r.downstream)).toEqual({
      "host:lb": 1,
      "listener:web": 1,
      "process:web": 2,
      "host:web": 3,
      "listener:app": 3,
      "process:app": 4,
      "host:app": 5,
      "listener:db": 5,
      "external:8.8.8.8:53": 5,
      "process:db": 6,
      "host:db": 7,
    });
  });

  test("hops bound the walk; kind filters select what is reported, not what is traversed", () => {
    expect(hopsOf(impact(ix, { ids: ["process:db"], direction: "up", hops: 2 }).upstream)).toEqual({ "listener:db": 1, "process:app": 2 });
    const procs = impact(ix, { ids: ["listener:db"], direction: "up", hops: 10, kinds: ["process"] });
    expect(hopsOf(procs.upstream)).toEqual({ "process:app": 1, "process:web": 3, "process:lb": 5 });
  });

  test("both directions, several roots (hops from the nearest), unknown ids reported as missing, limit truncates", () => {
    const r = impact(ix, { ids: ["listener:app", "process:web", "nope"], direction: "both", hops: 1 });
    expect(r.roots).toEqual(["listener:app", "process:web"]);
    expect(r.missing).toEqual(["nope"]);
    expect(hopsOf(r.upstream)).toEqual({ "listener:web": 1 });
    expect(hopsOf(r.downstream)).toEqual({ "process:app": 1, "host:web": 1 });
    const t = impact(ix, { ids: ["process:db"], direction: "up", hops: 10, limit: 3 });
    expect(t.upstream.length).toBe(3);
    expect(t.truncated).toBe(true);
  });

  test("deltas keep the index current: a removed call cuts the blast radius; a gap or old rev is refused", () => {
    const m = chain();
    const ix2 = ImpactIndex.fromMirror(m);
    const d: TopologyDelta = { schema: "topology.delta.v1", rev: 2, at: 2, nodesUpserted: [], nodesRemoved: ["process:lb"], edgesUpserted: [], edgesRemoved: [edgeId("CONNECTS", "process:app", "listener:db"), edgeId("CONNECTS", "process:lb", "listener:web")] };
    expect(ix2.applyDelta(d)).toBe(true);
    expect(hopsOf(impact(ix2, { ids: ["process:db"], direction: "up", hops: 10 }).upstream)).toEqual({ "listener:db": 1 });
    expect(impact(ix2, { ids: ["listener:web"], direction: "up", hops: 10 }).upstream).toEqual([]);
    expect(impact(ix2, { ids: ["process:lb"], direction: "both", hops: 3 }).missing).toEqual(["process:lb"]);
    expect(ix2.applyDelta({ ...d, rev: 2 })).toBe(false);
    expect(ix2.applyDelta({ ...d, rev: 4 })).toBe(false);
    expect(ix2.rev).toBe(2);
    const re = edge("CONNECTS", "process:app", "listener:db");
    expect(ix2.applyDelta({ rev: 3, nodesUpserted: [], nodesRemoved: [], edgesUpserted: [re], edgesRemoved: [] })).toBe(true);
    // process:lb is gone, so the walk ends at the web tier's listener
    expect(hopsOf(impact(ix2, { ids: ["process:db"], direction: "up", hops: 10 }).upstream)).toEqual({ "listener:db": 1, "process:app": 2, "listener:app": 3, "process:web": 4, "listener:web": 5 });
  });
});

/** Brute force: scan every edge at every step. */
function oracle(m: Mirror, roots: string[], dir: "up" | "down", hops: number): Record<string, number> {
  const dist = new Map(roots.map((r) => [r, 0]));
  let frontier = new Set(roots);
  for (let h = 1; h <= hops; h++) {
    const next = new Set<string>();
    for (const e of m.edges.values()) {
      const { dependant, dependency } = dependencyOf(e);
      const [from, to] = dir === "up" ? [dependency, dependant] : [dependant, dependency];
      if (frontier.has(from) && !dist.has(to)) next.add(to);
    }
    for (const n of next) dist.set(n, h);
    frontier = next;
  }
  for (const r of roots) dist.delete(r);
  return Object.fromEntries(dist);
}

describe("random graphs", () => {
  test("the incrementally updated index answers like a brute-force scan and like a fresh index", () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const kinds: NodeKind[] = ["host", "process", "listener", "external"];
    const ekinds: EdgeKind[] = ["RUNS", "LISTENS", "CONNECTS"];
    const m = emptyMirror();
    const ix = ImpactIndex.fromMirror(m);
    for (let rev = 1; rev <= 60; rev++) {
      const ids = [...m.nodes.keys()];
      const nodesUpserted = Array.from({ length: 8 }, () => {
        const i = Math.floor(rnd() * 120);
        return node(`n${i}`, kinds[i % 4]!);
      });
      const all = [...new Set([...ids, ...nodesUpserted.map((n) => n.id)])];
      const edgesUpserted = Array.from({ length: 12 }, () => edge(ekinds[Math.floor(rnd() * 3)]!, all[Math.floor(rnd() * all.length)]!, all[Math.floor(rnd() * all.length)]!));
      const edgesRemoved = [...m.edges.keys()].filter(() => rnd() < 0.05);
      const nodesRemoved = ids.filter(() => rnd() < 0.02);
      // as the topology stage does: a removed node's edges are removed with it
      for (const e of m.edges.values()) if (nodesRemoved.includes(e.src) || nodesRemoved.includes(e.dst)) edgesRemoved.push(e.id);
      const d = { rev, nodesUpserted, nodesRemoved, edgesUpserted: edgesUpserted.filter((e) => !nodesRemoved.includes(e.src) && !nodesRemoved.includes(e.dst)), edgesRemoved: [...new Set(edgesRemoved)] };
      applyDelta(m, d);
      expect(ix.applyDelta(d)).toBe(true);
    }
    const fresh = ImpactIndex.fromMirror(m);
    expect(ix.size).toEqual(fresh.size);
    expect(ix.size).toEqual({ nodes: m.nodes.size, edges: m.edges.size });
    let compared = 0;
    for (const root of [...m.nodes.keys()].slice(0, 40)) {
      for (const dir of ["up", "down"] as const) {
        const want = oracle(m, [root], dir, 4);
        const got = hopsOf(impact(ix, { ids: [root], direction: dir, hops: 4 })[dir === "up" ? "upstream" : "downstream"]);
        expect(got).toEqual(want);
        expect(hopsOf(impact(fresh, { ids: [root], direction: dir, hops: 4 })[dir === "up" ? "upstream" : "downstream"])).toEqual(want);
        compared += Object.keys(want).length;
      }
    }
    expect(compared).toBeGreaterThan(100);
  });
});

describe("health impact (HealthImpact): what unhealthy entities affect, kept incrementally", () => {
  const entries = (ch: { impact: { id: string; hops: number; causes: { id: string }[] }[] }) =>
    Object.fromEntries(ch.impact.map((e) => [e.id, { hops: e.hops, causes: e.causes.map((c) => c.id) }]));

  test("a critical db listener impacts its callers with hops, colours the edges into it; ok clears both", () => {
    const m = chain();
    const hi = new HealthImpact({ hops: 10 });
    hi.reset(m);
    hi.setHealth("listener:db", "critical");
    const ch = hi.flush();
    expect(entries(ch)).toEqual({
      "process:app": { hops: 1, causes: ["listener:db"] },
      "listener:app": { hops: 2, causes: ["listener:db"] },
      "process:web": { hops: 3, causes: ["listener:db"] },
      "listener:web": { hops: 4, causes: ["listener:db"] },
      "process:lb": { hops: 5, causes: ["listener:db"] },
      "listener:lb": { hops: 6, causes: ["listener:db"] },
    });
    expect(ch.impact.every((e) => e.health === "critical" && e.causesTotal === 1)).toBe(true);
    expect(ch.edges).toEqual([{ id: edgeId("CONNECTS", "process:app", "listener:db"), src: "process:app", dst: "listener:db", health: "critical", cause: "listener:db" }]);
    expect(hi.flush()).toEqual({ impact: [], impactCleared: [], edges: [], edgesCleared: [] });
    hi.setHealth("listener:db", "ok");
    const cleared = hi.flush();
    expect(cleared.impact).toEqual([]);
    expect(cleared.impactCleared.sort()).toEqual(["listener:app", "listener:lb", "listener:web", "process:app", "process:lb", "process:web"]);
    expect(cleared.edgesCleared).toEqual([edgeId("CONNECTS", "process:app", "listener:db")]);
    expect(hi.state()).toEqual({ impact: [], edges: [] });
  });

  test("two causes: nearest first, worst health wins; an unhealthy host colours the calls into its processes' listeners", () => {
    const hi = new HealthImpact({ hops: 3 });
    hi.reset(chain());
    hi.setHealth("host:db", "warning");
    hi.setHealth("process:app", "critical");
    hi.flush();
    const web = hi.impactOf("process:web")!;
    // process:web → listener:app → process:app (2 hops); → … → host:db is 5 hops away, beyond hops=3
    expect(web).toEqual({ id: "process:web", health: "critical", hops: 2, causes: [{ id: "process:app", health: "critical", hops: 2 }], causesTotal: 1 });
    const app = hi.impactOf("process:app")!;
    expect(app).toMatchObject({ health: "warning", hops: 3, causes: [{ id: "host:db", hops: 3 }] });
    const edges = hi.state().edges.map((e) => [e.id, e.health, e.cause]);
    expect(edges.sort()).toEqual(
      [
        [edgeId("CONNECTS", "process:app", "listener:db"), "warning", "host:db"],
        [edgeId("CONNECTS", "process:web", "listener:app"), "critical", "process:app"],
      ].sort(),
    );
  });

  test("topology deltas re-walk only what they touch: a removed call clears its callers, a new one adds them; same as a fresh computation", () => {
    const m = chain();
    const hi = new HealthImpact({ hops: 10 });
    hi.reset(m);
    hi.setHealth("process:db", "critical");
    hi.flush();
    const cut: TopologyDelta = { schema: "topology.delta.v1", rev: 2, at: 2, nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [edgeId("CONNECTS", "process:app", "listener:db")] };
    applyDelta(m, cut);
    expect(hi.applyDelta(cut)).toBe(true);
    const ch = hi.flush();
    expect(ch.impactCleared.sort()).toEqual(["listener:app", "listener:lb", "listener:web", "process:app", "process:lb", "process:web"]);
    expect(ch.edgesCleared).toEqual([edgeId("CONNECTS", "process:app", "listener:db")]);
    expect(Object.keys(entries({ impact: hi.state().impact }))).toEqual(["listener:db"]);
    // a new caller appears and calls the db
    const add: TopologyDelta = { schema: "topology.delta.v1", rev: 3, at: 3, nodesUpserted: [node("process:batch", "process")], nodesRemoved: [], edgesUpserted: [edge("CONNECTS", "process:batch", "listener:db")], edgesRemoved: [] };
    applyDelta(m, add);
    expect(hi.applyDelta(add)).toBe(true);
    expect(entries(hi.flush())).toEqual({ "process:batch": { hops: 2, causes: ["process:db"] } });
    expect(hi.applyDelta({ ...add, rev: 5 })).toBe(false);
    const fresh = new HealthImpact({ hops: 10 });
    fresh.reset(m);
    fresh.setHealth("process:db", "critical");
    fresh.flush();
    const sortById = <T extends { id: string }>(a: T[]) => [...a].sort((x, y) => x.id.localeCompare(y.id));
    expect(sortById(hi.state().impact)).toEqual(sortById(fresh.state().impact));
    expect(sortById(hi.state().edges)).toEqual(sortById(fresh.state().edges));
  });

  test("a root the graph does not have yet is walked once its node arrives", () => {
    const m = emptyMirror();
    const hi = new HealthImpact();
    hi.reset(m);
    hi.setHealth("listener:x", "warning");
    expect(hi.flush().impact).toEqual([]);
    const d: TopologyDelta = { schema: "topology.delta.v1", rev: 1, at: 1, nodesUpserted: [node("listener:x", "listener"), node("process:c", "process")], nodesRemoved: [], edgesUpserted: [edge("CONNECTS", "process:c", "listener:x")], edgesRemoved: [] };
    expect(hi.applyDelta(d)).toBe(true);
    expect(entries(hi.flush())).toEqual({ "process:c": { hops: 1, causes: ["listener:x"] } });
  });
});
