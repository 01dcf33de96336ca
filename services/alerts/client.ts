/**
 * The alerts service's client, for other processes: its NATS request/reply (<prefix>.rpc.alerts) — current alerts,
 * unmapped alerts, one alert's entities, the events it ignored as older than what it holds, health.state.v1 — and the publisher that puts alerts on its stream.
 * Answers come back as values; a service that does not answer, is replaying or refuses is an AlertsClientError.
 */
import { createInbox } from "@nats-io/transport-node";
import { z } from "zod";
import { decode } from "../../pipelines/codec.ts";
import { AlertsIgnored, AlertsList, type AlertsQuery } from "../../pipelines/contracts/alerts.ts";
import { HealthState, HealthStatePart, NotReady } from "../../pipelines/contracts/health.ts";
import { alertSubjects } from "../../pipelines/streams.ts";
import type { Bus } from "../shared/bus.ts";

export { alertPublisher, type PublishAlerts, type PublishResult } from "./publish.ts";

export class AlertsClientError extends Error {
  override readonly name = "AlertsClientError";
  constructor(
    /** unavailable: no answer in time; not_ready: replaying after a restart; refused: the query was refused; bad_reply: an answer we cannot read */
    readonly code: "unavailable" | "not_ready" | "refused" | "bad_reply",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const Reply = z.union([AlertsList, AlertsIgnored, HealthState, NotReady, z.object({ error: z.string() })]);
const StatePiece = z.union([HealthStatePart, HealthState, NotReady, z.object({ error: z.string() })]);

async function ask(bus: Bus, q: AlertsQuery, timeoutMs: number): Promise<z.infer<typeof Reply>> {
  let reply;
  try {
    reply = await bus.nc.request(alertSubjects(bus.topo).rpc, new TextEncoder().encode(JSON.stringify(q)), { timeout: timeoutMs });
  } catch (e) {
    throw new AlertsClientError("unavailable", `alerts service unavailable: ${(e as Error).message}`, { cause: e });
  }
  const r = decode(Reply, "alerts.reply", reply.data, 256 * 1024 * 1024);
  if ("code" in r && r.code === "not_ready") throw new AlertsClientError("not_ready", r.error);
  if ("error" in r) throw new AlertsClientError("refused", r.error);
  return r;
}

/** Current (not resolved) alerts, of one entity or all; the alerts no topology entity matched; or one alert. */
export async function listAlerts(bus: Bus, q: Exclude<AlertsQuery, { op: "health" | "ignored" }>, timeoutMs = 5000): Promise<AlertsList> {
  const r = await ask(bus, q, timeoutMs);
  if (!("alerts" in r)) throw new AlertsClientError("bad_reply", "unexpected reply from the alerts service");
  return r;
}

/** How many events the alerts service ignored as older than the alert's last one, and the latest `limit`, newest first. */
export async function listIgnored(bus: Bus, limit = 100, timeoutMs = 5000): Promise<AlertsIgnored> {
  const r = await ask(bus, { op: "ignored", limit }, timeoutMs);
  if (!("events" in r)) throw new AlertsClientError("bad_reply", "unexpected reply from the alerts service");
  return r;
}

/** The entities an alert is mapped to (null: the alerts service does not hold it), for GET /api/impact?alert=. */
export function alertEntitiesOf(bus: Bus, timeoutMs = 5000): (fingerprint: string) => Promise<string[] | null> {
  return async (fingerprint) => {
    const r = await listAlerts(bus, { op: "alert", fingerprint }, timeoutMs);
    return r.alerts[0]?.entities ?? null;
  };
}

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
    throw new AlertsClientError("unavailable", `no complete health state within ${timeoutMs} ms (is the alerts service running?)`);
  } finally {
    clearTimeout(timer);
    sub.unsubscribe();
  }
}
