/**
 * alert.v1 — normalized alert events, whatever sent them (Alertmanager, Icinga2, Nagios, generic webhook). One
 * JetStream message (AlertBatch) carries the events of one source that arrived together (a webhook's group, or
 * concurrent requests coalesced by the ingest): one message per event would cap ingest far below 10k events/s.
 *
 * An event says what the source believes about one alert (`fingerprint`) at `at`: firing, resolved, acknowledged or
 * in downtime. `at` is on the source's clock wherever the source stamps its events (Alertmanager's startsAt/endsAt,
 * Icinga2's check and event times), and the events of one fingerprint are ordered by it. Sources are stateless: whether it is new or a repeat is decided by the alerts service (dedup by
 * fingerprint), never by the producer. `id` identifies the event itself and is the Nats-Msg-Id, so a webhook that is
 * retried by its sender is stored once.
 *
 * GenericAlert / GenericWebhook are the documented body of POST /api/alerts/generic (and what `orrery notify` sends).
 */
import { z } from "zod";
import { EpochMs, Id, Ip, Labels, Port } from "./common.ts";

export const Severity = z.enum(["critical", "warning", "info", "ok", "unknown"]);
export type Severity = z.infer<typeof Severity>;
export const AlertState = z.enum(["firing", "resolved", "acknowledged", "downtime"]);
export type AlertState = z.infer<typeof AlertState>;

/** A source name is one subject token: lower-case letters, digits, _ and -. */
export const SourceName = z.string().regex(/^[a-z0-9_-]{1,64}$/, "a source name: 1-64 of a-z 0-9 _ -");

/** Hints used to map the alert onto topology entities; each source fills what it knows. */
export const AlertTarget = z.object({
  host: z.string().min(1).max(255).optional(),
  address: Ip.optional(),
  /** service / check name as the source calls it (Nagios service description, Alertmanager alertname) */
  service: z.string().min(1).max(512).optional(),
  port: Port.optional(),
});
export type AlertTarget = z.infer<typeof AlertTarget>;

export const Alert = z.object({
  /** event id (stable for the same observation): the JetStream Nats-Msg-Id */
  id: Id,
  source: SourceName,
  fingerprint: Id,
  severity: Severity,
  state: AlertState,
  summary: z.string().max(4096).default(""),
  labels: Labels.default({}),
  target: AlertTarget.default({}),
  startsAt: EpochMs,
  endsAt: EpochMs.nullable().default(null),
  /** when it happened, on the source's clock where the source gives one (the receive time only where it does not) */
  at: EpochMs,
});
export type Alert = z.infer<typeof Alert>;

export const MAX_ALERTS_PER_MESSAGE = 1000;
/** The message on <prefix>.alerts.v1.<source>; its Nats-Msg-Id is `batchId`. */
export const AlertBatch = z
  .object({
    schema: z.literal("alert.v1"),
    source: SourceName,
    /** derived from the event ids it carries: the same events published again are stored once */
    batchId: Id,
    alerts: z.array(Alert).min(1).max(MAX_ALERTS_PER_MESSAGE),
  })
  .refine((b) => b.alerts.every((a) => a.source === b.source), { message: "every alert of a batch has the batch's source" });
export type AlertBatch = z.infer<typeof AlertBatch>;

/** A time as epoch milliseconds or an ISO-8601 string. */
export const TimeInput = z.union([EpochMs, z.iso.datetime({ offset: true })]);

/** One alert in POST /api/alerts/generic. Only `severity` (or `state: "resolved"`) and something to map it by are needed. */
export const GenericAlert = z
  .object({
    /** who raised it; becomes alert.v1 `source` and the subject token (default "generic") */
    source: SourceName.default("generic"),
    /** stable id of the alert; default: derived from source, host, address and service */
    fingerprint: Id.optional(),
    severity: Severity.default("critical"),
    state: AlertState.default("firing"),
    summary: z.string().max(4096).default(""),
    labels: Labels.default({}),
    target: AlertTarget.default({}),
    startsAt: TimeInput.optional(),
    endsAt: TimeInput.nullable().optional(),
    /** when it was observed (default: when received) */
    at: TimeInput.optional(),
  })
  .refine((a) => a.fingerprint || a.target.host || a.target.address || a.target.service, {
    message: "give a fingerprint or at least one of target.host, target.address, target.service",
  });
export type GenericAlert = z.input<typeof GenericAlert>;

export const MAX_ALERTS_PER_REQUEST = 1000;
const asList = (b: unknown) => (b && typeof b === "object" && !Array.isArray(b) && "alerts" in b ? b : { alerts: [b] });
/** Body of POST /api/alerts/generic: `{alerts: [...]}`, or one alert (read as `{alerts: [it]}`). */
export const GenericWebhook = z.preprocess(asList, z.object({ alerts: z.array(GenericAlert).min(1).max(MAX_ALERTS_PER_REQUEST) }));
export type GenericWebhook = { alerts: GenericAlert[] } | GenericAlert;
/** The same body with its alerts left unread: each is validated against GenericAlert on its own. */
export const GenericEnvelope = z.preprocess(asList, z.object({ alerts: z.array(z.unknown()).min(1).max(MAX_ALERTS_PER_REQUEST) }));

/**
 * An alert of a webhook that was refused while the rest of its payload was stored (GET /api/alerts/rejected on the
 * ingest): which one, and why.
 */
export const RejectedAlert = z.object({
  /** when it was refused */
  at: EpochMs,
  source: z.string(),
  /** its position in the payload's alerts */
  index: z.number().int().nonnegative(),
  /** its fingerprint or a few identifying labels, as far as they could be read */
  alert: z.string(),
  reason: z.string(),
});
export type RejectedAlert = z.infer<typeof RejectedAlert>;
export const RejectedAlerts = z.object({
  /** refused since the ingest started, in all and per source */
  total: z.number().int().nonnegative(),
  bySource: z.record(z.string(), z.number().int().nonnegative()),
  /** the latest refusals, newest last */
  alerts: z.array(RejectedAlert),
});
export type RejectedAlerts = z.infer<typeof RejectedAlerts>;

/** Request/reply with the ingest instances (subject `<prefix>.rpc.ingest`); each answers IngestRejected. */
export const IngestQuery = z.discriminatedUnion("op", [z.object({ op: z.literal("rejected"), limit: z.number().int().min(1).max(10_000).default(1000) })]);
export type IngestQuery = z.input<typeof IngestQuery>;
/** One ingest instance's refusals; `instance` tells the instances apart (its host:port). */
export const IngestRejected = RejectedAlerts.extend({ instance: z.string() });
export type IngestRejected = z.infer<typeof IngestRejected>;
/**
 * The refusals of every ingest instance that answered (GET /api/alerts/rejected on the gateway): counts summed, the
 * latest `limit` refusals newest first. `note` says why the list may be incomplete (no instance answered, say).
 */
export const RejectedAlertsMerged = z.object({
  total: z.number().int().nonnegative(),
  bySource: z.record(z.string(), z.number().int().nonnegative()),
  alerts: z.array(RejectedAlert.extend({ instance: z.string() })),
  instances: z.array(z.string()),
  note: z.string().optional(),
});
export type RejectedAlertsMerged = z.infer<typeof RejectedAlertsMerged>;

/** An alert as the alerts service holds it (GET /api/alerts, /api/alerts/unmapped). */
export const AlertView = z.object({
  fingerprint: Id,
  source: SourceName,
  state: AlertState,
  severity: Severity,
  /** changed state too often within the flap window: published at most once per window */
  flapping: z.boolean(),
  summary: z.string(),
  labels: Labels,
  target: AlertTarget,
  startsAt: EpochMs,
  at: EpochMs,
  /** topology entity ids it is mapped to; [] = unmapped */
  entities: z.array(Id),
  /** how it was mapped: "label:orrery_entity", "rule:<name>", "port", "port-in-check-name", "process-name", "host", "host-fallback", "" */
  via: z.string(),
});
export type AlertView = z.infer<typeof AlertView>;

/** Request/reply with the alerts service (subject `<prefix>.rpc.alerts`). */
export const AlertsQuery = z.discriminatedUnion("op", [
  /** current (not resolved) alerts, optionally of one entity */
  z.object({ op: z.literal("list"), entity: Id.optional(), limit: z.number().int().min(1).max(10_000).default(1000) }),
  z.object({ op: z.literal("unmapped"), limit: z.number().int().min(1).max(10_000).default(1000) }),
  /** one alert by fingerprint, resolved or not (while the service still holds it): AlertsList of 0 or 1 */
  z.object({ op: z.literal("alert"), fingerprint: Id }),
  /** health.state.v1 (or not_ready while the service replays its stream or waits for the topology) */
  z.object({
    op: z.literal("health"),
    /** the reader accepts health.state.v1 in several messages (HealthStatePart) when it exceeds one */
    parts: z.boolean().default(false),
  }),
  /** events the book ignored as older than the alert's last one: AlertsIgnored */
  z.object({ op: z.literal("ignored"), limit: z.number().int().min(1).max(10_000).default(100) }),
]);
export type AlertsQuery = z.input<typeof AlertsQuery>;

/** An alert event the alerts service did not fold because it was older than what it holds (IgnoredEvent of its book). */
export const IgnoredAlertEvent = z.object({
  fingerprint: z.string(),
  id: z.string(),
  state: AlertState,
  /** the event's time and that of the last event folded for its fingerprint (the source's clock) */
  at: EpochMs,
  lastAt: EpochMs,
  lastState: AlertState,
  reason: z.string(),
  /** when the service ignored it */
  ignoredAt: EpochMs,
});
export type IgnoredAlertEvent = z.infer<typeof IgnoredAlertEvent>;
/** How many events the alerts service ignored since it started, and the latest it kept, newest first. */
export const AlertsIgnored = z.object({ ignored: z.number().int().nonnegative(), events: z.array(IgnoredAlertEvent) });
export type AlertsIgnored = z.infer<typeof AlertsIgnored>;
export const AlertsList = z.object({ alerts: z.array(AlertView), total: z.number().int().nonnegative() });
export type AlertsList = z.infer<typeof AlertsList>;
