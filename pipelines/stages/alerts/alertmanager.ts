/**
 * Alertmanager webhook (payload version 4) → alert.v1 (pure).
 *
 * An event's `at` is on Alertmanager's clock (the clock of whatever posted the alert to it): startsAt while firing,
 * endsAt once resolved. A resolve then always sorts after the firing it ends, however far that clock is from ours;
 * stamping the firing with our receive time instead lost every resolve of a sender running behind.
 */
import type { Alert, AlertTarget } from "../../contracts/alerts.ts";
import type { AlertmanagerAlert, AlertmanagerWebhook } from "../../contracts/vendors/alertmanager.ts";
import { clip, parseInstance, parseTime, severityFromWord, stableId } from "./normalize.ts";

const HOST_LABELS = ["host", "hostname", "nodename", "node", "server"];

export function normalizeAlertmanager(w: Pick<AlertmanagerWebhook, "alerts">, now: number): Alert[] {
  return w.alerts.map((a) => normalizeAlertmanagerAlert(a, now));
}

/** One alert of a webhook; `now` stands in only for a time Alertmanager left out. */
export function normalizeAlertmanagerAlert(a: AlertmanagerAlert, now: number): Alert {
  const labels = a.labels;
  const fp = a.fingerprint ?? stableId(...Object.entries(labels).sort().flat());
  const inst = labels.instance ? parseInstance(labels.instance) : {};
  const named = HOST_LABELS.map((k) => labels[k]).find((v) => v);
  const target: AlertTarget = {};
  const hostHint = named ? parseInstance(named) : inst;
  if (hostHint.host) target.host = clip(hostHint.host, 255);
  if (hostHint.address ?? inst.address) target.address = (hostHint.address ?? inst.address)!;
  if (!target.host && inst.host) target.host = clip(inst.host, 255);
  if (inst.port !== undefined) target.port = inst.port;
  const service = labels.service ?? labels.alertname;
  if (service) target.service = clip(service, 512);
  const startsAt = parseTime(a.startsAt) ?? now;
  const endsAt = parseTime(a.endsAt);
  const resolved = a.status === "resolved";
  const summary = a.annotations.summary ?? a.annotations.description ?? a.annotations.message ?? labels.alertname ?? "";
  return {
    id: stableId("alertmanager", fp, a.status, startsAt, resolved ? endsAt : 0),
    source: "alertmanager",
    fingerprint: `alertmanager:${fp}`,
    severity: severityFromWord(labels.severity ?? labels.priority),
    state: resolved ? "resolved" : "firing",
    summary: clip(summary, 4096),
    labels,
    target,
    startsAt,
    endsAt: resolved ? (endsAt ?? now) : null,
    at: resolved ? (endsAt ?? now) : startsAt,
  } satisfies Alert;
}
