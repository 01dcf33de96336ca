import { join } from "node:path";
import { KuzuGraphStore } from "../graph/kuzu.ts";
import { connectBus } from "../shared/bus.ts";
import { loadConfig, natsOptions, onShutdown } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { startTopologyService } from "./service.ts";

const cfg = loadConfig();
const log = makeLogger("topology", cfg.ORRERY_LOG_QUIET === "1");
const bus = await connectBus(natsOptions(cfg, "orrery-topology"));
const store = new KuzuGraphStore(join(cfg.dataDir, "graph", "kuzu"));
const svc = await startTopologyService({ bus, store, log });
onShutdown(async () => {
  await svc.stop();
  await store.close();
  await bus.close();
});
ready("topology", { rev: svc.rev() });
