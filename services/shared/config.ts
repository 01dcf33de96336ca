/**
 * Configuration is read once, in main.ts, and validated with the key's name in every error. Each service declares the
 * keys it reads (`parseEnv(z.object({ ...BusKeys, ...LogKeys, MY_KEY: … }), process.env)`); the keys more than one
 * service reads are declared here, once.
 */
import { resolve } from "node:path";
import { z } from "zod";
import { formatIssue } from "../../pipelines/issues.ts";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** `env` validated by `schema`; a ConfigError names each wrong key, why, and what was given. */
export function parseEnv<S extends z.ZodType>(schema: S, env: Record<string, string | undefined>): z.output<S> {
  const r = schema.safeParse(env);
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${formatIssue(i)} (got ${JSON.stringify(env[String(i.path[0])])})`).join("; ");
    throw new ConfigError(`invalid configuration: ${msg}`);
  }
  return r.data;
}

const Port = z.coerce.number().int().min(0).max(65535);
const Days = (max: number) => z.coerce.number().int().min(1).max(max);

/** The event bus: every service. */
export const BusKeys = {
  ORRERY_PREFIX: z.string().regex(/^[a-zA-Z0-9_-]+$/, "letters, digits, _ and - only").default("orrery"),
  NATS_URL: z.string().default("nats://127.0.0.1:4222"),
  NATS_USER: z.string().optional(),
  NATS_PASS: z.string().optional(),
  NATS_TOKEN: z.string().optional(),
};
export const LogKeys = { ORRERY_LOG_QUIET: z.enum(["0", "1"]).default("0") };
/** resolved to an absolute path */
export const DataDirKeys = { ORRERY_DATA_DIR: z.string().min(1).default(".orrery-data").transform((p) => resolve(p)) };
export const ClickHouseKeys = {
  CLICKHOUSE_URL: z.url().default("http://127.0.0.1:8123"),
  CLICKHOUSE_USER: z.string().default("default"),
  CLICKHOUSE_PASSWORD: z.string().default(""),
  CLICKHOUSE_DATABASE: z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, "a ClickHouse identifier").default("orrery"),
};
/** the gateway's listener and dashboard (the gateway, and the supervisor that launches it) */
export const GatewayKeys = {
  ORRERY_GATEWAY_HOST: z.string().min(1).default("127.0.0.1"),
  ORRERY_GATEWAY_PORT: Port.default(7070),
  ORRERY_DASHBOARD_DIR: z.string().min(1).default("dashboard/dist"),
};
/** retention of the raw samples (the metrics service writes them, the gateway reads them) */
export const MetricsTtlKeys = { ORRERY_METRICS_TTL_DAYS: Days(3650).default(30) };
/** retention of the topology change log (the history service writes it, the gateway reads it) */
export const HistoryTtlKeys = { ORRERY_HISTORY_TTL_DAYS: Days(3650).default(90) };

export type BusConfig = z.output<z.ZodObject<typeof BusKeys>>;

export function natsOptions(c: BusConfig, name: string) {
  return { url: c.NATS_URL, prefix: c.ORRERY_PREFIX, name, user: c.NATS_USER, pass: c.NATS_PASS, token: c.NATS_TOKEN };
}

/** Where a service's shutdown lives now; re-exported so its importers need not change. */
export { onShutdown } from "./lifecycle.ts";
