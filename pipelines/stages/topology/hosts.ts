/**
 * Hosts and IP ownership: which host claims an IP now, and where a connection to ip:port on a host leads.
 */
import type { HostSeen } from "../../contracts/discovery.ts";
import { putNode } from "./graph.ts";
import { externalId, hostId, isAgentSource, isLoopback } from "./ids.ts";
import type { IpClaim, TopologyModel } from "./model.ts";
import type { Ctx } from "./tracker.ts";

export const WILDCARD = new Set(["0.0.0.0", "::", "*"]);

/**
 * A host and the IPs it holds. Agents are the authority on their own host: a discovery job's host.seen (a scan, an
 * inventory) neither rewrites an agent-reported host node nor takes or drops an IP an agent claims; it may claim an
 * IP nobody's agent holds (so calls to a host only a job knows resolve to its listeners), until an agent claims it.
 * Returns the IPs whose owner changed: the caller re-resolves the flows to them (flows.ts reresolveIp).
 */
export function hostSeen(ctx: Ctx, e: HostSeen, at: number): string[] {
  const m = ctx.m;
  const agent = isAgentSource(ctx.source);
  const id = hostId(ctx.host);
  const node = m.nodes.get(id);
  if (agent || !node || !isAgentSource(node.source))
    putNode(ctx, id, "host", e.hostname, {
      hostname: e.hostname,
      os: e.os,
      kernel: e.kernel,
      cpus: e.cpus,
      memTotalBytes: e.memTotalBytes,
      ips: e.ips.join(","),
    });
  const ips = new Set(e.ips.filter((ip) => !isLoopback(ip)));
  let before: Set<string>;
  if (agent) {
    before = m.hostIps.get(ctx.host) ?? new Set<string>();
    m.hostIps.set(ctx.host, ips);
  } else {
    let bySource = m.jobIps.get(ctx.host);
    if (!bySource) m.jobIps.set(ctx.host, (bySource = new Map()));
    before = bySource.get(ctx.source) ?? new Set<string>();
    if (ips.size) bySource.set(ctx.source, ips);
    else bySource.delete(ctx.source);
    if (!bySource.size) m.jobIps.delete(ctx.host);
  }
  const moved: string[] = [];
  for (const ip of before) {
    if (ips.has(ip)) continue;
    // No longer listed: the claim ends (only if it is still this reporter's).
    if (ownsClaim(m.ipOwner.get(ip), ctx.source, ctx.host)) {
      m.ipOwner.delete(ip);
      moved.push(ip);
    }
  }
  for (const ip of ips) {
    const o = m.ipOwner.get(ip);
    if (o) {
      if (o.agent && !agent) continue; // a job never takes an IP from an agent
      if (o.agent === agent && o.host !== ctx.host && o.at > at) continue; // a newer claim of the same standing wins over this late one
    }
    if (!o || o.host !== ctx.host) moved.push(ip);
    m.ipOwner.set(ip, { host: ctx.host, at, agent, source: ctx.source });
  }
  return moved;
}

/** Whether `source` (reporting for `host`) made this claim: an agent's claims are its host's; a job's are its own. */
export function ownsClaim(o: IpClaim | undefined, source: string, host: string): boolean {
  if (!o || o.host !== host) return false;
  return isAgentSource(source) ? o.agent : !o.agent && o.source === source;
}

/** The IPs a host is known by: its agent's, and any job's. */
export function ipsOfHost(m: TopologyModel, host: string): string[] {
  const out = [...(m.hostIps.get(host) ?? [])];
  for (const ips of m.jobIps.get(host)?.values() ?? []) out.push(...ips);
  return out;
}

export function ensureHost(ctx: Ctx): string {
  const id = hostId(ctx.host);
  if (!ctx.m.nodes.has(id)) putNode(ctx, id, "host", ctx.host, { hostname: ctx.host });
  return id;
}

/**
 * The listener a connection to ip:port on a host reaches: the one bound to that ip, else a wildcard (or loopback for
 * loopback). An agent's listener comes before one a job inferred (a port scan or an inventory sees an open port, the
 * agent sees the process serving it).
 */
export function findListener(m: TopologyModel, host: string, proto: string, ip: string, port: number): string | undefined {
  const set = m.listenerIndex.get(`${host}|${proto}|${port}`);
  if (!set) return undefined;
  let best: string | undefined;
  let bestScore = -1;
  for (const id of set) {
    const l = m.listeners.get(id);
    if (!l) continue;
    const exact = l.ip === ip;
    if (!exact && !WILDCARD.has(l.ip) && !(isLoopback(ip) && isLoopback(l.ip))) continue;
    const score = (isAgentSource(l.source) ? 2 : 0) + (exact ? 1 : 0);
    if (score > bestScore) {
      best = id;
      bestScore = score;
    }
  }
  return best;
}

/**
 * Where a flow's remote end is, and whether that answer hangs on who owns the IP. `dst` is null while the answer must
 * wait: the IP belongs to a host whose agent reports no listener there (yet: the listener's scan has not arrived, the
 * agent is back from aging and its full scan is due, the service is restarting). An agent sees every listening
 * socket of its host, so such a call is to one of our own hosts, never a third party: an external node there would
 * be a phantom. It resolves when the listener appears (adoptExternals). A job's claim is weaker (a scan or an
 * inventory need not see every listener): calls to an IP only a job claims still become external nodes.
 */
export function resolveRemote(m: TopologyModel, host: string, proto: string, ip: string, port: number): { dst: string | null; viaOwner: boolean } {
  let target: string | undefined;
  let viaOwner = false;
  if (isLoopback(ip) || m.hostIps.get(host)?.has(ip)) target = host;
  else {
    viaOwner = true;
    target = m.ipOwner.get(ip)?.host;
  }
  const found = target ? findListener(m, target, proto, ip, port) : undefined;
  if (found) return { dst: found, viaOwner };
  const o = viaOwner ? m.ipOwner.get(ip) : undefined;
  if (o?.agent) return { dst: null, viaOwner };
  return { dst: externalId(ip, port), viaOwner };
}
