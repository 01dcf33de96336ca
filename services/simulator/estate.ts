/**
 * A simulated estate (pure, deterministic for a seed): N hosts in tiers lb → web → app → cache/db/queue plus a
 * monitoring tier, each host running its main service and the usual node-local ones (sshd, node_exporter, chronyd, a
 * log shipper), calling services on other hosts. Every tick each live host is scanned into a `HostScan` — the same shape
 * the real agent reads from /proc — and turned into discovery.v1 batches and metrics.v1 samples by the agent's own
 * `scanToBatches`, so the simulator sends exactly what agents would: deltas between scans and a full state every
 * `fullEvery` scans, server-side socket halves included.
 *
 * Churn, per host per tick (rates are probabilities): process restarts (new pid, same service), client reconnects
 * (new ephemeral ports), short-lived cron processes, service crashes (gone for a few ticks, back under a new pid),
 * host failures (the agent goes silent for a while, then resumes), and deploys (the host is replaced by a new one with
 * a new name on the SAME IP — the IP-reuse case; the old one just stops reporting and must age out; its callers
 * reconnect, as they would when the old process went away).
 *
 * Ownership: each host's full state carries `entity.annotated` events (the owner/team an agent's config tags would
 * give): the host's, and the owner/team of each listening service — except a seeded ~10% left unowned, so "which
 * services have no owner" has answers. Client-only services (the log shipper) have no port to be matched by, so they
 * are unowned too. App-tier services and half the caches run in containers: their process identity carries a
 * container id and image (`registry.example/orders:1.4.<gen>`).
 */
import { MAX_DISCOVERY_EVENTS, type DiscoveryBatch, type DiscoveryEvent } from "../../pipelines/contracts/discovery.ts";
import type { Sample } from "../../pipelines/contracts/metrics.ts";
import type { HostScan, ProcessInfo, SocketInfo } from "../../pipelines/contracts/host-scan.ts";
import { emptyAgentState, scanToBatches, type AgentState } from "../../pipelines/stages/agent-diff.ts";

export interface Churn {
  restart: number;
  reconnect: number;
  cron: number;
  crash: number;
  failure: number;
  deploy: number;
}
export const NO_CHURN: Churn = { restart: 0, reconnect: 0, cron: 0, crash: 0, failure: 0, deploy: 0 };
export const DEFAULT_CHURN: Churn = { restart: 0.002, reconnect: 0.2, cron: 0.02, crash: 0.001, failure: 0.0005, deploy: 0.0005 };

/** Share of listening services left without an owner annotation. */
export const UNOWNED_SHARE = 0.1;

export interface EstateOptions {
  seed: number;
  /** each simulated agent sends its full state every N scans */
  fullEvery: number;
  /** multiplies how many peers each service calls (1 ≈ 10 nodes and 47 edges per host in the graph, 0.45 ≈ 30) */
  fanout: number;
  churn: Churn;
  /** entity.annotated owner/team in each host's full state (default true) */
  owners: boolean;
}

interface Tier {
  tier: string;
  share: number;
  comm: string;
  exe: string;
  cmdline: string[];
  user: string;
  ports: number[];
  /** tier called → how many of its hosts each host calls (before fanout) */
  calls: [string, number][];
  /** the team owning this tier's main service */
  team: string;
  /** container image of the main service, when it runs in one (`:<gen>` is appended) */
  image?: string;
}

const TIERS: Tier[] = [
  { tier: "lb", share: 0.04, comm: "haproxy", exe: "/usr/sbin/haproxy", cmdline: ["/usr/sbin/haproxy", "-f", "/etc/haproxy/haproxy.cfg"], user: "haproxy", ports: [80, 443], calls: [["web", 30]], team: "netops" },
  { tier: "web", share: 0.2, comm: "nginx", exe: "/usr/sbin/nginx", cmdline: ["nginx: master process /usr/sbin/nginx"], user: "www-data", ports: [80], calls: [["app", 20]], team: "frontend" },
  { tier: "app", share: 0.4, comm: "java", exe: "/usr/lib/jvm/java-17/bin/java", cmdline: ["java", "-Xmx2g", "-jar", "/srv/orders.jar"], user: "app", ports: [8080, 8081], calls: [["cache", 10], ["db", 8], ["queue", 7], ["external", 2]], team: "orders", image: "registry.example/orders:1.4" },
  { tier: "cache", share: 0.12, comm: "redis-server", exe: "/usr/bin/redis-server", cmdline: ["/usr/bin/redis-server *:6379"], user: "redis", ports: [6379], calls: [], team: "data-platform", image: "docker.io/library/redis:7.2" },
  { tier: "db", share: 0.1, comm: "postgres", exe: "/usr/lib/postgresql/16/bin/postgres", cmdline: ["/usr/lib/postgresql/16/bin/postgres", "-D", "/var/lib/postgresql/16/main"], user: "postgres", ports: [5432], calls: [], team: "data-platform" },
  { tier: "queue", share: 0.1, comm: "kafka", exe: "/usr/lib/jvm/java-17/bin/java", cmdline: ["java", "-Xmx1g", "kafka.Kafka", "/etc/kafka/server.properties"], user: "kafka", ports: [9092], calls: [], team: "streaming" },
  { tier: "monitor", share: 0.04, comm: "prometheus", exe: "/usr/bin/prometheus", cmdline: ["/usr/bin/prometheus", "--config.file=/etc/prometheus/prometheus.yml"], user: "prometheus", ports: [9090], calls: [], team: "observability" },
];
/** People on call, by team (owners are picked from these, seeded). */
const PEOPLE = ["alice", "bob", "chen", "dana", "emeka", "fatima", "gus", "hana", "ivan", "jo"];
/** Third parties the apps call (payment, mail, …): nobody here listens there, so they become external nodes. */
const EXTERNALS = ["203.0.113.10", "203.0.113.20", "198.51.100.7", "198.51.100.8"];

interface SimProc {
  pid: number;
  comm: string;
  exe: string;
  cmdline: string[];
  user: string;
  uid: number;
  startTime: number;
  ports: number[];
  udp?: number[];
  /** runs in a container: its id and image */
  container?: { id: string; image: string };
}

interface Call {
  /** index of the calling process in SimHost.procs */
  from: number;
  /** target slot, or -1 for an external endpoint */
  slot: number;
  ip: string;
  port: number;
  localPort: number;
}

interface SimHost {
  slot: number;
  gen: number;
  name: string;
  ip: string;
  tier: string;
  procs: SimProc[];
  calls: Call[];
  state: AgentState;
  scanId: number;
  /** ticks left with the agent silent (failure) */
  silent: number;
  /** ticks left with the main service down (crash) */
  crashed: number;
  cron: { proc: SimProc; slot: number } | null;
}

export interface Estate {
  opts: EstateOptions;
  hosts: SimHost[];
  byTier: Map<string, number[]>;
  /** deterministic pseudo-random source */
  rnd: () => number;
  tick: number;
  nextPid: number;
  /** hosts replaced by a deploy (their agents went silent for good) */
  retired: string[];
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

/** A stable pseudo-random number in [0,1) for (seed, a, b): ownership must not change from scan to scan. */
function hash01(seed: number, a: number, b: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(a + 1, 0xc2b2ae35) ^ Math.imul(b + 7, 0x27d4eb2f);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}
const containerId = (seed: number, slot: number, gen: number) => Array.from({ length: 4 }, (_, i) => Math.floor(hash01(seed, slot * 31 + gen, i) * 2 ** 32).toString(16).padStart(8, "0")).join("").padEnd(64, "0");

const ipOf = (slot: number) => `10.${((slot + 1) >> 16) & 255}.${((slot + 1) >> 8) & 255}.${(slot + 1) & 255}`;
const T0 = 1_700_000_000_000;

export function makeEstate(n: number, opts: Partial<EstateOptions> | number = {}): Estate {
  const o: EstateOptions = { seed: 1, fullEvery: 12, fanout: 1, churn: DEFAULT_CHURN, owners: true, ...(typeof opts === "number" ? { seed: opts } : opts) };
  const e: Estate = { opts: o, hosts: [], byTier: new Map(), rnd: mulberry32(o.seed), tick: 0, nextPid: 1000, retired: [] };
  for (const t of TIERS) {
    const count = Math.max(1, Math.round(n * t.share));
    const slots: number[] = [];
    for (let k = 0; k < count; k++) {
      const slot = e.hosts.length;
      slots.push(slot);
      e.hosts.push(newHost(e, slot, t.tier, `sim-${t.tier}-${k + 1}`, 0));
    }
    e.byTier.set(t.tier, slots);
  }
  for (const h of e.hosts) h.calls = planCalls(e, h);
  return e;
}

function newHost(e: Estate, slot: number, tier: string, name: string, gen: number): SimHost {
  const t = TIERS.find((x) => x.tier === tier)!;
  const start = T0 + slot * 1000 + gen;
  const p = (comm: string, exe: string, cmdline: string[], user: string, ports: number[], udp?: number[]): SimProc => ({ pid: e.nextPid++, comm, exe, cmdline, user, uid: 1000, startTime: start, ports, udp });
  const main = p(t.comm, t.exe, t.cmdline, t.user, t.ports);
  if (t.image && (tier !== "cache" || slot % 2 === 0)) main.container = { id: containerId(e.opts.seed, slot, gen), image: `${t.image}.${gen}` };
  return {
    slot,
    gen,
    name,
    ip: ipOf(slot),
    tier,
    procs: [
      main,
      p("sshd", "/usr/sbin/sshd", ["sshd: /usr/sbin/sshd -D"], "root", [22]),
      p("node_exporter", "/usr/bin/node_exporter", ["/usr/bin/node_exporter"], "prometheus", [9100]),
      p("filebeat", "/usr/share/filebeat/bin/filebeat", ["/usr/share/filebeat/bin/filebeat", "-c", "/etc/filebeat/filebeat.yml"], "root", []),
      p("chronyd", "/usr/sbin/chronyd", ["/usr/sbin/chronyd", "-F", "1"], "_chrony", [], [123]),
    ],
    calls: [],
    state: emptyAgentState(),
    scanId: 0,
    silent: 0,
    crashed: 0,
    cron: null,
  };
}

function planCalls(e: Estate, h: SimHost): Call[] {
  const t = TIERS.find((x) => x.tier === h.tier)!;
  const calls: Call[] = [];
  const add = (from: number, slot: number, ip: string, port: number) => calls.push({ from, slot, ip, port, localPort: 32768 + Math.floor(e.rnd() * 28000) });
  for (const [tier, base] of t.calls) {
    const want = Math.max(1, Math.round(base * e.opts.fanout));
    if (tier === "external") {
      for (let k = 0; k < Math.min(want, EXTERNALS.length); k++) add(0, -1, EXTERNALS[(h.slot + k) % EXTERNALS.length]!, 443);
      continue;
    }
    const targets = e.byTier.get(tier) ?? [];
    const port = TIERS.find((x) => x.tier === tier)!.ports[0]!;
    for (let k = 0; k < Math.min(want, targets.length); k++) add(0, targets[(h.slot * 7 + k * 13) % targets.length]!, "", port);
  }
  // the log shipper sends to two queue hosts; the monitoring tier scrapes every host's node_exporter
  const queues = e.byTier.get("queue") ?? [];
  for (let k = 0; k < Math.min(2, queues.length); k++) add(3, queues[(h.slot + k) % queues.length]!, "", 9092);
  if (h.tier === "monitor") {
    const mons = e.byTier.get("monitor") ?? [];
    const me = mons.indexOf(h.slot);
    for (let s = 0; s < e.hosts.length; s++) if (s % mons.length === me) add(0, s, "", 9100);
  }
  // de-duplicate (small tiers): one socket per (process, target, port)
  const seen = new Set<string>();
  return calls.filter((c) => {
    const k = `${c.from}|${c.slot}|${c.ip}|${c.port}`;
    if (seen.has(k) || c.slot === h.slot) return false;
    seen.add(k);
    return true;
  });
}

function churn(e: Estate, h: SimHost, now: number): SimHost {
  const c = e.opts.churn;
  const r = e.rnd;
  if (c.deploy && r() < c.deploy) {
    // A new machine under a new name takes over the slot and its IP; the old agent is gone for good.
    e.retired.push(h.name);
    const base = h.name.replace(/-r\d+$/, "");
    const next = newHost(e, h.slot, h.tier, `${base}-r${h.gen + 1}`, h.gen + 1);
    for (const p of next.procs) p.startTime = now;
    next.calls = planCalls(e, next);
    e.hosts[h.slot] = next;
    // the old machine's sockets are gone: its callers reconnect (to the same IP, now the new host's)
    for (const other of e.hosts) for (const call of other.calls) if (call.slot === h.slot) call.localPort = 32768 + Math.floor(r() * 28000);
    return next;
  }
  if (h.silent > 0) {
    h.silent--;
    return h;
  }
  if (c.failure && r() < c.failure) h.silent = 2 + Math.floor(r() * 6);
  for (const p of h.procs) {
    if (c.restart && r() < c.restart) {
      p.pid = e.nextPid++;
      p.startTime = now;
      for (const call of h.calls) if (h.procs[call.from] === p) call.localPort = 32768 + Math.floor(r() * 28000);
    }
  }
  if (h.crashed > 0) {
    if (--h.crashed === 0) {
      const p = h.procs[0]!;
      p.pid = e.nextPid++;
      p.startTime = now;
    }
  } else if (c.crash && r() < c.crash) h.crashed = 1 + Math.floor(r() * 4);
  if (c.reconnect) for (const call of h.calls) if (r() < c.reconnect) call.localPort = 32768 + Math.floor(r() * 28000);
  // a cron job lives for exactly one scan
  h.cron = null;
  const web = e.byTier.get("web") ?? [];
  if (c.cron && web.length && r() < c.cron) {
    h.cron = { proc: { pid: e.nextPid++, comm: "curl", exe: "/usr/bin/curl", cmdline: ["curl", "-s", "http://web/health"], user: "root", uid: 0, startTime: now, ports: [] }, slot: web[Math.floor(r() * web.length)]! };
  }
  return h;
}

/** One scan of every live simulated host: each one's discovery batches (deltas, or its full state) and samples. */
export function scanEstate(e: Estate, now: number): { batches: DiscoveryBatch[]; samples: Sample[] } {
  e.tick++;
  for (let s = 0; s < e.hosts.length; s++) churn(e, e.hosts[s]!, now);
  // The server halves of every open connection, by target slot.
  const inbound = new Map<number, SocketInfo[]>();
  const live = (h: SimHost) => h.crashed === 0;
  for (const h of e.hosts) {
    if (h.silent) continue;
    for (const c of h.calls) {
      if (c.slot < 0 || (c.from === 0 && !live(h))) continue;
      const t = e.hosts[c.slot]!;
      if (c.port === t.procs[0]!.ports[0] && !live(t)) continue; // refused: nobody listens
      const owner = t.procs.find((p) => p.ports.includes(c.port));
      if (!owner) continue;
      const list = inbound.get(c.slot) ?? [];
      list.push(sock("established", t.ip, c.port, h.ip, c.localPort, owner.pid));
      inbound.set(c.slot, list);
    }
  }
  const batches: DiscoveryBatch[] = [];
  const samples: Sample[] = [];
  for (const h of e.hosts) {
    if (h.silent) continue;
    const scan = hostScan(e, h, now, inbound.get(h.slot) ?? []);
    const full = h.scanId % e.opts.fullEvery === 0;
    const r = scanToBatches(h.state, scan, { source: `agent:${h.name}`, host: h.name, scanId: h.scanId, full });
    h.state = r.state;
    h.scanId++;
    withContainerImages(h, r.batches);
    if (full && e.opts.owners) appendEvents(r.batches, ownership(e, h));
    batches.push(...r.batches);
    samples.push(...r.samples);
  }
  return { batches, samples };
}

/** The owner/team annotations of a host and its listening services (a stable ~10% of services left unowned). */
export function ownership(e: Estate, h: SimHost): DiscoveryEvent[] {
  const t = TIERS.find((x) => x.tier === h.tier)!;
  const person = (k: number) => PEOPLE[Math.floor(hash01(e.opts.seed, h.slot * 16 + k, h.gen) * PEOPLE.length)]!;
  const out: DiscoveryEvent[] = [{ type: "entity.annotated", match: { host: h.name }, props: { owner: person(0), team: "infra" } }];
  h.procs.forEach((p, i) => {
    const team = i === 0 ? t.team : "infra";
    for (const [proto, ports] of [["tcp", p.ports], ["udp", p.udp ?? []]] as const) {
      const port = ports[0];
      if (port === undefined) continue;
      if (hash01(e.opts.seed, h.slot, i + 100) < UNOWNED_SHARE) continue;
      out.push({ type: "entity.annotated", match: { host: h.name, port, proto }, props: { owner: person(i + 1), team } });
    }
  });
  return out;
}

/** Adds events to the last batch of a scan, or as one more part when it is full. */
function appendEvents(batches: DiscoveryBatch[], events: DiscoveryEvent[]) {
  const last = batches[batches.length - 1];
  if (!last || !events.length) return;
  if (last.events.length + events.length <= MAX_DISCOVERY_EVENTS) {
    last.events.push(...events);
    return;
  }
  const parts = last.parts + 1;
  for (const b of batches) b.parts = parts;
  batches.push({ ...last, part: parts - 1, parts, events });
}

/** The agent reads container ids from cgroups; the image is what a container runtime adds: set it on containers' events. */
function withContainerImages(h: SimHost, batches: DiscoveryBatch[]) {
  const byPid = new Map(h.procs.filter((p) => p.container).map((p) => [p.pid, p.container!]));
  if (!byPid.size) return;
  for (const b of batches)
    for (const ev of b.events)
      if ((ev.type === "listener.seen" || ev.type === "connection.seen") && ev.process) {
        const c = byPid.get(ev.process.pid);
        if (c) ev.process = { ...ev.process, containerId: c.id, containerImage: c.image };
      }
}

function sock(state: SocketInfo["state"], localIp: string, localPort: number, remoteIp: string, remotePort: number, pid: number, proto: "tcp" | "udp" = "tcp"): SocketInfo {
  return { proto, family: 4, localIp, localPort, remoteIp, remotePort, state, inode: 0, uid: 1000, pid };
}

function hostScan(e: Estate, h: SimHost, now: number, inbound: SocketInfo[]): HostScan {
  const procs = h.crashed ? h.procs.slice(1) : h.procs;
  const sockets: SocketInfo[] = [];
  for (const p of procs) {
    for (const port of p.ports) sockets.push(sock("listen", "0.0.0.0", port, "0.0.0.0", 0, p.pid));
    for (const port of p.udp ?? []) sockets.push(sock("listen", "0.0.0.0", port, "0.0.0.0", 0, p.pid, "udp"));
  }
  for (const c of h.calls) {
    const p = h.procs[c.from]!;
    if (!procs.includes(p)) continue;
    // refused while the service called is down (as its server half is): no established socket, no call to nobody
    const target = c.slot < 0 ? undefined : e.hosts[c.slot]!;
    if (target?.crashed && c.port === target.procs[0]!.ports[0]) continue;
    const ip = target ? target.ip : c.ip;
    sockets.push(sock("established", h.ip, c.localPort, ip, c.port, p.pid));
  }
  const all = h.cron ? [...procs, h.cron.proc] : procs;
  if (h.cron) sockets.push(sock("established", h.ip, 32768 + Math.floor(e.rnd() * 28000), e.hosts[h.cron.slot]!.ip, 80, h.cron.proc.pid));
  sockets.push(...inbound.filter((s) => procs.some((p) => p.pid === s.pid)));
  const processes = new Map<number, ProcessInfo>();
  for (const p of all)
    processes.set(p.pid, {
      pid: p.pid,
      ppid: 1,
      comm: p.comm,
      exe: p.exe,
      cmdline: p.cmdline,
      uid: p.uid,
      user: p.user,
      startTime: p.startTime,
      containerId: p.container?.id ?? null,
      cpuTicks: Math.floor((now - p.startTime) / 50),
      rssBytes: 64e6 + (p.pid % 64) * 4e6,
    });
  const load = (h.tier === "app" ? 2 : 0.6) + e.rnd() * 0.8;
  return {
    at: now,
    facts: { hostname: h.name, os: "Debian GNU/Linux 12 (bookworm)", kernel: "6.1.0-sim", cpus: 4, memTotalBytes: 16e9, memAvailableBytes: 9e9, load1: +load.toFixed(2), ips: [h.ip] },
    sockets,
    processes,
    unreadablePids: [],
  };
}
