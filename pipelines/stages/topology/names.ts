/**
 * Names (name.seen): the DNS name a resolver reported for an IP, shown on external nodes at that IP.
 */
import type { NameSeen } from "../../contracts/discovery.ts";
import type { TopoNode } from "../../contracts/topology.ts";
import { addTo, bagDelete, bagSize } from "./bags.ts";
import { putNode } from "./graph.ts";
import { hostPort } from "./ids.ts";
import type { TopologyModel } from "./model.ts";
import type { Ctx } from "./tracker.ts";

/*
 * Names: a resolver (the DNS job, an inventory) says which name an IP has. External nodes at that IP are named
 * `<name>:<port>` with props.dnsName (their id stays external:<ip>:<port>). Per source, its latest answer; across
 * sources, the one that last changed its answer. Scoped like everything else: a completed full scan drops the names
 * its source did not list again, aging drops them all.
 */
export function nameSeen(ctx: Ctx, e: NameSeen, scanId: number) {
  const m = ctx.m;
  let bySource = m.names.get(e.ip);
  if (!bySource) m.names.set(e.ip, (bySource = new Map()));
  addTo(m.namesBy, ctx.source, e.ip);
  const old = bySource.get(ctx.source);
  if (old && old.name === e.name) {
    old.scanId = scanId;
    return;
  }
  bySource.set(ctx.source, { name: e.name, seq: ++m.annSeq, scanId });
  renameExternals(ctx, e.ip);
}

export function dropNames(ctx: Ctx, source: string, drop: (v: { scanId: number }) => boolean) {
  const ips = ctx.m.namesBy.get(source);
  if (!ips) return;
  for (const ip of [...ips]) {
    const bySource = ctx.m.names.get(ip);
    const v = bySource?.get(source);
    if (v && !drop(v)) continue;
    bySource?.delete(source);
    if (bySource && !bySource.size) ctx.m.names.delete(ip);
    bagDelete(ips, ip);
    renameExternals(ctx, ip);
  }
  if (!bagSize(ips)) ctx.m.namesBy.delete(source);
}

function dnsNameOf(m: TopologyModel, ip: string): string | undefined {
  let best: { name: string; seq: number } | undefined;
  for (const v of m.names.get(ip)?.values() ?? []) if (!best || v.seq > best.seq) best = v;
  return best?.name;
}

export function putExternal(ctx: Ctx, id: string, at: { ip: string; port: number; proto: string }, source: string) {
  const dns = dnsNameOf(ctx.m, at.ip);
  const props: TopoNode["props"] = { ip: at.ip, port: at.port, proto: at.proto };
  if (dns) props.dnsName = dns;
  putNode(ctx, id, "external", dns ? `${dns}:${at.port}` : hostPort(at.ip, at.port), props, source);
  addTo(ctx.m.externalsAt, at.ip, id);
}

function renameExternals(ctx: Ctx, ip: string) {
  for (const id of [...(ctx.m.externalsAt.get(ip) ?? [])]) {
    const n = ctx.m.nodes.get(id);
    if (n) putExternal(ctx, id, { ip, port: Number(n.props.port), proto: String(n.props.proto) }, n.source);
  }
}
