/** The simulator's settings (read once in main.ts), validated with the key's name in every error. */
import { z } from "zod";
import { formatIssues } from "../../pipelines/issues.ts";
import { ConfigError, parseEnv } from "../shared/config.ts";
import { DEFAULT_CHURN, NO_CHURN, type Churn } from "./estate.ts";

const Rate = z.number().min(0).max(1);
/** ORRERY_SIM_CHURN: "none", "default", or a JSON object of per-host per-tick probabilities (missing keys: default). */
export const ChurnOverrides = z.strictObject({ restart: Rate, reconnect: Rate, cron: Rate, crash: Rate, failure: Rate, deploy: Rate }).partial();

const Env = z.object({
  ORRERY_SIM_HOSTS: z.coerce.number().int().min(1).max(100_000).default(40),
  ORRERY_SIM_INTERVAL_MS: z.coerce.number().int().min(100).max(3_600_000).default(5000),
  /** discovery events per second across the estate; 0 = as fast as one interval allows (scans still spread over it) */
  ORRERY_SIM_RATE: z.coerce.number().min(0).max(10_000_000).default(0),
  ORRERY_SIM_SEED: z.coerce.number().int().min(0).max(2 ** 31 - 1).default(1),
  ORRERY_SIM_CHURN: z.string().default("default"),
  /** simulated Alertmanager alerts raised and resolved over time (alerts.ts): on by default so the demo shows health */
  ORRERY_SIM_ALERTS: z.enum(["on", "off"]).default("on"),
  /** alerts' time runs this many times faster (2: raised twice as often, lasting half as long) */
  ORRERY_SIM_ALERT_PACE: z.coerce.number().min(0.01).max(10_000).default(1),
});

export interface SimConfig {
  hosts: number;
  intervalMs: number;
  rate: number;
  seed: number;
  churn: Churn;
  /** simulated alerts (alerts.ts); absent or off: none */
  alerts?: { enabled: boolean; pace: number };
}

export function loadSimConfig(env: Record<string, string | undefined> = process.env): SimConfig {
  const e = parseEnv(Env, env);
  return { hosts: e.ORRERY_SIM_HOSTS, intervalMs: e.ORRERY_SIM_INTERVAL_MS, rate: e.ORRERY_SIM_RATE, seed: e.ORRERY_SIM_SEED, churn: parseChurn(e.ORRERY_SIM_CHURN), alerts: { enabled: e.ORRERY_SIM_ALERTS === "on", pace: e.ORRERY_SIM_ALERT_PACE } };
}

export function parseChurn(text: string): Churn {
  const t = text.trim();
  if (t === "none") return { ...NO_CHURN };
  if (t === "default" || t === "") return { ...DEFAULT_CHURN };
  let json: unknown;
  try {
    json = JSON.parse(t);
  } catch (e) {
    throw new ConfigError(`invalid configuration: ORRERY_SIM_CHURN: not JSON (${(e as Error).message}); use "none", "default" or e.g. {"deploy":0.01,"restart":0.05}`);
  }
  const r = ChurnOverrides.safeParse(json);
  if (!r.success) throw new ConfigError(`invalid configuration: ${formatIssues(r.error, { at: "ORRERY_SIM_CHURN" })}`);
  return { ...DEFAULT_CHURN, ...r.data };
}
