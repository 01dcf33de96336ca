/**
 * Webhook bodies → alert.v1, per source. Pure: the server does the HTTP and the publishing.
 *   POST /api/alerts/alertmanager   Alertmanager webhook_config, payload version 4 (grouped alerts, send_resolved)
 *   POST /api/alerts/generic        GenericWebhook (pipelines/contracts/alerts.ts): one alert or {alerts: [...]}
 * Icinga2 is pulled from its event stream by the alerts service; Nagios/Icinga notification commands run
 * `orrery notify`, which posts to the generic endpoint.
 *
 * A body whose envelope is unreadable is refused whole (IngestError). Otherwise each alert stands alone: the valid
 * ones are normalized, the others refused with the reason, because a sender like Alertmanager does not retry a 4xx
 * and refusing a group for one bad alert would lose the rest of it.
 */
import { z } from "zod";
import { ContractError, validate } from "../../pipelines/codec.ts";
import { GenericAlert, GenericEnvelope, type Alert } from "../../pipelines/contracts/alerts.ts";
import { AlertmanagerAlert, AlertmanagerEnvelope } from "../../pipelines/contracts/vendors/alertmanager.ts";
import { normalizeAlertmanagerAlert } from "../../pipelines/stages/alerts/alertmanager.ts";
import { normalizeGeneric } from "../../pipelines/stages/alerts/generic.ts";
import { formatIssues } from "../../pipelines/issues.ts";
import { HttpError } from "../shared/http.ts";

/** A refusal of a whole request, with its HTTP status (the server's error hook answers it). */
export class IngestError extends HttpError {
  override readonly name = "IngestError";
}

/** One alert of a payload that was not taken: its index in the payload, what identifies it, and why. */
export interface Refusal {
  index: number;
  alert: string;
  reason: string;
}

/** What a payload carried: the normalized alerts with their index in the payload, and the refusals. */
export interface WebhookAlerts {
  alerts: Alert[];
  indexes: number[];
  refused: Refusal[];
}

// The same schemas compiled by zod (generated parsers, 2-5x faster per body); what the fast path refuses is parsed by
// zod's runtime, so a refusal reads exactly as before.
const AlertmanagerEnvelopeCompiled = z.compile(AlertmanagerEnvelope);
const AlertmanagerAlertCompiled = z.compile(AlertmanagerAlert);
const GenericEnvelopeCompiled = z.compile(GenericEnvelope);
const GenericAlertCompiled = z.compile(GenericAlert);

/** A few words that let a reader find the alert: its fingerprint or identifying labels, cut short. */
function describe(raw: unknown): string {
  if (!raw || typeof raw !== "object") return typeof raw;
  const a = raw as Record<string, unknown>;
  const labels = a.labels && typeof a.labels === "object" ? (a.labels as Record<string, unknown>) : {};
  const target = a.target && typeof a.target === "object" ? (a.target as Record<string, unknown>) : {};
  const parts: string[] = [];
  if (typeof a.fingerprint === "string") parts.push(`fingerprint=${a.fingerprint}`);
  for (const k of ["alertname", "instance", "host", "service"]) if (typeof labels[k] === "string") parts.push(`${k}=${labels[k]}`);
  for (const k of ["host", "address", "service"]) if (typeof target[k] === "string") parts.push(`target.${k}=${target[k]}`);
  return parts.map((p) => (p.length > 120 ? `${p.slice(0, 117)}...` : p)).join(" ") || "(nothing to identify it by)";
}

function eachAlert<T>(raws: unknown[], schema: z.ZodType<T>, normalize: (v: T) => Alert): WebhookAlerts {
  const out: WebhookAlerts = { alerts: [], indexes: [], refused: [] };
  raws.forEach((raw, index) => {
    const r = schema.safeParse(raw);
    if (!r.success) return void out.refused.push({ index, alert: describe(raw), reason: formatIssues(r.error, { at: `alerts.${index}`, limit: 10 }) });
    out.alerts.push(normalize(r.data));
    out.indexes.push(index);
  });
  return out;
}

const envelope = <S extends z.ZodType<{ alerts: unknown[] }>>(schema: S, name: string, body: unknown) => {
  try {
    return validate(schema, name, body);
  } catch (e) {
    if (e instanceof ContractError) throw new IngestError(400, e.message);
    throw e;
  }
};

export const ALERT_SOURCES: Record<string, (body: unknown, now: number) => WebhookAlerts> = {
  alertmanager: (body, now) =>
    eachAlert(envelope(AlertmanagerEnvelopeCompiled, "alertmanager webhook", body).alerts, AlertmanagerAlertCompiled, (a) => normalizeAlertmanagerAlert(a, now)),
  generic: (body, now) => eachAlert(envelope(GenericEnvelopeCompiled, "generic alert", body).alerts, GenericAlertCompiled, (g) => normalizeGeneric(g, now)),
};

/** Normalizes one webhook body; an unknown source or an unreadable envelope is an IngestError with status and reason. */
export function alertsFromWebhook(source: string, body: unknown, now: number): WebhookAlerts {
  const normalize = ALERT_SOURCES[source];
  if (!normalize) {
    throw new IngestError(
      404,
      `unknown alert source "${source}": POST to ${Object.keys(ALERT_SOURCES).map((s) => `/api/alerts/${s}`).join(" or ")} (Icinga2 is read from its API by the alerts service; Nagios uses \`orrery notify\`)`,
    );
  }
  return normalize(body, now);
}
