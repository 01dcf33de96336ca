/**
 * The path to an entity the page does not draw (it sits inside closed groups): which marks to open so that it is
 * drawn. The page holds no mirror, so the gateway answers (GET /api/view); plain TypeScript, so it is tested
 * against the real view stage without a browser.
 */
import { ViewSnapshot, type ViewSpec } from "../../../pipelines/contracts/view.ts";
/** Where an entity is drawn once the containers on its path are open: `open` to add to the spec, `target` to centre. */
export interface PathTo {
  open: string[];
  /** the entity's own mark, or the innermost mark holding it when it cannot be drawn on its own (a folded listener) */
  target: string;
}

/**
 * The containers to open so that `id` (a topology node id) is drawn in `spec`'s view. The page holds no mirror, so the
 * gateway is asked: the same view filtered to the entity (`q` matches ids) shows only what holds it; each closed
 * container there is opened and asked again, a few rounds at most (group → host → service). A container that refuses
 * to open (its note: too many inside) ends the walk there. Null when the gateway has no answer or no mark holds it.
 */
export async function pathTo(spec: ViewSpec, id: string, get: (url: string) => Promise<Response>): Promise<PathTo | null> {
  if (id.length > 256) return null;
  const open: string[] = [];
  let deepest: string | null = null;
  for (let round = 0; round < 5; round++) {
    const ask: ViewSpec = { ...spec, focus: undefined, open: [...spec.open, ...open], filters: { ...spec.filters, q: id } };
    let snap: ViewSnapshot;
    try {
      const r = await get(`/api/view?spec=${encodeURIComponent(JSON.stringify(ask))}`);
      if (!r.ok) return null;
      const parsed = ViewSnapshot.safeParse(await r.json());
      if (!parsed.success) return null;
      snap = parsed.data;
    } catch {
      return null;
    }
    const own = snap.marks.find((m) => m.id === id || m.entityId === id);
    if (own) return { open, target: own.id };
    const asked = new Set(ask.open);
    // closed containers left in the filtered view hold it (an id that is a prefix of others may open a neighbour too)
    const closed = snap.marks.filter((m) => !m.open && !m.note && !asked.has(m.id) && (m.kind === "group" || m.kind === "host" || m.count > 1));
    const last = snap.marks.at(-1);
    if (last) deepest = last.id;
    if (!closed.length || ask.open.length + closed.length > 200) break;
    open.push(...closed.map((m) => m.id));
  }
  return deepest ? { open, target: deepest } : null;
}
