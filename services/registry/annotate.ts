/**
 * Owners and teams onto the map: the registry reports, as a discovery source of its own (`registry:<host>`, one per
 * host so scoped cleanup stays per host), `entity.annotated` facts for every discovered service a component matches:
 * `component`, `owner` and `team`. The topology stage lays them over the service nodes like any CMDB source's
 * (pipelines/stages/topology/annotations.ts), so the views group by them, the drawer and the alerts show them, and
 * Cypher reads them from the graph on Kuzu and Neo4j alike (`MATCH (s:Entity) WHERE s.component = 'orders'`).
 *
 * Each host's batch is full: a component that no longer matches loses its props there. A host whose annotations did
 * not change is re-sent every `keepAliveMs` only, so the source never ages out. Limits: a service that listens nowhere
 * (a pure client) cannot be annotated (an annotation names host:port), and annotations sent by a previous run of the
 * registry for hosts it no longer matches are left to aging.
 */
import { DiscoveryBatch, type EntityAnnotated } from "../../pipelines/contracts/discovery.ts";
import { discoveryMessages } from "../../pipelines/contracts/split.ts";
import type { Component } from "../../pipelines/contracts/registry.ts";
import type { Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import { hostOf, listeningOf, type GraphView, type Matches } from "./match.ts";
import type { Registry } from "./registry.ts";

/** How often the registry says it is alive as a source (aging judges it by this). */
export const ANNOTATION_INTERVAL_MS = 3_600_000;

const bare = (p: string) => p.replace(/^(user|group):/, "");
const cap = (s: string) => (s.length > 1024 ? `${s.slice(0, 1021)}...` : s);

/** The annotations of every host with a matched service, in a stable order (so equal sets compare equal). */
export function annotationsByHost(components: ReadonlyMap<string, Component>, g: GraphView, m: Matches): Map<string, EntityAnnotated[]> {
  const out = new Map<string, EntityAnnotated[]>();
  for (const [serviceId, ids] of [...m.byService].sort((a, b) => a[0].localeCompare(b[0]))) {
    const n = g.nodes.get(serviceId);
    if (!n) continue;
    const cs = ids.map((id) => components.get(id)).filter((c): c is Component => !!c);
    if (!cs.length) continue;
    const owners = [...new Set(cs.flatMap((c) => c.owners))];
    const team = owners.find((o) => o.startsWith("group:"));
    const props: Record<string, string> = { component: cap(cs.map((c) => c.name).join(", ")) };
    if (owners.length) props.owner = cap(owners.map(bare).join(", "));
    if (team) props.team = cap(bare(team));
    const host = hostOf(n);
    if (!host) continue;
    let list = out.get(host);
    if (!list) out.set(host, (list = []));
    for (const l of listeningOf(n)) list.push({ type: "entity.annotated", match: { host, port: l.port, proto: l.proto }, props });
  }
  return out;
}

export async function startAnnotations(bus: Bus, registry: Registry, log: Logger, o: { everyMs: number; keepAliveMs?: number; now?: () => number }): Promise<{ stop(): void }> {
  const now = o.now ?? Date.now;
  const keepAlive = o.keepAliveMs ?? ANNOTATION_INTERVAL_MS / 3;
  /** what was last sent per host, and when */
  const sent = new Map<string, { key: string; at: number }>();
  let seen = "";
  const publish = async (host: string, events: EntityAnnotated[]) => {
    const at = now();
    const scan: DiscoveryBatch = { schema: "discovery.v1", source: `registry:${host}`, host, scanId: at, part: 0, parts: 1, full: true, at, intervalMs: ANNOTATION_INTERVAL_MS, events };
    for (const msg of discoveryMessages([scan])) await bus.js.publish(bus.topo.subjects.discovery(host), msg.bytes, { msgID: `registry:${host}:${at}:${msg.batch.part}`, timeout: 30_000 });
  };
  const tick = async () => {
    const m = registry.matches();
    const g = registry.graph();
    if (!m || !g) return;
    const state = `${registry.state.seq}/${m.rev}`;
    const due = [...sent.values()].some((s) => now() - s.at >= keepAlive);
    if (state === seen && !due) return;
    const byHost = annotationsByHost(registry.state.components, g, m);
    let changed = 0;
    for (const [host, events] of byHost) {
      const key = JSON.stringify(events);
      const last = sent.get(host);
      if (last && last.key === key && now() - last.at < keepAlive) continue;
      await publish(host, events);
      sent.set(host, { key, at: now() });
      if (last?.key !== key) changed++;
    }
    // hosts with nothing matched any more: one empty full batch drops what the registry said there
    for (const host of [...sent.keys()])
      if (!byHost.has(host)) {
        await publish(host, []);
        sent.delete(host);
        changed++;
      }
    seen = state;
    if (changed) log.info("registry annotations sent", { hosts: changed });
  };
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    tick()
      .catch((e) => log.warn("registry annotations failed", { error: String(e) }))
      .finally(() => (busy = false));
  }, o.everyMs);
  return { stop: () => clearInterval(timer) };
}
