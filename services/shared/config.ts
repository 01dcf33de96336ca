/**
 * Configuration is read once, in main.ts, and validated with the key's name in every error. Each service declares the
 * keys it reads (`parseEnv(z.object({ ...BusKeys, ...LogKeys, MY_KEY: … }), process.env)`); the keys more than one
 * service reads are declared here, once.
 */
import { isIP } from "node:net";
import { resolve } from "node:path";
import { z } from "zod";
import { formatIssue, formatIssues } from "../../pipelines/issues.ts";
import { RoleMap } from "../../pipelines/contracts/identity.ts";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** `env` validated by `schema`; a ConfigError names each wrong key, why, and what was given. */
export function parseEnv<S extends z.ZodType>(schema: S, env: Record<string, string | undefined>): z.output<S> {
  const r = schema.safeParse(env);
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${formatIssue(i)} (got ${shown(String(i.path[0]), env[String(i.path[0])])})`).join("; ");
    throw new ConfigError(`invalid configuration: ${msg}`);
  }
  return r.data;
}

/** A secret's value never goes into an error message (which ends up in a log). */
const SECRET = /PASS|PASSWORD|TOKEN|SECRET|CREDENTIAL/i;
const shown = (key: string, v: string | undefined) => (v !== undefined && SECRET.test(key) ? `a value of ${v.length} characters` : JSON.stringify(v));

const Port = z.coerce.number().int().min(0).max(65535);
const Days = (max: number) => z.coerce.number().int().min(1).max(max);

/** The servers of a NATS_URL value (comma-separated, blanks dropped). */
export const natsServers = (v: string): string[] => v.split(",").map((s) => s.trim()).filter(Boolean);

/** The event bus: every service. */
export const BusKeys = {
  ORRERY_PREFIX: z.string().regex(/^[a-zA-Z0-9_-]+$/, "letters, digits, _ and - only").default("orrery"),
  /** one server or a comma-separated list (a cluster's nodes): the client reconnects to whichever is up */
  NATS_URL: z
    .string()
    .default("nats://127.0.0.1:4222")
    .refine((v) => natsServers(v).length > 0, "one or more NATS URLs, comma-separated"),
  NATS_USER: z.string().optional(),
  NATS_PASS: z.string().optional(),
  NATS_TOKEN: z.string().optional(),
  /** JetStream replicas of every stream: 1 on one server, 3 on a 3-node cluster (services/shared/nats-auth.ts, deploy/nats) */
  ORRERY_NATS_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
};
/**
 * NATS credentials in the demo: "on" (the supervisor generates a user per service and for the local agent, each limited
 * to its subjects, services/shared/nats-auth.ts); "off" is an explicit choice (the test stacks).
 */
export const NatsAuthKeys = { ORRERY_NATS_AUTH: z.enum(["on", "off"]).default("on") };
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

/**
 * Authentication on every HTTP and WebSocket door (the gateway, the ingest service). "off" is an explicit choice the
 * gateway and the ingest warn about at every start.
 */
export const AuthKeys = { ORRERY_AUTH: z.enum(["on", "off"]).default("on") };
const Seconds = (max: number) => z.coerce.number().int().min(1).max(max);
/** The identity settings the gateway reads (services/identity/client.ts). */
export const IdentityKeys = {
  /** directory groups → roles, JSON (RoleMap in pipelines/contracts/identity.ts) */
  ORRERY_AUTH_ROLES: z
    .string()
    .default("{}")
    .transform((text, ctx) => {
      let raw: unknown;
      try {
        raw = JSON.parse(text || "{}");
      } catch (e) {
        ctx.addIssue({ code: "custom", message: `not JSON (${(e as Error).message}); expected e.g. {"admin":["cn=orrery-admins,ou=groups,dc=example,dc=org"],"viewer":["staff"],"default":null}` });
        return z.NEVER;
      }
      const r = RoleMap.safeParse(raw);
      if (!r.success) {
        ctx.addIssue({ code: "custom", message: formatIssues(r.error) });
        return z.NEVER;
      }
      return r.data;
    }),
  ORRERY_AUTH_SESSION_TTL_S: Seconds(90 * 86400).default(12 * 3600),
  ORRERY_AUTH_KIOSK_SESSION_TTL_S: Seconds(366 * 86400).default(30 * 86400),
  ORRERY_AUTH_API_TOKEN_TTL_DAYS: Days(3650).default(90),
  /** always: Secure cookies over plain HTTP too (TLS ended by a proxy in front); auto: when the request is https */
  ORRERY_AUTH_SECURE_COOKIE: z.enum(["auto", "always"]).default("auto"),
  ORRERY_AUTH_FAILURES_PER_USER: z.coerce.number().int().min(1).max(1000).default(5),
  ORRERY_AUTH_FAILURES_PER_ADDRESS: z.coerce.number().int().min(1).max(100_000).default(20),
  ORRERY_AUTH_FAILURE_WINDOW_S: Seconds(86400).default(900),
  ORRERY_ADMIN_LOGIN: z.string().regex(/^[a-zA-Z0-9_.-]{1,64}$/, "letters, digits, _ . and - only").default("admin"),
  /** the local admin's password; unset: generated at first start and printed once */
  ORRERY_ADMIN_PASSWORD: z.string().min(12, "at least 12 characters").optional(),
  /**
   * reverse proxies whose X-Forwarded-For names the client (for the per-address limits): addresses and CIDRs,
   * comma-separated; empty: the peer is the client, and X-Forwarded-For is ignored
   */
  ORRERY_TRUSTED_PROXIES: z
    .string()
    .default("")
    .transform((text, ctx) => {
      const entries = text.split(",").map((e) => e.trim()).filter(Boolean);
      for (const e of entries) {
        const [address = "", bits, extra] = e.split("/");
        const max = isIP(address) === 4 ? 32 : isIP(address) === 6 ? 128 : 0;
        if (!max || extra !== undefined || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max)))
          ctx.addIssue({ code: "custom", message: `"${e}" is not an IP address or CIDR (e.g. 10.0.0.0/8, 127.0.0.1, ::1, fd00::/8)` });
      }
      return entries;
    }),
};

export type BusConfig = z.output<z.ZodObject<typeof BusKeys>>;

export function natsOptions(c: BusConfig, name: string) {
  return { url: c.NATS_URL, prefix: c.ORRERY_PREFIX, name, user: c.NATS_USER, pass: c.NATS_PASS, token: c.NATS_TOKEN, replicas: c.ORRERY_NATS_REPLICAS };
}

/** Where a service's shutdown lives now; re-exported so its importers need not change. */
export { onShutdown } from "./lifecycle.ts";
