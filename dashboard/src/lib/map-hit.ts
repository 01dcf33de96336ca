/**
 * Hit-testing on the map, pure: the mark under a point (a d3-quadtree over the leaves, then the innermost container
 * and whether the point is on its title) and the nearest mark in an arrow key's direction.
 */
import { quadtree, type Quadtree } from "d3-quadtree";
import type { Placed } from "./map-layout.ts";
import { toWorld, type Cam } from "./map-camera.ts";

export interface LeafPoint {
  id: string;
  x: number;
  y: number;
  r: number;
}
export type LeafTree = Quadtree<LeafPoint>;

/** A quadtree over the placed leaves (containers are hit by their boxes). */
export function leafTree(placed: Readonly<Record<string, Placed>>): LeafTree {
  const pts: LeafPoint[] = [];
  for (const [id, p] of Object.entries(placed)) if (!p.container) pts.push({ id, x: p.x, y: p.y, r: p.r });
  return quadtree<LeafPoint>()
    .x((d) => d.x)
    .y((d) => d.y)
    .addAll(pts);
}

/**
 * The mark under a point (screen px): leaves first (within 6 px of their rim), then the innermost container the view
 * still holds; `title`: the point is on its title bar (layered boxes) or near its rim (force circles).
 */
export function pickAt(
  a: { tree: LeafTree | null; placed: Readonly<Record<string, Placed>>; held: (id: string) => boolean; cam: Cam; layered: boolean },
  sx: number,
  sy: number,
): { id: string; title: boolean } | null {
  const [x, y] = toWorld(a.cam, sx, sy);
  if (a.tree) {
    const pad = 6 / a.cam.k;
    // nearest within the largest radius drawn, then check that one's own radius
    const n = a.tree.find(x, y, 60 / Math.min(1, a.cam.k) + pad);
    if (n && Math.hypot(n.x - x, n.y - y) <= n.r + pad) return { id: n.id, title: false };
  }
  let best: { id: string; area: number; title: boolean } | null = null;
  for (const [id, p] of Object.entries(a.placed)) {
    if (!p.container || !a.held(id)) continue;
    const inside = a.layered ? Math.abs(x - p.x) <= p.w / 2 && Math.abs(y - p.y) <= p.h / 2 : Math.hypot(x - p.x, y - p.y) <= p.r;
    if (!inside) continue;
    const area = p.w * p.h;
    const title = a.layered ? y - (p.y - p.h / 2) <= 28 : Math.hypot(x - p.x, y - p.y) >= p.r - 24;
    if (!best || area < best.area) best = { id, area, title };
  }
  return best ? { id: best.id, title: best.title } : null;
}

/**
 * The nearest leaf from `from` in direction (dx, dy), within a 90° cone (distance along plus twice the distance
 * across); with no `from`, the top-left-most leaf. Null when there is none that way.
 */
export function stepFrom(placed: Readonly<Record<string, Placed>>, held: (id: string) => boolean, from: string | null, dx: number, dy: number): string | null {
  const p0 = from ? placed[from] : undefined;
  let best: string | null = null;
  let bestScore = Infinity;
  for (const [id, p] of Object.entries(placed)) {
    if (p.container || !held(id) || id === from) continue;
    let s: number;
    if (!p0) s = p.x + p.y;
    else {
      const vx = p.x - p0.x;
      const vy = p.y - p0.y;
      const along = vx * dx + vy * dy;
      const across = Math.abs(vx * dy - vy * dx);
      if (along <= 0 || across > along) continue;
      s = along + 2 * across;
    }
    if (s < bestScore) {
      bestScore = s;
      best = id;
    }
  }
  return best;
}
