/**
 * The graph store a bench writes to, chosen the way the topology service chooses it (ORRERY_GRAPH, NEO4J_URL,
 * NEO4J_USER, NEO4J_PASSWORD, NEO4J_DATABASE: services/topology/config.ts), so a bench reports the store it measured
 * and compares it with that store's own raw write. A Neo4j database used by a bench must be disposable: the bench
 * deletes its whole graph (Neo4j Community has one database).
 */
import neo4j from "neo4j-driver";
import { KuzuGraphStore } from "../../services/graph/kuzu.ts";
import { Neo4jGraphStore } from "../../services/graph/neo4j.ts";
import type { GraphStore } from "../../services/graph/port.ts";
import type { TopologyConfig } from "../../services/topology/config.ts";

export interface BenchGraph {
  kind: "kuzu" | "neo4j";
  /** for reports: "Kuzu" or "Neo4j (bolt://…, database neo4j)" */
  label: string;
  /** a new store, not initialised: Kuzu in `kuzuDir` with `kuzu` options (Kuzu's defaults when none) */
  open(kuzuDir: string, kuzu?: ConstructorParameters<typeof KuzuGraphStore>[1]): GraphStore;
  /** the environment that makes a topology service child use the same store */
  env: Record<string, string>;
  /** empties the store before a write that must start from nothing (Neo4j; a Kuzu directory is new each time) */
  clear(): Promise<void>;
}

export function benchGraph(cfg: TopologyConfig): BenchGraph {
  if (cfg.ORRERY_GRAPH !== "neo4j") {
    return { kind: "kuzu", label: "Kuzu", open: (dir, kuzu) => new KuzuGraphStore(dir, kuzu), env: { ORRERY_GRAPH: "kuzu" }, clear: async () => undefined };
  }
  const target = { url: cfg.NEO4J_URL!, user: cfg.NEO4J_USER, password: cfg.NEO4J_PASSWORD, database: cfg.NEO4J_DATABASE };
  const env: Record<string, string> = { ORRERY_GRAPH: "neo4j", NEO4J_URL: target.url, NEO4J_DATABASE: target.database };
  if (target.user !== undefined) env.NEO4J_USER = target.user;
  if (target.password !== undefined) env.NEO4J_PASSWORD = target.password;
  return {
    kind: "neo4j",
    label: `Neo4j (${target.url}, database ${target.database})`,
    open: () => new Neo4jGraphStore(target),
    env,
    clear: async () => {
      const driver = neo4j.driver(target.url, target.user ? neo4j.auth.basic(target.user, target.password ?? "") : undefined);
      const session = driver.session({ database: target.database });
      try {
        // in batches: one transaction deleting 400k entities would hold them all in the server's memory
        for (;;) {
          const r = await session.executeWrite((tx) => tx.run("MATCH (n) WITH n LIMIT 10000 DETACH DELETE n RETURN count(*) AS c"));
          if (neo4j.integer.toNumber(r.records[0]?.get("c") ?? 0) === 0) break;
        }
      } finally {
        await session.close();
        await driver.close();
      }
    },
  };
}
