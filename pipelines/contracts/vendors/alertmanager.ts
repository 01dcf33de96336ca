/**
 * Alertmanager's webhook payload (webhook_configs, payload version 4), as recorded from prometheus-alertmanager
 * 0.25. The envelope and each alert are separate schemas so one bad alert is refused on its own while the rest of
 * its group is stored: Alertmanager does not retry a 4xx, so refusing the whole group would lose it.
 */
import { z } from "zod";

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
export type AlertmanagerAlert = z.infer<typeof AlertmanagerAlert>;

const envelope = {
  version: z.literal("4"),
  groupKey: z.string(),
  truncatedAlerts: z.number().int().nonnegative().default(0),
  status: z.enum(["firing", "resolved"]),
  receiver: z.string(),
  groupLabels: StrMap.default({}),
  commonLabels: StrMap.default({}),
  commonAnnotations: StrMap.default({}),
  externalURL: z.string().default(""),
};

export const MAX_ALERTMANAGER_ALERTS = 10_000;

/** The whole payload, every alert valid. */
export const AlertmanagerWebhook = z.object({ ...envelope, alerts: z.array(AlertmanagerAlert).max(MAX_ALERTMANAGER_ALERTS) });
export type AlertmanagerWebhook = z.infer<typeof AlertmanagerWebhook>;

/** The payload with its alerts left unread: each is then validated against AlertmanagerAlert on its own. */
export const AlertmanagerEnvelope = z.object({ ...envelope, alerts: z.array(z.unknown()).max(MAX_ALERTMANAGER_ALERTS) });
export type AlertmanagerEnvelope = z.infer<typeof AlertmanagerEnvelope>;
