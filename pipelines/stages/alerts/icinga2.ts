/**
 * Icinga2 API → alert.v1 (pure): events of its event stream (/v1/events), and the state of hosts and services read
 * from /v1/objects when the consumer (re)connects or an event does not carry the state after it.
 */
import type { Alert, AlertState, AlertTarget, Severity } from "../../contracts/alerts.ts";
import type { Icinga2Event, Icinga2Object } from "../../contracts/vendors/icinga2.ts";
import { clip, isIp, stableId } from "./normalize.ts";

/** What an Icinga2 event means for us: an alert, a request to re-read an object's state, or nothing. */
export type Icinga2Outcome = { kind: "alert"; alert: Alert } | { kind: "resync"; host: string; service?: string } | { kind: "ignore"; reason: string };

/**
 * Icinga2 state codes: a check result's `state` uses service codes for hosts too (0/1 → UP, 2/3 → DOWN); an event's
 * top-level `state` is a host state (0 UP, 1 DOWN, 2 UNREACHABLE) for hosts and a service state for services.
 */
function serviceSeverity(code: number): Severity {
  return code === 0 ? "ok" : code === 1 ? "warning" : code === 2 ? "critical" : "unknown";
}
function hostSeverityFromCheck(code: number): Severity {
  return code <= 1 ? "ok" : "critical";
}
function hostSeverityFromHostState(code: number): Severity {
  return code === 0 ? "ok" : code === 1 ? "critical" : "unknown";
}

export const icinga2Fingerprint = (host: string, service?: string) => (service ? `icinga2:${host}!${service}` : `icinga2:${host}`);

function icingaAlert(o: {
  host: string;
  service?: string;
  severity: Severity;
  problemState: AlertState;
  at: number;
  summary: string;
  labels: Record<string, string>;
  address?: string;
  startsAt?: number;
}): Alert {
  const fingerprint = icinga2Fingerprint(o.host, o.service);
  const state: AlertState = o.problemState === "firing" && o.severity === "ok" ? "resolved" : o.problemState;
  const target: AlertTarget = { host: clip(o.host, 255) };
  if (o.service) target.service = clip(o.service, 512);
  if (o.address && isIp(o.address)) target.address = o.address;
  return {
    // CheckResult and StateChange of one check share execution_end: the same id, so JetStream stores one of them.
    id: stableId(fingerprint, state, o.severity, o.at),
    source: "icinga2",
    fingerprint,
    severity: o.severity,
    state,
    summary: clip(o.summary, 4096),
    labels: { ...o.labels, host: clip(o.host, 4096), ...(o.service ? { service: clip(o.service, 4096) } : {}) },
    target,
    startsAt: o.startsAt ?? o.at,
    endsAt: state === "resolved" ? o.at : null,
    at: o.at,
  };
}

const secToMs = (s: number) => Math.round(s * 1000);

export function normalizeIcinga2Event(ev: Icinga2Event, addressOf: (host: string) => string | undefined = () => undefined): Icinga2Outcome {
  const host = ev.host ?? ev.downtime?.host_name;
  if (!host) return { kind: "ignore", reason: `${ev.type} without a host` };
  const service = ev.service ?? (ev.downtime?.service_name || undefined);
  const base = { host, service, address: addressOf(host) };
  const severityFromCheck = (cr: { state: number }) => (service ? serviceSeverity(cr.state) : hostSeverityFromCheck(cr.state));
  const severityFromEventState = (s: number) => (service ? serviceSeverity(s) : hostSeverityFromHostState(s));
  const suppressed = (): AlertState => (ev.downtime_depth && ev.downtime_depth > 0 ? "downtime" : ev.acknowledgement ? "acknowledged" : "firing");
  const stateType = (t: number | undefined) => (t === 0 ? "soft" : "hard");

  switch (ev.type) {
    case "CheckResult":
    case "StateChange": {
      const cr = ev.check_result;
      if (!cr) return { kind: "ignore", reason: `${ev.type} without check_result` };
      const severity = severityFromCheck(cr);
      return {
        kind: "alert",
        alert: icingaAlert({
          ...base,
          severity,
          problemState: severity === "ok" ? "resolved" : suppressed(),
          at: secToMs(cr.execution_end ?? ev.timestamp),
          summary: cr.output,
          labels: { icinga2_event: ev.type, state_type: stateType(ev.state_type ?? cr.vars_after?.state_type) },
        }),
      };
    }
    case "AcknowledgementSet":
    case "AcknowledgementCleared": {
      const severity = ev.state === undefined ? "unknown" : severityFromEventState(ev.state);
      const set = ev.type === "AcknowledgementSet";
      return {
        kind: "alert",
        alert: icingaAlert({
          ...base,
          severity,
          problemState: severity === "ok" ? "resolved" : set ? "acknowledged" : "firing",
          at: secToMs(ev.timestamp),
          summary: set ? `acknowledged by ${ev.author ?? "?"}: ${ev.comment ?? ""}` : "acknowledgement cleared",
          labels: { icinga2_event: ev.type, ...(ev.author ? { author: clip(ev.author, 4096) } : {}) },
        }),
      };
    }
    case "DowntimeStarted":
    case "DowntimeTriggered":
      return {
        kind: "alert",
        alert: icingaAlert({
          ...base,
          // the event does not carry the check state: the alerts service keeps the last known severity
          severity: "unknown",
          problemState: "downtime",
          at: secToMs(ev.timestamp),
          summary: `downtime by ${ev.downtime?.author ?? "?"}: ${ev.downtime?.comment ?? ""}`,
          labels: { icinga2_event: ev.type },
        }),
      };
    case "DowntimeRemoved":
      // The state after a downtime is not in the event: re-read the object.
      return { kind: "resync", host, service };
    case "Notification": {
      const t = (ev.notification_type ?? "").toLowerCase().replace(/[^a-z]/g, "");
      if (t === "downtimeend" || t === "downtimeremoved") return { kind: "resync", host, service };
      const cr = ev.check_result;
      const severity = cr ? severityFromCheck(cr) : "unknown";
      const problemState: AlertState =
        t === "recovery" ? "resolved" : t === "acknowledgement" ? "acknowledged" : t === "downtimestart" ? "downtime" : severity === "ok" ? "resolved" : suppressed();
      return {
        kind: "alert",
        alert: icingaAlert({
          ...base,
          severity,
          problemState,
          at: secToMs(cr?.execution_end ?? ev.timestamp),
          summary: cr?.output ?? ev.text ?? "",
          labels: { icinga2_event: ev.type, notification_type: clip(ev.notification_type ?? "", 4096) },
        }),
      };
    }
    default:
      return { kind: "ignore", reason: `event type ${ev.type} is not an alert` };
  }
}


/**
 * The current state of a host or service as an alert event observed `now`, on Icinga2's clock (not at its last check:
 * it must not lose against an acknowledgement or downtime event that came after the check); null when it was never
 * checked (pending).
 */
export function normalizeIcinga2Object(o: Icinga2Object, now: number, addressOf: (host: string) => string | undefined = () => undefined): Alert | null {
  const cr = o.attrs.last_check_result;
  if (!cr) return null;
  const isService = o.type === "Service";
  const host = isService ? (o.attrs.host_name ?? o.name.split("!")[0]!) : o.attrs.name;
  const service = isService ? o.attrs.name : undefined;
  const severity = isService ? serviceSeverity(o.attrs.state) : hostSeverityFromHostState(o.attrs.state);
  const problemState: AlertState =
    severity === "ok" ? "resolved" : (o.attrs.downtime_depth ?? 0) > 0 ? "downtime" : (o.attrs.acknowledgement ?? 0) > 0 ? "acknowledged" : "firing";
  return icingaAlert({
    host,
    service,
    address: isService ? addressOf(host) : (o.attrs.address ?? addressOf(host)),
    severity,
    problemState,
    at: now,
    startsAt: o.attrs.last_state_change ? secToMs(o.attrs.last_state_change) : secToMs(cr.execution_end ?? 0),
    summary: cr.output,
    labels: { icinga2_event: "ObjectState", state_type: o.attrs.state_type === 0 ? "soft" : "hard" },
  });
}
