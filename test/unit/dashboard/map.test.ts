/** The map's pure parts: the layouts (deterministic, stable, no overlap), the URL ↔ view round trip, view frames, the path to an entity. */
import { describe, expect, test } from "bun:test";
import { layout, type LayoutMark, type LayoutLink, type Placed } from "../../../dashboard/src/lib/map-layout.ts";
import { pageParams, parsePage, parseUrl, urlFor } from "../../../dashboard/src/lib/view-url.ts";
import { ViewSpec, type Mark } from "../../../pipelines/contracts/view.ts";
import { pathTo } from "../../../dashboard/src/lib/view-path.ts";
import { computeView, HealthMaps, ViewGraph } from "../../../pipelines/stages/views/index.ts";
import { estateGraph } from "../views/estate-graph.ts";

function estate(groups: number, hostsPerGroup: number, openGroups: number[] = []) {
  const marks: LayoutMark[] = [];
  const links: LayoutLink[] = [];
  for (let g = 0; g < groups; g++) {
    const id = `group:tier:t${g}`;
    marks.push({ id, kind: "group", label: `t${g}`, layer: g % 4, count: hostsPerGroup, open: openGroups.includes(g) });
    if (g) links.push({ src: `group:tier:t${g - 1}`, dst: id });
    if (openGroups.includes(g)) for (let h = 0; h < hostsPerGroup; h++) marks.push({ id: `host:g${g}-h${h}`, kind: "host", label: `g${g}-h${h}`, parent: id, layer: h % 3, count: 3 });
  }
  return { marks, links };
}

const overlaps = (a: { x: number; y: number; w: number; h: number }, b: { x: number; y: number; w: number; h: number }) =>
  Math.abs(a.x - b.x) * 2 < a.w + b.w - 0.01 && Math.abs(a.y - b.y) * 2 < a.h + b.h - 0.01;

describe("map layout", () => {
  for (const mode of ["layered", "force"] as const) {
    test(`${mode}: the same marks give the same picture, and open containers never overlap`, () => {
      const { marks, links } = estate(8, 300, [1, 5]);
      const a = layout({ mode, marks, links });
      const b = layout({ mode, marks: [...marks].reverse(), links: [...links].reverse() });
      expect(Object.keys(a.placed).length).toBe(marks.length);
      for (const id of Object.keys(a.placed)) {
        expect(b.placed[id]!.x).toBeCloseTo(a.placed[id]!.x, 6);
        expect(b.placed[id]!.y).toBeCloseTo(a.placed[id]!.y, 6);
      }
      const tops = marks.filter((m) => !m.parent).map((m) => a.placed[m.id]!);
      // boxes in the layered view, circles in the force view
      const apart = mode === "layered" ? (p: Placed, q: Placed) => !overlaps(p, q) : (p: Placed, q: Placed) => Math.hypot(p.x - q.x, p.y - q.y) >= p.r + q.r - 0.01;
      for (let i = 0; i < tops.length; i++) for (let j = i + 1; j < tops.length; j++) expect(apart(tops[i]!, tops[j]!)).toBe(true);
      // children sit inside their container
      const box = a.placed["group:tier:t1"]!;
      for (const m of marks.filter((x) => x.parent === "group:tier:t1")) {
        const p = a.placed[m.id]!;
        expect(Math.abs(p.x - box.x)).toBeLessThan(box.w / 2);
        expect(Math.abs(p.y - box.y)).toBeLessThan(box.h / 2);
      }
    });

    test(`${mode}: a new mark does not move the ones already placed`, () => {
      const { marks, links } = estate(6, 40, [2]);
      const first = layout({ mode, marks, links });
      const known = Object.fromEntries(Object.entries(first.placed).map(([id, p]) => [id, [p.x, p.y] as [number, number]]));
      const more = [...marks, { id: "host:g2-new", kind: "host", label: "g2-new", parent: "group:tier:t2", layer: 0, count: 1 }];
      const second = layout({ mode, marks: more, links, known });
      expect(second.placed["host:g2-new"]).toBeDefined();
      let moved = 0;
      for (const m of marks.filter((x) => x.parent === "group:tier:t2")) {
        const a = first.placed[m.id]!;
        const b = second.placed[m.id]!;
        // relative to their container (which may grow around the newcomer)
        const ca = first.placed["group:tier:t2"]!;
        const cb = second.placed["group:tier:t2"]!;
        if (Math.hypot(a.x - ca.x - (b.x - cb.x), a.y - ca.y - (b.y - cb.y)) > 25) moved++;
      }
      // layered inserts the newcomer in its column's order (only that column below it shifts); force keeps every one
      expect(moved).toBeLessThanOrEqual(mode === "force" ? 0 : 14);
    });
  }

  test("layered puts callers left of what they depend on", () => {
    const { marks, links } = estate(4, 1);
    const r = layout({ mode: "layered", marks, links });
    const xs = [0, 1, 2, 3].map((g) => r.placed[`group:tier:t${g}`]!.x);
    expect([...xs].sort((a, b) => a - b)).toEqual(xs);
  });

  test("2,500 marks lay out in well under a second", () => {
    const { marks, links } = estate(10, 250, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (const mode of ["layered", "force"] as const) expect(layout({ mode, marks, links }).ms).toBeLessThan(1500);
  });
});

describe("the URL is the view", () => {
  test("a spec survives the round trip through query parameters", () => {
    const spec = ViewSpec.parse({
      level: "hosts",
      groupBy: "site",
      open: ["group:site:eu-west", "host:web-1"],
      focus: { id: "service:web-1:nginx", hops: 3, dir: "up" },
      filters: { kinds: ["service"], health: ["critical", "impacted"], team: "payments", tag: "env=prod", port: 5432, q: "orders" },
      at: 1_750_000_000_000,
    });
    const p = pageParams({ spec, layout: "force" });
    const back = parsePage(new URLSearchParams(p.toString()));
    expect(back.errors).toEqual([]);
    expect(back.spec).toEqual(spec);
    expect(back.layout).toBe("force");
    expect(pageParams({ spec: ViewSpec.parse({}), layout: "layered" }).toString()).toBe("");
  });

  test("a bad parameter is reported and dropped, the rest of the view kept", () => {
    const r = parsePage(new URLSearchParams("level=hosts&group=planet&port=99999&layout=spiral"));
    expect(r.spec.level).toBe("hosts");
    expect(r.spec.groupBy).toBe("tier");
    expect(r.spec.filters.port).toBeUndefined();
    expect(r.errors.length).toBe(3);
  });

  test("wallboard: views to rotate and seconds per view; the page URL keeps them", () => {
    const u = parseUrl(`?wall=1&every=20&v=${encodeURIComponent("level=groups&group=team")}&v=${encodeURIComponent("level=services&layout=force")}`);
    expect(u.wall?.everyS).toBe(20);
    expect(u.wall?.views.map((v) => [v.spec.level, v.spec.groupBy, v.layout])).toEqual([
      ["groups", "team", "layered"],
      ["services", "tier", "force"],
    ]);
    const next = urlFor(u.wall!.views[1]!, new URLSearchParams(`wall=1&every=20&v=a&v=b`));
    expect(new URLSearchParams(next).getAll("v")).toEqual(["a", "b"]);
    expect(parseUrl("?wall=1&every=1").errors[0]).toContain("every");
  });
});

// view.svelte.ts uses runes: compile *.svelte.ts modules with Svelte's compiler (as Vite does for the page).
Bun.plugin({
  name: "svelte-runes-modules",
  setup(build) {
    build.onLoad({ filter: /\.svelte\.ts$/ }, async ({ path }) => {
      const { compileModule } = await import("svelte/compiler");
      const js = new Bun.Transpiler({ loader: "ts" }).transformSync(await Bun.file(path).text());
      return { contents: compileModule(js, { filename: path, generate: "client" }).js.code, loader: "js" };
    });
  },
});

describe("view frames", async () => {
  const { ViewState } = await import("../../../dashboard/src/lib/view.svelte.ts");
  const mark = (id: string, health: Mark["health"] = "ok"): Mark => ({
    id,
    kind: "group",
    label: id,
    count: 1,
    counts: {},
    health,
    healthCounts: { critical: 0, warning: 0, stale: 0, impacted: 0 },
    impacted: false,
    layer: 0,
    lastSeen: 1,
  });
  const summary = { worst: "ok", criticals: 0, warnings: 0, impactedServices: 0, stale: 0, hosts: 1, services: 1, nodes: 2, edges: 1, dataAgeMs: 0, marks: 1, links: 0 };
  test("snapshot, consecutive deltas, a gap, another subscription's frames, raw frames, a bad frame", () => {
    const v = new ViewState();
    v.subscribeMessage(v.spec);
    const sub = v.subId;
    expect(v.ingest(JSON.stringify({ schema: "topology.snapshot.v1", rev: 1, at: 1, nodes: [], edges: [] }))).toBe("ignored");
    expect(v.ingest({ schema: "view.snapshot.v1", sub, seq: 0, rev: 1, at: 1, spec: v.spec, marks: [mark("a")], links: [], summary })).toBe("snapshot");
    expect(v.ingest({ schema: "view.delta.v1", sub, seq: 1, rev: 2, at: 2, marksUpserted: [mark("b", "critical")], marksRemoved: ["a"], linksUpserted: [], linksRemoved: [] })).toBe("applied");
    expect([...v.marks.keys()]).toEqual(["b"]);
    // a heartbeat (summary only): the age is fresh again, nothing drawn changes
    const version = v.version;
    expect(v.ingest({ schema: "view.delta.v1", sub, seq: 2, rev: 2, at: 3, marksUpserted: [], marksRemoved: [], linksUpserted: [], linksRemoved: [], summary: { ...summary, dataAgeMs: 10 } })).toBe("applied");
    expect(v.version).toBe(version);
    expect(v.summary?.dataAgeMs).toBe(10);
    expect(v.ingest({ schema: "view.delta.v1", sub: "old", seq: 3, rev: 3, at: 3, marksUpserted: [], marksRemoved: ["b"], linksUpserted: [], linksRemoved: [] })).toBe("ignored");
    expect(v.ingest({ schema: "view.delta.v1", sub, seq: 5, rev: 3, at: 3, marksUpserted: [], marksRemoved: [], linksUpserted: [], linksRemoved: [] })).toBe("gap");
    expect(v.ingest({ schema: "view.delta.v1", sub, seq: 3, rev: 3, at: 3, marksUpserted: [{ ...mark("c"), layer: -1 }], marksRemoved: [], linksUpserted: [], linksRemoved: [] })).toBe("rejected");
    expect(v.marks.size).toBe(1);
  });
});

describe("the path to an entity inside closed groups (pathTo, against the real view stage)", () => {
  const eg = estateGraph(100);
  const graph = ViewGraph.fromMirror(eg.mirror);
  const asked: ViewSpec[] = [];
  const get = async (url: string) => {
    const spec = ViewSpec.parse(JSON.parse(new URL(url, "http://x").searchParams.get("spec")!));
    asked.push(spec);
    const r = computeView({ graph, health: new HealthMaps(), spec, now: 1_800_000_000_000 });
    return Response.json({ schema: "view.snapshot.v1", seq: 0, rev: 1, at: 1_800_000_000_000, spec, marks: r.marks, links: r.links, summary: r.summary });
  };
  const drawnWith = (spec: ViewSpec, open: string[]) =>
    new Set(computeView({ graph, health: new HealthMaps(), spec: { ...spec, open: [...spec.open, ...open] }, now: 1_800_000_000_000 }).marks.map((m) => m.id));
  const ORDERS_1 = "service:sim-app-1:image:registry.example/orders:8080,8081";

  test("a service by tier: its tier group and its host open, and it is drawn in the unfiltered view", async () => {
    const spec = ViewSpec.parse({});
    const p = (await pathTo(spec, ORDERS_1, get))!;
    expect(p.target).toBe(ORDERS_1);
    expect(p.open).toEqual(expect.arrayContaining(["group:tier:app", "host:sim-app-1"]));
    expect(drawnWith(spec, p.open).has(ORDERS_1)).toBe(true);
    // every question carried the entity as the filter, never a focus
    expect(asked.every((s) => s.filters.q === ORDERS_1 && !s.focus)).toBe(true);
  });

  test("by team, and for a host and an already drawn entity", async () => {
    const team = ViewSpec.parse({ groupBy: "team" });
    const p = (await pathTo(team, ORDERS_1, get))!;
    expect(p.target).toBe(ORDERS_1);
    expect(drawnWith(team, p.open).has(ORDERS_1)).toBe(true);
    const h = (await pathTo(ViewSpec.parse({}), "host:sim-db-1", get))!;
    expect(h).toEqual({ open: ["group:tier:db"], target: "host:sim-db-1" });
    expect(await pathTo(ViewSpec.parse({ open: ["group:tier:db"] }), "host:sim-db-1", get)).toEqual({ open: [], target: "host:sim-db-1" });
  });

  test("a listener folded into its service: the service is where it is shown; an unknown id has no path", async () => {
    const listener = [...eg.mirror.nodes.values()].find((n) => n.kind === "listener" && n.id.startsWith("listener:sim-app-1:"))!.id;
    const p = (await pathTo(ViewSpec.parse({}), listener, get))!;
    expect(drawnWith(ViewSpec.parse({}), p.open).has(p.target)).toBe(true);
    expect(p.open).toEqual(expect.arrayContaining(["group:tier:app", "host:sim-app-1"]));
    expect(await pathTo(ViewSpec.parse({}), "host:no-such-host", get)).toBeNull();
    expect(await pathTo(ViewSpec.parse({}), "host:x", async () => new Response("down", { status: 503 }))).toBeNull();
  });
});
