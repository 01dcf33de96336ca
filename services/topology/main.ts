import { join } from "node:path";
import { KuzuGraphStore } from "../graph/kuzu.ts";
import { Neo4jGraphStore } from "../graph/neo4j.ts";
import type { GraphStore } from "../graph/port.ts";
import { connectBus } from "../shared/bus.ts";
import { natsOptions, onShutdown } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { natsConnected, startObservability } from "../shared/metrics-registry.ts";
import { loadTopologyConfig } from "./config.ts";
import { startTopologyService } from "./service.ts";

const cfg = loadTopologyConfig(process.env);
const log = makeLogger("topology", cfg.ORRERY_LOG_QUIET === "1");
const obs = startObservability("topology", process.env, log);
const bus = await connectBus(natsOptions(cfg, "orrery-topology"));
obs.watchConsumers(bus, [bus.topo.consumers.topology, bus.topo.consumers.registryGraph]);
obs.watchDlq(bus);
const store: GraphStore = obs.timed(
  cfg.ORRERY_GRAPH === "neo4j"
    ? new Neo4jGraphStore({ url: cfg.NEO4J_URL!, user: cfg.NEO4J_USER, password: cfg.NEO4J_PASSWORD, database: cfg.NEO4J_DATABASE })
    : new KuzuGraphStore(join(cfg.ORRERY_DATA_DIR, "graph", "kuzu"), { bufferPoolMiB: cfg.ORRERY_KUZU_BUFFER_MIB, checkpointThresholdMiB: cfg.ORRERY_KUZU_CHECKPOINT_MIB }),
  cfg.ORRERY_GRAPH,
  ["apply", "checkpoint"],
);
const svc = await startTopologyService({
  bus,
  store,
  log,
  aging: { intervalMs: cfg.ORRERY_AGENT_INTERVAL_MS, staleAfter: cfg.ORRERY_AGING_STALE_AFTER, removeAfter: cfg.ORRERY_AGING_REMOVE_AFTER },
  stage: { lastSeenPersistMs: cfg.ORRERY_LASTSEEN_PERSIST_S * 1000 },
});
onShutdown(async () => {
  await svc.stop();
  await store.close();
  await bus.close();
  obs.stop();
});
obs.markReady(natsConnected(bus));
ready("topology", { rev: svc.rev() });
