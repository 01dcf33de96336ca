/**
 * Alerts for the side panel and the drawer, read from the gateway: open alerts in severity and age order with their
 * counts (GET /api/alerts?sort=), one entity's alerts (GET /api/alerts?entity=), and an alert's blast radius — what
 * depends on the entities it is mapped to (GET /api/impact?alert=&direction=up). Failures are values.
 */
import { z } from "zod";
import { AlertView, Severity } from "../../../pipelines/contracts/alerts.ts";
import { getJson, type ApiResult } from "./api.ts";

export const OpenAlerts = z.object({
  alerts: z.array(AlertView),
  total: z.number(),
  bySeverity: z.partialRecord(Severity, z.number()).optional(),
  unmapped: z.number().optional(),
  note: z.string().optional(),
});
export type OpenAlerts = z.infer<typeof OpenAlerts>;

export function fetchOpenAlerts(sort: "severity" | "age", limit: number, signal?: AbortSignal): Promise<ApiResult<OpenAlerts>> {
  return getJson(`/api/alerts?sort=${sort}&limit=${limit}`, OpenAlerts, signal);
}

export function fetchEntityAlerts(entity: string, signal?: AbortSignal): Promise<ApiResult<OpenAlerts>> {
  return getJson(`/api/alerts?sort=severity&entity=${encodeURIComponent(entity)}`, OpenAlerts, signal);
}

const Affected = z.object({ id: z.string(), kind: z.string(), hops: z.number(), via: z.string() });
const ImpactAnswer = z.object({ roots: z.array(z.string()), upstream: z.array(Affected), truncated: z.boolean() });

/** What an alert's failure reaches: every entity depending on it within `hops`, counted by kind. */
export interface BlastRadius {
  /** the entities the alert is mapped to */
  roots: string[];
  affected: number;
  services: number;
  hosts: number;
  truncated: boolean;
  /** the nearest affected ids (for a tooltip) */
  nearest: string[];
}

export const BLAST_LIMIT = 10_000;

/** The blast radius of an alert, or null when it is not mapped onto the topology (404 from the impact API). */
export async function fetchBlastRadius(fingerprint: string, signal?: AbortSignal): Promise<ApiResult<BlastRadius | null>> {
  const r = await getJson(`/api/impact?alert=${encodeURIComponent(fingerprint)}&direction=up&hops=6&limit=${BLAST_LIMIT}`, ImpactAnswer, signal);
  if (!r.ok) return r.status === 404 ? { ok: true, data: null } : r;
  const up = r.data.upstream;
  return {
    ok: true,
    data: {
      roots: r.data.roots,
      affected: up.length,
      services: up.filter((a) => a.kind === "process").length,
      hosts: up.filter((a) => a.kind === "host").length,
      truncated: r.data.truncated,
      nearest: up.slice(0, 8).map((a) => a.id),
    },
  };
}

export const SEVERITIES = ["critical", "warning", "unknown", "info", "ok"] as const;

const Me = z.object({ login: z.string(), role: z.string(), via: z.string() });
export type Me = z.infer<typeof Me>;

/** Who the page acts as (GET /api/me; with authentication off an anonymous admin, `via: "off"`). */
export function fetchMe(signal?: AbortSignal): Promise<ApiResult<Me>> {
  return getJson("/api/me", Me, signal);
}

/** Acknowledging is an operator's (or admin's) act, and only offered when there is someone to say who did it. */
export const canAcknowledge = (me: Me | null) => !!me && me.via !== "off" && ["operator", "expert", "admin"].includes(me.role);

export function acknowledge(fingerprint: string, comment?: string): Promise<ApiResult<{ acknowledged: string; at: number }>> {
  return getJson("/api/alerts/ack", z.object({ acknowledged: z.string(), at: z.number() }), undefined, {
    method: "POST",
    body: JSON.stringify({ fingerprint, ...(comment ? { comment } : {}) }),
  });
}
