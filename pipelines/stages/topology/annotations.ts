/**
 * Annotations (entity.annotated): facts a source owns about entities it need not report itself, laid over them.
 */
import type { EntityAnnotated } from "../../contracts/discovery.ts";
import type { TopoNode } from "../../contracts/topology.ts";
import { type Counts, addTo, bagDelete, bagSize, countAdd, countKeys, countSize } from "./bags.ts";
import { hostId } from "./ids.ts";
import { type AnnValue, type Annotated, type TopologyModel, sameProps, sourceOf } from "./model.ts";
import type { Ctx } from "./tracker.ts";

/*
 * Annotations: CMDB facts (owner, team, tier…) a source attaches to a host (`match: {host}`) or to the service
 * listening on host:port (`match: {host, port, proto = tcp}`). They live beside the entity, not in it: putNode lays
 * them over the discovery props, so discovery rewriting a node keeps them, and an annotation that arrives before its
 * entity exists is applied when it appears. The source owns them: a delta batch adds or changes keys, a completed full
 * scan drops the keys it did not list, aging of the source drops all of them. When two sources set one key, the one
 * that last changed its value wins; when that one drops it, the other's value comes back.
 */

/** Props discovery (and aging) owns: an annotation may not set them. */
export const RESERVED_PROPS: ReadonlySet<string> = new Set([
  "id", "kind", "name", "source", "props", "firstSeen", "lastSeen",
  "hostname", "os", "kernel", "cpus", "memTotalBytes", "ips",
  "host", "service", "ports", "pid", "processes", "exe", "comm", "cmdline", "user", "startTime", "containerId", "containerImage",
  "proto", "ip", "port", "dnsName", "health", "staleSince", "annotatedBy",
]);

const portKey = (host: string, proto: string, port: number) => `${host}|${proto}|${port}`;

function annotationTarget(e: EntityAnnotated): string {
  const { host, port, proto } = e.match;
  return port === undefined ? `host|${host}` : `svc|${portKey(host, proto ?? "tcp", port)}`;
}

export function annotationSeen(ctx: Ctx, e: EntityAnnotated, scanId: number) {
  const m = ctx.m;
  const target = annotationTarget(e);
  let bySource = m.annotations.get(target);
  if (!bySource) m.annotations.set(target, (bySource = new Map()));
  let rec = bySource.get(ctx.source);
  if (!rec) bySource.set(ctx.source, (rec = new Map()));
  addTo(m.annotationsBy, ctx.source, target);
  let changed = false;
  for (const [k, value] of Object.entries(e.props)) {
    if (RESERVED_PROPS.has(k)) {
      ctx.t.rejected.push(`${ctx.source}: entity.annotated ${JSON.stringify(e.match)}: "${k}" is a discovery-owned property; skipped`);
      continue;
    }
    const old = rec.get(k);
    if (old && old.value === value) old.scanId = scanId;
    else {
      rec.set(k, { value, seq: ++m.annSeq, scanId });
      changed = true;
    }
  }
  if (!rec.size) bySource.delete(ctx.source);
  if (!bySource.size) m.annotations.delete(target);
  if (changed) refreshTarget(ctx, target);
}

/** Drops a source's annotation keys that `drop` selects, and updates the entities they were on. */
export function dropAnnotations(ctx: Ctx, source: string, drop: (v: AnnValue) => boolean) {
  const m = ctx.m;
  const targets = m.annotationsBy.get(source);
  if (!targets) return;
  for (const target of [...targets]) {
    const bySource = m.annotations.get(target);
    const rec = bySource?.get(source);
    let changed = false;
    if (rec)
      for (const [k, v] of rec)
        if (drop(v)) {
          rec.delete(k);
          changed = true;
        }
    if (!rec?.size) {
      bySource?.delete(source);
      bagDelete(targets, target);
    }
    if (bySource && !bySource.size) m.annotations.delete(target);
    if (changed) refreshTarget(ctx, target);
  }
  if (!bagSize(targets)) m.annotationsBy.delete(source);
}

function refreshTarget(ctx: Ctx, target: string) {
  if (target.startsWith("host|")) refreshAnnotations(ctx, hostId(target.slice(5)));
  else if (target.startsWith("id|")) refreshAnnotations(ctx, target.slice(3));
  else for (const svc of [...countKeys(ctx.m.servedAt.get(target.slice(4)))]) refreshAnnotations(ctx, svc);
}

/** The annotation props an entity should carry now: per key, the value of the source that last changed it. */
function effectiveAnnotations(m: TopologyModel, id: string): Annotated | undefined {
  const targets = [`id|${id}`];
  if (id.startsWith("host:")) targets.push(`host|${id.slice(5)}`);
  else for (const k of countKeys(m.serviceAt.get(id))) targets.push(`svc|${k}`);
  const best = new Map<string, { value: string; seq: number; source: string }>();
  for (const t of targets)
    for (const [source, rec] of m.annotations.get(t) ?? [])
      for (const [k, v] of rec) {
        const b = best.get(k);
        if (!b || v.seq > b.seq) best.set(k, { value: v.value, seq: v.seq, source });
      }
  if (!best.size) return undefined;
  const props: Record<string, string> = {};
  const by: Record<string, string> = {};
  for (const k of [...best.keys()].sort()) {
    props[k] = best.get(k)!.value;
    by[k] = best.get(k)!.source;
  }
  return { props, by: JSON.stringify(by) };
}

const sameAnnotated = (a: Annotated | undefined, b: Annotated | undefined) => (!a || !b ? a === b : a.by === b.by && sameProps(a.props, b.props));

function refreshAnnotations(ctx: Ctx, id: string) {
  const m = ctx.m;
  const want = effectiveAnnotations(m, id);
  const had = m.annotated.get(id);
  if (sameAnnotated(want, had)) return;
  if (want) m.annotated.set(id, want);
  else m.annotated.delete(id);
  const n = m.nodes.get(id);
  if (!n) return; // applied when the entity appears (putNode)
  const props = { ...n.props };
  if (had) {
    for (const k of Object.keys(had.props)) delete props[k];
    delete props.annotatedBy;
  }
  if (want) Object.assign(props, want.props, { annotatedBy: want.by });
  ctx.t.touchNode(id);
  m.nodes.set(id, { ...n, props });
}

/** A service starts or stops serving a listener at host|proto|port: annotations of that place follow it. */
export function servedAtChange(m: TopologyModel, svc: string, listener: string, delta: 1 | -1, ctx?: Ctx) {
  const l = m.listeners.get(listener);
  const n = m.nodes.get(listener);
  const host = l?.host ?? n?.props.host;
  const proto = l?.proto ?? n?.props.proto;
  const port = l?.port ?? n?.props.port;
  if (typeof host !== "string" || typeof proto !== "string" || typeof port !== "number") return;
  const key = portKey(host, proto, port);
  const bump = (map: Map<string, Counts>, a: string, b: string) => {
    const inner = map.get(a) ?? [];
    const r = countAdd(inner, b, delta);
    if (!countSize(r.c)) map.delete(a);
    else if (r.c !== inner || !map.has(a)) map.set(a, r.c);
    return r.n;
  };
  bump(m.servedAt, key, svc);
  const c = bump(m.serviceAt, svc, key);
  if (ctx && ((delta > 0 && c === 1) || (delta < 0 && c === 0)) && m.annotations.has(`svc|${key}`)) refreshAnnotations(ctx, svc);
}

export function recoverAnnotations(m: TopologyModel, n: TopoNode) {
  let by: unknown;
  try {
    by = JSON.parse(String(n.props.annotatedBy));
  } catch {
    return;
  }
  if (!by || typeof by !== "object") return;
  const target = `id|${n.id}`;
  for (const [k, source] of Object.entries(by as Record<string, unknown>)) {
    const value = n.props[k];
    if (typeof source !== "string" || typeof value !== "string") continue;
    let bySource = m.annotations.get(target);
    if (!bySource) m.annotations.set(target, (bySource = new Map()));
    let rec = bySource.get(source);
    if (!rec) bySource.set(source, (rec = new Map()));
    rec.set(k, { value, seq: 0, scanId: -1 });
    addTo(m.annotationsBy, source, target);
    sourceOf(m, source, m.sources.get(source)?.host ?? "");
  }
  const eff = effectiveAnnotations(m, n.id);
  if (eff) m.annotated.set(n.id, eff);
}
