/**
 * Aging: a silent source goes stale, then is removed with everything it reported, and nothing of anyone else.
 */
import { dropAnnotations } from "./annotations.ts";
import { bagSize } from "./bags.ts";
import { removeFlow, reresolveIp } from "./flows.ts";
import { dropNode } from "./graph.ts";
import { ownsClaim } from "./hosts.ts";
import { isAgentSource } from "./ids.ts";
import { finish } from "./lastseen.ts";
import { removeListener } from "./listeners.ts";
import { type AgingOptions, type Changes, DEFAULT_AGING, type SourceRec, type TopologyModel } from "./model.ts";
import { dropNames } from "./names.ts";
import { type Ctx, Tracker } from "./tracker.ts";

function markStale(ctx: Ctx, src: SourceRec) {
  src.stale = true;
  for (const id of ctx.m.bySource.get(src.id) ?? []) {
    const n = ctx.m.nodes.get(id);
    if (!n || n.props.health === "stale") continue;
    ctx.t.touchNode(id);
    ctx.m.nodes.set(id, { ...n, props: { ...n.props, health: "stale", staleSince: ctx.now } });
  }
}

export function unmarkStale(ctx: Ctx, src: SourceRec) {
  src.stale = false;
  for (const id of ctx.m.bySource.get(src.id) ?? []) {
    const n = ctx.m.nodes.get(id);
    if (!n || n.props.health !== "stale") continue;
    const { health: _h, staleSince: _s, ...props } = n.props;
    ctx.t.touchNode(id);
    ctx.m.nodes.set(id, { ...n, props });
  }
}

/** Everything a source reported goes (its flows, listeners, services, host and IP claims) — nothing of anyone else. */
function removeSource(ctx: Ctx, src: SourceRec) {
  for (const k of [...src.flows]) {
    const f = ctx.m.flows.get(k);
    if (f) removeFlow(ctx, f);
  }
  for (const id of [...src.listeners]) removeListener(ctx, id);
  const agent = isAgentSource(src.id);
  const claimed = agent ? src.host && ctx.m.hostIps.get(src.host) : ctx.m.jobIps.get(src.host)?.get(src.id);
  for (const ip of claimed || []) {
    if (!ownsClaim(ctx.m.ipOwner.get(ip), src.id, src.host)) continue;
    ctx.m.ipOwner.delete(ip);
    reresolveIp(ctx, ip);
  }
  if (agent) ctx.m.hostIps.delete(src.host);
  else {
    const bySource = ctx.m.jobIps.get(src.host);
    bySource?.delete(src.id);
    if (bySource && !bySource.size) ctx.m.jobIps.delete(src.host);
  }
  dropNames(ctx, src.id, () => true);
  for (const id of [...(ctx.m.bySource.get(src.id) ?? [])]) {
    const n = ctx.m.nodes.get(id);
    // External nodes other sources still call stay (their refs say so).
    if (n?.kind === "external" && ctx.m.nodeRefs.has(id)) continue;
    dropNode(ctx, id);
  }
  dropAnnotations(ctx, src.id, () => true);
  ctx.m.sources.delete(src.id);
  if (src.declaredIntervalMs) ctx.m.intervalsChanged.set(src.id, 0);
  ctx.m.fullScans.delete(src.id);
  ctx.m.recovered.delete(src.id);
  const owned = ctx.m.bySource.get(src.id);
  if (!owned || !bagSize(owned)) ctx.m.bySource.delete(src.id);
  // If it comes back, its deltas alone cannot be trusted until its next full scan (SourceRec.awaitingFull). A bound
  // on memory: forgetting costs only that caution for a source silent that long.
  if (ctx.m.agedOut.size >= 100_000) ctx.m.agedOut.clear();
  ctx.m.agedOut.add(src.id);
}

/**
 * Ages the model at `now` (pure apart from mutating the model, like applyDiscovery): a source silent for `staleAfter`
 * of its intervals is marked stale, for `removeAfter` it is removed with everything it reported. Returns the changes.
 */
export function ageModel(m: TopologyModel, now: number, opts: Partial<AgingOptions> = {}): Changes {
  const o = { ...DEFAULT_AGING, ...opts };
  const t = new Tracker(m);
  for (const src of [...m.sources.values()]) {
    if (src.lastBatchAt === undefined) {
      src.lastBatchAt = now; // recovered from the store: the clock starts now
      continue;
    }
    const interval = Math.max(o.intervalMs, src.intervalMs, src.declaredIntervalMs);
    const silent = now - src.lastBatchAt;
    const ctx: Ctx = { m, t, source: src.id, host: src.host, now };
    if (silent >= o.removeAfter * interval) {
      const { nodes, edges } = t.dropped;
      removeSource(ctx, src);
      t.removals.push({ cause: "aging", source: src.id, nodes: t.dropped.nodes - nodes, edges: t.dropped.edges - edges, silentMs: silent, intervalMs: interval });
    }    else if (silent >= o.staleAfter * interval && !src.stale) markStale(ctx, src);
  }
  return finish(m, t, now);
}
