/**
 * Views over a simulated estate's graph (the real topology stage's output, test/unit/views/estate-graph.ts): grouping,
 * opening, folding, link counts, layers, focus, filters, names, the mark bound at 10k hosts, and that a graph followed
 * delta by delta gives the same views as one built afresh.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import type { HealthState } from "../../../pipelines/contracts/health.ts";
import { type Mark, VIEW_MAX_MARKS, ViewSpec, type ViewSpecInput } from "../../../pipelines/contracts/view.ts";
import { computeView, HealthMaps, layerMarks, ViewDiffer, ViewGraph, type ViewResult } from "../../../pipelines/stages/views/index.ts";
import { churnDelta, estateGraph, type EstateGraph, plannedEstateGraph } from "./estate-graph.ts";

let eg: EstateGraph;
let g: ViewGraph;
const none = new HealthMaps();
const view = (spec: ViewSpecInput, health = none, graph = g): ViewResult => computeView({ graph, health, spec: ViewSpec.parse(spec), now: 1_800_000_000_000 });
const byId = (r: ViewResult) => new Map(r.marks.map((m) => [m.id, m]));
const ORDERS_1 = "service:sim-app-1:image:registry.example/orders:8080,8081";

beforeAll(() => {
  eg = estateGraph(100);
  g = ViewGraph.fromMirror(eg.mirror);
});

describe("grouping", () => {
  test("by tier: one group per tier and one for externals, holding every entity once", () => {
    const r = view({});
    expect(r.marks.map((m) => m.id).sort()).toEqual(["group:external", ...["app", "cache", "db", "lb", "monitor", "queue", "web"].map((t) => `group:tier:${t}`)].sort());
    expect(r.marks.reduce((n, m) => n + m.count, 0)).toBe(eg.mirror.nodes.size);
    const app = byId(r).get("group:tier:app")!;
    const onApp = [...eg.mirror.nodes.values()].filter((n) => (n.kind === "host" ? n.name : String(n.props.host ?? "")).startsWith("sim-app-"));
    expect(app.count).toBe(onApp.length);
    expect(app.counts).toEqual({ host: 40, process: 200, listener: onApp.filter((n) => n.kind === "listener").length });
    expect(app).toMatchObject({ kind: "group", label: "app", sublabel: "tier", health: "ok", impacted: false });
    expect(byId(r).get("group:external")).toMatchObject({ label: "external", count: 4, counts: { external: 4 } });
    const byKind = (k: string) => [...eg.mirror.nodes.values()].filter((n) => n.kind === k).length;
    expect(r.summary).toMatchObject({ hosts: 100, services: 500, listeners: byKind("listener"), externals: byKind("external"), nodes: eg.mirror.nodes.size, edges: eg.mirror.edges.size, marks: 8 });
  });

  test("by team, owner, component, site and host", () => {
    const team = byId(view({ groupBy: "team" }));
    // the orders service's own annotation; sshd without one sits with its host's team
    expect(team.get("group:team:orders")!.counts.process).toBe(40);
    expect(team.has("group:team:infra")).toBe(true);
    expect(team.get("group:team:orders")!.team).toBe("orders");
    const component = byId(view({ groupBy: "component" }));
    expect(component.get("group:component:orders")!.counts).toMatchObject({ process: 40 });
    expect(component.get("group:component:postgres")!.counts).toMatchObject({ process: 10 });
    expect(component.get("group:component:hosts")!.counts).toEqual({ host: 100 });
    expect([...view({ groupBy: "site" }).marks.map((m) => m.id)].sort()).toEqual(["group:external", "group:site:unknown"]);
    // every host has an owner here, so a service without its own sits with its host's
    const owners = view({ groupBy: "owner" }).marks.filter((m) => m.id !== "group:external");
    expect(owners.length).toBeGreaterThan(3);
    expect(owners.every((m) => /^[a-z]+$/.test(m.label) && m.owner === m.label)).toBe(true);
    const hosts = byId(view({ groupBy: "host" }));
    expect(hosts.size).toBe(101);
    expect(hosts.get("group:host:sim-app-1")).toMatchObject({ label: "sim-app-1", entityId: "host:sim-app-1", count: 1 + 5 + 5 });
  });
});

describe("opening and folding", () => {
  test("an open group shows its hosts, an open host its services with their ports folded in", () => {
    const r = view({ open: ["group:tier:db", "host:sim-db-1"] });
    const m = byId(r);
    expect(m.get("group:tier:db")).toMatchObject({ open: true, count: 10 + 50 + 40 });
    expect(r.marks.filter((x) => x.parent === "group:tier:db")).toHaveLength(10);
    const pg = m.get("service:sim-db-1:postgres:5432")!;
    expect(pg).toMatchObject({ kind: "service", label: "postgres", sublabel: "on sim-db-1", parent: "host:sim-db-1", ports: [5432], count: 2, entityId: "service:sim-db-1:postgres:5432" });
    // listeners are folded: no listener marks
    expect(r.marks.some((x) => x.kind === "listener")).toBe(false);
    // a host's services sit inside it; its own count is itself plus them and their listeners
    expect(m.get("host:sim-db-1")).toMatchObject({ open: true, kind: "host", label: "sim-db-1", counts: { host: 1, process: 5, listener: 4 } });
  });

  test("an open service shows its processes and listeners: calls leave from the process mark and arrive at listeners", () => {
    const r = view({ open: [ORDERS_1], level: "groups" });
    const m = byId(r);
    // its group and host were opened on the way
    expect(m.get("group:tier:app")!.open).toBe(true);
    expect(m.get("host:sim-app-1")!.open).toBe(true);
    const kids = r.marks.filter((x) => x.parent === ORDERS_1);
    expect(kids.map((k) => k.kind).sort()).toEqual(["listener", "listener", "process"]);
    expect(kids.find((k) => k.kind === "process")!.label).toMatch(/^java pid \d+/);
    expect(kids.filter((k) => k.kind === "listener").map((k) => k.label).sort()).toEqual(["tcp/8080", "tcp/8081"]);
    const proc = kids.find((k) => k.kind === "process")!.id;
    expect(r.links.filter((l) => l.kind === "listens" && l.src === proc)).toHaveLength(2);
    expect(r.links.some((l) => l.kind === "calls" && l.src === proc && l.dst === "group:tier:db")).toBe(true);
    expect(r.links.some((l) => l.kind === "calls" && l.dst === "listener:sim-app-1:tcp:0.0.0.0:8080")).toBe(true);
  });

  test("calls between two marks are one link whose count is the calls under it", () => {
    const r = view({});
    const hostOf = (id: string) => String(eg.mirror.nodes.get(id)?.props.host ?? "");
    const tierOfHost = (h: string) => h.split("-")[1];
    const webToApp = [...eg.mirror.edges.values()].filter((e) => e.kind === "CONNECTS" && tierOfHost(hostOf(e.src)) === "web" && tierOfHost(hostOf(e.dst)) === "app").length;
    expect(webToApp).toBeGreaterThan(0);
    expect(r.links.find((l) => l.id === "calls:group:tier:web->group:tier:app")).toMatchObject({ src: "group:tier:web", dst: "group:tier:app", kind: "calls", count: webToApp, health: "ok" });
    // no link inside a mark
    expect(r.links.every((l) => l.src !== l.dst)).toBe(true);
  });

  test("layers follow call depth: load balancers, then web, then app, then what app depends on", () => {
    const m = byId(view({}));
    const layer = (t: string) => m.get(`group:tier:${t}`)!.layer;
    expect(layer("lb")).toBeLessThan(layer("web"));
    expect(layer("web")).toBeLessThan(layer("app"));
    expect(layer("app")).toBeLessThan(layer("db"));
    expect(layer("app")).toBeLessThan(layer("cache"));
    expect(m.get("group:external")!.layer).toBeGreaterThan(layer("app"));
    // a cycle is cut where the walk (in id order) closes it, the same way every time
    expect(Object.fromEntries(layerMarks(["c", "a", "b"], [{ src: "a", dst: "b" }, { src: "b", dst: "c" }, { src: "c", dst: "a" }]))).toEqual({ a: 0, b: 1, c: 2 });
  });
});

describe("focus and filters", () => {
  test("focus down from an app service reaches what it calls, up reaches its callers, within the hops", () => {
    const down = view({ level: "services", focus: { id: ORDERS_1, hops: 1, dir: "down" } });
    const services = (r: ViewResult) => r.marks.filter((m) => m.kind === "service").map((m) => m.label);
    expect(new Set(services(down))).toEqual(new Set(["orders", "redis", "postgres", "Kafka"]));
    expect(down.marks.some((m) => m.kind === "external" || (m.kind === "group" && m.id === "group:external"))).toBe(true);
    const up = view({ level: "services", focus: { id: ORDERS_1, hops: 1, dir: "up" } });
    expect(new Set(services(up))).toEqual(new Set(["orders", "nginx"]));
    const two = view({ level: "services", focus: { id: ORDERS_1, hops: 2, dir: "up" } });
    expect(services(two)).toContain("haproxy");
    // a group focuses on all it holds
    const g2 = view({ focus: { id: "group:tier:lb", hops: 1, dir: "down" } });
    expect(g2.marks.map((m) => m.id).sort()).toEqual(["group:tier:lb", "group:tier:queue", "group:tier:web"]);
    const g3 = view({ focus: { id: "group:tier:lb", hops: 1, dir: "up" } });
    expect(g3.marks.map((m) => m.id).sort()).toEqual(["group:tier:lb", "group:tier:monitor"]);
  });

  test("filters keep what matches and what contains it: kind, health, team, tag, port, text", () => {
    const health = new HealthMaps();
    const state: HealthState = {
      schema: "health.state.v1",
      seq: 1,
      at: 1,
      entities: [{ id: "service:sim-db-2:postgres:5432", health: "critical", alerts: ["fp"] }, { id: "host:sim-web-3", health: "warning", alerts: ["fp2"] }],
      edges: [],
      impact: [{ id: ORDERS_1, health: "critical", hops: 2, causes: [{ id: "service:sim-db-2:postgres:5432", health: "critical", hops: 2 }], causesTotal: 1 }],
    };
    health.apply(state);
    const crit = view({ filters: { health: ["critical"] }, level: "services" }, health);
    expect(crit.marks.map((m) => m.id).sort()).toEqual(["group:tier:db", "host:sim-db-2", "service:sim-db-2:postgres:5432"]);
    expect(byId(crit).get("group:tier:db")).toMatchObject({ health: "critical", healthCounts: { critical: 1, warning: 0, stale: 0, impacted: 0 } });
    const imp = view({ filters: { health: ["impacted"] } }, health);
    expect(imp.marks.find((m) => m.id === "group:tier:app")).toMatchObject({ impacted: true, count: 2 });
    const all = view({}, health);
    expect(all.summary).toMatchObject({ worst: "critical", criticals: 1, warnings: 1, impactedServices: 1, healthKnown: true });
    expect(byId(all).get("group:tier:web")!.health).toBe("warning");

    const kinds = view({ filters: { kinds: ["external"] } });
    expect(kinds.marks.map((m) => m.id)).toEqual(["group:external"]);
    const hostsOnly = view({ filters: { kinds: ["host"] } });
    expect(hostsOnly.marks.reduce((n, m) => n + m.count, 0)).toBe(100);
    const team = view({ filters: { team: "streaming" }, level: "services" });
    expect(new Set(team.marks.filter((m) => m.kind === "service").map((m) => m.label))).toEqual(new Set(["Kafka"]));
    const port = view({ filters: { port: 6379 }, level: "services" });
    expect(new Set(port.marks.filter((m) => m.kind === "service").map((m) => m.label))).toEqual(new Set(["redis"]));
    const tag = view({ filters: { tag: "team=orders" }, level: "services" });
    expect(tag.marks.filter((m) => m.kind === "service")).toHaveLength(40);
    const q = view({ filters: { q: "SIM-DB-1" }, level: "services" });
    expect(q.marks.filter((m) => m.kind === "host").map((m) => m.label).sort()).toEqual(["sim-db-1", "sim-db-10"]);
  });
});

test("names people use: orders on sim-app-3, hosts by name; the fingerprint stays in the entity", () => {
  const r = view({ open: ["group:tier:app", "host:sim-app-3"] });
  const orders = r.marks.find((m) => m.parent === "host:sim-app-3" && m.label === "orders")!;
  expect(orders.sublabel).toBe("on sim-app-3");
  expect(orders.entityId).toBe("service:sim-app-3:image:registry.example/orders:8080,8081");
  expect(orders.team).toBe("orders");
  expect(r.marks.filter((m) => m.parent === "group:tier:app").every((m) => /^sim-app-\d+$/.test(m.label))).toBe(true);
  expect(r.marks.some((m) => m.label.startsWith("image:"))).toBe(false);
});

test("a graph followed delta by delta gives the views a fresh one gives, and the diff turns one view into the next", () => {
  const live = estateGraph(60, { seed: 2 });
  const followed = ViewGraph.fromMirror(live.mirror);
  const specs: ViewSpecInput[] = [{}, { groupBy: "team", level: "hosts" }, { groupBy: "host", open: ["group:host:sim-app-2"] }, { level: "services" }];
  for (const s of specs) view(s, none, followed); // the groupings' caches exist before the deltas
  const differ = new ViewDiffer();
  let prev = view({ level: "services" }, none, followed);
  differ.reset(prev);
  for (let i = 0; i < 3; i++) {
    const d = churnDelta(live.mirror, live.mirror.rev + 1, { restarts: 5, moves: 5 });
    followed.applyDelta(d);
    const fresh = ViewGraph.fromMirror(live.mirror);
    for (const s of specs) expect(view(s, none, followed)).toEqual(view(s, none, fresh));
    const next = view({ level: "services" }, none, followed);
    const change = differ.diff(next)!;
    expect(change).not.toBeNull();
    const marks = new Map(prev.marks.map((m) => [m.id, m]));
    for (const id of change.marksRemoved) marks.delete(id);
    for (const m of change.marksUpserted) marks.set(m.id, m);
    expect(new Map([...marks].sort())).toEqual(new Map(next.marks.map((m): [string, Mark] => [m.id, m]).sort()));
    prev = next;
  }
  expect(differ.diff(prev)).toBeNull();
});

test("at 10k hosts the view stays within the mark bound, and a group too large to open says so", () => {
  const p = plannedEstateGraph(10_000);
  const big = ViewGraph.fromMirror(p.mirror);
  expect(p.mirror.nodes.size).toBeGreaterThan(100_000);
  const groups = view({}, none, big);
  expect(groups.marks).toHaveLength(8);
  expect(groups.summary.hosts).toBe(10_000);
  for (const level of ["hosts", "services", "detail"] as const) {
    const r = view({ level }, none, big);
    expect(r.marks.length).toBeLessThanOrEqual(VIEW_MAX_MARKS);
    expect(r.marks.some((m) => m.note)).toBe(true);
  }
  const app = byId(view({ open: ["group:tier:app"] }, none, big)).get("group:tier:app")!;
  expect(app.open).toBeUndefined();
  expect(app.note).toContain("4,000 marks inside: too many to open here");
  // a smaller group opens in the same view
  const db = byId(view({ open: ["group:tier:app", "group:tier:db"] }, none, big)).get("group:tier:db")!;
  expect(db.open).toBe(true);
}, 120_000);

test("a grouping no view used for a while is forgotten, and made again when asked for", () => {
  const small = ViewGraph.fromMirror(estateGraph(20).mirror);
  const before = computeView({ graph: small, health: none, spec: ViewSpec.parse({ groupBy: "team" }), now: 1000 });
  small.prunePaths(500);
  expect(small.paths("team", 2000)).toBe(small.paths("team", 2000));
  const kept = small.paths("team", 2000);
  small.prunePaths(3000);
  expect(small.paths("team", 4000)).not.toBe(kept);
  expect(computeView({ graph: small, health: none, spec: ViewSpec.parse({ groupBy: "team" }), now: 5000 })).toEqual({ ...before, summary: { ...before.summary, dataAgeMs: 0 } });
});
