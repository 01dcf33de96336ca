/**
 * The registry pages' calls to the gateway (/api/registry/*). Failures are values: the gateway's message, its code
 * and, for a 409, `detail.current` (the record as it is now), so a page can show what changed under it.
 */
import { z } from "zod";
import {
  AuditList,
  Component,
  ComponentDetail,
  ComponentList,
  Drift,
  ImportProgress,
  ImportReport,
  Readiness,
  Requirement,
  RequirementGroup,
  RequirementStatus,
  ServiceComponents,
  type ComponentPatch,
} from "../../../pipelines/contracts/registry.ts";
import { atLeast, Role } from "../../../pipelines/contracts/identity.ts";

export type Result<T> = { ok: true; data: T } | { ok: false; status: number | null; error: string; code?: string; detail?: unknown };

const ErrorBody = z.object({ error: z.string(), code: z.string().optional(), detail: z.unknown().optional() });

async function call<T>(url: string, schema: z.ZodType<T>, init: RequestInit = {}, signal?: AbortSignal): Promise<Result<T>> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal, headers: { accept: "application/json", ...(typeof init.body === "string" ? { "content-type": "application/json" } : {}), ...(init.headers as Record<string, string> | undefined) } });
  } catch (err) {
    return { ok: false, status: null, error: `the gateway cannot be reached: ${err instanceof Error ? err.message : String(err)}` };
  }
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    return { ok: false, status: res.status, error: res.ok ? "the answer is not JSON" : `HTTP ${res.status}` };
  }
  if (!res.ok) {
    const e = ErrorBody.safeParse(body);
    return e.success ? { ok: false, status: res.status, error: e.data.error, code: e.data.code, detail: e.data.detail } : { ok: false, status: res.status, error: `HTTP ${res.status}` };
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) return { ok: false, status: res.status, error: `unexpected answer: ${parsed.error.issues[0]?.path.join(".")} ${parsed.error.issues[0]?.message}` };
  if (init.method && init.method !== "GET") registryChanged();
  return { ok: true, data: parsed.data };
}

/** Fired on window when a change made through these calls succeeded: the map's drift badges read drift again. */
export const REGISTRY_CHANGED = "orrery:registry-changed";
const registryChanged = () => {
  if (typeof window !== "undefined") window.dispatchEvent(new Event(REGISTRY_CHANGED));
};
export function onRegistryChanged(cb: () => void): () => void {
  if (typeof window === "undefined") return () => {};
  window.addEventListener(REGISTRY_CHANGED, cb);
  return () => window.removeEventListener(REGISTRY_CHANGED, cb);
}

const enc = encodeURIComponent;
const BASE = "/api/registry";

export const Me = z.object({ login: z.string(), role: Role, via: z.string() });
export type Me = z.infer<typeof Me>;
export const fetchMe = () => call("/api/me", Me);

export function searchComponents(q: { q?: string; tags: string[]; limit: number; offset: number }, signal?: AbortSignal) {
  const p = new URLSearchParams();
  if (q.q) p.set("q", q.q);
  if (q.tags.length) p.set("tag", q.tags.join(","));
  p.set("limit", String(q.limit));
  p.set("offset", String(q.offset));
  return call(`${BASE}/components?${p}`, ComponentList, {}, signal);
}
export const fetchComponent = (id: string, signal?: AbortSignal) => call(`${BASE}/components/${enc(id)}`, ComponentDetail, {}, signal);
export const patchComponent = (id: string, patch: ComponentPatch) => call(`${BASE}/components/${enc(id)}`, Component, { method: "PATCH", body: JSON.stringify(patch) });

export const Lists = z.object({ category: z.array(z.string()), lifecycle: z.array(z.string()), privacy: z.array(z.string()), location: z.array(z.string()) });
export type Lists = z.infer<typeof Lists>;
export const fetchLists = () => call(`${BASE}/lists`, Lists);

export const RequirementsAnswer = z.object({ groups: z.array(RequirementGroup), requirements: z.array(Requirement) });
export type RequirementsAnswer = z.infer<typeof RequirementsAnswer>;
export const fetchRequirements = () => call(`${BASE}/requirements`, RequirementsAnswer);
export const putStatus = (id: string, req: string, body: { status: string; notes: string; links: string[]; rev: number }) =>
  call(`${BASE}/components/${enc(id)}/requirements/${enc(req)}`, RequirementStatus, { method: "PUT", body: JSON.stringify(body) });
export const signOff = (id: string, req: string, rev: number) => call(`${BASE}/components/${enc(id)}/requirements/${enc(req)}/signoff`, RequirementStatus, { method: "POST", body: JSON.stringify({ rev }) });

export const fetchAudit = (id?: string, limit = 200) => call(id ? `${BASE}/components/${enc(id)}/audit?limit=${limit}` : `${BASE}/audit?limit=${limit}`, AuditList);

export const ReadinessAnswer = z.object({ estate: Readiness, components: z.array(z.object({ id: z.string(), readiness: Readiness })) });
export const fetchReadiness = () => call(`${BASE}/readiness`, ReadinessAnswer);
export const fetchDrift = () => call(`${BASE}/drift`, Drift);
/** The components a discovered service is an instance of (the map's drawer). */
export const fetchServiceComponents = (id: string, signal?: AbortSignal) => call(`${BASE}/services?id=${enc(id)}`, ServiceComponents, {}, signal);

/**
 * An import (a dry run or an apply): the file as the body, progress lines read from the NDJSON answer as they come,
 * the last line being the report or the error.
 */
export async function runImport(file: File, dryRun: boolean, onProgress: (p: ImportProgress) => void): Promise<Result<ImportReport>> {
  const format = /\.xlsx$/i.test(file.name) ? "xlsx" : /\.csv$/i.test(file.name) ? "csv" : null;
  if (!format) return { ok: false, status: null, error: `"${file.name}" is neither a .csv nor an .xlsx file` };
  if (file.size === 0) return { ok: false, status: null, error: `"${file.name}" is empty` };
  let res: Response;
  try {
    res = await fetch(`${BASE}/import?format=${format}&dryRun=${dryRun}&file=${enc(file.name)}`, { method: "POST", headers: { accept: "application/x-ndjson" }, body: file });
  } catch (err) {
    return { ok: false, status: null, error: `the gateway cannot be reached: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (!res.ok || !res.body || !(res.headers.get("content-type") ?? "").includes("ndjson")) {
    const e = ErrorBody.safeParse(await res.json().catch(() => null));
    return { ok: false, status: res.status, error: e.success ? e.data.error : `HTTP ${res.status}` };
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let last: Result<ImportReport> = { ok: false, status: res.status, error: "the import ended without a report" };
  const Line = z.union([z.object({ progress: ImportProgress }), z.object({ report: ImportReport }), z.object({ error: z.string(), code: z.string().optional(), status: z.number().optional() })]);
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buf += value;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const text = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!text) continue;
      const l = Line.safeParse(JSON.parse(text));
      if (!l.success) continue;
      if ("progress" in l.data) onProgress(l.data.progress);
      else if ("report" in l.data) {
        last = { ok: true, data: l.data.report };
        if (l.data.report.applied) registryChanged();
      } else last = { ok: false, status: l.data.status ?? res.status, error: l.data.error, code: l.data.code };
    }
    if (done) break;
  }
  return last;
}

/** What the page offers; the registry decides (owners by directory group are known to it, not to the page). */
export function mayEdit(me: Me | null, c: Pick<Component, "owners" | "maintainers">): boolean {
  if (!me) return false;
  if (me.role === "admin") return true;
  const parties = [...c.owners, ...c.maintainers];
  // a group owner may include this user: offer the controls and let the registry answer
  return parties.includes(`user:${me.login}`) || parties.some((p) => p.startsWith("group:"));
}
export const holdsRole = (me: Me | null, role: Role): boolean => !!me && atLeast(me.role, role);
