/**
 * Entity health from the alert book (pure): the worst severity of the firing alerts mapped to an entity, and which
 * alerts count for it.
 */
import type { Severity } from "../../contracts/alerts.ts";
import type { EntityHealth, HealthEntry } from "../../contracts/health.ts";
import type { AlertBook, AlertEntry } from "./book.ts";

const RANK: Record<EntityHealth, number> = { ok: 0, unknown: 1, warning: 2, critical: 3 };
const severityHealth = (s: Severity): EntityHealth => (s === "critical" ? "critical" : s === "warning" ? "warning" : s === "unknown" ? "unknown" : "ok");

/** An alert counts for its entities unless resolved; only firing ones change the colour. */
export function countsForHealth(e: AlertEntry): boolean {
  return e.published.state !== "resolved";
}

/** The health of one entity from the fingerprints mapped to it. */
export function healthOfEntity(book: AlertBook, id: string, fingerprints: Iterable<string>): HealthEntry {
  const h: HealthEntry = { id, health: "ok", alerts: [] };
  for (const fp of fingerprints) {
    const e = book.entries.get(fp);
    if (!e || !countsForHealth(e)) continue;
    h.alerts.push(fp);
    if (e.published.state === "firing") {
      const s = severityHealth(e.published.severity);
      if (RANK[s] > RANK[h.health]) h.health = s;
    }
  }
  h.alerts.sort();
  return h;
}

/**
 * Per entity, the alerts that count for it (sorted) and how many firing ones of each health, kept up to date as
 * alerts change: an entity's health then costs its own counting alerts, not a look-up of every alert ever mapped to
 * it (under an alert storm an entity collects hundreds of resolved alerts that stay in the book for an hour).
 * `update(fp, entry)` after anything that changes an entry's published state or its entities (or with undefined
 * when it is forgotten); `health(id)` equals healthOfEntity over the fingerprints mapped to `id`.
 */
export class EntityHealthIndex {
  #of = new Map<string, { alerts: string[]; firing: [number, number, number, number] }>();
  /** the fingerprints that count for some entity: those entities, and the alert's health rank if firing (else -1) */
  #by = new Map<string, { entities: readonly string[]; rank: number }>();

  /** Records `fp`'s current contribution; returns whether it changed (its old and new entities need a look then). */
  update(fp: string, e: AlertEntry | undefined): boolean {
    const before = this.#by.get(fp);
    const counts = !!e && countsForHealth(e) && e.entities.length > 0;
    if (!counts) {
      if (!before) return false;
      for (const id of before.entities) this.#remove(id, fp, before.rank);
      this.#by.delete(fp);
      return true;
    }
    const entities = e!.entities.length > 1 ? [...new Set(e!.entities)] : e!.entities;
    const rank = e!.published.state === "firing" ? RANK[severityHealth(e!.published.severity)] : -1;
    if (before && before.rank === rank && sameList(before.entities, entities)) return false;
    if (before) for (const id of before.entities) this.#remove(id, fp, before.rank);
    for (const id of entities) this.#add(id, fp, rank);
    this.#by.set(fp, { entities: entities.slice(), rank });
    return true;
  }

  health(id: string): HealthEntry {
    const a = this.#of.get(id);
    if (!a) return { id, health: "ok", alerts: [] };
    let health: EntityHealth = "ok";
    for (let r = 3; r > 0; r--) {
      if (a.firing[r]! > 0) {
        health = HEALTH_OF_RANK[r]!;
        break;
      }
    }
    return { id, health, alerts: a.alerts.slice() };
  }

  #add(id: string, fp: string, rank: number) {
    let a = this.#of.get(id);
    if (!a) this.#of.set(id, (a = { alerts: [], firing: [0, 0, 0, 0] }));
    const at = lowerBound(a.alerts, fp);
    if (a.alerts[at] !== fp) a.alerts.splice(at, 0, fp);
    if (rank >= 0) a.firing[rank]!++;
  }

  #remove(id: string, fp: string, rank: number) {
    const a = this.#of.get(id);
    if (!a) return;
    const at = lowerBound(a.alerts, fp);
    if (a.alerts[at] === fp) a.alerts.splice(at, 1);
    if (rank >= 0) a.firing[rank]!--;
    if (!a.alerts.length) this.#of.delete(id);
  }
}

const HEALTH_OF_RANK: EntityHealth[] = ["ok", "unknown", "warning", "critical"];
const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
/** first index in sorted `xs` whose item is ≥ x (the order of Array.prototype.sort on strings) */
function lowerBound(xs: string[], x: string): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** entity id → fingerprints mapped to it, for every entry in the book. */
export function entityIndex(book: AlertBook): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const [fp, e] of book.entries) {
    for (const id of e.entities) {
      let set = out.get(id);
      if (!set) out.set(id, (set = new Set()));
      set.add(fp);
    }
  }
  return out;
}

/** entity id → health, for every entity with alerts that count. */
export function healthMap(book: AlertBook): Map<string, HealthEntry> {
  const out = new Map<string, HealthEntry>();
  for (const [id, fps] of entityIndex(book)) {
    const h = healthOfEntity(book, id, fps);
    if (h.alerts.length || h.health !== "ok") out.set(id, h);
  }
  return out;
}

/** Whether two health entries say the same (absent = ok with no alerts). */
export function sameHealth(a: HealthEntry | undefined, b: HealthEntry): boolean {
  if (!a) return b.health === "ok" && !b.alerts.length;
  return a.health === b.health && a.alerts.length === b.alerts.length && a.alerts.every((x, i) => x === b.alerts[i]);
}
