/**
 * Nagios / Icinga notification macros → the generic webhook body (pure): what `orrery notify` posts.
 */
import type { z } from "zod";
import type { AlertState, AlertTarget, GenericAlert, Severity } from "../../contracts/alerts.ts";
import type { NagiosMacros } from "../../contracts/vendors/nagios.ts";
import { clip, isIp } from "./normalize.ts";

export class MacroError extends Error {
  override readonly name = "MacroError";
}

function severityFromNagiosState(s: string | undefined): Severity {
  const w = (s ?? "").trim().toUpperCase();
  if (w === "OK" || w === "UP") return "ok";
  if (w === "WARNING") return "warning";
  if (w === "CRITICAL" || w === "DOWN") return "critical";
  if (w === "UNKNOWN" || w === "UNREACHABLE") return "unknown";
  throw new MacroError(`state "${s ?? ""}" is not one of OK, WARNING, CRITICAL, UNKNOWN, UP, DOWN, UNREACHABLE`);
}

/** Nagios/Icinga notification macros → the generic webhook body. Throws MacroError with the reason. */
export function alertFromMacros(m: NagiosMacros, source = "nagios"): z.input<typeof GenericAlert> {
  const host = m.HOSTNAME?.trim();
  if (!host) throw new MacroError("HOSTNAME is required (NAGIOS_HOSTNAME / ICINGA_HOSTNAME or --host)");
  const service = m.SERVICEDESC?.trim() || undefined;
  const stateWord = service ? m.SERVICESTATE : m.HOSTSTATE;
  if (!stateWord) throw new MacroError(service ? "SERVICESTATE is required for a service notification" : "HOSTSTATE is required for a host notification");
  const severity = severityFromNagiosState(stateWord);
  const type = (m.NOTIFICATIONTYPE ?? "PROBLEM").toUpperCase().replace(/[^A-Z]/g, "");
  const byState: AlertState = severity === "ok" ? "resolved" : "firing";
  const state: AlertState =
    type === "RECOVERY" ? "resolved" : type === "ACKNOWLEDGEMENT" ? "acknowledged" : type === "DOWNTIMESTART" ? "downtime" : type === "PROBLEM" ? "firing" : byState;
  const at = m.TIMET && /^\d+$/.test(m.TIMET) ? Number(m.TIMET) * 1000 : undefined;
  const labels: Record<string, string> = { notification_type: type };
  const stateType = service ? m.SERVICESTATETYPE : m.HOSTSTATETYPE;
  if (stateType) labels.state_type = stateType.toLowerCase();
  if (m.NOTIFICATIONAUTHOR) labels.author = m.NOTIFICATIONAUTHOR;
  if (m.NOTIFICATIONCOMMENT) labels.comment = m.NOTIFICATIONCOMMENT;
  const problemId = service ? m.SERVICEPROBLEMID : m.HOSTPROBLEMID;
  if (problemId && problemId !== "0") labels.problem_id = problemId;
  const target: AlertTarget = { host: clip(host, 255) };
  if (m.HOSTADDRESS && isIp(m.HOSTADDRESS.trim())) target.address = m.HOSTADDRESS.trim();
  if (service) target.service = clip(service, 512);
  return {
    source,
    fingerprint: service ? `${source}:${host}!${service}` : `${source}:${host}`,
    severity,
    state,
    summary: clip((service ? m.SERVICEOUTPUT : m.HOSTOUTPUT) ?? "", 4096),
    labels,
    target,
    ...(at ? { at } : {}),
  };
}
