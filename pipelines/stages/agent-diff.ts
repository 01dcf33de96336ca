/**
 * Pure: turns consecutive host scans into discovery batches (changes since the last scan, or the full state) and
 * metric samples. The agent's only state is the set of keys it reported last time. Shared by the agent and the
 * simulator, which both produce host scans (pipelines/contracts/host-scan.ts).
 */
import type { ProcessIdentity } from "../contracts/common.ts";
import type { DiscoveryBatch, DiscoveryEvent } from "../contracts/discovery.ts";
import { CLK_TCK, type HostScan, type ProcessInfo, type SocketInfo } from "../contracts/host-scan.ts";
import type { Sample } from "../contracts/metrics.ts";
import { serviceId } from "./topology/identity.ts";
import { hostId, hostPort } from "./topology/ids.ts";

export interface AgentState {
  listeners: Map<string, DiscoveryEvent & { type: "listener.seen" }>;
  conns: Map<string, DiscoveryEvent & { type: "connection.seen" }>;
  /** pid → its CPU ticks and start time at the last published scan (a rate needs two scans of the same process) */
  cpu: Map<number, { ticks: number; startTime: number }>;
  /** when the last published scan was taken (ms) */
  at: number | null;
}

export const emptyAgentState = (): AgentState => ({ listeners: new Map(), conns: new Map(), cpu: new Map(), at: null });

const WILDCARD = new Set(["0.0.0.0", "::"]);

/** Stays well under the per-message limit even with long command lines. */
const MAX_EVENTS = 1000;
const MAX_BYTES = 512 * 1024;

function identity(p: ProcessInfo | undefined): ProcessIdentity | null {
  if (!p) return null;
  return {
    pid: p.pid,
    exe: p.exe,
    comm: p.comm.slice(0, 256),
    cmdline: p.cmdline.slice(0, 64).map((a) => a.slice(0, 1024)),
    user: p.user,
    uid: p.uid,
    startTime: Math.max(0, Math.round(p.startTime)),
    containerId: p.containerId,
  };
}

const listenerKey = (s: SocketInfo) => `${s.proto}|${hostPort(s.localIp, s.localPort)}`;
const connKey = (s: SocketInfo) => `${s.proto}|${hostPort(s.localIp, s.localPort)}|${hostPort(s.remoteIp, s.remotePort)}`;

export interface ScanResult {
  batches: DiscoveryBatch[];
  samples: Sample[];
  state: AgentState;
}

export function scanToBatches(prev: AgentState, scan: HostScan, o: { source: string; host: string; scanId: number; full: boolean }): ScanResult {
  const state = emptyAgentState();
  state.at = scan.at;
  for (const p of scan.processes.values()) state.cpu.set(p.pid, { ticks: p.cpuTicks, startTime: p.startTime });
  for (const [pid, w] of scan.workers ?? []) state.cpu.set(pid, { ticks: w.cpuTicks, startTime: w.startTime });
  for (const s of scan.sockets) {
    const process = identity(s.pid == null ? undefined : scan.processes.get(s.pid));
    if (s.state === "listen") {
      state.listeners.set(listenerKey(s), { type: "listener.seen", proto: s.proto, ip: s.localIp, port: s.localPort, process });
    } else if (s.state === "established" && s.proto === "tcp") {
      state.conns.set(connKey(s), {
        type: "connection.seen",
        proto: s.proto,
        localIp: s.localIp,
        localPort: s.localPort,
        remoteIp: s.remoteIp,
        remotePort: s.remotePort,
        process,
      });
    }
  }

  const f = scan.facts;
  const events: DiscoveryEvent[] = [
    { type: "host.seen", hostname: f.hostname, os: f.os, kernel: f.kernel, cpus: f.cpus, memTotalBytes: f.memTotalBytes, ips: f.ips },
  ];
  const sameOwner = (a: ProcessIdentity | null, b: ProcessIdentity | null) => a?.pid === b?.pid && a?.startTime === b?.startTime;
  for (const [k, l] of state.listeners) {
    const before = prev.listeners.get(k);
    if (o.full || !before || !sameOwner(before.process, l.process)) events.push(l);
  }
  for (const [k, c] of state.conns) {
    const before = prev.conns.get(k);
    if (o.full || !before || !sameOwner(before.process, c.process)) events.push(c);
  }
  if (!o.full) {
    for (const [k, l] of prev.listeners) if (!state.listeners.has(k)) events.push({ type: "listener.gone", proto: l.proto, ip: l.ip, port: l.port });
    for (const [k, c] of prev.conns)
      if (!state.conns.has(k))
        events.push({ type: "connection.gone", proto: c.proto, localIp: c.localIp, localPort: c.localPort, remoteIp: c.remoteIp, remotePort: c.remotePort });
  }

  return { batches: chunk(events, scan.at, o), samples: samplesOf(scan, prev, state, o.host), state };
}

function chunk(events: DiscoveryEvent[], at: number, o: { source: string; host: string; scanId: number; full: boolean }): DiscoveryBatch[] {
  const groups: DiscoveryEvent[][] = [[]];
  let bytes = 0;
  for (const e of events) {
    const size = JSON.stringify(e).length;
    const cur = groups[groups.length - 1]!;
    if (cur.length && (cur.length >= MAX_EVENTS || bytes + size > MAX_BYTES)) {
      groups.push([e]);
      bytes = size;
    } else {
      cur.push(e);
      bytes += size;
    }
  }
  return groups.map((g, part) => ({ schema: "discovery.v1", source: o.source, host: o.host, scanId: o.scanId, part, parts: groups.length, full: o.full, at, events: g }));
}

function samplesOf(scan: HostScan, prev: AgentState, state: AgentState, host: string): Sample[] {
  const ts = scan.at;
  const h = hostId(host);
  const f = scan.facts;
  const out: Sample[] = [
    { entity: h, metric: "host_load1", ts, value: f.load1, labels: {} },
    { entity: h, metric: "host_mem_available_bytes", ts, value: f.memAvailableBytes, labels: {} },
    { entity: h, metric: "host_listeners", ts, value: state.listeners.size, labels: {} },
    { entity: h, metric: "host_connections", ts, value: state.conns.size, labels: {} },
    { entity: h, metric: "agent_unreadable_processes", ts, value: scan.unreadablePids.length, labels: {} },
  ];
  // Metrics hang on the same service node the topology stage makes of a process (fingerprint + listening ports).
  const portsOf = new Map<number, { proto: string; port: number }[]>();
  for (const l of state.listeners.values()) {
    if (!l.process) continue;
    const list = portsOf.get(l.process.pid) ?? [];
    list.push({ proto: l.proto, port: l.port });
    portsOf.set(l.process.pid, list);
  }
  const entities = new Map<number, string>();
  const entityOf = (p: ProcessIdentity) => {
    let e = entities.get(p.pid);
    if (e === undefined) entities.set(p.pid, (e = serviceId(host, p, portsOf.get(p.pid) ?? [])));
    return e;
  };
  // The server end of a connection (its local port is one of our listeners) is counted by client IP: per client
  // port, every inbound connection would be a series of its own.
  const listening = new Set<string>();
  for (const l of state.listeners.values()) listening.add(`${l.proto}|${WILDCARD.has(l.ip) ? "*" : l.ip}|${l.port}`);
  const inbound = (c: { proto: string; localIp: string; localPort: number }) =>
    listening.has(`${c.proto}|*|${c.localPort}`) || listening.has(`${c.proto}|${c.localIp}|${c.localPort}`);
  // Connection counts per (service, remote endpoint): the hot numbers live in metrics, not in the graph.
  const pairs = new Map<string, { entity: string; metric: string; labels: Record<string, string>; n: number }>();
  for (const c of state.conns.values()) {
    const entity = c.process ? entityOf(c.process) : h;
    const [metric, labels] = inbound(c) ? ["connections_in", { client: c.remoteIp }] : ["connections", { remote: hostPort(c.remoteIp, c.remotePort) }];
    const k = `${entity}|${metric}|${labels.client ?? labels.remote}`;
    const p = pairs.get(k) ?? { entity, metric, labels, n: 0 };
    p.n++;
    pairs.set(k, p);
  }
  for (const p of pairs.values()) out.push({ entity: p.entity, metric: p.metric, ts, value: p.n, labels: p.labels });
  // A process's cost includes its folded workers' (the master of a pre-fork server does little itself).
  const workersOf = new Map<number, { pid: number; cpuTicks: number; startTime: number; rssBytes: number }[]>();
  for (const [pid, w] of scan.workers ?? []) {
    const list = workersOf.get(w.leader) ?? [];
    list.push({ pid, ...w });
    workersOf.set(w.leader, list);
  }
  const seconds = prev.at === null ? 0 : (scan.at - prev.at) / 1000;
  // CPU seconds a process used since the last scan, or null when it is not the process seen then (pid reused).
  const used = (p: { pid: number; cpuTicks: number; startTime: number }) => {
    const before = prev.cpu.get(p.pid);
    return before && before.startTime === p.startTime && p.cpuTicks >= before.ticks ? (p.cpuTicks - before.ticks) / CLK_TCK : null;
  };
  for (const p of scan.processes.values()) {
    const id = identity(p);
    if (!id) continue;
    const group = [p, ...(workersOf.get(p.pid) ?? [])];
    const labels = { pid: String(p.pid) };
    const entity = entityOf(id);
    out.push({ entity, metric: "process_rss_bytes", ts, value: group.reduce((n, q) => n + q.rssBytes, 0), labels });
    out.push({ entity, metric: "process_cpu_seconds_total", ts, value: group.reduce((n, q) => n + q.cpuTicks, 0) / CLK_TCK, labels });
    if (group.length > 1) out.push({ entity, metric: "process_workers", ts, value: group.length - 1, labels });
    // Cores used since the last scan, when the process is the one seen then; a worker new since then adds from
    // its next scan on.
    const own = used(p);
    if (own !== null && seconds > 0) {
      const cpu = group.slice(1).reduce((n, q) => n + (used(q) ?? 0), own);
      out.push({ entity, metric: "process_cpu_cores", ts, value: cpu / seconds, labels });
    }
  }
  return out;
}
