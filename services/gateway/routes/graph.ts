/**
 * Graph routes: impact analysis on the live mirror, and topology time travel from the history store.
 *   GET /api/impact?id=&id=…&alert=<fingerprint>&direction=up|down|both&hops=&kind=&limit=
 *                                      (an alert stands for the entities it is mapped to; ids and alerts combine)
 *   GET /api/topology/at?t=            the graph as it was at t (topology.snapshot.v1)
 *   GET /api/topology/diff?from=&to=   added / removed / changed nodes and edges between two times
 *   GET /api/topology/replay?from=&to=&limit=   change rows with from < ts ≤ to, in rev order (time slider)
 *   GET /api/topology/range            {earliest, latest, now}: the oldest and newest retained change (null when none)
 * Times are epoch milliseconds or ISO 8601. The impact index follows the mirror delta by delta and rebuilds itself
 * from the mirror after a resync or a gap, so a query never scans all edges.
 */
import { z } from "zod";
import { NodeKind } from "../../../pipelines/contracts/topology.ts";
import { DEFAULT_IMPACT_LIMIT, impact, ImpactIndex } from "../../../pipelines/stages/impact.ts";
import type { HistoryStore } from "../../history/port.ts";
import type { Logger } from "../../shared/log.ts";
import { HttpError, parseQuery, type Routes } from "../../shared/http.ts";
import type { TopologyMirror } from "../../topology/client.ts";

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** A time: epoch ms, ISO 8601, `now`, or a duration before now (`-15m`, `-1d`). */
const Time = z.string().min(1).transform((s, ctx) => {
  const rel = /^-(\d+)([smhd])$/.exec(s);
  const n = s === "now" ? Date.now() : rel ? Date.now() - Number(rel[1]) * UNIT_MS[rel[2]!]! : /^\d+$/.test(s) ? Number(s) : Date.parse(s);
  if (!Number.isSafeInteger(n) || n < 0) {
    ctx.addIssue({ code: "custom", message: `expected epoch milliseconds, an ISO 8601 time, "now" or "-<n>s|m|h|d", got "${s}"` });
    return z.NEVER;
  }
  return n;
});

export const ImpactParams = z.object({
  id: z.array(z.string().min(1).max(512)).max(1000).default([]),
  alert: z.array(z.string().min(1).max(512)).max(100).default([]),
  direction: z.enum(["up", "down", "both"]).default("both"),
  hops: z.coerce.number().int().min(1).max(32).default(6),
  kind: z.array(NodeKind).default([]),
  limit: z.coerce.number().int().min(1).max(100_000).default(DEFAULT_IMPACT_LIMIT),
}).refine((p) => p.id.length || p.alert.length, { message: "give at least one id or alert", path: ["id"] });
export const AtParams = z.object({ t: Time });
export const RangeParams = z.object({ from: Time, to: Time }).refine((p) => p.from < p.to, { message: "from must be before to", path: ["to"] });
export const ReplayParams = z
  .object({ from: Time, to: Time, limit: z.coerce.number().int().min(1).max(100_000).default(10_000) })
  .refine((p) => p.from < p.to, { message: "from must be before to", path: ["to"] });

/** An alert's mapped entities (null: no such alert), e.g. `alertEntitiesOf(bus)` from services/alerts/client.ts. */
export type AlertEntities = (fingerprint: string) => Promise<string[] | null>;

export function graphRoutes(deps: { mirror: TopologyMirror; history: HistoryStore; log?: Logger; alertEntities?: AlertEntities }): Routes {
  const { mirror, history } = deps;
  let index = ImpactIndex.fromMirror(mirror.mirror());
  const rebuild = () => {
    const t0 = performance.now();
    index = ImpactIndex.fromMirror(mirror.mirror());
    deps.log?.info("impact index rebuilt", { rev: index.rev, ...index.size, ms: Math.round(performance.now() - t0) });
  };
  mirror.onFrame((f) => {
    if (f.schema === "topology.snapshot.v1" || !index.applyDelta(f)) rebuild();
  });

  return {
    "/api/impact": {
      GET: async (req) => {
        const p = parseQuery(ImpactParams, req, { multi: ["id", "kind", "alert"], commaSeparated: ["kind"] });
        const ids = [...p.id];
        const alerts: Record<string, string[]> = {};
        if (p.alert.length) {
          if (!deps.alertEntities) throw new HttpError(501, "alert lookups are not configured on this gateway");
          for (const fp of p.alert) {
            const entities = await deps.alertEntities(fp);
            if (entities === null) throw new HttpError(404, `no such alert: ${fp}`);
            if (!entities.length) throw new HttpError(404, `alert ${fp} is not mapped onto the topology (GET /api/alerts/unmapped)`);
            alerts[fp] = entities;
            ids.push(...entities);
          }
        }
        if (!mirror.synced()) throw new HttpError(503, "topology mirror is not synced yet");
        if (index.rev !== mirror.mirror().rev) rebuild();
        const t0 = performance.now();
        const r = impact(index, { ids, direction: p.direction, hops: p.hops, kinds: p.kind, limit: p.limit });
        if (!r.roots.length) throw new HttpError(404, `no such entity in the live graph: ${r.missing.join(", ")}`);
        return Response.json({ ...r, ...(p.alert.length ? { alerts } : {}), direction: p.direction, hops: p.hops, ms: +(performance.now() - t0).toFixed(3) });
      },
    },
    "/api/topology/at": {
      GET: async (req) => {
        const p = parseQuery(AtParams, req);
        return Response.json(await history.stateAt(p.t));
      },
    },
    "/api/topology/diff": {
      GET: async (req) => {
        const p = parseQuery(RangeParams, req);
        return Response.json(await history.diff(p.from, p.to));
      },
    },
    "/api/topology/range": {
      GET: async () => Response.json({ ...(await history.bounds()), now: Date.now() }),
    },
    "/api/topology/replay": {
      GET: async (req) => {
        const p = parseQuery(ReplayParams, req);
        return Response.json(await history.replay(p.from, p.to, p.limit));
      },
    },
  };
}
