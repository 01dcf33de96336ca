/**
 * Drawing the map on a 2D canvas: containers (boxes in the layered view, circles in the force view), links batched
 * into one path per colour and width, marks batched into one fill per kind, health halos in screen pixels, the
 * selection / hover / cursor rings, then the labels (map-labels.ts). Only what is in sight (plus a 30 px margin) is
 * drawn. Also the cheap frame used while panning: the last full picture moved as one bitmap.
 */
import type { Link, Mark, MarkHealth } from "../../../pipelines/contracts/view.ts";
import type { LayoutMode, Placed } from "./map-layout.ts";
import { toWorld, type Cam } from "./map-camera.ts";
import { drawLabels, type TextWidths } from "./map-labels.ts";
import { BACKGROUND, DRIFT_COLOR, HEALTH_COLOR, IMPACT_COLOR, LINK_COLOR, MARK_KIND_COLOR } from "./colors.ts";

export interface Scene {
  width: number;
  height: number;
  dpr: number;
  cam: Cam;
  mode: LayoutMode | null;
  labelScale: number;
  moving: boolean;
  /** "live" when the gateway answered (an empty view is then the filters' doing) */
  status: string;
  marks: ReadonlyMap<string, Mark>;
  links: Iterable<Link>;
  placed: Readonly<Record<string, Placed>>;
  selected: string | null;
  hovered: string | null;
  cursor: string | null;
  widths: TextWidths;
  /** marks with a drift badge (lib/drift.ts) */
  badged: ReadonlyMap<string, unknown>;
}

const HEALTH_ORDER: MarkHealth[] = ["stale", "warning", "critical"];

/** Draws the whole picture; answers how many marks (leaves and containers) and drift badges were drawn. */
export function drawScene(c: CanvasRenderingContext2D, s: Scene): { drawn: number; badges: number } {
  const { cam, dpr, width, height, marks, placed } = s;
  const k = cam.k;
  c.setTransform(1, 0, 0, 1, 0, 0);
  c.fillStyle = BACKGROUND;
  c.fillRect(0, 0, c.canvas.width, c.canvas.height);
  if (!marks.size) {
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.fillStyle = "#8b98ab";
    c.font = "500 22px system-ui, sans-serif";
    c.textAlign = "center";
    c.fillText(s.status === "live" ? "Nothing in this view (check the filters)" : "Waiting for the gateway…", width / 2, height / 2);
    return { drawn: 0, badges: 0 };
  }
  c.setTransform(dpr * k, 0, 0, dpr * k, dpr * cam.x, dpr * cam.y);
  const [vx0, vy0] = toWorld(cam, 0, 0);
  const [vx1, vy1] = toWorld(cam, width, height);
  const m = 30 / k;
  const inView = (p: Placed) => {
    const hw = p.container ? p.w / 2 : p.r;
    const hh = p.container ? p.h / 2 : p.r;
    return p.x + hw > vx0 - m && p.x - hw < vx1 + m && p.y + hh > vy0 - m && p.y - hh < vy1 + m;
  };
  const layered = s.mode === "layered";

  // Containers (open groups, hosts, services): boxes in the layered view, circles in the force view; parents first.
  const containers: [Mark, Placed][] = [];
  for (const mk of marks.values()) {
    const p = placed[mk.id];
    if (p?.container && inView(p)) containers.push([mk, p]);
  }
  containers.sort((a, b) => b[1].w * b[1].h - a[1].w * a[1].h);
  for (const [mk, p] of containers) {
    c.beginPath();
    if (layered) c.roundRect(p.x - p.w / 2, p.y - p.h / 2, p.w, p.h, 10);
    else c.arc(p.x, p.y, p.r, 0, 2 * Math.PI);
    c.fillStyle = "rgba(123, 143, 176, 0.07)";
    c.fill();
    c.lineWidth = (mk.health === "critical" ? 2.5 : 1.2) / k;
    c.strokeStyle = mk.health === "critical" || mk.health === "warning" ? HEALTH_COLOR[mk.health] : "rgba(123, 143, 176, 0.45)";
    c.stroke();
  }

  // Links: one path per colour; width by underlying edge count; unhealthy ones thicker in their health colour.
  const batches = new Map<string, { color: string; width: number; links: [Placed, Placed][] }>();
  for (const l of s.links) {
    const a = placed[l.src];
    const b = placed[l.dst];
    if (!a || !b) continue;
    if ((a.x < vx0 && b.x < vx0) || (a.x > vx1 && b.x > vx1) || (a.y < vy0 && b.y < vy0) || (a.y > vy1 && b.y > vy1)) continue;
    const bad = l.health === "critical" || l.health === "warning";
    const w = bad ? 3 : Math.min(4, 1 + Math.log10(l.count));
    const color = bad ? HEALTH_COLOR[l.health] : LINK_COLOR[l.kind];
    const key = `${color}|${w.toFixed(1)}`;
    let bt = batches.get(key);
    if (!bt) batches.set(key, (bt = { color, width: w, links: [] }));
    bt.links.push([a, b]);
  }
  // healthy first, so unhealthy calls are drawn over them
  const order = [...batches.values()].sort((x, y) => Number(x.color.startsWith("#")) - Number(y.color.startsWith("#")));
  // curves read better in the layered view; past a few thousand links in sight they cost more than they give
  let inSight = 0;
  for (const bt of order) inSight += bt.links.length;
  const curves = layered && inSight <= 2500;
  for (const bt of order) {
    c.beginPath();
    for (const [a, b] of bt.links) {
      c.moveTo(a.x, a.y);
      if (curves && Math.abs(b.x - a.x) > 1) {
        const mx = (a.x + b.x) / 2;
        c.bezierCurveTo(mx, a.y, mx, b.y, b.x, b.y);
      } else c.lineTo(b.x, b.y);
    }
    c.lineWidth = bt.width / k;
    c.strokeStyle = bt.color;
    c.stroke();
  }

  // Marks: one fill per kind (stale ones faded), circles; squares when smaller than a pixel or two.
  const fills = new Map<string, [Mark, Placed][]>();
  const ring: Record<"critical" | "warning" | "stale" | "impacted", [Mark, Placed][]> = { critical: [], warning: [], stale: [], impacted: [] };
  let drawn = 0;
  for (const mk of marks.values()) {
    const p = placed[mk.id];
    if (!p || p.container || !inView(p)) continue;
    drawn++;
    const key = `${mk.kind}|${mk.health === "stale" ? 1 : 0}`;
    const list = fills.get(key);
    if (list) list.push([mk, p]);
    else fills.set(key, [[mk, p]]);
    if (mk.health === "critical" || mk.health === "warning" || mk.health === "stale") ring[mk.health].push([mk, p]);
    if (mk.impacted) ring.impacted.push([mk, p]);
  }
  for (const [key, list] of fills) {
    const [kind, stale] = key.split("|") as [Mark["kind"], string];
    c.beginPath();
    for (const [, p] of list) {
      if (p.r * k < 1.5) c.rect(p.x - p.r, p.y - p.r, 2 * p.r, 2 * p.r);
      else {
        c.moveTo(p.x + p.r, p.y);
        c.arc(p.x, p.y, p.r, 0, 2 * Math.PI);
      }
    }
    c.globalAlpha = stale === "1" ? 0.35 : 1;
    c.fillStyle = MARK_KIND_COLOR[kind];
    c.fill();
    c.globalAlpha = 1;
  }

  // Halos, in screen pixels so they stay visible zoomed out; each health has its own stroke, not only its colour.
  const circles = (list: [Mark, Placed][], grow: number) => {
    c.beginPath();
    for (const [, p] of list) {
      const r = p.r + grow / k;
      c.moveTo(p.x + r, p.y);
      c.arc(p.x, p.y, r, 0, 2 * Math.PI);
    }
  };
  if (ring.impacted.length) {
    circles(ring.impacted, 8);
    c.setLineDash([5 / k, 4 / k]);
    c.lineWidth = 2.5 / k;
    c.strokeStyle = IMPACT_COLOR;
    c.stroke();
    c.setLineDash([]);
  }
  for (const h of HEALTH_ORDER) {
    const list = ring[h as "critical" | "warning" | "stale"];
    if (!list.length) continue;
    if (h === "critical") {
      circles(list, 9);
      c.fillStyle = "rgba(255, 90, 54, 0.20)";
      c.fill();
    }
    circles(list, 3);
    if (h === "stale") c.setLineDash([1.5 / k, 3 / k]);
    c.lineWidth = (h === "critical" ? 3.5 : 2.2) / k;
    c.strokeStyle = HEALTH_COLOR[h];
    c.stroke();
    c.setLineDash([]);
  }

  // Drift badges: a diamond of fixed screen size at the top right of the mark (of a container's box or circle).
  let badges = 0;
  if (s.badged.size) {
    const d = 6 / k;
    c.beginPath();
    const diamond = (x: number, y: number) => {
      c.moveTo(x, y - d);
      c.lineTo(x + d, y);
      c.lineTo(x, y + d);
      c.lineTo(x - d, y);
      c.closePath();
      badges++;
    };
    for (const [mk, p] of containers) if (s.badged.has(mk.id)) diamond(...badgeAt(p, layered, k));
    for (const list of fills.values()) for (const [mk, p] of list) if (s.badged.has(mk.id)) diamond(...badgeAt(p, layered, k));
    c.fillStyle = DRIFT_COLOR;
    c.fill();
    c.lineWidth = 2 / k;
    c.strokeStyle = BACKGROUND;
    c.stroke();
  }

  // Selection, hover and keyboard cursor.
  for (const [id, colour, dash] of [
    [s.selected, "#ffffff", false],
    [s.hovered && !placed[s.hovered]?.container ? s.hovered : null, "rgba(255,255,255,0.6)", false],
    [s.cursor, "#ffffff", true],
  ] as const) {
    const p = id ? placed[id] : undefined;
    if (!p) continue;
    c.beginPath();
    if (p.container) {
      if (layered) c.roundRect(p.x - p.w / 2 - 3 / k, p.y - p.h / 2 - 3 / k, p.w + 6 / k, p.h + 6 / k, 12);
      else c.arc(p.x, p.y, p.r + 4 / k, 0, 2 * Math.PI);
    } else c.arc(p.x, p.y, p.r + 6 / k, 0, 2 * Math.PI);
    if (dash) c.setLineDash([4 / k, 3 / k]);
    c.lineWidth = 2.5 / k;
    c.strokeStyle = colour;
    c.stroke();
    c.setLineDash([]);
  }

  drawLabels(c, { width, height, dpr, cam, layered, labelScale: s.labelScale, moving: s.moving, marks, placed, strong: [s.selected, s.hovered, s.cursor], widths: s.widths }, containers, fills);
  return { drawn: drawn + containers.length, badges };
}

/** Where a mark's badge goes (world units): a leaf's or a force container's rim at 45°, a layered box's top right. */
export function badgeAt(p: Placed, layered: boolean, k: number): [number, number] {
  if (p.container && layered) return [p.x + p.w / 2 - 10 / k, p.y - p.h / 2 + 10 / k];
  const r = p.r * Math.SQRT1_2 + 2 / k;
  return [p.x + r, p.y - r];
}

/** The last full picture (drawn at `at`) moved to where `now` puts it: one drawImage, whatever the mark count. */
export function moveCached(c: CanvasRenderingContext2D, img: HTMLCanvasElement, at: Cam, now: Cam, dpr: number): void {
  // now = s·(then) + t, in device pixels
  const s = now.k / at.k;
  const tx = (now.x - s * at.x) * dpr;
  const ty = (now.y - s * at.y) * dpr;
  c.setTransform(1, 0, 0, 1, 0, 0);
  c.fillStyle = BACKGROUND;
  c.fillRect(0, 0, c.canvas.width, c.canvas.height);
  c.setTransform(s, 0, 0, s, tx, ty);
  c.drawImage(img, 0, 0);
  c.setTransform(1, 0, 0, 1, 0, 0);
}
