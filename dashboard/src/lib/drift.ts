/**
 * Drift on the map, pure: which components drift and why (from GET /api/registry/drift), and which of a view's marks
 * stand for them: a service mark whose entity is an instance of a drifting component, and a group of the
 * group-by-component view named after one (`group:component:<names>`, the registry's `component` annotation).
 * Components with no running instance have nothing on the map to badge; running services no component claims are
 * not a component's drift.
 */
import { componentIdOf, type Drift } from "../../../pipelines/contracts/registry.ts";
import type { Mark } from "../../../pipelines/contracts/view.ts";

/** Drifting component id → one line per finding, as the drawer says it. */
export function driftByComponent(d: Drift): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const add = (id: string, why: string) => {
    const l = out.get(id);
    if (l) l.push(why);
    else out.set(id, [why]);
  };
  for (const p of d.declaredNotSeen) {
    add(p.from, `declares ${p.to}, never seen`);
    add(p.to, `declared by ${p.from}, never seen`);
  }
  for (const p of d.seenNotDeclared) {
    add(p.from, `depends on ${p.to}, not declared`);
    add(p.to, `used by ${p.from}, not declared`);
  }
  return out;
}

/** A stable key of what drifts (the instances behind it are read again only when it changes). */
export const driftComponentsKey = (by: ReadonlyMap<string, string[]>): string => JSON.stringify([...by.keys()].sort());

/** The components a group-by-component group stands for (its key is the `component` annotation: names, ", "-joined). */
export function componentsOfGroup(markId: string): string[] {
  const prefix = "group:component:";
  if (!markId.startsWith(prefix)) return [];
  return markId
    .slice(prefix.length)
    .split(",")
    .map((s) => componentIdOf(s))
    .filter(Boolean);
}

/**
 * The marks to badge, with why: `components` (drifting component id → findings) and `instances` (entity id → the
 * drifting component ids it is an instance of).
 */
export function badgedMarks(marks: Iterable<Pick<Mark, "id" | "entityId">>, components: ReadonlyMap<string, string[]>, instances: ReadonlyMap<string, string[]>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (!components.size) return out;
  for (const m of marks) {
    const ids = m.entityId ? (instances.get(m.entityId) ?? []) : componentsOfGroup(m.id).filter((c) => components.has(c));
    if (!ids.length) continue;
    out.set(m.id, ids.flatMap((c) => (components.get(c) ?? []).map((why) => `${c}: ${why}`)));
  }
  return out;
}
