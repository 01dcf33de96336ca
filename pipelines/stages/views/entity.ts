/**
 * One entity for a drawer, and search by the names people use (pure): a page that holds only its marks still shows
 * an entity's properties and neighbours, and a search list says which host each `postgres` runs on.
 */
import { type MarkHealth, type ViewEntity, type ViewSearch } from "../../contracts/view.ts";
import { healthRank } from "./compute.ts";
import type { HealthMaps, ViewGraph } from "./model.ts";
import { nodeLabel } from "./names.ts";

const HEALTH_BY_RANK: MarkHealth[] = ["ok", "unknown", "stale", "warning", "critical"];
const MAX_NEIGHBOURS = 200;

/** The entity with its short name, health and neighbours; null when the graph has no such node. */
export function entityOf(g: ViewGraph, h: HealthMaps, id: string): ViewEntity | null {
  const n = g.nodes.get(id);
  if (!n) return null;
  const hostName = g.hostName;
  const neighbours: ViewEntity["neighbours"] = [];
  const add = (other: string | undefined, edge: string, dir: "in" | "out") => {
    if (!other || neighbours.length >= MAX_NEIGHBOURS * 4) return;
    const m = g.nodes.get(other);
    if (!m) return;
    const { label, sublabel } = nodeLabel(m, hostName);
    neighbours.push({ id: other, kind: m.kind === "process" ? "service" : m.kind, label, ...(sublabel ? { sublabel } : {}), edge, dir });
  };
  const first = <T>(xs: Iterable<T> | undefined) => [...(xs ?? [])].slice(0, MAX_NEIGHBOURS);
  if (n.kind === "host") for (const s of first(g.servicesOf.get(id))) add(s, "RUNS", "out");
  if (n.kind === "process") add(g.hostOf.get(id), "RUNS", "in");
  for (const l of first(g.listenersOf.get(id))) add(l, "LISTENS", "out");
  if (n.kind === "listener") add(g.ownerOf.get(id), "LISTENS", "in");
  for (const e of first(g.callsOut.get(id))) add(g.calls.get(e)?.dst, "CONNECTS", "out");
  for (const e of first(g.callsIn.get(id))) add(g.calls.get(e)?.src, "CONNECTS", "in");
  const { label, sublabel } = nodeLabel(n, hostName);
  return {
    id,
    kind: n.kind === "process" ? "service" : n.kind,
    label,
    ...(sublabel ? { sublabel } : {}),
    health: HEALTH_BY_RANK[healthRank(h, id, n)]!,
    impacted: h.impact.has(id),
    alerts: h.entities.get(id)?.alerts ?? [],
    node: n,
    neighbours,
  };
}

/**
 * Entities whose short name, host, id or DNS name contains `q` (case-insensitive), worst health first, then by name
 * and host; `total` counts every match.
 */
export function searchEntities(g: ViewGraph, h: HealthMaps, q: string, limit: number): ViewSearch {
  const needle = q.toLowerCase();
  const hostName = g.hostName;
  const hits: (ViewSearch["items"][number] & { rank: number })[] = [];
  for (const n of g.nodes.values()) {
    const { label, sublabel } = nodeLabel(n, hostName);
    const dns = typeof n.props.dnsName === "string" ? n.props.dnsName : "";
    if (!label.toLowerCase().includes(needle) && !(sublabel ?? "").toLowerCase().includes(needle) && !n.id.toLowerCase().includes(needle) && !dns.toLowerCase().includes(needle)) continue;
    const rank = healthRank(h, n.id, n);
    hits.push({ id: n.id, kind: n.kind === "process" ? "service" : n.kind, label, ...(sublabel ? { sublabel } : {}), health: HEALTH_BY_RANK[rank]!, impacted: h.impact.has(n.id), rank });
  }
  hits.sort((a, b) => b.rank - a.rank || a.label.localeCompare(b.label) || (a.sublabel ?? "").localeCompare(b.sublabel ?? "") || (a.id < b.id ? -1 : 1));
  return { q, total: hits.length, items: hits.slice(0, limit).map(({ rank, ...it }) => it) };
}


