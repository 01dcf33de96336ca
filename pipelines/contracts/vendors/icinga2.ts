/**
 * Icinga2's REST API as Orrery reads it (r2.13 recorded): events of POST /v1/events (newline-delimited JSON) and the
 * results of /v1/objects/{hosts,services} with the attrs in ICINGA2_OBJECT_ATTRS. Fields Orrery does not read are
 * not listed (zod drops them).
 */
import { z } from "zod";
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
