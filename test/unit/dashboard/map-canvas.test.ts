/**
 * The map canvas's pure parts (lib/map-camera.ts, lib/map-hit.ts, lib/map-labels.ts): fitting and centring, semantic
 * zoom's open/close decision, hit-testing leaves and containers, arrow-key steps, the label occupancy grid and texts.
 */
import { describe, expect, test } from "bun:test";
import { boundsOf, boxCam, fitCam, screenSize, semanticZoomStep, toScreen, toWorld, ZOOM_CLOSE, ZOOM_OPEN, type Cam } from "../../../dashboard/src/lib/map-camera.ts";
import { leafTree, pickAt, stepFrom } from "../../../dashboard/src/lib/map-hit.ts";
import { byLabelPriority, countText, cutToWidth, healthLine, LabelGrid } from "../../../dashboard/src/lib/map-labels.ts";
import type { Placed } from "../../../dashboard/src/lib/map-layout.ts";
import type { Mark } from "../../../pipelines/contracts/view.ts";

const leaf = (x: number, y: number, r = 5): Placed => ({ x, y, r, w: 2 * r, h: 2 * r, container: false });
const box = (x: number, y: number, w: number, h: number): Placed => ({ x, y, r: Math.max(w, h) / 2, w, h, container: true });
const all = () => true;

describe("camera", () => {
  test("screen and world are inverse", () => {
    const cam: Cam = { x: 30, y: -12, k: 2.5 };
    const [sx, sy] = toScreen(cam, 10, 20);
    expect([sx, sy]).toEqual([55, 38]);
    expect(toWorld(cam, sx, sy)).toEqual([10, 20]);
  });

  test("bounds cover held marks only (a leaf's label room below it), fit centres them with a margin", () => {
    const placed = { a: leaf(0, 0), b: leaf(100, 50), gone: leaf(5000, 5000) };
    const b = boundsOf(placed, (id) => id !== "gone")!;
    expect(b).toEqual({ x0: -5, y0: -5, x1: 105, y1: 73 });
    expect(boundsOf(placed, () => false)).toBeNull();
    const cam = fitCam(b, 1000, 600)!;
    // the box's centre lands on the map's centre, and the whole box is inside the 48 px margin
    const [cx, cy] = toScreen(cam, (b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2);
    expect(cx).toBeCloseTo(500);
    expect(cy).toBeCloseTo(300);
    expect(cam.k).toBe(2.5); // capped: a small view is not blown up past 2.5
    expect(fitCam(null, 1000, 600)).toBeNull();
    expect(fitCam(b, 0, 600)).toBeNull();
  });

  test("a box fills 90 % of the map's tighter side, centred", () => {
    const cam = boxCam(box(200, 100, 400, 100), 1000, 500);
    expect(cam.k).toBeCloseTo(0.9 * 2.5);
    expect(toScreen(cam, 200, 100)).toEqual([500, 250]);
    expect(screenSize(box(0, 0, 400, 100), 0.5)).toBe(200);
    expect(screenSize(leaf(0, 0, 10), 2)).toBe(40);
  });

  test("semantic zoom opens the closed groups zoomed into (nearest the middle first) and closes zoom-opened ones zoomed out of, with what is inside", () => {
    const width = 1000;
    const height = 800;
    const side = Math.min(width, height);
    const cam: Cam = { x: 0, y: 0, k: 1 };
    const bigR = (ZOOM_OPEN * side) / 2 + 1;
    const placed: Record<string, Placed> = {
      near: leaf(520, 400, bigR),
      far: leaf(900, 100, bigR),
      small: leaf(300, 300, 10),
      offscreen: leaf(-400, 300, bigR),
      clicked: leaf(500, 500, bigR),
      zoomedOut: box(100, 100, ZOOM_CLOSE * side - 10, 20),
      stillBig: box(100, 100, ZOOM_CLOSE * side + 10, 20),
    };
    const marks = [
      { id: "far", kind: "group" },
      { id: "near", kind: "group" },
      { id: "small", kind: "group" },
      { id: "offscreen", kind: "group" },
      { id: "clicked", kind: "group" },
      { id: "noted", kind: "group", note: "too many to open" },
      { id: "zoomedOut", kind: "group", open: true },
      { id: "stillBig", kind: "group", open: true },
      { id: "inner", kind: "host", parent: "zoomedOut", open: true },
      { id: "innermost", kind: "service", parent: "inner" },
    ];
    placed.noted = leaf(500, 400, bigR);
    const r = semanticZoomStep({ marks, placed, cam, width, height, specOpen: ["zoomedOut", "stillBig", "inner", "clicked"], zoomOpened: new Set(["zoomedOut", "stillBig"]) });
    expect(r.open).toEqual(["near", "far"]);
    expect(r.close).toEqual(["zoomedOut"]);
    expect([...r.closing].sort()).toEqual(["inner", "innermost", "zoomedOut"]);
    // a group opened by a click is never closed by zooming out
    const none = semanticZoomStep({ marks, placed: { ...placed, near: leaf(0, 0, 1), far: leaf(0, 0, 1) }, cam, width, height, specOpen: ["zoomedOut", "stillBig", "inner", "clicked"], zoomOpened: new Set() });
    expect(none).toMatchObject({ open: [], close: [] });
  });
});

describe("hit-testing", () => {
  const placed = { outer: box(0, 0, 400, 300), inner: box(50, 50, 100, 80), a: leaf(50, 50, 10), b: leaf(-100, 0, 10), c: leaf(100, -100, 10) };
  const cam: Cam = { x: 500, y: 400, k: 1 };
  const tree = leafTree(placed);
  const at = (sx: number, sy: number, layered = true) => pickAt({ tree, placed, held: all, cam, layered }, sx, sy);

  test("a leaf first (within 6 px of its rim), then the innermost container, and whether the point is on its title", () => {
    expect(at(550 + 14, 450)).toEqual({ id: "a", title: false });
    expect(at(550 + 30, 450 + 30)).toEqual({ id: "inner", title: false });
    expect(at(550, 450 - 35)).toEqual({ id: "inner", title: true });
    expect(at(500 - 150, 400 + 100)).toEqual({ id: "outer", title: false });
    expect(at(5, 5)).toBeNull();
    // containers the view no longer holds are not hit
    expect(pickAt({ tree, placed, held: (id) => id !== "outer", cam, layered: true }, 350, 500)).toBeNull();
    // the force view's containers are circles, their title band the rim
    expect(at(500, 400 - 190, false)).toEqual({ id: "outer", title: true });
  });

  test("arrow keys: the nearest leaf within a 90° cone, the top-left-most to start", () => {
    expect(stepFrom(placed, all, null, 1, 0)).toBe("b");
    expect(stepFrom(placed, all, "b", 1, 0)).toBe("a");
    expect(stepFrom(placed, all, "a", 0, -1)).toBe("c");
    expect(stepFrom(placed, all, "a", 1, 0)).toBeNull();
    expect(stepFrom(placed, (id) => id !== "a", "b", 1, 0)).toBe("c");
  });
});

describe("labels", () => {
  test("the occupancy grid refuses overlaps and off-screen boxes; a mark's disc is taken whatever", () => {
    const g = new LabelGrid(100, 60);
    expect(g.tryTake(0, 0, 20, 10)).toBe(true);
    expect(g.tryTake(15, 5, 40, 15)).toBe(false);
    // 6 px cells: a box two cells away is free
    expect(g.tryTake(30, 0, 50, 10)).toBe(true);
    expect(g.tryTake(-50, 0, -10, 10)).toBe(false);
    expect(g.tryTake(10, 70, 20, 80)).toBe(false);
    g.fill(60, 30, 80, 50);
    expect(g.tryTake(70, 40, 90, 45)).toBe(false);
    expect(g.tryTake(0, 30, 40, 50)).toBe(true);
  });

  const mark = (m: Partial<Mark>): Mark =>
    ({ id: "x", kind: "group", label: "x", count: 1, counts: {}, health: "ok", healthCounts: { critical: 0, warning: 0, stale: 0, impacted: 0 }, impacted: false, layer: 0, lastSeen: 0, ...m }) as Mark;

  test("counts say what they count; a sublabel starting with a number is kept", () => {
    expect(countText(mark({ count: 1210, counts: { host: 1200, process: 10 }, sublabel: "tier" }))).toBe("1,200 hosts · 10 services");
    expect(countText(mark({ count: 1, counts: { host: 1 } }))).toBe("1 host");
    expect(countText(mark({ count: 3, counts: { external: 3 } }))).toBe("3 externals");
    expect(countText(mark({ kind: "host", count: 4, counts: { process: 4 }, sublabel: "processes" }))).toBe("4 processes");
    expect(countText(mark({ sublabel: "12 listeners" }))).toBe("12 listeners");
  });

  test("a group's health line names the worst inside first, in its colour; nothing when all is well", () => {
    expect(healthLine(mark({}))).toBeNull();
    const h = healthLine(mark({ healthCounts: { critical: 2, warning: 0, stale: 1, impacted: 3 } }))!;
    expect(h.text).toBe("2 critical · 3 impacted");
    const w = healthLine(mark({ healthCounts: { critical: 0, warning: 1, stale: 0, impacted: 0 } }))!;
    expect(w.colour).not.toBe(h.colour);
  });

  test("label order: groups, critical, warning or impacted, hosts, the rest; then bigger, then by name", () => {
    const list = [
      mark({ id: "s", kind: "service", label: "svc" }),
      mark({ id: "h2", kind: "host", label: "b", count: 2 }),
      mark({ id: "h1", kind: "host", label: "a", count: 2 }),
      mark({ id: "i", kind: "service", label: "imp", impacted: true }),
      mark({ id: "c", kind: "listener", label: "crit", health: "critical" }),
      mark({ id: "g", kind: "group", label: "grp" }),
    ].map((m) => [m, null] as [Mark, null]);
    expect(byLabelPriority(list).map(([m]) => m.id)).toEqual(["g", "c", "i", "h1", "h2", "s"]);
  });

  test("titles are cut to their box with an ellipsis", () => {
    const measure = (t: string) => t.length * 7;
    expect(cutToWidth("orders · 3 hosts", 200, measure)).toBe("orders · 3 hosts");
    const cut = cutToWidth("a-very-long-container-title · 1,200 hosts", 100, measure);
    expect(cut.endsWith("…")).toBe(true);
    expect(measure(cut)).toBeLessThanOrEqual(100);
    expect(cutToWidth("abcdefgh", 1, measure).length).toBeGreaterThanOrEqual(4);
  });
});
