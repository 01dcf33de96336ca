/**
 * The alerts stage (pure, no I/O):
 *   - normalize: Alertmanager webhook v4, Icinga2 API events/objects, Nagios notification macros, generic webhook
 *     → alert.v1;
 *   - fold: dedup by fingerprint and damp flapping (AlertBook);
 *   - map: alert target hints → topology entity ids (rules over a TopologyIndex built from the mirror);
 *   - health: per-entity worst severity of the alerts that count, and the delta between two health maps.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { GenericAlert, type Alert, type AlertState, type AlertTarget, type Severity } from "../contracts/alerts.ts";
import { Port } from "../contracts/common.ts";
import type { EntityHealth, HealthEntry } from "../contracts/health.ts";
import type { TopoNode } from "../contracts/topology.ts";

/** Stable short id of a tuple of strings (event ids, default fingerprints). */
export function stableId(...parts: (string | number | null | undefined)[]): string {
  const text = parts.map((p) => String(p ?? "")).join("\u0000");
  // the same SHA-256; Bun's hasher costs half of node:crypto's per call (two per alert event on the ingest)
  if (typeof Bun !== "undefined") return new Bun.CryptoHasher("sha256").update(text).digest("hex").slice(0, 24);
  return createHash("sha256").update(text).digest("hex").slice(0, 24);
}

const clip = (s: string, n: number) => (s.length > n ? s.slice(0, n) : s);

/** Severity words used by Prometheus rules, Zabbix-ish and PagerDuty-ish conventions. Missing or unknown → warning. */
export function severityFromWord(word: string | undefined): Severity {
  const w = (word ?? "").trim().toLowerCase();
  if (/^(critical|crit|page|pager|error|err|high|disaster|fatal|emergency|emerg|alert|major|p1|p2|sev1|sev2)$/.test(w)) return "critical";
  if (/^(warning|warn|medium|average|minor|p3|sev3)$/.test(w)) return "warning";
  if (/^(info|informational|low|notice|none|p4|p5|debug)$/.test(w)) return "info";
  if (w === "ok") return "ok";
  if (w === "unknown") return "unknown";
  return "warning";
}

/** "db1:9100", "10.0.0.5:5432", "[::1]:9090", "db1" → host/address and port. */
export function parseInstance(instance: string): { host?: string; address?: string; port?: number } {
  let hostPart = instance.trim();
  let port: number | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(hostPart);
  if (v6) {
    hostPart = v6[1]!;
    if (v6[2]) port = Number(v6[2]);
  } else {
    const m = /^([^:/]+):(\d{1,5})$/.exec(hostPart);
    if (m) {
      hostPart = m[1]!;
      port = Number(m[2]);
    } else {
      // a URL target (blackbox exporter): https://db1:8443/health
      try {
        const u = new URL(hostPart);
        if (u.hostname) {
          hostPart = u.hostname.replace(/^\[|\]$/g, "");
          port = u.port ? Number(u.port) : u.protocol === "https:" ? 443 : u.protocol === "http:" ? 80 : undefined;
        }
      } catch {
        /* a plain name */
      }
    }
  }
  if (port !== undefined && !(port >= 0 && port <= 65535)) port = undefined;
  if (!hostPart) return { port };
  return isIp(hostPart) ? { address: hostPart, port } : { host: hostPart, port };
}

export function isIp(s: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(s) || (s.includes(":") && /^[0-9a-fA-F:.]+$/.test(s));
}

/** Epoch ms from an ISO string; Go's zero time ("0001-01-01T00:00:00Z") and garbage are null. */
export function parseTime(s: string | number | undefined | null): number | null {
  if (s === undefined || s === null) return null;
  if (typeof s === "number") return s > 0 ? Math.round(s) : null;
  const t = Date.parse(s);
  return Number.isFinite(t) && t > 0 ? t : null;
}

// ---------------------------------------------------------------------------------------------------------------
// Alertmanager webhook (version 4)

const StrMap = z.record(z.string(), z.string());
export const AlertmanagerAlert = z.object({
  status: z.enum(["firing", "resolved"]),
  labels: StrMap,
  annotations: StrMap.default({}),
  startsAt: z.string(),
  endsAt: z.string().optional(),
  generatorURL: z.string().default(""),
  fingerprint: z.string().min(1).max(512).optional(),
});
export const AlertmanagerWebhook = z.object({
  version: z.literal("4"),
  groupKey: z.string(),
  truncatedAlerts: z.number().int().nonnegative().default(0),
  status: z.enum(["firing", "resolved"]),
  receiver: z.string(),
  groupLabels: StrMap.default({}),
  commonLabels: StrMap.default({}),
  commonAnnotations: StrMap.default({}),
  externalURL: z.string().default(""),
  alerts: z.array(AlertmanagerAlert).max(10_000),
});
export type AlertmanagerWebhook = z.infer<typeof AlertmanagerWebhook>;

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

// ---------------------------------------------------------------------------------------------------------------
// Icinga2 API: event stream (/v1/events) and object queries (/v1/objects/{hosts,services})

const IcingaCheckResult = z.object({
  state: z.number().int(),
  output: z.string().default(""),
  execution_end: z.number().optional(),
  vars_after: z.object({ state_type: z.number().optional(), attempt: z.number().optional() }).partial().nullable().optional(),
});
export const Icinga2Event = z.object({
  type: z.string(),
  timestamp: z.number(),
  host: z.string().optional(),
  service: z.string().optional(),
  state: z.number().int().optional(),
  state_type: z.number().int().optional(),
  acknowledgement: z.boolean().optional(),
  downtime_depth: z.number().optional(),
  check_result: IcingaCheckResult.optional(),
  author: z.string().optional(),
  comment: z.string().optional(),
  text: z.string().optional(),
  notification_type: z.string().optional(),
  downtime: z.object({ host_name: z.string(), service_name: z.string().default(""), comment: z.string().default(""), author: z.string().default("") }).partial().optional(),
});
export type Icinga2Event = z.infer<typeof Icinga2Event>;

export const ICINGA2_EVENT_TYPES = [
  "CheckResult",
  "StateChange",
  "Notification",
  "AcknowledgementSet",
  "AcknowledgementCleared",
  "DowntimeStarted",
  "DowntimeTriggered",
  "DowntimeRemoved",
] as const;

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

/** One result of GET /v1/objects/hosts or /v1/objects/services with the attrs in ICINGA2_OBJECT_ATTRS. */
export const Icinga2Object = z.object({
  type: z.enum(["Host", "Service"]),
  name: z.string(),
  attrs: z.object({
    name: z.string(),
    host_name: z.string().optional(),
    address: z.string().optional(),
    state: z.number(),
    state_type: z.number().optional(),
    acknowledgement: z.number().optional(),
    downtime_depth: z.number().optional(),
    last_state_change: z.number().optional(),
    last_check_result: IcingaCheckResult.nullable().optional(),
  }),
});
export type Icinga2Object = z.infer<typeof Icinga2Object>;
const COMMON_ATTRS = ["name", "state", "state_type", "acknowledgement", "downtime_depth", "last_state_change", "last_check_result"];
/** attrs to ask /v1/objects/hosts and /v1/objects/services for (an unknown attr is a 400) */
export const ICINGA2_OBJECT_ATTRS = { hosts: [...COMMON_ATTRS, "address"], services: [...COMMON_ATTRS, "host_name"] };

/**
 * The current state of a host or service as an alert event observed `now` (not at its last check: it must not lose
 * against an acknowledgement or downtime event that came after the check); null when it was never checked (pending).
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

// ---------------------------------------------------------------------------------------------------------------
// Nagios / Icinga notification macros (`orrery notify`)

/** The macros `orrery notify` understands, without their NAGIOS_/ICINGA_ prefix. */
export const NAGIOS_MACROS = [
  "NOTIFICATIONTYPE",
  "HOSTNAME",
  "HOSTALIAS",
  "HOSTADDRESS",
  "HOSTSTATE",
  "HOSTSTATETYPE",
  "HOSTOUTPUT",
  "SERVICEDESC",
  "SERVICESTATE",
  "SERVICESTATETYPE",
  "SERVICEOUTPUT",
  "SERVICEATTEMPT",
  "NOTIFICATIONAUTHOR",
  "NOTIFICATIONCOMMENT",
  "TIMET",
  "HOSTPROBLEMID",
  "SERVICEPROBLEMID",
] as const;
export type NagiosMacros = Partial<Record<(typeof NAGIOS_MACROS)[number], string>>;

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

// ---------------------------------------------------------------------------------------------------------------
// Generic webhook

export function normalizeGeneric(g: z.infer<typeof GenericAlert>, now: number): Alert {
  const at = parseTime(g.at) ?? now;
  const fingerprint = g.fingerprint ?? `${g.source}:${stableId(g.target.host, g.target.address, g.target.service, g.target.port)}`;
  const startsAt = parseTime(g.startsAt) ?? at;
  const endsAt = g.endsAt === undefined || g.endsAt === null ? (g.state === "resolved" ? at : null) : parseTime(g.endsAt);
  return {
    id: stableId(g.source, fingerprint, g.state, g.severity, at),
    source: g.source,
    fingerprint,
    severity: g.severity,
    state: g.state,
    summary: g.summary,
    labels: g.labels,
    target: g.target,
    startsAt,
    endsAt,
    at,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Dedup and flap damping

export interface FlapConfig {
  /** a fingerprint that changes state `threshold` times within `windowMs` is flapping ... */
  windowMs: number;
  threshold: number;
  /** ... and while it flaps at most one change per window is published */
  /** resolved alerts are forgotten after this long */
  retainResolvedMs: number;
}
export const DEFAULT_FLAP: FlapConfig = { windowMs: 10 * 60_000, threshold: 5, retainResolvedMs: 60 * 60_000 };

export interface Effective {
  state: AlertState;
  severity: Severity;
}

export interface AlertEntry {
  /** the latest event received for this fingerprint */
  last: Alert;
  /** what is published (health, API): lags `last` only while flapping is damped */
  published: Effective;
  publishedAt: number;
  /** times of state changes within the flap window */
  changes: number[];
  flapping: boolean;
  pending: boolean;
  /** topology entities this alert is mapped to ([] = unmapped) */
  entities: string[];
  /** how the mapping was made, e.g. "rule:postgresql", "port-in-check-name", "host" */
  via: string;
}

export interface AlertBook {
  entries: Map<string, AlertEntry>;
  flap: FlapConfig;
  /**
   * fingerprints the clock still has work for: a damped change to publish, changes in the flap window to age out, or
   * a resolved alert to forget. A steadily firing alert is not in it, so a tick costs what is due, not the book's size
   * (at 10k alert events/s the book grows by hundreds of thousands of entries).
   */
  due: Set<string>;
  /**
   * when the clock needs to look at each due fingerprint next: second → fingerprints. A tick visits only the seconds
   * that have come (a fingerprint may sit in more than one; a visit before its time just schedules it again), so a
   * resolved alert waiting an hour to be forgotten costs two visits, not one per second.
   */
  dueAt: Map<number, string[]>;
}

export function emptyBook(flap: FlapConfig = DEFAULT_FLAP): AlertBook {
  return { entries: new Map(), flap, due: new Set(), dueAt: new Map() };
}

const dueSecond = (t: number) => Math.floor(t / 1000);
function scheduleDue(book: AlertBook, fp: string, at: number) {
  const k = dueSecond(at);
  const list = book.dueAt.get(k);
  if (list) list.push(fp);
  else book.dueAt.set(k, [fp]);
}

/** The earliest time tickBook could change something for this entry (no later than its condition comes true). */
function nextDue(e: AlertEntry, flap: FlapConfig, now: number): number {
  let at = Infinity;
  if (e.changes.length) at = e.changes[0]! + flap.windowMs;
  if (e.pending) at = Math.min(at, e.flapping ? e.publishedAt + flap.windowMs : now);
  else if (e.published.state === "resolved") at = Math.min(at, e.publishedAt + flap.retainResolvedMs);
  return at;
}

export type FoldOutcome = "new" | "changed" | "duplicate" | "stale" | "damped";

const sameEffective = (a: Effective, b: Effective) => a.state === b.state && a.severity === b.severity;

/** Folds one alert event into the book. "new"/"changed" mean the published state changed (health may follow). */
export function foldAlert(book: AlertBook, alert: Alert, now: number): FoldOutcome {
  const e = book.entries.get(alert.fingerprint);
  book.due.add(alert.fingerprint); // tickBook drops it again when there is nothing to wait for
  scheduleDue(book, alert.fingerprint, now);
  if (!e) {
    book.entries.set(alert.fingerprint, {
      last: alert,
      published: { state: alert.state, severity: alert.severity },
      publishedAt: now,
      changes: [],
      flapping: false,
      pending: false,
      entities: [],
      via: "",
    });
    return "new";
  }
  if (alert.at < e.last.at) return "stale";
  // Downtime/acknowledgement events may not carry the check state: keep the last known severity.
  const severity = alert.severity === "unknown" && (alert.state === "downtime" || alert.state === "acknowledged") ? e.last.severity : alert.severity;
  const incoming: Effective = { state: alert.state, severity };
  const current: Effective = e.pending ? { state: e.last.state, severity: e.last.severity } : e.published;
  e.last = { ...alert, severity, startsAt: alert.state === e.last.state ? Math.min(e.last.startsAt, alert.startsAt) : alert.startsAt };
  if (sameEffective(incoming, current)) return e.pending ? "damped" : "duplicate";
  e.changes = e.changes.filter((t) => now - t < book.flap.windowMs);
  e.changes.push(now);
  e.flapping = e.changes.length >= book.flap.threshold;
  if (e.flapping && now - e.publishedAt < book.flap.windowMs) {
    e.pending = !sameEffective(incoming, e.published);
    return "damped";
  }
  e.published = incoming;
  e.publishedAt = now;
  e.pending = false;
  return "changed";
}

/**
 * Time passes: publishes damped changes whose window has passed (or that stopped flapping) and forgets resolved
 * alerts past retention. Returns the fingerprints whose published state changed, and those forgotten.
 */
export function tickBook(book: AlertBook, now: number): { changed: string[]; forgotten: string[]; forgottenEntities: Map<string, string[]> } {
  const changed: string[] = [];
  const forgotten: string[] = [];
  const forgottenEntities = new Map<string, string[]>();
  const w = book.flap.windowMs;
  // runs every second over the alerts something is due for by now (book.dueAt), not the whole book
  const upTo = dueSecond(now);
  const seconds = [...book.dueAt.keys()].filter((k) => k <= upTo);
  const visited = new Set<string>();
  const again: [string, number][] = [];
  for (const k of seconds) {
    const list = book.dueAt.get(k)!;
    book.dueAt.delete(k);
    for (const fp of list) {
      if (visited.has(fp) || !book.due.has(fp)) continue;
      visited.add(fp);
      const e = book.entries.get(fp);
      if (!e) {
        book.due.delete(fp);
        continue;
      }
      if (e.changes.length && now - e.changes[0]! >= w) {
        e.changes = e.changes.filter((t) => now - t < w);
        e.flapping = e.changes.length >= book.flap.threshold;
      }
      if (e.pending) {
        if (!e.flapping || now - e.publishedAt >= w) {
          e.published = { state: e.last.state, severity: e.last.severity };
          e.publishedAt = now;
          e.pending = false;
          changed.push(fp);
        }
      } else if (e.published.state === "resolved" && now - e.publishedAt > book.flap.retainResolvedMs) {
        book.entries.delete(fp);
        book.due.delete(fp);
        forgotten.push(fp);
        forgottenEntities.set(fp, e.entities);
        continue;
      }
      if (!e.pending && !e.changes.length && e.published.state !== "resolved") book.due.delete(fp);
      // a visit before its time (the second has come, the millisecond not yet) lands in this second again: next tick
      else again.push([fp, Math.max(nextDue(e, book.flap, now), now)]);
    }
  }
  // after the visits: a second still to be visited in this tick must not get (and then skip) a fingerprint already seen
  for (const [fp, at] of again) scheduleDue(book, fp, at);
  return { changed, forgotten, forgottenEntities };
}

// ---------------------------------------------------------------------------------------------------------------
// Health

const RANK: Record<EntityHealth, number> = { ok: 0, unknown: 1, warning: 2, critical: 3 };
const severityHealth = (s: Severity): EntityHealth => (s === "critical" ? "critical" : s === "warning" ? "warning" : s === "unknown" ? "unknown" : "ok");

/** An alert counts for its entities unless resolved; only firing ones change the colour. */
export function countsForHealth(e: AlertEntry): boolean {
  return e.published.state !== "resolved";
}

/** The health of one entity from the fingerprints mapped to it. */
export function healthOfEntity(book: AlertBook, id: string, fingerprints: Iterable<string>): HealthEntry {
  const h: HealthEntry = { id, health: "ok", alerts: [] };
  for (const fp of fingerprints) {
    const e = book.entries.get(fp);
    if (!e || !countsForHealth(e)) continue;
    h.alerts.push(fp);
    if (e.published.state === "firing") {
      const s = severityHealth(e.published.severity);
      if (RANK[s] > RANK[h.health]) h.health = s;
    }
  }
  h.alerts.sort();
  return h;
}

/**
 * Per entity, the alerts that count for it (sorted) and how many firing ones of each health, kept up to date as
 * alerts change: an entity's health then costs its own counting alerts, not a look-up of every alert ever mapped to
 * it (under an alert storm an entity collects hundreds of resolved alerts that stay in the book for an hour).
 * `update(fp, entry)` after anything that changes an entry's published state or its entities (or with undefined
 * when it is forgotten); `health(id)` equals healthOfEntity over the fingerprints mapped to `id`.
 */
export class EntityHealthIndex {
  #of = new Map<string, { alerts: string[]; firing: [number, number, number, number] }>();
  /** the fingerprints that count for some entity: those entities, and the alert's health rank if firing (else -1) */
  #by = new Map<string, { entities: readonly string[]; rank: number }>();

  /** Records `fp`'s current contribution; returns whether it changed (its old and new entities need a look then). */
  update(fp: string, e: AlertEntry | undefined): boolean {
    const before = this.#by.get(fp);
    const counts = !!e && countsForHealth(e) && e.entities.length > 0;
    if (!counts) {
      if (!before) return false;
      for (const id of before.entities) this.#remove(id, fp, before.rank);
      this.#by.delete(fp);
      return true;
    }
    const entities = e!.entities.length > 1 ? [...new Set(e!.entities)] : e!.entities;
    const rank = e!.published.state === "firing" ? RANK[severityHealth(e!.published.severity)] : -1;
    if (before && before.rank === rank && sameList(before.entities, entities)) return false;
    if (before) for (const id of before.entities) this.#remove(id, fp, before.rank);
    for (const id of entities) this.#add(id, fp, rank);
    this.#by.set(fp, { entities: entities.slice(), rank });
    return true;
  }

  health(id: string): HealthEntry {
    const a = this.#of.get(id);
    if (!a) return { id, health: "ok", alerts: [] };
    let health: EntityHealth = "ok";
    for (let r = 3; r > 0; r--) {
      if (a.firing[r]! > 0) {
        health = HEALTH_OF_RANK[r]!;
        break;
      }
    }
    return { id, health, alerts: a.alerts.slice() };
  }

  #add(id: string, fp: string, rank: number) {
    let a = this.#of.get(id);
    if (!a) this.#of.set(id, (a = { alerts: [], firing: [0, 0, 0, 0] }));
    const at = lowerBound(a.alerts, fp);
    if (a.alerts[at] !== fp) a.alerts.splice(at, 0, fp);
    if (rank >= 0) a.firing[rank]!++;
  }

  #remove(id: string, fp: string, rank: number) {
    const a = this.#of.get(id);
    if (!a) return;
    const at = lowerBound(a.alerts, fp);
    if (a.alerts[at] === fp) a.alerts.splice(at, 1);
    if (rank >= 0) a.firing[rank]!--;
    if (!a.alerts.length) this.#of.delete(id);
  }
}

const HEALTH_OF_RANK: EntityHealth[] = ["ok", "unknown", "warning", "critical"];
const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
/** first index in sorted `xs` whose item is ≥ x (the order of Array.prototype.sort on strings) */
function lowerBound(xs: string[], x: string): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** entity id → fingerprints mapped to it, for every entry in the book. */
export function entityIndex(book: AlertBook): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const [fp, e] of book.entries) {
    for (const id of e.entities) {
      let set = out.get(id);
      if (!set) out.set(id, (set = new Set()));
      set.add(fp);
    }
  }
  return out;
}

/** entity id → health, for every entity with alerts that count. */
export function healthMap(book: AlertBook): Map<string, HealthEntry> {
  const out = new Map<string, HealthEntry>();
  for (const [id, fps] of entityIndex(book)) {
    const h = healthOfEntity(book, id, fps);
    if (h.alerts.length || h.health !== "ok") out.set(id, h);
  }
  return out;
}

/** Whether two health entries say the same (absent = ok with no alerts). */
export function sameHealth(a: HealthEntry | undefined, b: HealthEntry): boolean {
  if (!a) return b.health === "ok" && !b.alerts.length;
  return a.health === b.health && a.alerts.length === b.alerts.length && a.alerts.every((x, i) => x === b.alerts[i]);
}

// ---------------------------------------------------------------------------------------------------------------
// Mapping onto the topology

const Regex = z.string().min(1).max(1024).refine(
  (s) => {
    try {
      new RegExp(s, "i");
      return true;
    } catch {
      return false;
    }
  },
  { message: "not a valid regular expression" },
);

export const MapRule = z
  .object({
    name: z.string().min(1).max(128),
    when: z
      .object({
        /** regex (case-insensitive) on the check/service name (Nagios service description, Alertmanager alertname) */
        check: Regex.optional(),
        /** label name → regex; all must match */
        labels: z.record(z.string(), Regex).optional(),
        /** only alerts of this source */
        source: z.string().optional(),
      })
      .refine((w) => w.check || w.labels, { message: "a rule needs `check` or `labels`" }),
    to: z
      .object({
        /** the listener(s) on this port of the alert's host */
        port: Port.optional(),
        /** the process(es) of the alert's host whose name or executable matches (regex) */
        process: Regex.optional(),
        /** the alert's host itself (disk, memory, load, ping: host-level checks) */
        host: z.boolean().optional(),
        /** one topology entity by id (e.g. "service:app1:java:orders.jar:8080"): no host needed */
        entity: z.string().min(1).max(512).optional(),
        /**
         * every service with this process fingerprint (e.g. "java:orders.jar", "postgres"), on the alert's host when it
         * has one there, else on every host: places alerts that carry no host (`job="orders"`)
         */
        fingerprint: z.string().min(1).max(256).optional(),
      })
      .refine((t) => t.port !== undefined || t.process || t.host || t.entity || t.fingerprint, {
        message: "a rule maps `to` a port, a process, the host, an entity or a fingerprint",
      }),
  });
export type MapRule = z.infer<typeof MapRule>;

/** Well-known services: what a check named after them means on a host. User rules come first. */
export const DEFAULT_RULES: MapRule[] = [
  { name: "host-level", when: { check: "^(check_)?(ping|icmp|host|load|disk|swap|memory|mem|cpu|users|uptime|filesystem|node|apt|ntp|time)([_ !-]|$)|HostDown|Host.*(Disk|Memory|Cpu|Load|Filesystem)|Node(Down|Filesystem|Memory|Load|Cpu)" }, to: { host: true } },
  ...[
  ["postgresql", "postgres|pgsql|\\bpg[_ -]", 5432],
  ["mysql", "mysql|mariadb", 3306],
  ["redis", "redis", 6379],
  ["mongodb", "mongo", 27017],
  ["nats", "\\bnats\\b", 4222],
  ["clickhouse", "clickhouse", 8123],
  ["elasticsearch", "elastic|opensearch", 9200],
  ["rabbitmq", "rabbit|amqp", 5672],
  ["kafka", "kafka", 9092],
  ["memcached", "memcache", 11211],
  ["ssh", "\\bssh", 22],
  ["smtp", "smtp|postfix|\\bmail\\b", 25],
  ["dns", "\\bdns\\b|bind9?|named|unbound", 53],
  ["ldap", "ldap", 389],
  ["https", "https|\\bssl\\b|\\bcert", 443],
  ["http", "http|nginx|apache|web", 80],
  ].map(([name, check, port]) => ({ name: name as string, when: { check: check as string }, to: { port: port as number } })),
];

const regexCache = new Map<string, RegExp>();
function re(source: string): RegExp {
  let r = regexCache.get(source);
  if (!r) {
    if (regexCache.size > 10_000) regexCache.clear();
    regexCache.set(source, (r = new RegExp(source, "i")));
  }
  return r;
}

export const AlertRules = z.object({
  rules: z.array(MapRule).max(10_000).default([]),
  /** append DEFAULT_RULES after `rules` */
  useDefaultRules: z.boolean().default(true),
  /** alert host name (lower case) → topology host name or id, for names the agent does not know */
  hostAliases: z.record(z.string(), z.string()).default({}),
  /** a check named like check_tcp!5432, tcp_5432, "port 5432" → the listener on that port */
  portFromCheckName: z.boolean().default(true),
  /** a check named like a process on the host (check_procs!sshd, "nginx") → that process */
  processFromCheckName: z.boolean().default(true),
  /** a service alert nothing else maps → its host */
  fallbackToHost: z.boolean().default(true),
});
export type AlertRules = z.infer<typeof AlertRules>;
export type AlertRulesInput = z.input<typeof AlertRules>;

interface ProcRef {
  id: string;
  name: string;
  exe: string;
}
export interface TopologyIndex {
  /** every entity id (for explicit ids: the `orrery_entity` label, rules `to.entity`) */
  ids: Set<string>;
  /** process fingerprint → service ids on any host (rules `to.fingerprint`) */
  byFingerprint: Map<string, { id: string; host: string }[]>;
  hostsByName: Map<string, string>;
  hostsByIp: Map<string, string>;
  /** `${hostId}|${port}` → listener ids */
  listeners: Map<string, string[]>;
  /** host id → its processes */
  processes: Map<string, ProcRef[]>;
}

/** Builds the lookup tables mapping needs from topology nodes (a mirror's nodes). */
export function buildIndex(nodes: Iterable<TopoNode>): TopologyIndex {
  const idx: TopologyIndex = { ids: new Set(), byFingerprint: new Map(), hostsByName: new Map(), hostsByIp: new Map(), listeners: new Map(), processes: new Map() };
  const addName = (name: unknown, id: string) => {
    if (typeof name !== "string" || !name) return;
    const n = name.toLowerCase();
    if (!idx.hostsByName.has(n)) idx.hostsByName.set(n, id);
    const short = n.split(".")[0]!;
    if (short !== n && !isIp(n) && !idx.hostsByName.has(short)) idx.hostsByName.set(short, id);
  };
  for (const n of nodes) {
    idx.ids.add(n.id);
    if (n.kind === "host") {
      addName(n.id.slice("host:".length), n.id);
      addName(n.name, n.id);
      addName(n.props.hostname, n.id);
      if (typeof n.props.ips === "string") for (const ip of n.props.ips.split(",")) if (ip) idx.hostsByIp.set(ip.trim(), n.id);
    } else if (n.kind === "listener") {
      const host = n.props.host;
      const port = n.props.port;
      if (typeof host !== "string" || typeof port !== "number") continue;
      const k = `host:${host}|${port}`;
      const list = idx.listeners.get(k);
      if (list) list.push(n.id);
      else idx.listeners.set(k, [n.id]);
      // a listener bound to one specific address also tells us that address belongs to the host
      if (typeof n.props.ip === "string" && !/^(0\.0\.0\.0|::|\*)$/.test(n.props.ip) && !n.props.ip.startsWith("127.") && n.props.ip !== "::1") {
        if (!idx.hostsByIp.has(n.props.ip)) idx.hostsByIp.set(n.props.ip, `host:${host}`);
      }
    } else if (n.kind === "process") {
      const host = n.props.host;
      if (typeof host !== "string") continue;
      const exe = typeof n.props.exe === "string" ? n.props.exe.split("/").pop()! : "";
      const list = idx.processes.get(`host:${host}`);
      const ref = { id: n.id, name: n.name.toLowerCase(), exe: exe.toLowerCase() };
      if (list) list.push(ref);
      else idx.processes.set(`host:${host}`, [ref]);
      const fp = fingerprintOfServiceId(n.id, host);
      if (fp) {
        const same = idx.byFingerprint.get(fp);
        if (same) same.push({ id: n.id, host: `host:${host}` });
        else idx.byFingerprint.set(fp, [{ id: n.id, host: `host:${host}` }]);
      }
    }
  }
  return idx;
}

/** `service:<host>:<fingerprint>:<ports>` → the fingerprint (which may itself hold ':', e.g. "java:orders.jar"). */
export function fingerprintOfServiceId(id: string, host: string): string | null {
  const head = `service:${host}:`;
  if (!id.startsWith(head)) return null;
  const rest = id.slice(head.length);
  const cut = rest.lastIndexOf(":");
  return cut > 0 ? rest.slice(0, cut) : null;
}

/** The label an alert names its topology entity with, when the source knows it exactly. */
export const ENTITY_LABEL = "orrery_entity";

export interface Mapping {
  entities: string[];
  via: string;
}

/** A check name that names a port: check_tcp!5432, tcp_5432, "TCP port 5432", "port-5432", ":5432". */
export function portInCheckName(check: string): number | undefined {
  const m = /!(\d{1,5})(?:!|$)/.exec(check) ?? /(?:^|[!:_\s/-])(?:port[_\s-]?)?(\d{1,5})$/i.exec(check.trim());
  if (!m) return undefined;
  const p = Number(m[1]);
  return p > 0 && p <= 65535 ? p : undefined;
}

/** check_procs!sshd, "proc_nginx", "nginx process", "Redis" → candidate process names. */
function processWords(check: string): string[] {
  const c = check.toLowerCase().trim();
  const out = new Set<string>([c]);
  const bang = c.split("!");
  if (bang.length > 1) for (const b of bang.slice(1)) out.add(b.trim());
  out.add(c.replace(/^(check_procs?|check|procs?)[_\s!-]+/, ""));
  out.add(c.replace(/[_\s-]+(process|procs?|service|daemon)$/, ""));
  return [...out].filter(Boolean);
}

export function resolveHost(idx: TopologyIndex, rules: AlertRules, target: AlertTarget): string | undefined {
  const byName = (name: string | undefined) => {
    if (!name) return undefined;
    const n = name.toLowerCase();
    const alias = rules.hostAliases[n];
    if (alias) {
      const a = alias.toLowerCase();
      return idx.hostsByName.get(a.startsWith("host:") ? a.slice(5) : a) ?? (idx.hostsByName.has(a) ? idx.hostsByName.get(a) : undefined);
    }
    return idx.hostsByName.get(n) ?? idx.hostsByName.get(n.split(".")[0]!) ?? (isIp(n) ? idx.hostsByIp.get(n) : undefined);
  };
  return byName(target.host) ?? (target.address ? idx.hostsByIp.get(target.address) : undefined);
}

function ruleMatches(rule: MapRule, alert: Alert): boolean {
  if (rule.when.source && rule.when.source !== alert.source) return false;
  if (rule.when.check && !(alert.target.service && re(rule.when.check).test(alert.target.service))) return false;
  if (rule.when.labels) {
    for (const [k, pattern] of Object.entries(rule.when.labels)) {
      const v = alert.labels[k];
      if (v === undefined || !re(pattern).test(v)) return false;
    }
  }
  return true;
}

/**
 * Maps an alert onto topology entities: the entity its `orrery_entity` label names; else rules (user rules, then
 * DEFAULT_RULES; those on the check name only for a service/check alert) → an entity by id, the services with a
 * fingerprint (no host needed), or on its host (by name, alias or IP) the listener on a port, matching processes or
 * the host itself; then, for a service/check alert on a known host: the port the source gave
 * (Alertmanager instance="host:port"); a port in the check name; a process named like the check; the host itself.
 * Returns null when nothing names an entity and the host is not in the topology (the alert is kept as unmapped).
 */
export function mapAlert(args: { rules: AlertRules; index: TopologyIndex; alert: Alert }): Mapping | null {
  const { rules, index: idx, alert } = args;
  // the source named the entity: nothing to guess (when the graph does not have it (yet), map as usual)
  const explicit = alert.labels[ENTITY_LABEL];
  if (explicit && idx.ids.has(explicit)) return { entities: [explicit], via: `label:${ENTITY_LABEL}` };
  const host = resolveHost(idx, rules, alert.target);
  const listenersOn = (port: number) => (host ? (idx.listeners.get(`${host}|${port}`) ?? []) : []);
  const processesLike = (match: (p: ProcRef) => boolean) => (host ? (idx.processes.get(host) ?? []) : []).filter(match).map((p) => p.id);
  const all = rules.useDefaultRules ? [...rules.rules, ...DEFAULT_RULES] : rules.rules;
  const hasCheck = !!alert.target.service || alert.target.port !== undefined;
  // label-only rules apply to any alert; rules on the check name need one
  for (const r of all) {
    if (!hasCheck && r.when.check) continue;
    if (!ruleMatches(r, alert)) continue;
    if (r.to.host && host) return { entities: [host], via: `rule:${r.name}` };
    const found: string[] = [];
    if (r.to.entity && idx.ids.has(r.to.entity)) found.push(r.to.entity);
    if (r.to.fingerprint) {
      const same = idx.byFingerprint.get(r.to.fingerprint) ?? [];
      const here = host ? same.filter((s) => s.host === host) : [];
      found.push(...(here.length ? here : same).map((s) => s.id));
    }
    if (r.to.port !== undefined) found.push(...listenersOn(r.to.port));
    if (r.to.process) {
      const pr = re(r.to.process);
      found.push(...processesLike((p) => pr.test(p.name) || pr.test(p.exe)));
    }
    if (found.length) return { entities: [...new Set(found)], via: `rule:${r.name}` };
  }
  if (!host) return null;
  if (hasCheck) {
    if (alert.target.port !== undefined) {
      const l = listenersOn(alert.target.port);
      if (l.length) return { entities: l, via: "port" };
    }
    const check = alert.target.service;
    if (check && rules.portFromCheckName) {
      const p = portInCheckName(check);
      if (p !== undefined && listenersOn(p).length) return { entities: listenersOn(p), via: "port-in-check-name" };
    }
    if (check && rules.processFromCheckName) {
      const words = processWords(check);
      const procs = processesLike((p) => words.includes(p.name) || (p.exe !== "" && words.includes(p.exe)));
      if (procs.length) return { entities: procs, via: "process-name" };
    }
    if (!rules.fallbackToHost) return null;
  }
  return { entities: [host], via: hasCheck ? "host-fallback" : "host" };
}
