/** The agent loop: scan → diff → publish discovery batches and metric samples; a full state every N scans. */
import { discoveryMessages, metricBatches, type OversizedItemError } from "../../pipelines/contracts/split.ts";
import type { Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { DiscoveryBatch, DiscoveryEvent } from "../../pipelines/contracts/discovery.ts";
import type { HostScan } from "../../pipelines/contracts/host-scan.ts";
import { emptyAgentState, scanToBatches } from "../../pipelines/stages/agent-diff.ts";
import { scanHost, type BlindSpot } from "./scan.ts";

export interface AgentOptions {
  host: string;
  intervalMs: number;
  fullEvery: number;
  /**
   * The broker tenant the agent publishes as (a binding's): its subjects are the tenant's, and its host and listening
   * services carry the prop tenant=<id>, which the binding's dashboard view filters on.
   */
  tenant?: string;
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

/**
 * The tenant's mark on what the agent reports, as annotations the agent owns (entity.annotated): the host, and each
 * service listening on it (host:proto:port, the entity the view shows). Sent with every scan, so a service that appears
 * in a delta batch is marked at once; a full scan's annotations are the whole set, so a service gone loses its mark.
 */
export function tenantAnnotations(tenant: string, host: string, listeners: Iterable<{ proto: "tcp" | "udp"; port: number }>): DiscoveryEvent[] {
  const props = { tenant };
  const out: DiscoveryEvent[] = [{ type: "entity.annotated", match: { host }, props }];
  const seen = new Set<string>();
  for (const l of listeners) {
    const k = `${l.proto}:${l.port}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push({ type: "entity.annotated", match: { host, port: l.port, proto: l.proto }, props });
  }
  return out;
}

/** The scan's batches with the tenant's annotations added to the last one (discoveryMessages re-splits by size). */
function withTenant(batches: DiscoveryBatch[], events: DiscoveryEvent[]): DiscoveryBatch[] {
  const last = batches[batches.length - 1];
  if (!last) return batches;
  return [...batches.slice(0, -1), { ...last, events: [...last.events, ...events] }];
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
  const discoverySubject = o.tenant === undefined ? bus.topo.subjects.discovery(o.host) : bus.topo.subjects.tenantDiscovery(o.tenant, o.host);
  const metricsSubject = o.tenant === undefined ? bus.topo.subjects.metrics(source) : bus.topo.subjects.tenantMetrics(o.tenant, source);
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
    const batches = o.tenant === undefined ? r.batches : withTenant(r.batches, tenantAnnotations(o.tenant, o.host, r.state.listeners.values()));
    const messages = discoveryMessages(batches, { onOversized: refused });
    for (const m of messages)
      await bus.js.publish(discoverySubject, m.bytes, { msgID: `${source}:${bootId}:${scanId}:${m.batch.part}`, timeout: 30_000 });
    for (const m of metricBatches(r.samples, { source, idBase: `${source}:${bootId}:${scanId}`, onOversized: refused }))
      await bus.js.publish(metricsSubject, m.bytes, { msgID: m.msgId, timeout: 30_000 });
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
