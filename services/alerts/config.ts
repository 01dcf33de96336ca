/** The alerts service's own settings (read once in main.ts, validated with the key's name in every error). */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { ConfigError, parseEnv } from "../shared/config.ts";

const Env = z.object({
  ORRERY_ALERT_RULES: z.string().min(1).optional(),
  ORRERY_ALERT_FLAP_WINDOW_S: z.coerce.number().int().min(1).max(86_400).default(600),
  ORRERY_ALERT_FLAP_THRESHOLD: z.coerce.number().int().min(2).max(1000).default(5),
  ORRERY_ALERTS_TTL_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
  /** how far the impact of an unhealthy entity is followed (graph edges) and how many entities one may impact */
  ORRERY_IMPACT_HOPS: z.coerce.number().int().min(1).max(32).default(8),
  ORRERY_IMPACT_LIMIT: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
  ICINGA2_URL: z.url().optional(),
  ICINGA2_USER: z.string().min(1).optional(),
  ICINGA2_PASSWORD: z.string().min(1).optional(),
  /** path of the Icinga2 CA certificate (PEM), e.g. /var/lib/icinga2/certs/ca.crt */
  ICINGA2_CA_FILE: z.string().min(1).optional(),
  /** name in the Icinga2 API certificate (its NodeName) when it differs from ICINGA2_URL's host */
  ICINGA2_TLS_SERVERNAME: z.string().min(1).optional(),
  ICINGA2_QUEUE: z.string().regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, _ . -").optional(),
  ICINGA2_FILTER: z.string().optional(),
  /** one alerts instance is active, the others stand by: a lease not renewed for this long is taken over */
  ORRERY_ALERTS_LEASE_TTL_MS: z.coerce.number().int().min(500).max(600_000).default(5000),
  /** this instance's name in the lease (default: host, pid and a random suffix) */
  ORRERY_ALERTS_INSTANCE: z.string().min(1).max(200).optional(),
});

export interface AlertsConfig {
  rulesPath?: string;
  flap: { windowMs: number; threshold: number };
  ttlDays: number;
  impact: { hops: number; limit: number };
  lease: { ttlMs: number; instance?: string };
  icinga2?: { url: string; user: string; password: string; ca?: string; serverName?: string; queue?: string; filter?: string };
}

export function loadAlertsConfig(env: Record<string, string | undefined>): AlertsConfig {
  const e = parseEnv(Env, env);
  const icingaKeys = [e.ICINGA2_URL, e.ICINGA2_USER, e.ICINGA2_PASSWORD];
  if (icingaKeys.some(Boolean) && !icingaKeys.every(Boolean)) {
    throw new ConfigError("invalid configuration: ICINGA2_URL, ICINGA2_USER and ICINGA2_PASSWORD go together (set all three, or none)");
  }
  let ca: string | undefined;
  if (e.ICINGA2_CA_FILE) {
    try {
      ca = readFileSync(e.ICINGA2_CA_FILE, "utf8");
    } catch (err) {
      throw new ConfigError(`invalid configuration: ICINGA2_CA_FILE: cannot read ${e.ICINGA2_CA_FILE}: ${(err as Error).message}`);
    }
  }
  return {
    rulesPath: e.ORRERY_ALERT_RULES,
    flap: { windowMs: e.ORRERY_ALERT_FLAP_WINDOW_S * 1000, threshold: e.ORRERY_ALERT_FLAP_THRESHOLD },
    ttlDays: e.ORRERY_ALERTS_TTL_DAYS,
    impact: { hops: e.ORRERY_IMPACT_HOPS, limit: e.ORRERY_IMPACT_LIMIT },
    lease: { ttlMs: e.ORRERY_ALERTS_LEASE_TTL_MS, instance: e.ORRERY_ALERTS_INSTANCE },
    icinga2: e.ICINGA2_URL
      ? { url: e.ICINGA2_URL, user: e.ICINGA2_USER!, password: e.ICINGA2_PASSWORD!, ca, serverName: e.ICINGA2_TLS_SERVERNAME, queue: e.ICINGA2_QUEUE, filter: e.ICINGA2_FILTER }
      : undefined,
  };
}
