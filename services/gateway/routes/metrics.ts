/**
 * Metric reads for the dashboard and API users: series, top-N, latest values (one entity, or many for the map).
 * Every input is zod-validated; a bad one answers 400 with the reason, as does a query the store refuses
 * (SeriesQueryError, mapped by toHttpError). Handlers only call the SeriesStore port.
 *
 * Agents sample hosts and services (pipelines/stages/agent-diff.ts); a listener has no samples of its own, so the
 * drawer said "no metrics" for every listener. A listener's numbers are its service's (its process's CPU, memory and
 * connections in): with `standIn` (listenerStandIn over the gateway's topology mirror), GET /api/metrics/latest and
 * /api/series for a listener answer the service that listens on it, and say so in `of`.
 */
import { z } from "zod";
import { MetricName } from "../../../pipelines/contracts/metrics.ts";
import { AGGS, type SeriesStore } from "../../metrics/port.ts";
import { parseBody, parseQuery, type Routes } from "../../shared/http.ts";
import type { TopologyMirror } from "../../topology/client.ts";

const MAX_POINTS = 11_000;
const MAX_ENTITIES = 10_000;
const Entity = z.string().min(1).max(512);
const Agg = z.enum(AGGS);

/** `300`, `30s`, `5m`, `1h`, `7d` → seconds. */
export const Duration = z
  .string()
  .regex(/^\d+[smhd]?$/, "a duration like 300, 30s, 5m, 1h or 7d")
  .transform((s) => {
    const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[s.at(-1)!] ?? 1;
    return Number.parseInt(s, 10) * unit;
  })
  .pipe(z.number().int().min(1, "at least 1 second").max(400 * 86_400, "at most 400 days"));

export const SeriesParams = z
  .object({
    entity: Entity,
    metric: MetricName,
    from: z.coerce.number().int().nonnegative(),
    to: z.coerce.number().int().positive(),
    step: z.coerce.number().int().min(1).max(86_400).default(60),
    agg: Agg.default("avg"),
  })
  .refine((p) => p.to > p.from, { message: "to must be after from", path: ["to"] })
  .refine((p) => (p.to - p.from) / 1000 / p.step <= MAX_POINTS, { message: `too many points: raise step or narrow the range (at most ${MAX_POINTS})`, path: ["step"] });

export const TopParams = z.object({
  metric: MetricName,
  window: Duration.default(300),
  n: z.coerce.number().int().min(1).max(1000).default(10),
  by: Agg.default("avg"),
  order: z.enum(["asc", "desc"]).default("desc"),
  at: z.coerce.number().int().positive().optional(),
});

export const LatestParams = z.object({ entity: Entity });

export const LatestBody = z.object({
  entities: z.array(Entity).min(1).max(MAX_ENTITIES),
  metrics: z.array(MetricName).max(1000).optional(),
  lookback: Duration.optional(),
  at: z.number().int().positive().optional(),
});

/** The entity whose samples stand for another (a listener's service), or undefined: it has its own. */
export type StandIn = (entity: string) => string | undefined;

/** A listener's service, from the LISTENS edge into it in the mirror (a scan of the edges: one drawer read). */
export function listenerStandIn(mirror: Pick<TopologyMirror, "mirror">): StandIn {
  return (entity) => {
    if (!entity.startsWith("listener:")) return undefined;
    for (const e of mirror.mirror().edges.values()) if (e.kind === "LISTENS" && e.dst === entity) return e.src;
    return undefined;
  };
}

export function metricsRoutes(deps: { series: SeriesStore; standIn?: StandIn }): Routes {
  const { series } = deps;
  const target = (entity: string) => {
    const other = deps.standIn?.(entity);
    return other === undefined || other === entity ? { id: entity } : { id: other, of: other };
  };
  return {
    "/api/series": {
      GET: async (req) => {
        const { entity, metric, from, to, step, agg } = parseQuery(SeriesParams, req);
        const t = target(entity);
        return Response.json({ entity, ...(t.of ? { of: t.of } : {}), metric, step, agg, points: await series.series({ entity: t.id, metric, from, to, stepSeconds: step, agg }) });
      },
    },
    "/api/metrics/top": {
      GET: async (req) => {
        const { metric, window, n, by, order, at } = parseQuery(TopParams, req);
        return Response.json({ metric, windowSeconds: window, by, order, entries: await series.top({ metric, windowSeconds: window, n, by, order, at }) });
      },
    },
    "/api/metrics/latest": {
      GET: async (req) => {
        const { entity } = parseQuery(LatestParams, req);
        const t = target(entity);
        return Response.json({ entity, ...(t.of ? { of: t.of } : {}), values: await series.latest(t.id) });
      },
      POST: async (req) => {
        const { entities, metrics, lookback, at } = await parseBody(LatestBody, req, '{"entities": ["host:web-1", …], "metrics"?: […], "lookback"?: "1h"}');
        return Response.json({ values: await series.latestMany({ entities, metrics, lookbackSeconds: lookback, at }) });
      },
    },
  };
}
