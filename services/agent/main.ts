import { hostname } from "node:os";
import { connectBus } from "../shared/bus.ts";
import { loadConfig, natsOptions, onShutdown } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { startAgent } from "./agent.ts";

const cfg = loadConfig();
const log = makeLogger("agent", cfg.ORRERY_LOG_QUIET === "1");
const host = cfg.ORRERY_HOST_ID ?? hostname();
const bus = await connectBus(natsOptions(cfg, `orrery-agent-${host}`));
const agent = startAgent(bus, log, { host, intervalMs: cfg.ORRERY_AGENT_INTERVAL_MS, fullEvery: cfg.ORRERY_AGENT_FULL_EVERY });
onShutdown(async () => {
  await agent.stop();
  await bus.close();
});
ready("agent", { host });
