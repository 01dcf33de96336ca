/**
 * Orrery entities → a vendor's configuration items, by the exporter's mapping (pipelines/contracts/exporters.ts).
 * Pure: the adapters send what these functions return.
 */
import type { ClassMapping, ExporterConfig, SourceExpr } from "../../pipelines/contracts/exporters.ts";
import type { TopoEdge, TopoNode } from "../../pipelines/contracts/topology.ts";
import type { EntityHealth } from "../../pipelines/contracts/health.ts";

export type Scalar = string | number | boolean | null;

export interface MappedCi {
  /** the Orrery entity id */
  ref: string;
  kind: string;
  class: string;
  name: string;
  values: Record<string, Scalar>;
  /** the attributes that identify it at the vendor (lookup / reconciliation key), a subset of values */
  keys: Record<string, Scalar>;
}

export interface MappedRel {
  ref: string;
  /** the vendor's relation type */
  type: string;
  src: string;
  dst: string;
}

export interface MappedIncident {
  /** the entity the incident is about */
  ref: string;
  name: string;
  health: EntityHealth;
  alerts: string[];
  summary: string;
  fields: Record<string, Scalar>;
}

type Entity = Pick<TopoNode, "id" | "kind" | "name" | "source" | "props">;

export function evaluate(expr: SourceExpr, e: Entity): Scalar {
  if (expr.startsWith("=")) return expr.slice(1);
  if (expr.startsWith("props.")) return e.props[expr.slice(6)] ?? null;
  if (expr === "id" || expr === "name" || expr === "kind" || expr === "source") return e[expr];
  return null;
}

export function mapValues(attrs: Record<string, SourceExpr>, e: Entity): Record<string, Scalar> {
  const out: Record<string, Scalar> = {};
  for (const [k, expr] of Object.entries(attrs)) out[k] = evaluate(expr, e);
  return out;
}

/** The item a node becomes, or null when its kind is not exported. */
export function mapNode(cfg: Pick<ExporterConfig, "classes">, n: Entity): MappedCi | null {
  const m: ClassMapping | undefined = cfg.classes[n.kind as keyof ExporterConfig["classes"]];
  if (!m) return null;
  const values = mapValues(m.attributes, n);
  const keyNames = m.keys.length ? m.keys : Object.keys(m.attributes).slice(0, 1);
  const keys: Record<string, Scalar> = {};
  for (const k of keyNames) keys[k] = values[k] ?? null;
  return { ref: n.id, kind: n.kind, class: m.class, name: n.name, values, keys };
}

/** The relation an edge becomes, or null when its kind is not exported. */
export function mapEdge(cfg: Pick<ExporterConfig, "relations">, e: Pick<TopoEdge, "id" | "kind" | "src" | "dst">): MappedRel | null {
  const type = cfg.relations[e.kind];
  return type ? { ref: e.id, type, src: e.src, dst: e.dst } : null;
}

const RANK: Record<EntityHealth, number> = { ok: 0, unknown: 0, warning: 1, critical: 2 };
/** Whether an entity at `health` should have an open incident. */
export const wantsIncident = (cfg: Pick<ExporterConfig, "incidents">, health: EntityHealth) => cfg.incidents.enabled && RANK[health] >= RANK[cfg.incidents.minHealth];

export function mapIncident(cfg: Pick<ExporterConfig, "incidents">, e: Entity, health: EntityHealth, alerts: string[]): MappedIncident {
  return {
    ref: e.id,
    name: e.name,
    health,
    alerts,
    summary: `${health} on ${e.kind} ${e.name} (Orrery)`,
    fields: mapValues(cfg.incidents.fields, e),
  };
}

/** A stable digest of what is sent: an item whose mapped values did not change is not sent again. */
export function digest(v: unknown): string {
  return new Bun.CryptoHasher("sha256").update(JSON.stringify(v)).digest("hex").slice(0, 24);
}

/** A registry component as an entity the mapping reads (id component:<id>, kind "component", props = its fields). */
export function componentEntity(id: string, after: Record<string, unknown>): Entity {
  const props: Record<string, Scalar> = {};
  for (const [k, v] of Object.entries(after)) {
    if (v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean") props[k] = v;
    else if (Array.isArray(v)) props[k] = v.map((x) => (typeof x === "string" ? x : JSON.stringify(x))).join(", ");
  }
  return { id: `component:${id}`, kind: "component" as Entity["kind"], name: String(after.name ?? id), source: "registry", props };
}

/** The item a registry component becomes, or null when components are not exported. */
export function mapComponent(cfg: Pick<ExporterConfig, "components">, e: Entity): MappedCi | null {
  const m = cfg.components;
  if (!m) return null;
  const ci = mapNode({ classes: { host: m } }, { ...e, kind: "host" });
  return ci && { ...ci, kind: "component" };
}
