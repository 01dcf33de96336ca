/**
 * A simulated estate (pure): tiers lb → web → app → cache/db/queue on N hosts, emitting the same discovery.v1 and
 * metrics.v1 a real agent would, with churn: connections open and close, processes restart.
 */
import type { ProcessIdentity } from "../../pipelines/contracts/common.ts";
import type { DiscoveryBatch, DiscoveryEvent } from "../../pipelines/contracts/discovery.ts";
import type { Sample } from "../../pipelines/contracts/metrics.ts";
import { hostId } from "../../pipelines/stages/topology.ts";

interface SimService {
  comm: string;
  port: number;
  pid: number;
  startTime: number;
}
interface SimHost {
  name: string;
  ip: string;
  tier: string;
  service: SimService;
  calls: string[]; // tiers it calls
}

const TIERS: { tier: string; comm: string; port: number; calls: string[]; share: number }[] = [
  { tier: "lb", comm: "haproxy", port: 443, calls: ["web"], share: 0.05 },
  { tier: "web", comm: "nginx", port: 80, calls: ["app"], share: 0.25 },
  { tier: "app", comm: "java", port: 8080, calls: ["cache", "db", "queue"], share: 0.4 },
  { tier: "cache", comm: "redis-server", port: 6379, calls: [], share: 0.1 },
  { tier: "db", comm: "postgres", port: 5432, calls: [], share: 0.1 },
  { tier: "queue", comm: "rabbitmq", port: 5672, calls: [], share: 0.1 },
];

export interface Estate {
  hosts: SimHost[];
  /** deterministic pseudo-random source */
  rnd: () => number;
  tick: number;
}

function mulberry32(seed: number) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function makeEstate(n: number, seed = 1): Estate {
  const hosts: SimHost[] = [];
  let i = 0;
  for (const t of TIERS) {
    const count = Math.max(1, Math.round(n * t.share));
    for (let k = 0; k < count; k++, i++) {
      hosts.push({
        name: `sim-${t.tier}-${k + 1}`,
        ip: `10.200.${(i >> 8) & 255}.${(i & 255) + 1}`,
        tier: t.tier,
        service: { comm: t.comm, port: t.port, pid: 1000 + i, startTime: 1_700_000_000_000 + i },
        calls: t.calls,
      });
    }
  }
  return { hosts, rnd: mulberry32(seed), tick: 0 };
}

const ident = (s: SimService, t: string): ProcessIdentity => ({
  pid: s.pid,
  exe: `/usr/bin/${s.comm}`,
  comm: s.comm,
  cmdline: [`/usr/bin/${s.comm}`, `--tier=${t}`],
  user: s.comm === "postgres" ? "postgres" : "app",
  uid: 1000,
  startTime: s.startTime,
  containerId: null,
});

/** One scan of every simulated host: full state each time (simple and self-healing), plus samples. */
export function scanEstate(e: Estate, now: number): { batches: DiscoveryBatch[]; samples: Sample[] } {
  e.tick++;
  const byTier = new Map<string, SimHost[]>();
  for (const h of e.hosts) byTier.set(h.tier, [...(byTier.get(h.tier) ?? []), h]);
  const batches: DiscoveryBatch[] = [];
  const samples: Sample[] = [];
  for (const h of e.hosts) {
    // churn: now and then a process restarts (new pid and start time)
    if (e.rnd() < 0.01) h.service = { ...h.service, pid: h.service.pid + 10_000, startTime: now };
    const p = ident(h.service, h.tier);
    const events: DiscoveryEvent[] = [
      { type: "host.seen", hostname: h.name, os: "Debian GNU/Linux 12 (bookworm)", kernel: "6.1.0-sim", cpus: 4, memTotalBytes: 16e9, ips: [h.ip] },
      { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: h.service.port, process: p },
    ];
    let conns = 0;
    for (const tier of h.calls) {
      const targets = byTier.get(tier) ?? [];
      for (let k = 0; k < targets.length; k++) {
        // each host talks to a stable subset of the next tier; some connections come and go
        if ((k + e.hosts.indexOf(h)) % 3 !== 0 && e.rnd() < 0.8) continue;
        const t = targets[k]!;
        events.push({ type: "connection.seen", proto: "tcp", localIp: h.ip, localPort: 32768 + ((k * 7919 + e.tick) % 28000), remoteIp: t.ip, remotePort: t.service.port, process: p });
        conns++;
      }
    }
    batches.push({ schema: "discovery.v1", source: `sim:${h.name}`, host: h.name, scanId: e.tick, part: 0, parts: 1, full: true, at: now, events });
    const load = (h.tier === "app" ? 2 : 0.6) + e.rnd() * 0.8;
    samples.push(
      { entity: hostId(h.name), metric: "host_load1", ts: now, value: +load.toFixed(2), labels: {} },
      { entity: hostId(h.name), metric: "host_connections", ts: now, value: conns, labels: {} },
    );
  }
  return { batches, samples };
}
