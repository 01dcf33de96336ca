/**
 * Gateway routes for alerts and health, answered by the alerts service over NATS request/reply (<prefix>.rpc.alerts):
 *   GET /api/alerts[?entity=<id>&limit=N]   current (not resolved) alerts, of one entity or all → {alerts, total}
 *   GET /api/alerts/unmapped[?limit=N]      alerts no topology entity matched (kept, not dropped) → {alerts, total}
 *   GET /api/health                         health.state.v1: every entity that is not ok or has alerts, edge states,
 *                                           impact (503 not_ready while the alerts service replays after a restart)
 * Mount with `extraRoutes: alertRoutes(bus)` (gateway or ingest server).
 */
import { z } from "zod";
import { decode } from "../../pipelines/codec.ts";
import { AlertsList, type AlertsQuery } from "../../pipelines/contracts/alerts.ts";
import { HealthState, HealthStatePart, NotReady } from "../../pipelines/contracts/health.ts";
import { createInbox } from "@nats-io/transport-node";
import type { Bus } from "../shared/bus.ts";
import { HttpError, type Routes } from "../gateway/http.ts";
import { alertSubjects } from "./subjects.ts";

const ListParams = z.object({ entity: z.string().min(1).max(512).optional(), limit: z.coerce.number().int().min(1).max(10_000).default(1000) });
const Reply = z.union([AlertsList, HealthState, NotReady, z.object({ error: z.string() })]);

const bad = (issues: z.core.$ZodIssue[]) => Response.json({ error: issues.map((i) => `${i.path.join(".") || "query"}: ${i.message}`).join("; ") }, { status: 400 });

/** Asks the alerts service; a missing service is a 503 with the reason. */
export async function askAlerts(bus: Bus, q: AlertsQuery, timeoutMs = 5000): Promise<Response> {
  let reply;
  try {
    reply = await bus.nc.request(alertSubjects(bus.topo).rpc, new TextEncoder().encode(JSON.stringify(q)), { timeout: timeoutMs });
  } catch (e) {
    return Response.json({ error: `alerts service unavailable: ${(e as Error).message}` }, { status: 503 });
  }
  const r = decode(Reply, "alerts.reply", reply.data, 256 * 1024 * 1024);
  // replaying after a restart: the state would be incomplete, so say so (Retry-After) rather than answer
  if ("code" in r && r.code === "not_ready") return Response.json(r, { status: 503, headers: { "retry-after": "1" } });
  if ("error" in r) return Response.json(r, { status: 400 });
  return Response.json(r);
}

export function alertRoutes(bus: Bus): Routes {
  return {
    "/api/alerts": {
      GET: (req) => {
        const p = ListParams.safeParse(Object.fromEntries(new URL(req.url).searchParams));
        if (!p.success) return bad(p.error.issues);
        return askAlerts(bus, { op: "list", entity: p.data.entity, limit: p.data.limit });
      },
    },
    "/api/alerts/unmapped": {
      GET: (req) => {
        const p = ListParams.omit({ entity: true }).safeParse(Object.fromEntries(new URL(req.url).searchParams));
        if (!p.success) return bad(p.error.issues);
        return askAlerts(bus, { op: "unmapped", limit: p.data.limit });
      },
    },
    "/api/health": {
      GET: async () => {
        let r;
        try {
          r = await fetchHealthState(bus);
        } catch (e) {
          return Response.json({ error: `alerts service unavailable: ${(e as Error).message}` }, { status: 503 });
        }
        if ("code" in r && r.code === "not_ready") return Response.json(r, { status: 503, headers: { "retry-after": "1" } });
        return Response.json(r, { status: "error" in r ? 400 : 200 });
      },
    },
  };
}

/** The entities an alert is mapped to (null: the alerts service does not hold it), for GET /api/impact?alert=. */
export function alertEntitiesOf(bus: Bus, timeoutMs = 5000): (fingerprint: string) => Promise<string[] | null> {
  return async (fingerprint) => {
    let reply;
    try {
      reply = await bus.nc.request(alertSubjects(bus.topo).rpc, new TextEncoder().encode(JSON.stringify({ op: "alert", fingerprint } satisfies AlertsQuery)), { timeout: timeoutMs });
    } catch (e) {
      throw new HttpError(503, `alerts service unavailable: ${(e as Error).message}`);
    }
    const r = decode(Reply, "alerts.reply", reply.data, 256 * 1024 * 1024);
    if ("code" in r && r.code === "not_ready") throw new HttpError(503, r.error);
    if ("error" in r) throw new HttpError(400, r.error);
    if (!("alerts" in r)) throw new HttpError(502, "unexpected reply from the alerts service");
    return r.alerts[0]?.entities ?? null;
  };
}

const StatePiece = z.union([HealthStatePart, HealthState, NotReady, z.object({ error: z.string() })]);

/**
 * health.state.v1 from the alerts service, in one message or in parts (a large estate's impact exceeds one); a
 * NotReady or an error as a value. Throws when the service does not answer within `timeoutMs`.
 */
export async function fetchHealthState(bus: Bus, timeoutMs = 5000): Promise<HealthState | NotReady | { error: string }> {
  const inbox = createInbox();
  const sub = bus.nc.subscribe(inbox);
  const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
  try {
    bus.nc.publish(alertSubjects(bus.topo).rpc, new TextEncoder().encode(JSON.stringify({ op: "health", parts: true } satisfies AlertsQuery)), { reply: inbox });
    const parts: HealthStatePart[] = [];
    for await (const m of sub) {
      const r = decode(StatePiece, "health.state.v1", m.data);
      if (!("part" in r)) return r;
      parts[r.part] = r;
      if (parts.filter(Boolean).length === r.parts) {
        const first = parts[0]!;
        return { schema: "health.state.v1", seq: first.seq, at: first.at, entities: parts.flatMap((p) => p.entities), edges: parts.flatMap((p) => p.edges), impact: parts.flatMap((p) => p.impact) };
      }
    }
    throw new Error(`no complete health state within ${timeoutMs} ms (is the alerts service running?)`);
  } finally {
    clearTimeout(timer);
    sub.unsubscribe();
  }
}
