/**
 * The page's URL is its state: the ViewSpec (level, grouping, open groups, filters, focus, time), the map's layout,
 * and the wallboard settings (rotation list and interval). Readable parameters rather than one JSON blob, so an
 * operator can edit a wallboard's URL by hand: `?level=hosts&group=site&open=group:site:eu&health=critical`.
 *
 * A parameter that does not parse is reported and left at its default, never thrown: a stale bookmark still loads.
 */
import { ViewSpec, type ViewSpecInput } from "../../../pipelines/contracts/view.ts";

export type MapLayout = "layered" | "force";

export interface PageState {
  spec: ViewSpec;
  layout: MapLayout;
}

export interface WallboardSettings {
  /** views to rotate through (empty: just the page's own view) */
  views: PageState[];
  /** seconds per view */
  everyS: number;
}

export interface ParsedUrl extends PageState {
  wall: WallboardSettings | null;
  /** what could not be read, e.g. `port: expected a number` */
  errors: string[];
}

export const DEFAULT_SPEC: ViewSpec = ViewSpec.parse({});
const DEFAULT_EVERY_S = 30;
const MIN_EVERY_S = 5;

/** Spec → query parameters; defaults are left out so URLs stay short. */
export function pageParams(s: PageState): URLSearchParams {
  const p = new URLSearchParams();
  const spec = s.spec;
  if (spec.level !== DEFAULT_SPEC.level) p.set("level", spec.level);
  if (spec.groupBy !== DEFAULT_SPEC.groupBy) p.set("group", spec.groupBy);
  for (const id of spec.open) p.append("open", id);
  if (spec.focus) {
    p.set("focus", spec.focus.id);
    if (spec.focus.hops !== 2) p.set("hops", String(spec.focus.hops));
    if (spec.focus.dir !== "both") p.set("dir", spec.focus.dir);
  }
  const f = spec.filters;
  for (const k of f.kinds ?? []) p.append("kind", k);
  for (const h of f.health ?? []) p.append("health", h);
  if (f.team) p.set("team", f.team);
  if (f.tag) p.set("tag", f.tag);
  if (f.port !== undefined) p.set("port", String(f.port));
  if (f.q) p.set("q", f.q);
  if (spec.at !== undefined) p.set("at", String(spec.at));
  if (s.layout !== "layered") p.set("layout", s.layout);
  return p;
}

/** Query parameters → page state; unreadable parameters go to `errors` and keep their defaults. */
export function parsePage(p: URLSearchParams): PageState & { errors: string[] } {
  const errors: string[] = [];
  const input: ViewSpecInput = { filters: {} };
  const filters: NonNullable<ViewSpecInput["filters"]> = {};
  const str = (k: string) => p.get(k) ?? undefined;
  const num = (k: string): number | undefined => {
    const v = p.get(k);
    if (v === null || v === "") return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) errors.push(`${k}: expected a number, got "${v}"`);
    return Number.isFinite(n) ? n : undefined;
  };
  if (p.has("level")) input.level = str("level") as ViewSpecInput["level"];
  if (p.has("group")) input.groupBy = str("group") as ViewSpecInput["groupBy"];
  if (p.has("open")) input.open = p.getAll("open").filter(Boolean);
  if (p.get("focus")) input.focus = { id: p.get("focus")!, hops: num("hops"), dir: str("dir") as "up" | "down" | "both" | undefined };
  if (p.has("kind")) filters.kinds = p.getAll("kind") as NonNullable<typeof filters.kinds>;
  if (p.has("health")) filters.health = p.getAll("health") as NonNullable<typeof filters.health>;
  if (p.get("team")) filters.team = str("team");
  if (p.get("tag")) filters.tag = str("tag");
  if (p.get("port")) filters.port = num("port");
  if (p.get("q")) filters.q = str("q");
  input.filters = filters;
  if (p.get("at")) input.at = num("at");
  let spec = DEFAULT_SPEC;
  const r = ViewSpec.safeParse(input);
  if (r.success) spec = r.data;
  else {
    // Drop only the fields that failed, keep the rest of the view.
    const bad = new Set(r.error.issues.map((i) => String(i.path[0] === "filters" ? `filters.${String(i.path[1])}` : i.path[0])));
    for (const i of r.error.issues) errors.push(`${i.path.join(".")}: ${i.message}`);
    const kept: Record<string, unknown> = { ...input, filters: { ...filters } };
    for (const b of bad) {
      if (b.startsWith("filters.")) delete (kept.filters as Record<string, unknown>)[b.slice(8)];
      else delete kept[b];
    }
    const again = ViewSpec.safeParse(kept);
    spec = again.success ? again.data : DEFAULT_SPEC;
  }
  const l = p.get("layout");
  if (l !== null && l !== "layered" && l !== "force") errors.push(`layout: expected layered or force, got "${l}"`);
  return { spec, layout: l === "force" ? "force" : "layered", errors };
}

/**
 * The whole URL: the page's view plus, with `wall=1`, the wallboard's rotation. Each `v` parameter is one view in
 * the same parameter language (`v=level%3Dgroups%26group%3Dteam`); `every` is seconds per view.
 */
export function parseUrl(search: string): ParsedUrl {
  const p = new URLSearchParams(search);
  const page = parsePage(p);
  let wall: WallboardSettings | null = null;
  if (p.get("wall") === "1" || p.get("wall") === "true") {
    const views: PageState[] = [];
    for (const v of p.getAll("v")) {
      const one = parsePage(new URLSearchParams(v));
      for (const e of one.errors) page.errors.push(`v (${v}): ${e}`);
      views.push({ spec: one.spec, layout: one.layout });
    }
    let everyS = DEFAULT_EVERY_S;
    const e = p.get("every");
    if (e !== null) {
      const n = Number(e);
      if (Number.isFinite(n) && n >= MIN_EVERY_S) everyS = n;
      else page.errors.push(`every: expected seconds ≥ ${MIN_EVERY_S}, got "${e}"`);
    }
    wall = { views, everyS };
  }
  return { ...page, wall };
}

/** The URL for a page state, keeping the wallboard parameters of the current one. */
export function urlFor(s: PageState, current: URLSearchParams): string {
  const p = pageParams(s);
  for (const k of ["wall", "every"]) if (current.has(k)) p.set(k, current.get(k)!);
  for (const v of current.getAll("v")) p.append("v", v);
  const q = p.toString();
  return q ? `?${q}` : "?";
}

/** Two specs ask for the same view (the gateway fills defaults, so compare parsed forms). */
export function sameSpec(a: ViewSpec, b: ViewSpec): boolean {
  return pageParams({ spec: a, layout: "layered" }).toString() === pageParams({ spec: b, layout: "layered" }).toString();
}
