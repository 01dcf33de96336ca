/** Builders for discovery batches in pure-stage tests (no servers needed). */
import type { DiscoveryBatch, DiscoveryEvent } from "../../pipelines/contracts/discovery.ts";
import type { ProcessIdentity } from "../../pipelines/contracts/common.ts";
import type { Changes, TopologyModel } from "../../pipelines/stages/topology/index.ts";

export const proc = (pid: number, comm: string, o: Partial<ProcessIdentity> = {}): ProcessIdentity => ({
  pid,
  exe: `/usr/bin/${comm}`,
  comm,
  cmdline: [comm],
  user: "app",
  uid: 1000,
  startTime: 1000 + pid,
  containerId: null,
  ...o,
});

let scanSeq = 1;
/** One batch; source defaults to `agent:<host>`, and every call is a new scan. */
export const batch = (events: DiscoveryEvent[], o: Partial<DiscoveryBatch> = {}): DiscoveryBatch => ({
  schema: "discovery.v1",
  source: `agent:${o.host ?? "h1"}`,
  host: "h1",
  scanId: scanSeq++,
  part: 0,
  parts: 1,
  full: false,
  at: 1,
  events,
  ...o,
});

export const hostSeen = (ips: string[], hostname = "h1"): DiscoveryEvent & { type: "host.seen" } => ({ type: "host.seen", hostname, os: "Debian", kernel: "6", cpus: 2, memTotalBytes: 1, ips });
export const listen = (port: number, p: ProcessIdentity | null, ip = "0.0.0.0", proto: "tcp" | "udp" = "tcp"): DiscoveryEvent => ({ type: "listener.seen", proto, ip, port, process: p });
export const unlisten = (port: number, ip = "0.0.0.0", proto: "tcp" | "udp" = "tcp"): DiscoveryEvent => ({ type: "listener.gone", proto, ip, port });
export const conn = (localIp: string, localPort: number, remoteIp: string, remotePort: number, p: ProcessIdentity | null): DiscoveryEvent => ({
  type: "connection.seen",
  proto: "tcp",
  localIp,
  localPort,
  remoteIp,
  remotePort,
  process: p,
});
export const gone = (localIp: string, localPort: number, remoteIp: string, remotePort: number): DiscoveryEvent => ({ type: "connection.gone", proto: "tcp", localIp, localPort, remoteIp, remotePort });
export const annotate = (host: string, props: Record<string, string>, port?: number, proto?: "tcp" | "udp"): DiscoveryEvent => ({
  type: "entity.annotated",
  match: { host, ...(port === undefined ? {} : { port }), ...(proto ? { proto } : {}) },
  props,
});
export const nameSeen = (ip: string, name: string): DiscoveryEvent => ({ type: "name.seen", ip, name });

export const edgesOf = (m: TopologyModel, kind?: string) =>
  [...m.edges.values()]
    .filter((e) => !kind || e.kind === kind)
    .map((e) => `${e.kind} ${e.src} ${e.dst}`)
    .sort();
export const changed = (c: Changes) => c.nodesUpserted.length + c.nodesRemoved.length + c.edgesUpserted.length + c.edgesRemoved.length;
