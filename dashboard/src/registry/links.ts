/** Links out of the registry pages: to the map focused on an entity, and to a component's own links. */
import { DEFAULT_SPEC, pageParams } from "../lib/view-url.ts";

/** The map around one discovered entity (its URL state, lib/view-url.ts). */
export const mapHrefFor = (entityId: string): string => `${location.pathname}?${pageParams({ spec: { ...DEFAULT_SPEC, focus: { id: entityId, hops: 2, dir: "both" } }, layout: "layered" })}`;

/** Only http(s) links become anchors: a stored `javascript:` link is shown as text, never followed. */
export const safeHref = (u: string): string | null => (/^https?:\/\/\S+$/i.test(u.trim()) ? u.trim() : null);

/** `a, b ,, c` → [a, b, c] */
export const splitList = (s: string): string[] =>
  s
    .split(/[,;\n]/)
    .map((x) => x.trim())
    .filter(Boolean);
