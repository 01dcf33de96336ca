/**
 * Alerts and health, answered by the alerts service over NATS request/reply (services/alerts/client.ts):
 *   GET /api/alerts[?entity=<id>&limit=N]   current (not resolved) alerts, of one entity or all → {alerts, total}
 *       &sort=severity|age                   worst first (then the longest open first), or newest first; the answer
 *                                            adds bySeverity and unmapped counts over every open alert (the alert
 *                                            list's header), the order taken over all of them, not one page
 *   GET /api/alerts/unmapped[?limit=N]      alerts no topology entity matched (kept, not dropped) → {alerts, total}
 *   POST /api/alerts/ack {fingerprint, comment?}   acknowledges an open alert: an alert.v1 event in state
 *                                           `acknowledged` on the ALERTS stream, after the alert's last event (an
 *                                           operator's door, services/identity/gate.ts) → 202; 404 unknown, 409 resolved
 *   GET /api/alerts/rejected[?limit=N]      alerts the ingest refused, gathered from every ingest instance
 *                                           (services/ingest/client.ts) → RejectedAlertsMerged, newest first
 *   GET /api/alerts/ignored[?limit=N]       alert events the alerts service ignored as older than the alert's last
 *                                           one → AlertsIgnored {ignored, events}, newest first
 *   GET /api/health                         health.state.v1: every entity that is not ok or has alerts, edge states,
 *                                           impact (503 not_ready while the alerts service replays after a restart)
 */
import { z } from "zod";
import { AlertsClientError, alertPublisher, fetchHealthState, listAlerts, listIgnored, type PublishAlerts } from "../../alerts/client.ts";
import { fetchRejected } from "../../ingest/client.ts";
import type { Bus } from "../../shared/bus.ts";
import { HttpError, parseBody, parseQuery, type Routes } from "../../shared/http.ts";
import type { Alert, AlertView, Severity } from "../../../pipelines/contracts/alerts.ts";
import { stableId } from "../../../pipelines/stages/alerts/normalize.ts";

const ListParams = z.object({ entity: z.string().min(1).max(512).optional(), limit: z.coerce.number().int().min(1).max(10_000).default(1000) });
const SortedParams = ListParams.extend({ sort: z.enum(["severity", "age"]).optional() });
/** the most the alerts service lists in one answer: a sorted list is sorted over this many */
const ALL = 10_000;
const SEVERITY_RANK: Record<Severity, number> = { critical: 0, warning: 1, unknown: 2, info: 3, ok: 4 };
export const AckBody = z.object({ fingerprint: z.string().min(1).max(512), comment: z.string().max(1024).optional() });

/**
 * The event acknowledging an open alert: its own source, fingerprint and labels (a comment as `ack_comment`), stamped
 * after its last event so the alerts service folds it whatever the source's clock says.
 */
export function ackEvent(a: AlertView, now: number, comment?: string): Alert {
  const at = Math.max(now, a.at + 1);
  return {
    id: stableId("orrery-ack", a.fingerprint, at),
    source: a.source,
    fingerprint: a.fingerprint,
    severity: a.severity,
    state: "acknowledged",
    summary: a.summary,
    labels: comment ? { ...a.labels, ack_comment: comment } : a.labels,
    target: a.target,
    startsAt: a.startsAt,
    endsAt: null,
    at,
  };
}

/** Open alerts in the order asked, with counts by severity and of the unmapped ones. */
export function sortAlerts(alerts: AlertView[], sort: "severity" | "age"): AlertView[] {
  const newest = (a: AlertView, b: AlertView) => b.startsAt - a.startsAt || a.fingerprint.localeCompare(b.fingerprint);
  if (sort === "age") return [...alerts].sort(newest);
  return [...alerts].sort((a, b) => SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] || a.startsAt - b.startsAt || a.fingerprint.localeCompare(b.fingerprint));
}

export function alertRoutes(bus: Bus): Routes {
  let publish: PublishAlerts | null = null;
  return {
    "/api/alerts/ack": {
      POST: async (req) => {
        const b = await parseBody(AckBody, req, '{"fingerprint": "alertmanager:…", "comment"?: "…"}');
        const found = (await listAlerts(bus, { op: "alert", fingerprint: b.fingerprint })).alerts[0];
        if (!found) throw new HttpError(404, `no such alert: ${b.fingerprint}`);
        if (found.state === "resolved") throw new HttpError(409, `alert ${b.fingerprint} is resolved`);
        const event = ackEvent(found, Date.now(), b.comment);
        publish ??= alertPublisher(bus);
        const r = await publish([event]);
        if (r.refused.length) throw new HttpError(400, r.refused[0]!.reason);
        return Response.json({ acknowledged: b.fingerprint, at: event.at }, { status: 202 });
      },
    },
    "/api/alerts": {
      GET: async (req) => {
        const p = parseQuery(SortedParams, req);
        if (!p.sort) return Response.json(await listAlerts(bus, { op: "list", entity: p.entity, limit: p.limit }));
        const all = await listAlerts(bus, { op: "list", entity: p.entity, limit: ALL });
        const bySeverity: Record<Severity, number> = { critical: 0, warning: 0, unknown: 0, info: 0, ok: 0 };
        for (const a of all.alerts) bySeverity[a.severity]++;
        return Response.json({
          alerts: sortAlerts(all.alerts, p.sort).slice(0, p.limit),
          total: all.total,
          bySeverity,
          unmapped: all.alerts.filter((a) => !a.entities.length).length,
          // more open than one answer of the alerts service holds: the order and counts are over the first ALL
          ...(all.total > all.alerts.length ? { note: `sorted over ${all.alerts.length} of ${all.total} open alerts` } : {}),
        });
      },
    },
    "/api/alerts/unmapped": {
      GET: async (req) => {
        const p = parseQuery(ListParams.omit({ entity: true }), req);
        return Response.json(await listAlerts(bus, { op: "unmapped", limit: p.limit }));
      },
    },
    "/api/alerts/rejected": {
      GET: async (req) => {
        const p = parseQuery(ListParams.omit({ entity: true }), req);
        return Response.json(await fetchRejected(bus, { limit: p.limit }));
      },
    },
    "/api/alerts/ignored": {
      GET: async (req) => {
        const p = parseQuery(z.object({ limit: z.coerce.number().int().min(1).max(10_000).default(100) }), req);
        return Response.json(await listIgnored(bus, p.limit));
      },
    },
    "/api/health": {
      GET: async () => {
        const r = await fetchHealthState(bus);
        if ("code" in r && r.code === "not_ready") throw new AlertsClientError("not_ready", r.error);
        if ("error" in r) throw new AlertsClientError("refused", r.error);
        return Response.json(r);
      },
    },
  };
}
