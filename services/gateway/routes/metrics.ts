/**
 * Metric reads for the dashboard and API users: series, top-N, latest values (one entity, or many for the map).
 * Every input is zod-validated; a bad one answers 400 with the reason. Handlers only call the SeriesStore port.
 */
import { z } from "zod";
import { MetricName } from "../../../pipelines/contracts/metrics.ts";
import { AGGS, SeriesQueryError, type SeriesStore } from "../../metrics/port.ts";
import type { Routes } from "../http.ts";

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

const issues = (e: z.ZodError) => e.issues.map((i) => `${i.path.join(".") || "input"}: ${i.message}`).join("; ");
const bad = (error: string) => Response.json({ error }, { status: 400 });

function query<S extends z.ZodType>(schema: S, req: Request): { ok: true; data: z.infer<S> } | { ok: false; res: Response } {
  const r = schema.safeParse(Object.fromEntries(new URL(req.url).searchParams));
  return r.success ? { ok: true, data: r.data } : { ok: false, res: bad(issues(r.error)) };
}

/** A store refusal is the caller's mistake (400); anything else is ours (500). */
async function answer(f: () => Promise<unknown>): Promise<Response> {
  try {
    return Response.json(await f());
  } catch (e) {
    if (e instanceof SeriesQueryError) return bad(e.message);
    return Response.json({ error: e instanceof Error ? e.message : String(e) }, { status: 500 });
  }
}

export function metricsRoutes(deps: { series: SeriesStore }): Routes {
  const { series } = deps;
  return {
    "/api/series": {
      GET: (req) => {
        const p = query(SeriesParams, req);
        if (!p.ok) return p.res;
        const { entity, metric, from, to, step, agg } = p.data;
        return answer(async () => ({ entity, metric, step, agg, points: await series.series({ entity, metric, from, to, stepSeconds: step, agg }) }));
      },
    },
    "/api/metrics/top": {
      GET: (req) => {
        const p = query(TopParams, req);
        if (!p.ok) return p.res;
        const { metric, window, n, by, order, at } = p.data;
        return answer(async () => ({ metric, windowSeconds: window, by, order, entries: await series.top({ metric, windowSeconds: window, n, by, order, at }) }));
      },
    },
    "/api/metrics/latest": {
      GET: (req) => {
        const p = query(LatestParams, req);
        if (!p.ok) return p.res;
        return answer(async () => ({ entity: p.data.entity, values: await series.latest(p.data.entity) }));
      },
      POST: async (req) => {
        let body: unknown;
        try {
          body = await req.json();
        } catch {
          return bad('body must be JSON: {"entities": ["host:web-1", …], "metrics"?: […], "lookback"?: "1h"}');
        }
        const r = LatestBody.safeParse(body);
        if (!r.success) return bad(issues(r.error));
        const { entities, metrics, lookback, at } = r.data;
        return answer(async () => ({ values: await series.latestMany({ entities, metrics, lookbackSeconds: lookback, at }) }));
      },
    },
  };
}
