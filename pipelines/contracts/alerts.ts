/** alert.v1 — one normalized alert, whatever sent it (Alertmanager, Icinga2, Nagios, generic webhook). */
import { z } from "zod";
import { EpochMs, Id, Ip, Labels, Port } from "./common.ts";

export const Severity = z.enum(["critical", "warning", "info", "ok", "unknown"]);
export const AlertState = z.enum(["firing", "resolved", "acknowledged", "downtime"]);

export const Alert = z.object({
  schema: z.literal("alert.v1"),
  kind: z.enum(["raised", "updated", "resolved"]),
  source: Id,
  fingerprint: Id,
  severity: Severity,
  state: AlertState,
  summary: z.string().max(4096).default(""),
  labels: Labels.default({}),
  /** Hints used to map the alert onto topology entities. */
  target: z
    .object({
      host: z.string().max(255).optional(),
      address: Ip.optional(),
      service: z.string().max(512).optional(),
      port: Port.optional(),
    })
    .default({}),
  startsAt: EpochMs,
  endsAt: EpochMs.nullable().default(null),
  at: EpochMs,
});
export type Alert = z.infer<typeof Alert>;
