/** Publishes a simulated estate as agents would (demo and benchmarks). ORRERY_SIM_HOSTS, ORRERY_SIM_INTERVAL_MS. */
import { z } from "zod";
import { DiscoveryBatch } from "../../pipelines/contracts/discovery.ts";
import { MAX_SAMPLES_PER_BATCH, MetricBatch } from "../../pipelines/contracts/metrics.ts";
import { connectBus, publishEvent } from "../shared/bus.ts";
import { ConfigError, loadConfig, natsOptions, onShutdown } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { makeEstate, scanEstate } from "./estate.ts";

const cfg = loadConfig();
const sim = z
  .object({ ORRERY_SIM_HOSTS: z.coerce.number().int().min(1).max(100_000).default(40), ORRERY_SIM_INTERVAL_MS: z.coerce.number().int().min(100).default(5000) })
  .safeParse(process.env);
if (!sim.success) throw new ConfigError(`invalid configuration: ${sim.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
const log = makeLogger("simulator", cfg.ORRERY_LOG_QUIET === "1");
const bus = await connectBus(natsOptions(cfg, "orrery-simulator"));
const estate = makeEstate(sim.data.ORRERY_SIM_HOSTS);
const boot = Date.now().toString(36);
let stopped = false;
const loop = (async () => {
  while (!stopped) {
    try {
      const now = Date.now();
      const { batches, samples } = scanEstate(estate, now);
      await Promise.all(
        batches.map((b) => publishEvent(bus, bus.topo.subjects.discovery(b.host), DiscoveryBatch, "discovery.v1", b, `${b.source}:${boot}:${b.scanId}:${b.part}`)),
      );
      for (let i = 0; i < samples.length; i += MAX_SAMPLES_PER_BATCH) {
        const batchId = `sim:${boot}:${estate.tick}:${i}`;
        await publishEvent(bus, bus.topo.subjects.metrics("sim"), MetricBatch, "metrics.v1", { schema: "metrics.v1", source: "sim", batchId, samples: samples.slice(i, i + MAX_SAMPLES_PER_BATCH) }, batchId);
      }
    } catch (e) {
      log.warn("simulated scan failed", { error: String(e) });
    }
    await Bun.sleep(sim.data.ORRERY_SIM_INTERVAL_MS);
  }
})();
onShutdown(async () => {
  stopped = true;
  await loop;
  await bus.close();
});
ready("simulator", { hosts: estate.hosts.length });
