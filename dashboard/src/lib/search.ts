/** Entity search for the side panel: every token must match the name, id, kind or a prop value. */
import type { NodeKind, TopoNode } from "../../../pipelines/contracts/topology.ts";
import { HEALTH_RANK, KIND_RANK, healthOf } from "./colors.ts";

// Nodes are replaced (never mutated) by applyDelta, so a WeakMap keyed by the node object is a safe cache.
const haystacks = new WeakMap<TopoNode, string>();
const SEP = "\u0000";
/** Natural order, so web-2 sorts before web-10. */
const byName = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

function haystack(n: TopoNode): string {
  let h = haystacks.get(n);
  if (h === undefined) {
    const parts = [n.name, n.id, n.kind];
    for (const v of Object.values(n.props)) if (v !== null) parts.push(String(v));
    h = (SEP + parts.join(SEP) + SEP).toLowerCase();
    haystacks.set(n, h);
  }
  return h;
}

export interface SearchResult {
  total: number;
  rows: TopoNode[];
}

/**
 * Filters and ranks nodes: exact matches (a port, an ip, a name) first, then name prefix, name substring, anything
 * else; ties by health severity, kind, name. Returns at most `limit` rows and the total match count.
 */
export function filterNodes(
  nodes: Iterable<TopoNode>,
  query: string,
  kinds: ReadonlySet<NodeKind> | null,
  limit: number,
): SearchResult {
  const tokens = query.toLowerCase().split(/\s+/).filter(Boolean);
  const matched: { n: TopoNode; rank: number; name: string }[] = [];
  for (const n of nodes) {
    if (kinds && !kinds.has(n.kind)) continue;
    let score = 0;
    if (tokens.length) {
      const h = haystack(n);
      const name = n.name.toLowerCase();
      let ok = true;
      let best = 3;
      for (const t of tokens) {
        if (!h.includes(t)) {
          ok = false;
          break;
        }
        const s = name === t || h.includes(SEP + t + SEP) ? 0 : name.startsWith(t) ? 1 : name.includes(t) ? 2 : 3;
        if (s < best) best = s;
      }
      if (!ok) continue;
      score = best;
    }
    const health = healthOf(n);
    const rank = score * 100 + (health ? HEALTH_RANK[health] : HEALTH_RANK.unknown) * 10 + KIND_RANK[n.kind];
    matched.push({ n, rank, name: n.name });
  }
  matched.sort((a, b) => a.rank - b.rank || byName.compare(a.name, b.name));
  const rows = new Array<TopoNode>(Math.min(limit, matched.length));
  for (let i = 0; i < rows.length; i++) rows[i] = matched[i]!.n;
  return { total: matched.length, rows };
}

/** A short second line for a row: what identifies the entity besides its name. */
export function subtitle(n: TopoNode): string {
  const p = n.props;
  switch (n.kind) {
    case "listener":
      return [p.proto, p.ip != null && p.port != null ? `${p.ip}:${p.port}` : p.port].filter((v) => v != null).join(" ");
    case "process":
      return [p.pid != null ? `pid ${p.pid}` : null, p.user, p.exe].filter((v) => v != null).join(" · ");
    case "host":
      return [p.os, p.kernel].filter((v) => v != null).join(" · ");
    default:
      return n.id;
  }
}
