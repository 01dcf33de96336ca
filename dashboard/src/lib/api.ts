/** Gateway HTTP reads used by the side panel; failures come back as values, never as thrown errors. */
import { z } from "zod";
import { ViewEntity, ViewSearch } from "../../../pipelines/contracts/view.ts";

export const SeriesPoint = z.object({ t: z.number(), v: z.number().nullable() });
export type SeriesPoint = z.infer<typeof SeriesPoint>;
/** `of`: the entity whose samples answered (a listener's service) when not the one asked for. */
export const SeriesResponse = z.object({ entity: z.string(), of: z.string().optional(), metric: z.string(), points: z.array(SeriesPoint) });
export type SeriesResponse = z.infer<typeof SeriesResponse>;
export const LatestResponse = z.object({
  entity: z.string(),
  of: z.string().optional(),
  values: z.record(z.string(), z.object({ t: z.number(), v: z.number().nullable() })),
});
export type LatestResponse = z.infer<typeof LatestResponse>;

export type ApiResult<T> = { ok: true; data: T } | { ok: false; status: number | null; error: string };

/** The gateway's own words for a refusal (`{"error": "…"}`), else the status. */
async function errorOf(res: Response): Promise<string> {
  try {
    const body = (await res.json()) as { error?: unknown };
    if (typeof body?.error === "string") return body.error;
  } catch {
    /* not JSON */
  }
  return `HTTP ${res.status}`;
}

export async function getJson<T>(url: string, schema: z.ZodType<T>, signal?: AbortSignal, init?: RequestInit): Promise<ApiResult<T>> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal, headers: { accept: "application/json", ...(init?.body ? { "content-type": "application/json" } : {}) } });
  } catch (err) {
    return { ok: false, status: null, error: err instanceof Error ? err.message : String(err) };
  }
  if (!res.ok) return { ok: false, status: res.status, error: await errorOf(res) };
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    return { ok: false, status: res.status, error: "response is not JSON" };
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) return { ok: false, status: res.status, error: `unexpected response: ${parsed.error.issues[0]?.message}` };
  return { ok: true, data: parsed.data };
}

export function fetchLatest(entity: string, signal?: AbortSignal): Promise<ApiResult<LatestResponse>> {
  return getJson(`/api/metrics/latest?entity=${encodeURIComponent(entity)}`, LatestResponse, signal);
}

export function fetchSeries(
  q: { entity: string; metric: string; from: number; to: number; step: number },
  signal?: AbortSignal,
): Promise<ApiResult<SeriesResponse>> {
  const p = new URLSearchParams({
    entity: q.entity,
    metric: q.metric,
    from: String(q.from),
    to: String(q.to),
    step: String(q.step),
  });
  return getJson(`/api/series?${p}`, SeriesResponse, signal);
}

/** One entity for the drawer (GET /api/view/entity): its node, short name, health, alert fingerprints, neighbours. */
export function fetchEntity(id: string, signal?: AbortSignal): Promise<ApiResult<ViewEntity>> {
  return getJson(`/api/view/entity?id=${encodeURIComponent(id)}`, ViewEntity, signal);
}

/** Entities by name, each with its host (GET /api/view/search). */
export function fetchSearch(q: string, limit: number, signal?: AbortSignal): Promise<ApiResult<ViewSearch>> {
  return getJson(`/api/view/search?q=${encodeURIComponent(q)}&limit=${limit}`, ViewSearch, signal);
}

const ImpactOf = z.object({
  upstream: z.array(z.object({ id: z.string(), kind: z.string(), hops: z.number() })),
  truncated: z.boolean(),
});
export type ImpactOf = z.infer<typeof ImpactOf>;

/** What depends on an entity within `hops` (GET /api/impact?direction=up): its blast radius, nearest first. */
export function fetchDependants(id: string, limit: number, signal?: AbortSignal): Promise<ApiResult<ImpactOf>> {
  return getJson(`/api/impact?id=${encodeURIComponent(id)}&direction=up&hops=6&limit=${limit}`, ImpactOf, signal);
}
