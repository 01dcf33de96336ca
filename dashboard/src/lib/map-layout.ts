/**
 * Layouts of a view's marks, pure (it runs in a Web Worker: workers/layout.worker.ts), deterministic and stable:
 * the same marks give the same picture on every load, and a mark that arrives keeps the others where they were.
 *
 * Marks nest: an open group (or host, or service) is a container whose children are marks with `parent` = its id.
 * Both layouts work bottom-up: a container's children are laid out first, inside it, which gives the container's
 * size; then its siblings are laid out around it. Boxes never overlap, and links are drawn between absolute centres.
 *
 * - layered (the L4 architecture view): columns by `layer` (the gateway's DEPENDS_ON depth: callers left, what they
 *   depend on right); in a column, marks are ordered by the mean row of what links to them in earlier columns
 *   (a barycentre pass, so links run mostly straight), then by label. A tall column wraps into sub-columns.
 *   Our own layering rather than elkjs: ELK's layered algorithm spends seconds on a few thousand nodes with crossing
 *   minimisation, and the gateway has already assigned layers.
 * - force: d3-force, seeded: a mark starts where it was (known positions), else near its linked neighbours, else at
 *   a position hashed from its id; d3's jiggle uses a seeded random source, and a fixed number of ticks runs, so the
 *   result depends only on the input.
 */
import { forceCollide, forceLink, forceManyBody, forceSimulation, forceX, forceY, type SimulationNodeDatum } from "d3-force";

export type LayoutMode = "layered" | "force";

export interface LayoutMark {
  id: string;
  kind: string;
  label: string;
  parent?: string | undefined;
  layer: number;
  count: number;
  open?: boolean | undefined;
}

export interface LayoutLink {
  src: string;
  dst: string;
}

export interface LayoutInput {
  mode: LayoutMode;
  marks: LayoutMark[];
  links: LayoutLink[];
  /** positions of the previous layout (same mode): kept for marks still there */
  known?: Record<string, [number, number]>;
}

/** One laid-out mark: centre, and its drawn size (a circle of radius r, or a container box w × h). */
export interface Placed {
  x: number;
  y: number;
  r: number;
  /** containers only: box size (layered) — in force mode containers are circles (w = h = 2r) */
  w: number;
  h: number;
  container: boolean;
}

export interface LayoutResult {
  mode: LayoutMode;
  placed: Record<string, Placed>;
  ms: number;
}

/** A leaf or closed group's radius: grows with the log of what it holds, so a 5000-host group stays on screen. */
export function radiusOf(m: Pick<LayoutMark, "kind" | "count">): number {
  if (m.kind === "group") return 16 + 7 * Math.log10(Math.max(1, m.count));
  if (m.kind === "host") return 9 + 2 * Math.log10(Math.max(1, m.count));
  if (m.kind === "service") return 7;
  return 5;
}

/** FNV-1a: a stable 32-bit hash of an id (seeded positions, tie-breaks). */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A small seeded PRNG (mulberry32) for d3-force's jiggle. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const byLabel = (a: LayoutMark, b: LayoutMark) => (a.label < b.label ? -1 : a.label > b.label ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

interface Item {
  mark: LayoutMark;
  /** relative centre inside its parent */
  x: number;
  y: number;
  w: number;
  h: number;
  r: number;
  /** the drawn centre's offset from the item's box centre (a group's circle sits above its labels) */
  dy: number;
  container: boolean;
  children: Item[];
}

/** Room under a closed group's circle for its name, counts and health line (layout units ≈ px at the usual zoom). */
const GROUP_LABEL_ROOM = 64;

const HEADER = 26;
const PAD = 14;

export function layout(input: LayoutInput): LayoutResult {
  const t0 = performance.now();
  // canonical order: the gateway's order of marks and links must not change the picture
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  input = {
    ...input,
    marks: [...input.marks].sort((a, b) => cmp(a.id, b.id)),
    links: [...input.links].sort((a, b) => cmp(a.src, b.src) || cmp(a.dst, b.dst)),
  };
  const byId = new Map(input.marks.map((m) => [m.id, m]));
  const kids = new Map<string, LayoutMark[]>();
  const roots: LayoutMark[] = [];
  for (const m of input.marks) {
    const p = m.parent !== undefined && m.parent !== m.id && byId.has(m.parent) ? m.parent : undefined;
    if (p === undefined) roots.push(m);
    else {
      const list = kids.get(p);
      if (list) list.push(m);
      else kids.set(p, [m]);
    }
  }
  // Links between marks, lifted to siblings: a link between two children of different containers pulls the containers.
  const parentOf = (id: string) => {
    const m = byId.get(id);
    return m?.parent !== undefined && byId.has(m.parent) ? m.parent : undefined;
  };
  const ancestors = (id: string): string[] => {
    const out = [id];
    let p = parentOf(id);
    for (let guard = 0; p !== undefined && guard < 16; guard++) {
      out.push(p);
      p = parentOf(p);
    }
    return out;
  };
  const sibLinks = new Map<string, Set<string>>();
  const addSib = (a: string, b: string) => {
    let s = sibLinks.get(a);
    if (!s) sibLinks.set(a, (s = new Set()));
    s.add(b);
  };
  const linkPairs: [string, string][] = [];
  for (const l of input.links) {
    if (!byId.has(l.src) || !byId.has(l.dst) || l.src === l.dst) continue;
    const as = ancestors(l.src);
    const bs = ancestors(l.dst);
    // the highest pair of distinct ancestors that share a parent
    for (const a of as) {
      const pa = parentOf(a);
      const b = bs.find((x) => parentOf(x) === pa);
      if (b !== undefined && b !== a) {
        addSib(a, b);
        addSib(b, a);
        linkPairs.push([a, b]);
        break;
      }
    }
  }

  const known = input.known ?? {};
  const build = (m: LayoutMark, depth: number): Item => {
    const ch = depth < 8 ? (kids.get(m.id) ?? []) : [];
    if (!ch.length) {
      const r = radiusOf(m);
      const room = m.kind === "group" && input.mode === "layered" ? GROUP_LABEL_ROOM : 0;
      return { mark: m, x: 0, y: 0, w: Math.max(2 * r, room ? 110 : 0), h: 2 * r + room, r, dy: -room / 2, container: false, children: [] };
    }
    const items = ch.map((c) => build(c, depth + 1));
    if (input.mode === "layered") {
      const ext = arrangeLayered(items, sibLinks);
      const w = Math.max(ext.w + 2 * PAD, 170);
      const h = ext.h + 2 * PAD + HEADER;
      // children are centred at (0,0) in `arrange`; shift below the container's header
      for (const it of items) it.y += HEADER / 2;
      return { mark: m, x: 0, y: 0, w, h, r: Math.max(w, h) / 2, dy: 0, container: true, children: items };
    }
    const r = arrangeForce(items, linkPairs, known, m.id).r + PAD + 6;
    return { mark: m, x: 0, y: 0, w: 2 * r, h: 2 * r, r, dy: 0, container: true, children: items };
  };
  const top = roots.map((m) => build(m, 0));
  if (input.mode === "layered") arrangeLayered(top, sibLinks);
  else arrangeForce(top, linkPairs, known, "");

  const placed: Record<string, Placed> = {};
  const emit = (it: Item, ox: number, oy: number) => {
    const x = ox + it.x;
    const y = oy + it.y;
    placed[it.mark.id] = { x, y: y + it.dy, r: it.r, w: it.container ? it.w : 2 * it.r, h: it.container ? it.h : 2 * it.r, container: it.container };
    for (const c of it.children) emit(c, x, y);
  };
  for (const it of top) emit(it, 0, 0);
  return { mode: input.mode, placed, ms: performance.now() - t0 };
}

/** Columns by layer, barycentre order, wrapped sub-columns; sets items' relative centres; returns the extent. */
function arrangeLayered(items: Item[], links: Map<string, Set<string>>): { w: number; h: number } {
  const layers = new Map<number, Item[]>();
  for (const it of items) {
    const col = layers.get(it.mark.layer);
    if (col) col.push(it);
    else layers.set(it.mark.layer, [it]);
  }
  const order = [...layers.keys()].sort((a, b) => a - b);
  const row = new Map<string, number>();
  const GAP_X = 70;
  const GAP_Y = 12;
  // Aim for a wide picture (screens are 16:9): a column taller than this wraps.
  // n items of mean height a and mean width b in C columns of R rows: C·b / (R·a) ≈ 1.8 gives R·a = √(n·a·b / 1.8)
  const total = items.reduce((s, it) => s + it.h + GAP_Y, 0);
  const meanW = items.reduce((s, it) => s + it.w + GAP_X / 2.5, 0) / Math.max(1, items.length);
  const maxColH = Math.max(300, Math.sqrt((total * meanW) / 1.8));
  let x = 0;
  let maxH = 0;
  const cols: { items: Item[]; x: number; w: number; h: number }[] = [];
  for (const layer of order) {
    const col = layers.get(layer)!;
    col.sort((a, b) => a.mark.label.localeCompare(b.mark.label) || (a.mark.id < b.mark.id ? -1 : 1));
    // barycentre against rows already placed (earlier columns)
    const bary = new Map<Item, number>();
    for (const it of col) {
      let s = 0;
      let n = 0;
      for (const o of links.get(it.mark.id) ?? []) {
        const r = row.get(o);
        if (r !== undefined) (s += r), n++;
      }
      if (n) bary.set(it, s / n);
    }
    if (bary.size) {
      const idx = new Map(col.map((it, i) => [it, i]));
      col.sort((a, b) => {
        const ba = bary.get(a) ?? idx.get(a)! / col.length;
        const bb = bary.get(b) ?? idx.get(b)! / col.length;
        return ba - bb || idx.get(a)! - idx.get(b)!;
      });
    }
    col.forEach((it, i) => row.set(it.mark.id, i / Math.max(1, col.length - 1)));
    // wrap into sub-columns of balanced height
    const colH = col.reduce((s, it) => s + it.h + GAP_Y, 0);
    const nSub = Math.max(1, Math.ceil(colH / maxColH));
    const per = Math.ceil(col.length / nSub);
    for (let i = 0; i < col.length; i += per) {
      const sub = col.slice(i, i + per);
      const w = Math.max(...sub.map((s) => s.w));
      const h = sub.reduce((s, it) => s + it.h + GAP_Y, 0) - GAP_Y;
      cols.push({ items: sub, x: x + w / 2, w, h });
      maxH = Math.max(maxH, h);
      x += w + GAP_X / 2.5;
    }
    x += GAP_X - GAP_X / 2.5;
  }
  const width = Math.max(0, x - GAP_X);
  for (const c of cols) {
    let y = -c.h / 2;
    for (const it of c.items) {
      it.x = c.x - width / 2;
      it.y = y + it.h / 2;
      y += it.h + GAP_Y;
    }
  }
  return { w: width, h: maxH };
}

/** Past this many siblings d3-force costs seconds; a spiral is instant (and as stable). */
const FORCE_MAX = 150;

/**
 * Many siblings (a big open group): a sunflower spiral, callers nearer the centre (by layer, then label). Marks
 * placed before keep their slot; newcomers take the next free slots outward, so nothing already drawn moves.
 */
function arrangeSpiral(items: Item[], known: Record<string, [number, number]>, scope: string): { r: number } {
  const origin: [number, number] = (scope ? known[scope] : undefined) ?? [0, 0];
  const step = Math.max(...items.map((i) => i.r)) * 2 + 6;
  const slot = (i: number): [number, number] => {
    const a = i * 2.399963229728653;
    const d = step * 0.56 * Math.sqrt(i + 0.5);
    return [Math.cos(a) * d, Math.sin(a) * d];
  };
  const slotOf = (x: number, y: number) => Math.max(0, Math.round((Math.hypot(x, y) / (step * 0.56)) ** 2 - 0.5));
  const taken = new Set<number>();
  const fresh: Item[] = [];
  for (const it of items) {
    const k = known[it.mark.id];
    if (!k) {
      fresh.push(it);
      continue;
    }
    // snap to the slot it had (exact when the previous layout was this spiral)
    let s = slotOf(k[0] - origin[0], k[1] - origin[1]);
    while (taken.has(s)) s++;
    taken.add(s);
    [it.x, it.y] = slot(s);
  }
  fresh.sort((a, b) => a.mark.layer - b.mark.layer || byLabel(a.mark, b.mark));
  let next = 0;
  for (const it of fresh) {
    while (taken.has(next)) next++;
    taken.add(next);
    [it.x, it.y] = slot(next);
  }
  let r = 0;
  for (const it of items) r = Math.max(r, Math.hypot(it.x, it.y) + it.r);
  return { r };
}

type FNode = SimulationNodeDatum & { it: Item; kx?: number; ky?: number };

/** d3-force over siblings, seeded and run for a fixed number of ticks; returns the enclosing radius. */
function arrangeForce(items: Item[], pairs: [string, string][], known: Record<string, [number, number]>, scope: string): { r: number } {
  if (items.length === 1) {
    items[0]!.x = 0;
    items[0]!.y = 0;
    return { r: items[0]!.r };
  }
  items.sort((a, b) => (a.mark.id < b.mark.id ? -1 : 1));
  if (items.length > FORCE_MAX) return arrangeSpiral(items, known, scope);
  const ids = new Set(items.map((i) => i.mark.id));
  const links = pairs.filter(([a, b]) => ids.has(a) && ids.has(b) && a < b).map(([a, b]) => ({ source: a, target: b }));
  const spread = Math.sqrt(items.reduce((s, it) => s + it.r * it.r * 4, 0)) * 1.2;
  // Known positions are absolute from the previous layout; inside a container use them relative to its old centre.
  const origin: [number, number] = (scope ? known[scope] : undefined) ?? [0, 0];
  const nodes: FNode[] = items.map((it) => {
    const k = known[it.mark.id];
    if (k) return { it, x: k[0] - origin[0], y: k[1] - origin[1], kx: k[0] - origin[0], ky: k[1] - origin[1] };
    const h = hash32(it.mark.id);
    const a = ((h & 0xffff) / 0x10000) * 2 * Math.PI;
    const d = (0.3 + ((h >>> 16) / 0x10000) * 0.7) * spread;
    return { it, x: Math.cos(a) * d, y: Math.sin(a) * d };
  });
  // Newcomers start next to a known neighbour (so they do not fly across the map).
  const byId = new Map(nodes.map((n) => [n.it.mark.id, n]));
  for (const [a, b] of pairs) {
    const na = byId.get(a);
    const nb = byId.get(b);
    if (!na || !nb) continue;
    for (const [n, o] of [[na, nb], [nb, na]] as const) {
      if (n.kx === undefined && o.kx !== undefined && !(n as { placed?: boolean }).placed) {
        const h = hash32(n.it.mark.id);
        n.x = o.kx + (((h & 0xff) / 255) * 2 - 1) * (o.it.r + n.it.r + 20);
        n.y = o.ky! + ((((h >>> 8) & 0xff) / 255) * 2 - 1) * (o.it.r + n.it.r + 20);
        (n as { placed?: boolean }).placed = true;
      }
    }
  }
  const anyKnown = nodes.some((n) => n.kx !== undefined);
  const sim = forceSimulation<FNode>(nodes)
    .randomSource(seeded(hash32(scope || "root")))
    .force("charge", forceManyBody<FNode>().strength((n) => -30 - n.it.r * 2).distanceMax(600))
    .force("link", forceLink<FNode, { source: string | FNode; target: string | FNode }>(links).id((n) => n.it.mark.id).distance((l) => (l.source as FNode).it.r + (l.target as FNode).it.r + 30).strength(0.2))
    .force("collide", forceCollide<FNode>((n) => n.it.r + 4).iterations(2))
    .force("x", forceX<FNode>((n) => n.kx ?? 0).strength((n) => (n.kx !== undefined ? 0.4 : 0.04)))
    .force("y", forceY<FNode>((n) => n.ky ?? 0).strength((n) => (n.ky !== undefined ? 0.4 : 0.04)))
    .stop();
  if (anyKnown) sim.alpha(0.3);
  const ticks = anyKnown ? 60 : Math.min(200, 100 + items.length / 4);
  sim.tick(Math.ceil(ticks));
  // d3's collision force is soft: finish with exact separation (few siblings here, so pairs are cheap)
  for (let pass = 0; pass < 60; pass++) {
    let moved = false;
    for (let i = 0; i < nodes.length; i++) {
      const a = nodes[i]!;
      for (let j = i + 1; j < nodes.length; j++) {
        const b = nodes[j]!;
        const dx = b.x! - a.x!;
        const dy = b.y! - a.y!;
        const d = Math.hypot(dx, dy);
        const min = a.it.r + b.it.r + 4;
        if (d >= min) continue;
        // coincident centres part along a direction hashed from the pair (deterministic)
        const ang = d > 1e-6 ? Math.atan2(dy, dx) : (hash32(a.it.mark.id + b.it.mark.id) / 4294967296) * 2 * Math.PI;
        const push = (min - d) / 2 + 0.01;
        a.x! -= Math.cos(ang) * push;
        a.y! -= Math.sin(ang) * push;
        b.x! += Math.cos(ang) * push;
        b.y! += Math.sin(ang) * push;
        moved = true;
      }
    }
    if (!moved) break;
  }
  let cx = 0;
  let cy = 0;
  if (!anyKnown) {
    // centre a fresh layout; a layout seeded from known positions stays where it was
    for (const n of nodes) (cx += n.x!), (cy += n.y!);
    cx /= nodes.length;
    cy /= nodes.length;
  }
  let r = 0;
  for (const n of nodes) {
    n.it.x = n.x! - cx;
    n.it.y = n.y! - cy;
    r = Math.max(r, Math.hypot(n.it.x, n.it.y) + n.it.r);
  }
  return { r };
}
