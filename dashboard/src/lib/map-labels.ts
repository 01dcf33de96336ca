/**
 * The map's labels, in screen space, by priority (selection, hover, cursor, container titles, groups, unhealthy
 * marks, hosts, the rest), each only where it fits: an occupancy grid of 6 px cells rejects overlaps, and leaves are
 * labelled only once they are drawn large enough to belong to a name. The grid, the texts and the order are pure
 * (unit-tested); drawLabels puts them on a canvas.
 */
import type { Mark } from "../../../pipelines/contracts/view.ts";
import type { Placed } from "./map-layout.ts";
import { toScreen, type Cam } from "./map-camera.ts";
import { BACKGROUND, HEALTH_COLOR, IMPACT_COLOR } from "./colors.ts";

const num = new Intl.NumberFormat("en");

/** Screen occupancy in CELL px cells: a label takes its box only when no cell of it is taken. */
export class LabelGrid {
  static readonly CELL = 6;
  private readonly cols: number;
  private readonly rows: number;
  private readonly taken: Uint8Array;
  constructor(
    private readonly width: number,
    private readonly height: number,
  ) {
    this.cols = Math.ceil(width / LabelGrid.CELL) + 1;
    this.rows = Math.ceil(height / LabelGrid.CELL) + 1;
    this.taken = new Uint8Array(this.cols * this.rows);
  }
  private span(x0: number, y0: number, x1: number, y1: number): [number, number, number, number] {
    const C = LabelGrid.CELL;
    return [Math.max(0, Math.floor(x0 / C)), Math.max(0, Math.floor(y0 / C)), Math.min(this.cols - 1, Math.floor(x1 / C)), Math.min(this.rows - 1, Math.floor(y1 / C))];
  }
  /** Takes the box when it is on screen and free; false (nothing taken) otherwise. */
  tryTake(x0: number, y0: number, x1: number, y1: number): boolean {
    if (x1 < 0 || y1 < 0 || x0 > this.width || y0 > this.height) return false;
    const [cx0, cy0, cx1, cy1] = this.span(x0, y0, x1, y1);
    for (let y = cy0; y <= cy1; y++) for (let x = cx0; x <= cx1; x++) if (this.taken[y * this.cols + x]) return false;
    this.fill(x0, y0, x1, y1);
    return true;
  }
  /** Marks the box taken whatever was there (a mark's own disc: labels are not written over marks). */
  fill(x0: number, y0: number, x1: number, y1: number): void {
    const [cx0, cy0, cx1, cy1] = this.span(x0, y0, x1, y1);
    for (let y = cy0; y <= cy1; y++) for (let x = cx0; x <= cx1; x++) this.taken[y * this.cols + x] = 1;
  }
}

/** "10 hosts", "3 services": the count and what it counts (a sublabel that already starts with it is kept). */
export function countText(mk: Pick<Mark, "kind" | "count" | "counts" | "sublabel">): string {
  const sub = mk.sublabel ?? "";
  if (/^\d/.test(sub)) return sub;
  const c = mk.counts;
  const parts: string[] = [];
  if (mk.kind === "group") {
    if (c.host) parts.push(`${num.format(c.host)} host${c.host === 1 ? "" : "s"}`);
    if (c.process) parts.push(`${num.format(c.process)} service${c.process === 1 ? "" : "s"}`);
    if (!parts.length && c.external) parts.push(`${num.format(c.external)} external${c.external === 1 ? "" : "s"}`);
  }
  // a group's sublabel names its grouping ("tier"): say what it holds instead
  return parts.length ? parts.join(" · ") : `${num.format(mk.count)} ${sub}`.trim();
}

/** "2 critical · 1 impacted" and its colour (the worst inside), or null when all is well. */
export function healthLine(mk: Pick<Mark, "healthCounts">): { text: string; colour: string } | null {
  const h = mk.healthCounts;
  if (!h.critical && !h.warning && !h.impacted) return null;
  const bits = [h.critical ? `${h.critical} critical` : "", h.warning ? `${h.warning} warning` : "", h.impacted ? `${h.impacted} impacted` : ""].filter(Boolean);
  return { text: bits.join(" · "), colour: h.critical ? HEALTH_COLOR.critical : h.warning ? HEALTH_COLOR.warning : IMPACT_COLOR };
}

/** Label priority among leaves: groups, critical, warning or impacted, hosts, the rest. */
export const labelRank = (mk: Pick<Mark, "kind" | "health" | "impacted">) =>
  mk.kind === "group" ? 0 : mk.health === "critical" ? 1 : mk.health === "warning" || mk.impacted ? 2 : mk.kind === "host" ? 3 : 4;

/** Leaves in label order: by rank, then the bigger first, then by label. */
export function byLabelPriority<T extends [Pick<Mark, "kind" | "health" | "impacted" | "count" | "label">, unknown]>(list: T[]): T[] {
  return list.sort((a, b) => labelRank(a[0]) - labelRank(b[0]) || b[0].count - a[0].count || (a[0].label < b[0].label ? -1 : 1));
}

/** Cuts a title with "…" until `measure` says it fits `room` (never below 4 characters). */
export function cutToWidth(title: string, room: number, measure: (t: string) => number): string {
  let t = title;
  while (t.length > 4 && measure(t) > room) t = `${t.slice(0, Math.max(3, Math.floor(t.length * 0.85) - 1))}…`;
  return t;
}

/** Text widths by font and text, bounded: a wallboard runs for days. */
export class TextWidths {
  private readonly cache = new Map<string, number>();
  constructor(private readonly max = 20_000) {}
  width(c: CanvasRenderingContext2D, font: string, text: string): number {
    const key = `${font}|${text}`;
    let w = this.cache.get(key);
    if (w === undefined) {
      c.font = font;
      w = c.measureText(text).width;
      if (this.cache.size > this.max) this.cache.clear();
      this.cache.set(key, w);
    }
    return w;
  }
}

export interface LabelScene {
  width: number;
  height: number;
  dpr: number;
  cam: Cam;
  layered: boolean;
  labelScale: number;
  /** while moving, labels skip their halo stroke */
  moving: boolean;
  marks: ReadonlyMap<string, Mark>;
  placed: Readonly<Record<string, Placed>>;
  /** selection, hover and keyboard cursor: labelled first, in bold */
  strong: readonly (string | null)[];
  widths: TextWidths;
}

export function drawLabels(c: CanvasRenderingContext2D, s: LabelScene, containers: [Mark, Placed][], fills: Map<string, [Mark, Placed][]>): void {
  const k = s.cam.k;
  const { layered, labelScale } = s;
  c.setTransform(s.dpr, 0, 0, s.dpr, 0, 0);
  c.textBaseline = "middle";
  c.lineJoin = "round";
  const grid = new LabelGrid(s.width, s.height);
  let budget = 400;
  let lastFont = "";
  const put = (text: string, font: string, colour: string, x: number, y: number, align: "center" | "left"): boolean => {
    if (budget <= 0) return false;
    const t = text.length > 36 ? `${text.slice(0, 35)}…` : text;
    const w = s.widths.width(c, font, t);
    const size = Number(/(\d+)px/.exec(font)?.[1] ?? 12);
    const x0 = align === "center" ? x - w / 2 : x;
    if (!grid.tryTake(x0 - 2, y - size / 2 - 1, x0 + w + 2, y + size / 2 + 1)) return false;
    if (font !== lastFont) c.font = lastFont = font;
    c.textAlign = align;
    if (!s.moving) {
      c.lineWidth = 4;
      c.strokeStyle = BACKGROUND;
      c.strokeText(t, x, y);
    }
    c.fillStyle = colour;
    c.fillText(t, x, y);
    budget--;
    return true;
  };
  const leafLabel = (mk: Mark, p: Placed, strong: boolean) => {
    const [sx, sy] = toScreen(s.cam, p.x, p.y);
    const r = p.r * k;
    if (mk.kind === "group") {
      const size = Math.round(Math.min(22 * labelScale, Math.max(13 * labelScale, r * 0.55)));
      const y = sy + r + size / 2 + 5;
      if (put(mk.label, `600 ${size}px system-ui, sans-serif`, "#eef3fa", sx, y, "center")) {
        const subSize = Math.max(11, size - 5);
        // 8 px apart at least: the occupancy grid's 6 px cells must not see one line touching the next
        const y2 = y + size / 2 + subSize / 2 + 8;
        put(countText(mk), `${subSize}px system-ui, sans-serif`, "#9fb0c6", sx, y2, "center");
        const health = healthLine(mk);
        if (health) put(health.text, `600 ${subSize}px system-ui, sans-serif`, health.colour, sx, y2 + subSize + 8, "center");
      }
      return;
    }
    if (!strong && r < 4) return;
    const size = Math.round((strong ? 14 : 12) * labelScale);
    const font = `${strong ? "600 " : ""}${size}px system-ui, sans-serif`;
    const ok = put(mk.label, font, strong ? "#f4f7fb" : "#c4cfde", sx + r + 5, sy, "left");
    const subSize = Math.round(11 * labelScale);
    if (ok && mk.sublabel && (strong || k >= 1.6)) put(mk.sublabel, `${subSize}px system-ui, sans-serif`, "#8796ab", sx + r + 5, sy + size / 2 + subSize / 2 + 8, "left");
  };
  // marks are not written over: their screen boxes are taken first (groups, and leaves drawn big enough to matter)
  for (const list of fills.values()) {
    for (const [mk, p] of list) {
      const r = p.r * k;
      if (r < 3 && mk.kind !== "group") continue;
      const [sx, sy] = toScreen(s.cam, p.x, p.y);
      // the inscribed square: labels may graze a circle's rim, never cross its middle
      grid.fill(sx - r * 0.7, sy - r * 0.7, sx + r * 0.7, sy + r * 0.7);
    }
  }
  const picked = new Set<string>();
  for (const id of s.strong) {
    const mk = id ? s.marks.get(id) : undefined;
    const p = id ? s.placed[id] : undefined;
    if (mk && p && !p.container && !picked.has(mk.id)) {
      picked.add(mk.id);
      leafLabel(mk, p, true);
    }
  }
  // container titles: "label · count", top-left of the box (top of the circle in the force view)
  for (const [mk, p] of containers) {
    const [sx, sy] = toScreen(s.cam, p.x - (layered ? p.w / 2 : 0), p.y - (layered ? p.h / 2 : p.r));
    if ((layered ? p.w : p.r) * k < 50) continue;
    const font = "600 13px system-ui, sans-serif";
    // cut to the box (a title running over the next box reads as that box's)
    const title = cutToWidth(`${mk.label} · ${countText(mk)}`, (layered ? p.w : 2 * p.r) * k - 16, (t) => s.widths.width(c, font, t));
    put(title, font, "#dbe4f0", layered ? sx + 8 : sx, sy + (layered ? 12 : -10), layered ? "left" : "center");
  }
  const rest: [Mark, Placed][] = [];
  for (const list of fills.values()) for (const e of list) if (!picked.has(e[0].id)) rest.push(e);
  for (const [mk, p] of byLabelPriority(rest)) leafLabel(mk, p, false);
}
