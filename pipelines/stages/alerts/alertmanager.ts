/**
 * Alertmanager webhook (payload version 4) → alert.v1 (pure).
 */
import type { Alert, AlertTarget } from "../../contracts/alerts.ts";
import type { AlertmanagerWebhook } from "../../contracts/vendors/alertmanager.ts";
import { clip, parseInstance, parseTime, severityFromWord, stableId } from "./normalize.ts";

const HOST_LABELS = ["host", "hostname", "nodename", "node", "server"];

export function normalizeAlertmanager(w: AlertmanagerWebhook, now: number): Alert[] {
  return w.alerts.map((a) => {
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
      at: resolved ? (endsAt ?? now) : now,
    } satisfies Alert;
  });
}
