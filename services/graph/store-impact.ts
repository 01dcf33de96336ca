/**
 * Impact over a stored graph, shared by the adapters: breadth-first over the raw edges with the dependency semantics
 * of pipelines/stages/impact.ts (CONNECTS: src depends on dst; LISTENS and RUNS: dst depends on src). One direction of
 * one hop is two Cypher statements that both engines accept as written; a mixed-direction walk cannot be a single
 * variable-length pattern (that needs Neo4j 5.9+ quantified path patterns, which 4.4 and Kuzu lack).
 * DEPENDS_ON is not followed: it is derived from CONNECTS + LISTENS, so following it would shorten path lengths.
 */
import type { NodeKind } from "../../pipelines/contracts/topology.ts";
import { validHops, type ImpactedEntity, type ImpactOptions, type StoreImpact } from "./port.ts";

type Run = (cypher: string, params: Record<string, unknown>) => Promise<Record<string, unknown>[]>;

const STEP = {
  // the dependants of the frontier
  upstream: [
    "MATCH (y:Entity)-[:CONNECTS]->(x:Entity) WHERE x.id IN $ids RETURN DISTINCT y.id AS id, y.kind AS kind, y.name AS name",
    "MATCH (x:Entity)-[:LISTENS|RUNS]->(y:Entity) WHERE x.id IN $ids RETURN DISTINCT y.id AS id, y.kind AS kind, y.name AS name",
  ],
  // the dependencies of the frontier
  downstream: [
    "MATCH (x:Entity)-[:CONNECTS]->(y:Entity) WHERE x.id IN $ids RETURN DISTINCT y.id AS id, y.kind AS kind, y.name AS name",
    "MATCH (y:Entity)-[:LISTENS|RUNS]->(x:Entity) WHERE x.id IN $ids RETURN DISTINCT y.id AS id, y.kind AS kind, y.name AS name",
  ],
} as const;

export async function storeImpact(run: Run, id: string, opts: ImpactOptions): Promise<StoreImpact> {
  const maxHops = validHops(opts.maxHops, "maxHops");
  const kinds = opts.kinds?.length ? new Set<string>(opts.kinds) : null;
  const exists = await run("MATCH (n:Entity) WHERE n.id = $id RETURN n.id AS id", { id });
  const walk = async (dir: "upstream" | "downstream"): Promise<ImpactedEntity[]> => {
    if (!exists.length || (opts.direction !== "both" && opts.direction !== dir)) return [];
    const seen = new Set([id]);
    const out: ImpactedEntity[] = [];
    let frontier = [id];
    for (let h = 1; h <= maxHops && frontier.length; h++) {
      const next: string[] = [];
      for (const q of STEP[dir])
        for (const r of await run(q, { ids: frontier })) {
          const nid = String(r.id);
          if (seen.has(nid)) continue;
          seen.add(nid);
          next.push(nid);
          if (!kinds || kinds.has(String(r.kind))) out.push({ id: nid, kind: r.kind as NodeKind, name: String(r.name), hops: h });
        }
      frontier = next;
    }
    return out;
  };
  return { upstream: await walk("upstream"), downstream: await walk("downstream") };
}
