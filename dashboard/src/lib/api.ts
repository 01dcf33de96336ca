/** Gateway HTTP reads used by the side panel; failures come back as values, never as thrown errors. */
import { z } from "zod";

export const SeriesPoint = z.object({ t: z.number(), v: z.number().nullable() });
export type SeriesPoint = z.infer<typeof SeriesPoint>;
export const SeriesResponse = z.object({ entity: z.string(), metric: z.string(), points: z.array(SeriesPoint) });
export type SeriesResponse = z.infer<typeof SeriesResponse>;
export const LatestResponse = z.object({
  entity: z.string(),
  values: z.record(z.string(), z.object({ t: z.number(), v: z.number().nullable() })),
});
export type LatestResponse = z.infer<typeof LatestResponse>;

export type ApiResult<T> = { ok: true; data: T } | { ok: false; status: number | null; error: string };

async function getJson<T>(url: string, schema: z.ZodType<T>, signal?: AbortSignal): Promise<ApiResult<T>> {
  let res: Response;
  try {
    res = await fetch(url, { signal, headers: { accept: "application/json" } });
  } catch (err) {
    return { ok: false, status: null, error: err instanceof Error ? err.message : String(err) };
  }
  if (!res.ok) return { ok: false, status: res.status, error: `HTTP ${res.status}` };
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
