/**
 * What a view delta carries: the marks and links that changed since the last frame (compared by their JSON, since a
 * mark is a plain value), those gone, and the summary when it changed (its data age aside, which moves every tick).
 */
import type { Link, Mark, ViewDelta, ViewSummary } from "../../contracts/view.ts";
import type { ViewResult } from "./compute.ts";

export type ViewChange = Pick<ViewDelta, "marksUpserted" | "marksRemoved" | "linksUpserted" | "linksRemoved"> & { summary?: ViewSummary };

const summaryKey = (s: ViewSummary) => JSON.stringify({ ...s, dataAgeMs: 0 });

export class ViewDiffer {
  #marks = new Map<string, string>();
  #links = new Map<string, string>();
  #summary = "";

  /** Starts over from a snapshot's content. */
  reset(r: ViewResult): void {
    this.#marks = new Map(r.marks.map((m) => [m.id, JSON.stringify(m)]));
    this.#links = new Map(r.links.map((l) => [l.id, JSON.stringify(l)]));
    this.#summary = summaryKey(r.summary);
  }

  /** The change from the last content to `r` (null when nothing changed), and `r` becomes the last content. */
  diff(r: ViewResult): ViewChange | null {
    const marks = diffList(this.#marks, r.marks);
    const links = diffList(this.#links, r.links);
    this.#marks = marks.next;
    this.#links = links.next;
    const s = summaryKey(r.summary);
    const summaryChanged = s !== this.#summary;
    this.#summary = s;
    if (!marks.upserted.length && !marks.removed.length && !links.upserted.length && !links.removed.length && !summaryChanged) return null;
    return {
      marksUpserted: marks.upserted as Mark[],
      marksRemoved: marks.removed,
      linksUpserted: links.upserted as Link[],
      linksRemoved: links.removed,
      ...(summaryChanged ? { summary: r.summary } : {}),
    };
  }
}

function diffList<T extends { id: string }>(prev: Map<string, string>, items: readonly T[]) {
  const next = new Map<string, string>();
  const upserted: T[] = [];
  for (const it of items) {
    const j = JSON.stringify(it);
    next.set(it.id, j);
    if (prev.get(it.id) !== j) upserted.push(it);
  }
  const removed: string[] = [];
  for (const id of prev.keys()) if (!next.has(id)) removed.push(id);
  return { next, upserted, removed };
}
