/**
 * The map's camera maths, pure: what the laid-out view spans, the transform that fits it or one box, how big a mark
 * is on screen, and semantic zoom's decision (which closed groups a resting gesture zoomed into, which zoom-opened
 * ones it zoomed out of). MapCanvas.svelte applies the answers through d3-zoom.
 */
import type { Placed } from "./map-layout.ts";

/** A pan/zoom transform, screen = k·world + (x, y); d3-zoom's ZoomTransform is one. */
export interface Cam {
  readonly x: number;
  readonly y: number;
  readonly k: number;
}

export const toScreen = (t: Cam, x: number, y: number): [number, number] => [t.k * x + t.x, t.k * y + t.y];
export const toWorld = (t: Cam, sx: number, sy: number): [number, number] => [(sx - t.x) / t.k, (sy - t.y) / t.k];

export interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** The world box of the placed marks the view still holds (a leaf's label below it included), or null when none. */
export function boundsOf(placed: Readonly<Record<string, Placed>>, held: (id: string) => boolean): Box | null {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const [id, p] of Object.entries(placed)) {
    if (!held(id)) continue;
    const hw = p.container ? p.w / 2 : p.r;
    const hh = p.container ? p.h / 2 : p.r;
    x0 = Math.min(x0, p.x - hw);
    x1 = Math.max(x1, p.x + hw);
    y0 = Math.min(y0, p.y - hh);
    y1 = Math.max(y1, p.y + hh + (p.container ? 0 : 18));
  }
  return x0 === Infinity ? null : { x0, y0, x1, y1 };
}

/** The transform showing all of `b` in a width×height map with a 48 px margin (zoom between 0.01 and 2.5). */
export function fitCam(b: Box | null, width: number, height: number): Cam | null {
  if (!b || !width || !height) return null;
  const pad = 48;
  const k = Math.min(2.5, Math.max(0.01, Math.min((width - 2 * pad) / Math.max(b.x1 - b.x0, 1), (height - 2 * pad) / Math.max(b.y1 - b.y0, 1))));
  return { x: width / 2 - (k * (b.x0 + b.x1)) / 2, y: height / 2 - (k * (b.y0 + b.y1)) / 2, k };
}

/** The transform centring one mark and filling 90 % of the map with it (zoom between 0.005 and 16). */
export function boxCam(p: Placed, width: number, height: number): Cam {
  const w = p.container ? p.w : 2 * p.r;
  const h = p.container ? p.h : 2 * p.r;
  const k = Math.min(16, Math.max(0.005, 0.9 * Math.min(width / Math.max(w, 1), height / Math.max(h, 1))));
  return { x: width / 2 - k * p.x, y: height / 2 - k * p.y, k };
}

/** The transform centring a point at zoom k. */
export const centreCam = (px: number, py: number, k: number, width: number, height: number): Cam => ({ x: width / 2 - k * px, y: height / 2 - k * py, k });

/** On-screen size of a mark (px): a closed mark's diameter, a container's larger side. */
export const screenSize = (p: Placed, k: number) => (p.container ? Math.max(p.w, p.h) : 2 * p.r) * k;

/** Share of the map's smaller side a closed group must fill to open by zoom, and below which it closes again. */
export const ZOOM_OPEN = 0.45;
export const ZOOM_CLOSE = 0.2;

/** What semantic zoom needs to know of a mark. */
export interface ZoomMark {
  id: string;
  kind: string;
  parent?: string;
  open?: boolean;
  note?: string;
}

/**
 * After a pan/zoom rests: the closed groups drawn past ZOOM_OPEN of the map's smaller side with their centre in sight
 * (nearest the middle first), and the zoom-opened containers drawn below ZOOM_CLOSE, with whatever was opened inside
 * them (`closing`, a superset of `close`). Groups a click opened are never closed this way (not in `zoomOpened`).
 */
export function semanticZoomStep(a: {
  marks: Iterable<ZoomMark>;
  placed: Readonly<Record<string, Placed>>;
  cam: Cam;
  width: number;
  height: number;
  specOpen: readonly string[];
  zoomOpened: ReadonlySet<string>;
}): { open: string[]; close: string[]; closing: Set<string> } {
  const side = Math.min(a.width, a.height);
  const close: string[] = [];
  for (const id of a.zoomOpened) {
    const p = a.placed[id];
    if (p?.container && screenSize(p, a.cam.k) < ZOOM_CLOSE * side) close.push(id);
  }
  const open: { id: string; d: number }[] = [];
  const marks = [...a.marks];
  for (const m of marks) {
    if (m.kind !== "group" || m.open || m.note || a.specOpen.includes(m.id)) continue;
    const p = a.placed[m.id];
    if (!p || p.container || screenSize(p, a.cam.k) < ZOOM_OPEN * side) continue;
    const [sx, sy] = toScreen(a.cam, p.x, p.y);
    // its centre in sight: a big group half off screen is not what the operator zoomed into
    if (sx < 0 || sy < 0 || sx > a.width || sy > a.height) continue;
    open.push({ id: m.id, d: Math.hypot(sx - a.width / 2, sy - a.height / 2) });
  }
  // what was opened inside a closing group closes with it
  const closing = new Set(close);
  for (const mk of marks) if (mk.parent && closing.has(mk.parent)) closing.add(mk.id);
  open.sort((x, y) => x.d - y.d);
  return { open: open.map((o) => o.id), close, closing };
}
