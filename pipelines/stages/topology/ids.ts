/**
 * Ids of the topology graph's nodes and edges (see index.ts for what each names). Type imports only, so the jobs,
 * the agent and tests build ids without loading the stage.
 */
import type { ProcessIdentity } from "../../contracts/common.ts";
import type { EdgeKind } from "../../contracts/topology.ts";

export const isLoopback = (ip: string) => ip.startsWith("127.") || ip === "::1";
/** Linux's default ip_local_port_range starts here: ports above it are usually picked at random. */
export const EPHEMERAL_START = 32768;
export const hostId = (host: string) => `host:${host}`;
/** ip:port, with IPv6 in brackets ([::1]:53) */
export const hostPort = (ip: string, port: number) => (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);
export const listenerId = (host: string, proto: string, ip: string, port: number) => `listener:${host}:${proto}:${hostPort(ip, port)}`;
export const externalId = (ip: string, port: number) => `external:${hostPort(ip, port)}`;
export const edgeId = (kind: EdgeKind, src: string, dst: string) => `${kind}:${src}->${dst}`;
export const procKey = (host: string, p: ProcessIdentity) => `${host}|${p.pid}|${p.startTime}`;
export const sockKey = (host: string, e: { proto: string; localIp: string; localPort: number; remoteIp: string; remotePort: number }) =>
  `${host}|${e.proto}|${hostPort(e.localIp, e.localPort)}|${hostPort(e.remoteIp, e.remotePort)}`;

export const isAgentSource = (source: string) => source.startsWith("agent:");
