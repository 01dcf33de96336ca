/**
 * Publishes a simulated estate as agents would (demo and benchmarks): the loop is run.ts. ORRERY_SIM_HOSTS,
 * ORRERY_SIM_INTERVAL_MS, ORRERY_SIM_RATE (discovery events/s), ORRERY_SIM_SEED, ORRERY_SIM_CHURN, ORRERY_SIM_ALERTS
 * (on|off: simulated Alertmanager alerts, alerts.ts) and ORRERY_SIM_ALERT_PACE.
 */
import { connectBus } from "../shared/bus.ts";
import { z } from "zod";
import { BusKeys, LogKeys, natsOptions, onShutdown, parseEnv } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { natsConnected, startObservability } from "../shared/metrics-registry.ts";
import { loadSimConfig } from "./config.ts";
import { startSimulator } from "./run.ts";

const cfg = parseEnv(z.object({ ...BusKeys, ...LogKeys }), process.env);
const sim = loadSimConfig();
const log = makeLogger("simulator", cfg.ORRERY_LOG_QUIET === "1");
const obs = startObservability("simulator", process.env, log);
const bus = await connectBus(natsOptions(cfg, "orrery-simulator"));
const simulator = startSimulator(bus, log, sim);
onShutdown(async () => {
  await simulator.stop();
  await bus.close();
  obs.stop();
});
obs.markReady(natsConnected(bus));
ready("simulator", { hosts: simulator.estate.hosts.length, seed: sim.seed, alerts: sim.alerts?.enabled ? "on" : "off", rate: sim.rate || "unlimited", intervalMs: sim.intervalMs });
