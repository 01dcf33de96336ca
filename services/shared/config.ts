/** Configuration is read once, in main.ts, and validated with the key's name in every error. */
import { z } from "zod";
import { resolve } from "node:path";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const Env = z.object({
  ORRERY_DATA_DIR: z.string().default(".orrery-data"),
  ORRERY_PREFIX: z.string().regex(/^[a-zA-Z0-9_-]+$/, "letters, digits, _ and - only").default("orrery"),
  NATS_URL: z.string().default("nats://127.0.0.1:4222"),
  NATS_USER: z.string().optional(),
  NATS_PASS: z.string().optional(),
  NATS_TOKEN: z.string().optional(),
  CLICKHOUSE_URL: z.url().default("http://127.0.0.1:8123"),
  CLICKHOUSE_USER: z.string().default("default"),
  CLICKHOUSE_PASSWORD: z.string().default(""),
  CLICKHOUSE_DATABASE: z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, "a ClickHouse identifier").default("orrery"),
  ORRERY_GATEWAY_HOST: z.string().default("127.0.0.1"),
  ORRERY_GATEWAY_PORT: z.coerce.number().int().min(0).max(65535).default(7070),
  ORRERY_DASHBOARD_DIR: z.string().default("dashboard/dist"),
  ORRERY_HOST_ID: z.string().optional(),
  ORRERY_AGENT_INTERVAL_MS: z.coerce.number().int().min(200).max(3_600_000).default(5000),
  ORRERY_AGENT_FULL_EVERY: z.coerce.number().int().min(1).max(10_000).default(12),
  /** a source silent for this many intervals has its entities marked stale… */
  ORRERY_AGING_STALE_AFTER: z.coerce.number().int().min(1).max(100_000).default(3),
  /** …and for this many (more than the stale count) everything it reported is removed */
  ORRERY_AGING_REMOVE_AFTER: z.coerce.number().int().min(2).max(1_000_000).default(12),
  /** the graph store's lastSeen trails the live model by at most about this (0 = lastSeen only in the model) */
  ORRERY_LASTSEEN_PERSIST_S: z.coerce.number().int().min(0).max(30 * 86_400).default(3600),
  ORRERY_METRICS_TTL_DAYS: z.coerce.number().int().min(1).max(3650).default(30),
  ORRERY_HISTORY_TTL_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
  ORRERY_METRICS_1M_TTL_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
  ORRERY_METRICS_1H_TTL_DAYS: z.coerce.number().int().min(1).max(36500).default(730),
  /** how often the metrics service folds newly inserted samples into the 1m/1h rollups */
  ORRERY_METRICS_ROLLUP_MS: z.coerce.number().int().min(100).max(3_600_000).default(15_000),
  /** the most samples one ClickHouse insert combines (several metric messages per insert) */
  ORRERY_METRICS_MAX_INSERT_SAMPLES: z.coerce.number().int().min(1).max(1_000_000).default(100_000),
  ORRERY_LOG_QUIET: z.enum(["0", "1"]).default("0"),
  ORRERY_GRAPH: z.enum(["kuzu", "neo4j"]).default("kuzu"),
  /**
   * Kuzu's buffer pool: its page cache, and a write transaction's local storage lives in it too. 512 MiB, half the
   * topology service's 1 GiB budget, holds the first full scan of a 10k-host estate (256 MiB fails it); Kuzu's own
   * default is 80% of the machine's memory, taken as pages are touched.
   */
  ORRERY_KUZU_BUFFER_MIB: z.coerce.number().int().min(64).max(1_048_576).default(512),
  /** WAL size at which a Kuzu commit also checkpoints (each checkpoint is costly: kuzu.ts); idle ones come anyway */
  ORRERY_KUZU_CHECKPOINT_MIB: z.coerce.number().int().min(1).max(65_536).default(64),
  NEO4J_URL: z.string().optional(),
  NEO4J_USER: z.string().optional(),
  NEO4J_PASSWORD: z.string().optional(),
  NEO4J_DATABASE: z.string().default("neo4j"),
});
export type Config = z.infer<typeof Env> & { dataDir: string };

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const r = Env.safeParse(env);
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${i.path.join(".")}: ${i.message} (got ${JSON.stringify(env[String(i.path[0])])})`).join("; ");
    throw new ConfigError(`invalid configuration: ${msg}`);
  }
  if (r.data.ORRERY_GRAPH === "neo4j" && !r.data.NEO4J_URL) throw new ConfigError("invalid configuration: NEO4J_URL: required when ORRERY_GRAPH=neo4j");
  if (r.data.ORRERY_AGING_REMOVE_AFTER <= r.data.ORRERY_AGING_STALE_AFTER)
    throw new ConfigError(
      `invalid configuration: ORRERY_AGING_REMOVE_AFTER: must be more than ORRERY_AGING_STALE_AFTER (got ${r.data.ORRERY_AGING_REMOVE_AFTER} and ${r.data.ORRERY_AGING_STALE_AFTER})`,
    );
  return { ...r.data, dataDir: resolve(r.data.ORRERY_DATA_DIR) };
}

export function natsOptions(c: Config, name: string) {
  return { url: c.NATS_URL, prefix: c.ORRERY_PREFIX, name, user: c.NATS_USER, pass: c.NATS_PASS, token: c.NATS_TOKEN };
}

/**
 * Runs `stop` once on SIGINT/SIGTERM — or when the parent process dies (our parent pid changes), so a service whose
 * supervisor was killed never lingers as an orphan — then exits.
 */
export function onShutdown(stop: () => Promise<void>, opts: { deadlineMs?: number } = {}): void {
  let stopping = false;
  const handler = async () => {
    if (stopping) return;
    stopping = true;
    clearInterval(watch);
    // A stop that cannot finish (its NATS server died with the supervisor, so a drain waits for a reconnect that
    // never comes) must not keep an orphan alive: nobody is left to SIGKILL it.
    setTimeout(() => {
      process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), level: "warn", msg: "shutdown did not finish in time; exiting" })}\n`);
      process.exit(1);
    }, opts.deadlineMs ?? 15_000);
    try {
      await stop();
    } finally {
      process.exit(0);
    }
  };
  const parent = process.ppid;
  const watch = setInterval(() => process.ppid !== parent && void handler(), 1000);
  watch.unref();
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}
