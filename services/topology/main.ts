import { hostname } from "node:os";
import { join } from "node:path";
import { KuzuGraphStore } from "../graph/kuzu.ts";
import { Neo4jGraphStore } from "../graph/neo4j.ts";
import type { GraphStore } from "../graph/port.ts";
import { connectBus } from "../shared/bus.ts";
import { natsOptions, onShutdown } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { natsConnected, startObservability } from "../shared/metrics-registry.ts";
import { loadTopologyConfig } from "./config.ts";
import { runTopologyWriter, type WriterState } from "./writer.ts";

const cfg = loadTopologyConfig(process.env);
const log = makeLogger("topology", cfg.ORRERY_LOG_QUIET === "1");
const obs = startObservability("topology", process.env, log);
const bus = await connectBus(natsOptions(cfg, "orrery-topology"));
obs.watchConsumers(bus, [bus.topo.consumers.topology, bus.topo.consumers.registryGraph]);
obs.watchDlq(bus);
const openStore = (): GraphStore =>
  obs.timed(
    cfg.ORRERY_GRAPH === "neo4j"
      ? new Neo4jGraphStore({ url: cfg.NEO4J_URL!, user: cfg.NEO4J_USER, password: cfg.NEO4J_PASSWORD, database: cfg.NEO4J_DATABASE })
      : new KuzuGraphStore(join(cfg.ORRERY_DATA_DIR, "graph", "kuzu"), { bufferPoolMiB: cfg.ORRERY_KUZU_BUFFER_MIB, checkpointThresholdMiB: cfg.ORRERY_KUZU_CHECKPOINT_MIB }),
    cfg.ORRERY_GRAPH,
    ["apply", "checkpoint"],
  );
const holder = cfg.ORRERY_TOPOLOGY_INSTANCE ?? `${hostname()}:${process.pid}:${crypto.randomUUID().slice(0, 8)}`;
let state: WriterState = "standby";
let announced: WriterState | undefined;
const writer = await runTopologyWriter({
  bus,
  log,
  openStore,
  holder,
  ttlMs: cfg.ORRERY_TOPOLOGY_LEASE_TTL_MS,
  service: {
    aging: { intervalMs: cfg.ORRERY_AGENT_INTERVAL_MS, staleAfter: cfg.ORRERY_AGING_STALE_AFTER, removeAfter: cfg.ORRERY_AGING_REMOVE_AFTER },
    stage: { lastSeenPersistMs: cfg.ORRERY_LASTSEEN_PERSIST_S * 1000 },
  },
  onState: (s, info) => {
    state = s;
    if (s === announced || (s !== "active" && s !== "standby")) return;
    announced = s;
    // the ready line is the active writer's; a standby says so on its own line (supervisors wait for "ready")
    if (s === "active") ready("topology", { rev: info.rev, instance: holder });
    else process.stdout.write(JSON.stringify({ event: "standby", service: "topology", instance: holder, ...(info.holder ? { active: info.holder } : {}) }) + "\n");
  },
});
onShutdown(async () => {
  await writer.stop();
  await bus.close();
  obs.stop();
});
// a standby is ready too (it is doing its job: standing by), and /readyz says which it is
obs.markReady(() => natsConnected(bus)() && (state === "active" || (state === "standby" && "standby")));
