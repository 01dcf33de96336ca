/** The topology service's settings: the keys it reads, validated with the key's name (read once in main.ts). */
import { z } from "zod";
import { BusKeys, ConfigError, DataDirKeys, LogKeys, parseEnv } from "../shared/config.ts";

export const TopologyEnv = z.object({
  ...BusKeys,
  ...LogKeys,
  ...DataDirKeys,
  ORRERY_GRAPH: z.enum(["kuzu", "neo4j"]).default("kuzu"),
  /**
   * Kuzu's buffer pool: its page cache, and a write transaction's local storage lives in it too. 512 MiB, half the
   * topology service's 1 GiB budget: change sets are written in parts of at most 200k items, and a part that
   * does not fit is written again in halves, so a 10k-host first scan fits. Kuzu's own default is 80% of the machine's memory, taken as pages are touched.
   */
  ORRERY_KUZU_BUFFER_MIB: z.coerce.number().int().min(64).max(1_048_576).default(512),
  /** WAL size at which a Kuzu commit also checkpoints (each checkpoint is costly: kuzu.ts); idle ones come anyway */
  ORRERY_KUZU_CHECKPOINT_MIB: z.coerce.number().int().min(1).max(65_536).default(64),
  NEO4J_URL: z.string().optional(),
  NEO4J_USER: z.string().optional(),
  NEO4J_PASSWORD: z.string().optional(),
  NEO4J_DATABASE: z.string().default("neo4j"),
  /** the agents' scan interval: aging counts silent sources in these */
  ORRERY_AGENT_INTERVAL_MS: z.coerce.number().int().min(200).max(3_600_000).default(5000),
  /** a source silent for this many intervals has its entities marked stale… */
  ORRERY_AGING_STALE_AFTER: z.coerce.number().int().min(1).max(100_000).default(3),
  /** …and for this many (more than the stale count) everything it reported is removed */
  ORRERY_AGING_REMOVE_AFTER: z.coerce.number().int().min(2).max(1_000_000).default(12),
  /** the graph store's lastSeen trails the live model by at most about this (0 = lastSeen only in the model) */
  ORRERY_LASTSEEN_PERSIST_S: z.coerce.number().int().min(0).max(30 * 86_400).default(3600),
  /**
   * The writer lease (lease.ts): one instance writes, the others stand by. A lease not renewed for this long is taken
   * over; with the default a standby takes the lease 4-5 s after the active dies, then loads the model from the store.
   */
  ORRERY_TOPOLOGY_LEASE_TTL_MS: z.coerce.number().int().min(500).max(600_000).default(4000),
  /**
   * This instance's name in the lease, unique among the running instances (default: host, pid and a random part).
   * A stable name per instance slot lets a restarted instance take its own lease back at once instead of after the TTL.
   */
  ORRERY_TOPOLOGY_INSTANCE: z.string().regex(/^[\w.:@-]{1,128}$/, "1-128 letters, digits and . : @ _ -").optional(),
});
export type TopologyConfig = z.output<typeof TopologyEnv>;

export function loadTopologyConfig(env: Record<string, string | undefined>): TopologyConfig {
  const c = parseEnv(TopologyEnv, env);
  if (c.ORRERY_GRAPH === "neo4j" && !c.NEO4J_URL) throw new ConfigError("invalid configuration: NEO4J_URL: required when ORRERY_GRAPH=neo4j");
  if (c.ORRERY_AGING_REMOVE_AFTER <= c.ORRERY_AGING_STALE_AFTER)
    throw new ConfigError(
      `invalid configuration: ORRERY_AGING_REMOVE_AFTER: must be more than ORRERY_AGING_STALE_AFTER (got ${c.ORRERY_AGING_REMOVE_AFTER} and ${c.ORRERY_AGING_STALE_AFTER})`,
    );
  return c;
}
