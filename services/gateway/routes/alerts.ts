/**
 * Alerts and health, answered by the alerts service over NATS request/reply (services/alerts/client.ts):
 *   GET /api/alerts[?entity=<id>&limit=N]   current (not resolved) alerts, of one entity or all → {alerts, total}
 *   GET /api/alerts/unmapped[?limit=N]      alerts no topology entity matched (kept, not dropped) → {alerts, total}
 *   GET /api/alerts/rejected[?limit=N]      alerts the ingest refused, gathered from every ingest instance
 *                                           (services/ingest/client.ts) → RejectedAlertsMerged, newest first
 *   GET /api/alerts/ignored[?limit=N]       alert events the alerts service ignored as older than the alert's last
 *                                           one → AlertsIgnored {ignored, events}, newest first
 *   GET /api/health                         health.state.v1: every entity that is not ok or has alerts, edge states,
 *                                           impact (503 not_ready while the alerts service replays after a restart)
 */
import { z } from "zod";
import { AlertsClientError, fetchHealthState, listAlerts, listIgnored } from "../../alerts/client.ts";
import { fetchRejected } from "../../ingest/client.ts";
import type { Bus } from "../../shared/bus.ts";
import { parseQuery, type Routes } from "../../shared/http.ts";

const ListParams = z.object({ entity: z.string().min(1).max(512).optional(), limit: z.coerce.number().int().min(1).max(10_000).default(1000) });

export function alertRoutes(bus: Bus): Routes {
  return {
    "/api/alerts": {
      GET: async (req) => {
        const p = parseQuery(ListParams, req);
        return Response.json(await listAlerts(bus, { op: "list", entity: p.entity, limit: p.limit }));
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
