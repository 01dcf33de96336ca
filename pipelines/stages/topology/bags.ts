/**
 * Small collections for the model's sets and counters. The model holds ~1M of them at 100k nodes / 500k edges, and
 * a JSC Set costs ~280 bytes with one element and ~3 KB with twenty (a Map the same), against ~60 and ~200 for an array. So small collections are arrays
 * (insertion order kept, as a Set's) and become a Set past BAG_MAX, where a linear scan would start to cost.
 */
export type Bag = string[] | Set<string>;
const BAG_MAX = 48;

export function bagAdd(b: Bag, v: string): Bag {
  if (!Array.isArray(b)) {
    b.add(v);
    return b;
  }
  if (b.includes(v)) return b;
  if (b.length < BAG_MAX) {
    b.push(v);
    return b;
  }
  const s = new Set(b);
  s.add(v);
  return s;
}

export function bagDelete(b: Bag, v: string): boolean {
  if (!Array.isArray(b)) return b.delete(v);
  const i = b.indexOf(v);
  if (i < 0) return false;
  b.splice(i, 1);
  return true;
}

const bagHas = (b: Bag, v: string) => (Array.isArray(b) ? b.includes(v) : b.has(v));
export const bagSize = (b: Bag) => (Array.isArray(b) ? b.length : b.size);
/** A Bag that is mostly of one element holds it alone (another ~60 bytes saved on each of ~200k flows and pairs). */
export type Slot = undefined | string | Bag;
export const slotAdd = (s: Slot, v: string): Slot => (s === undefined ? v : typeof s === "string" ? (s === v ? s : [s, v]) : bagAdd(s, v));
export const slotHas = (s: Slot, v: string) => (s === undefined ? false : typeof s === "string" ? s === v : bagHas(s, v));
export const slotSize = (s: Slot) => (s === undefined ? 0 : typeof s === "string" ? 1 : bagSize(s));
/** The slot without `v` (the same Bag, changed in place, when it is one). */
export function slotDelete(s: Slot, v: string): Slot {
  if (typeof s === "string") return s === v ? undefined : s;
  if (s !== undefined) bagDelete(s, v);
  return s;
}

export const slotValues = (s: Slot): Iterable<string> => (s === undefined ? [] : typeof s === "string" ? [s] : s);
/** key → count, as [key, count, key, count …] while small (see Bag), a Map past BAG_MAX keys */
export type Counts = (string | number)[] | Map<string, number>;
/** Adds `delta` to `key`'s count (dropping it at 0); returns the new count. */
export function countAdd(c: Counts, key: string, delta: number): { c: Counts; n: number } {
  if (!Array.isArray(c)) {
    const n = (c.get(key) ?? 0) + delta;
    if (n > 0) c.set(key, n);
    else c.delete(key);
    return { c, n };
  }
  for (let i = 0; i < c.length; i += 2)
    if (c[i] === key) {
      const n = (c[i + 1] as number) + delta;
      if (n > 0) c[i + 1] = n;
      else c.splice(i, 2);
      return { c, n };
    }
  if (delta <= 0) return { c, n: delta };
  if (c.length < 2 * BAG_MAX) {
    c.push(key, delta);
    return { c, n: delta };
  }
  const m = new Map<string, number>();
  for (let i = 0; i < c.length; i += 2) m.set(c[i] as string, c[i + 1] as number);
  m.set(key, delta);
  return { c: m, n: delta };
}

export function* countKeys(c: Counts | undefined): Generator<string> {
  if (!c) return;
  if (!Array.isArray(c)) yield* c.keys();
  else for (let i = 0; i < c.length; i += 2) yield c[i] as string;
}

export const countSize = (c: Counts) => (Array.isArray(c) ? c.length / 2 : c.size);

export function addTo(map: Map<string, Bag>, k: string, v: string) {
  const s = map.get(k);
  if (!s) map.set(k, [v]);
  else {
    const t = bagAdd(s, v);
    if (t !== s) map.set(k, t);
  }
}

/** `dropEmpty` false keeps an emptied entry (as the Sets it replaces were kept), so iteration order does not move. */
export function removeFrom(map: Map<string, Bag>, k: string, v: string, dropEmpty = true) {
  const s = map.get(k);
  if (!s) return;
  bagDelete(s, v);
  if (dropEmpty && !bagSize(s)) map.delete(k);
}
