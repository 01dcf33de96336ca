/** The agent loop: scan → diff → publish discovery batches and metric samples; a full state every N scans. */
import { DiscoveryBatch } from "../../pipelines/contracts/discovery.ts";
import { MAX_SAMPLES_PER_BATCH, MetricBatch } from "../../pipelines/contracts/metrics.ts";
import { publishEvent, type Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import { emptyAgentState, scanToBatches } from "./diff.ts";
import { scanHost, type HostScan } from "./scan.ts";

export interface AgentOptions {
  host: string;
  intervalMs: number;
  fullEvery: number;
  scan?: () => Promise<HostScan>;
}

export interface Agent {
  scanOnce(): Promise<{ events: number; samples: number; ms: number }>;
  stop(): Promise<void>;
}

export function startAgent(bus: Bus, log: Logger, o: AgentOptions): Agent {
  const source = `agent:${o.host}`;
  const bootId = Date.now().toString(36);
  const scan = o.scan ?? (() => scanHost());
  let state = emptyAgentState();
  let scanId = 0;
  let running: Promise<unknown> = Promise.resolve();
  let warnedBlind = false;

  const scanOnce = async () => {
    const t0 = performance.now();
    const s = await scan();
    const full = scanId % o.fullEvery === 0;
    const r = scanToBatches(state, s, { source, host: o.host, scanId, full });
    for (const b of r.batches)
      await publishEvent(bus, bus.topo.subjects.discovery(o.host), DiscoveryBatch, "discovery.v1", b, `${source}:${bootId}:${scanId}:${b.part}`);
    for (let i = 0; i < r.samples.length; i += MAX_SAMPLES_PER_BATCH) {
      const batchId = `${source}:${bootId}:${scanId}:${i}`;
      await publishEvent(bus, bus.topo.subjects.metrics(source), MetricBatch, "metrics.v1", { schema: "metrics.v1", source, batchId, samples: r.samples.slice(i, i + MAX_SAMPLES_PER_BATCH) }, batchId);
    }
    // Only once published is the scan the new baseline: a failed publish is retried as changes next time.
    state = r.state;
    if (s.unreadablePids.length && !warnedBlind) {
      warnedBlind = true;
      log.warn("cannot see the sockets of some processes (run as root to see all)", { count: s.unreadablePids.length, pids: s.unreadablePids.slice(0, 20) });
    }
    scanId++;
    return { events: r.batches.reduce((n, b) => n + b.events.length, 0), samples: r.samples.length, ms: performance.now() - t0 };
  };

  let stopped = false;
  const loop = async () => {
    while (!stopped) {
      running = scanOnce().catch((e) => log.warn("scan failed", { error: String(e) }));
      await running;
      await Bun.sleep(o.intervalMs);
    }
  };
  void loop();
  return {
    scanOnce,
    stop: async () => {
      stopped = true;
      await running;
    },
  };
}
