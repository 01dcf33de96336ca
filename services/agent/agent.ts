/** The agent loop: scan → diff → publish discovery batches and metric samples; a full state every N scans. */
import { discoveryMessages, metricBatches, type OversizedItemError } from "../../pipelines/contracts/split.ts";
import type { Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { HostScan } from "../../pipelines/contracts/host-scan.ts";
import { emptyAgentState, scanToBatches } from "../../pipelines/stages/agent-diff.ts";
import { scanHost, type BlindSpot } from "./scan.ts";

export interface AgentOptions {
  host: string;
  intervalMs: number;
  fullEvery: number;
  scan?: () => Promise<HostScan>;
  /** names the processes whose sockets the agent could not read (for the log) */
  describe?: (pids: number[]) => BlindSpot[];
}

export interface ScanReport {
  scanId: number;
  events: number;
  batches: number;
  samples: number;
  sockets: number;
  unreadable: number;
  ms: number;
}

export interface Agent {
  scanOnce(): Promise<ScanReport>;
  stop(): Promise<void>;
}

/** Creates the agent; `start()` runs the loop (scan, publish, sleep). Without it, call `scanOnce()` yourself. */
export function makeAgent(bus: Bus, log: Logger, o: AgentOptions): Agent & { start(): void } {
  const source = `agent:${o.host}`;
  const bootId = Date.now().toString(36);
  const scan = o.scan ?? (() => scanHost());
  let state = emptyAgentState();
  let scanId = 0;
  let running: Promise<unknown> = Promise.resolve();
  let blind = "";

  const scanOnce = async (): Promise<ScanReport> => {
    const t0 = performance.now();
    const s = await scan();
    const full = scanId % o.fullEvery === 0;
    const r = scanToBatches(state, s, { source, host: o.host, scanId, full });
    // One event or sample too large for any message (a process with megabytes of arguments) is named in the log and
    // left out; the rest of the scan is published.
    const refused = (e: OversizedItemError) => log.warn("left out of the scan: too large for one message", { scanId, schema: e.schema, item: e.item, bytes: e.bytes, limit: e.limit });
    const messages = discoveryMessages(r.batches, { onOversized: refused });
    for (const m of messages)
      await bus.js.publish(bus.topo.subjects.discovery(o.host), m.bytes, { msgID: `${source}:${bootId}:${scanId}:${m.batch.part}`, timeout: 30_000 });
    for (const m of metricBatches(r.samples, { source, idBase: `${source}:${bootId}:${scanId}`, onOversized: refused }))
      await bus.js.publish(bus.topo.subjects.metrics(source), m.bytes, { msgID: m.msgId, timeout: 30_000 });
    // Only once published is the scan the new baseline: a failed publish is retried as changes next time.
    state = r.state;
    // Say which processes it could not see, whenever that set changes (an unprivileged agent is partly blind).
    const key = s.unreadablePids.join(",");
    if (key !== blind) {
      blind = key;
      if (s.unreadablePids.length) {
        const who = (o.describe?.(s.unreadablePids.slice(0, 50)) ?? []).map((b) => `${b.pid}:${b.comm}(${b.user})`);
        log.warn("cannot see the sockets of some processes (run as root to see all)", { count: s.unreadablePids.length, processes: who.length ? who : s.unreadablePids.slice(0, 50) });
      }
    }
    const report = { scanId, events: messages.reduce((n, m) => n + m.batch.events.length, 0), batches: messages.length, samples: r.samples.length, sockets: s.sockets.length, unreadable: s.unreadablePids.length, ms: performance.now() - t0 };
    scanId++;
    return report;
  };

  let stopped = false;
  return {
    scanOnce,
    start() {
      void (async () => {
        while (!stopped) {
          running = scanOnce().catch((e) => log.warn("scan failed", { error: String(e) }));
          await running;
          if (!stopped) await Bun.sleep(o.intervalMs);
        }
      })();
    },
    stop: async () => {
      stopped = true;
      await running;
    },
  };
}

/** Creates and starts the agent loop. */
export function startAgent(bus: Bus, log: Logger, o: AgentOptions): Agent {
  const a = makeAgent(bus, log, o);
  a.start();
  return a;
}
