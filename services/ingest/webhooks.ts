/**
 * Webhook bodies → alert.v1, per source. Pure: the server does the HTTP and the publishing.
 *   POST /api/alerts/alertmanager   Alertmanager webhook_config, payload version 4 (grouped alerts, send_resolved)
 *   POST /api/alerts/generic        GenericWebhook (pipelines/contracts/alerts.ts): one alert or {alerts: [...]}
 * Icinga2 is pulled from its event stream by the alerts service; Nagios/Icinga notification commands run
 * `orrery notify`, which posts to the generic endpoint.
 */
import { z } from "zod";
import { HttpError } from "../shared/http.ts";
import { ContractError, validate } from "../../pipelines/codec.ts";
import { GenericWebhook, type Alert } from "../../pipelines/contracts/alerts.ts";
import { AlertmanagerWebhook } from "../../pipelines/contracts/vendors/alertmanager.ts";
import { normalizeAlertmanager } from "../../pipelines/stages/alerts/alertmanager.ts";
import { normalizeGeneric } from "../../pipelines/stages/alerts/generic.ts";

/** A refusal of a whole request, with its HTTP status (the server's error hook answers it). */
export class IngestError extends HttpError {
  override readonly name = "IngestError";
}

// The same schemas compiled by zod (generated parsers, 2-5x faster per body); what the fast path refuses is parsed by
// zod's runtime, so a 400 reads exactly as before.
const AlertmanagerWebhookCompiled = z.compile(AlertmanagerWebhook);
const GenericWebhookCompiled = z.compile(GenericWebhook);

export const ALERT_SOURCES: Record<string, (body: unknown, now: number) => Alert[]> = {
  alertmanager: (body, now) => normalizeAlertmanager(validate(AlertmanagerWebhookCompiled, "alertmanager webhook", body), now),
  generic: (body, now) => {
    return validate(GenericWebhookCompiled, "generic alert", body).alerts.map((g) => normalizeGeneric(g, now));
  },
};

/** Normalizes one webhook body; every refusal is an IngestError with the HTTP status and the reason. */
export function alertsFromWebhook(source: string, body: unknown, now: number): Alert[] {
  const normalize = ALERT_SOURCES[source];
  if (!normalize) {
    throw new IngestError(
      404,
      `unknown alert source "${source}": POST to ${Object.keys(ALERT_SOURCES).map((s) => `/api/alerts/${s}`).join(" or ")} (Icinga2 is read from its API by the alerts service; Nagios uses \`orrery notify\`)`,
    );
  }
  try {
    // the publisher validates each normalized alert (label limits etc.); a ContractError there is a 400 too
    return normalize(body, now);
  } catch (e) {
    if (e instanceof ContractError) throw new IngestError(400, e.message);
    throw e;
  }
}
