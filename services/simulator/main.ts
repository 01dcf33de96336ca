/**
 * Publishes a simulated estate as agents would (demo and benchmarks). Ticks run on deadlines (start + k × interval,
 * not a sleep after the work); each tick's host scans are spread across the interval and capped at ORRERY_SIM_RATE
 * discovery events/s (pace.ts). ORRERY_SIM_HOSTS, ORRERY_SIM_INTERVAL_MS, ORRERY_SIM_SEED, ORRERY_SIM_CHURN.
 */
import { DiscoveryBatch } from "../../pipelines/contracts/discovery.ts";
import { MAX_SAMPLES_PER_BATCH, MetricBatch } from "../../pipelines/contracts/metrics.ts";
import { connectBus, publishEvent } from "../shared/bus.ts";
import { z } from "zod";
import { BusKeys, LogKeys, natsOptions, onShutdown, parseEnv } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { loadSimConfig } from "./config.ts";
import { makeEstate, scanEstate } from "./estate.ts";
import { nextTick, planTick, TokenBucket } from "./pace.ts";

const cfg = parseEnv(z.object({ ...BusKeys, ...LogKeys }), process.env);
const sim = loadSimConfig();
const log = makeLogger("simulator", cfg.ORRERY_LOG_QUIET === "1");
const bus = await connectBus(natsOptions(cfg, "orrery-simulator"));
const estate = makeEstate(sim.hosts, { seed: sim.seed, churn: sim.churn });
const boot = Date.now().toString(36);
// at most a tenth of a second's events at once
const bucket = sim.rate > 0 ? new TokenBucket(sim.rate, Math.max(1, Math.ceil(sim.rate / 10)), Date.now()) : null;
let stopped = false;
let wake: () => void = () => undefined;
const sleepUntil = (t: number) =>
  new Promise<void>((r) => {
    const timer = setTimeout(r, Math.max(0, t - Date.now()));
    wake = () => {
      clearTimeout(timer);
      r();
    };
  });

const startedAt = Date.now();
const loop = (async () => {
  let k = 0;
  while (!stopped) {
    const deadline = startedAt + k * sim.intervalMs;
    await sleepUntil(deadline);
    if (stopped) break;
    try {
      const { batches, samples } = scanEstate(estate, deadline);
      const byHost = new Map<string, DiscoveryBatch[]>();
      for (const b of batches) byHost.set(b.host, [...(byHost.get(b.host) ?? []), b]);
      const groups = [...byHost.values()];
      // planned from when the scan is ready (not the deadline): sends planned for the time the scan took would go out at once
      const times = planTick(groups.map((g) => g.reduce((n, b) => n + b.events.length, 0)), Math.max(deadline, Date.now()), sim.intervalMs, bucket);
      for (const [i, g] of groups.entries()) {
        await sleepUntil(times[i]!);
        if (stopped) break;
        await Promise.all(g.map((b) => publishEvent(bus, bus.topo.subjects.discovery(b.host), DiscoveryBatch, "discovery.v1", { ...b, at: Math.round(times[i]!) }, `${b.source}:${boot}:${b.scanId}:${b.part}`)));
      }
      for (let i = 0; i < samples.length && !stopped; i += MAX_SAMPLES_PER_BATCH) {
        const batchId = `sim:${boot}:${estate.tick}:${i}`;
        await publishEvent(bus, bus.topo.subjects.metrics("sim"), MetricBatch, "metrics.v1", { schema: "metrics.v1", source: "sim", batchId, samples: samples.slice(i, i + MAX_SAMPLES_PER_BATCH) }, batchId);
      }
    } catch (e) {
      log.warn("simulated scan failed", { error: String(e) });
    }
    const next = nextTick(startedAt, sim.intervalMs, k, Date.now());
    if (next.skipped) log.warn("tick overran its interval", { skipped: next.skipped, rate: sim.rate, hosts: estate.hosts.length, hint: "ORRERY_SIM_RATE is below the estate's events per interval, or publishing is slow" });
    k = next.k;
  }
})();
onShutdown(async () => {
  stopped = true;
  wake();
  await loop;
  await bus.close();
});
ready("simulator", { hosts: estate.hosts.length, seed: sim.seed, rate: sim.rate || "unlimited", intervalMs: sim.intervalMs });
