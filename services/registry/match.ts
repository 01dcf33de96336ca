/**
 * Declared meets discovered: which discovered services are instances of which component (match rules), and drift
 * between the two. Pure functions over the registry's components and a topology mirror.
 *
 * A discovered service is a `process` node of the topology (services/topology folds processes into services): its
 * name and `service` prop are its fingerprint (`java:orders.jar`, `image:registry/orders`), `host` its host name,
 * `ports` its listening ports (`5432,6000`, `53/udp`; `client` when it listens nowhere), and annotations (entity.annotated) are
 * further props on it or on its host.
 */
import type { Component, Drift, Instance, MatchRule } from "../../pipelines/contracts/registry.ts";
import type { TopoEdge, TopoNode } from "../../pipelines/contracts/topology.ts";

export interface GraphView {
  rev: number;
  nodes: ReadonlyMap<string, TopoNode>;
  edges: ReadonlyMap<string, TopoEdge>;
}

const globCache = new Map<string, RegExp>();
/** `*` any run, `?` one character, everything else literal; case-insensitive. */
export function glob(pattern: string): RegExp {
  let r = globCache.get(pattern);
  if (!r) {
    r = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, "i");
    if (globCache.size > 10_000) globCache.clear();
    globCache.set(pattern, r);
  }
  return r;
}

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : typeof v === "number" ? String(v) : undefined);

export function fingerprintOf(n: TopoNode): string {
  return str(n.props.service) ?? n.name;
}

/** A service's listening ports with their protocols (`5432,53/udp` → tcp 5432, udp 53). */
export function listeningOf(n: TopoNode): { port: number; proto: "tcp" | "udp" }[] {
  const out: { port: number; proto: "tcp" | "udp" }[] = [];
  for (const m of (str(n.props.ports) ?? "").matchAll(/(\d+)(?:\/(tcp|udp))?/g)) out.push({ port: Number(m[1]), proto: (m[2] as "udp" | undefined) ?? "tcp" });
  return out;
}

export function portsOf(n: TopoNode): number[] {
  return listeningOf(n).map((l) => l.port);
}

export function hostOf(n: TopoNode): string {
  return str(n.props.host) ?? "";
}

/** Whether one rule holds for a service (its host node, for host-level labels). */
export function ruleMatches(r: MatchRule, n: TopoNode, host: TopoNode | undefined): boolean {
  if (r.fingerprint !== undefined && fingerprintOf(n) !== r.fingerprint) return false;
  if (r.name !== undefined && !glob(r.name).test(n.name) && !glob(r.name).test(fingerprintOf(n))) return false;
  if (r.port !== undefined && !portsOf(n).includes(r.port)) return false;
  if (r.host !== undefined) {
    const h = hostOf(n);
    const hostname = str(host?.props.hostname) ?? host?.name ?? h;
    if (!glob(r.host).test(h) && !glob(r.host).test(hostname)) return false;
  }
  if (r.label !== undefined) {
    const v = str(n.props[r.label.key]) ?? str(host?.props[r.label.key]);
    if (v !== r.label.value) return false;
  }
  return true;
}

export interface Matches {
  rev: number;
  /** service id → component ids (a service may match more than one) */
  byService: Map<string, string[]>;
  /** component id → its instances */
  byComponent: Map<string, Instance[]>;
}

/**
 * Every service matched against every component. Rules with an exact fingerprint are looked up by it; the others
 * (name, port, host, label only) are tried on each service: registries have few of those.
 */
export function computeMatches(components: Iterable<Component>, g: GraphView): Matches {
  const byFp = new Map<string, { c: string; i: number; r: MatchRule }[]>();
  const loose: { c: string; i: number; r: MatchRule }[] = [];
  for (const c of components)
    c.match.forEach((r, i) => {
      if (r.fingerprint !== undefined) {
        let l = byFp.get(r.fingerprint);
        if (!l) byFp.set(r.fingerprint, (l = []));
        l.push({ c: c.id, i, r });
      } else loose.push({ c: c.id, i, r });
    });
  const byService = new Map<string, string[]>();
  const byComponent = new Map<string, Instance[]>();
  for (const n of g.nodes.values()) {
    if (n.kind !== "process") continue;
    const host = g.nodes.get(`host:${hostOf(n)}`);
    const hit = new Map<string, number>();
    for (const x of byFp.get(fingerprintOf(n)) ?? []) if (!hit.has(x.c) && ruleMatches(x.r, n, host)) hit.set(x.c, x.i);
    for (const x of loose) if (!hit.has(x.c) && ruleMatches(x.r, n, host)) hit.set(x.c, x.i);
    if (!hit.size) continue;
    byService.set(n.id, [...hit.keys()].sort());
    for (const [c, rule] of hit) {
      let l = byComponent.get(c);
      if (!l) byComponent.set(c, (l = []));
      l.push({ id: n.id, name: n.name, host: hostOf(n), ports: str(n.props.ports) ?? "", rule });
    }
  }
  return { rev: g.rev, byService, byComponent };
}

/**
 * Drift between what the registry declares and what discovery sees:
 * - declared but not seen: A declares B, and no DEPENDS_ON from an instance of A to an instance of B was seen within
 *   the window (both must be running for this to be a finding: a component with no instance is reported as such);
 * - seen but undeclared: a DEPENDS_ON between instances of A and B (A ≠ B) where A does not declare B;
 * - not running: a component (not retired) with no instance;
 * - unregistered: a discovered service no component matches.
 */
export function computeDrift(components: ReadonlyMap<string, Component>, g: GraphView, m: Matches, o: { now: number; windowMs: number; maxListed?: number }): Drift {
  const max = o.maxListed ?? 10_000;
  const seen = new Map<string, number>();
  for (const e of g.edges.values()) {
    if (e.kind !== "DEPENDS_ON" || e.lastSeen < o.now - o.windowMs) continue;
    const from = m.byService.get(e.src);
    const to = m.byService.get(e.dst);
    if (!from || !to) continue;
    for (const a of from)
      for (const b of to) {
        if (a === b) continue;
        const k = `${a}\u0000${b}`;
        seen.set(k, (seen.get(k) ?? 0) + 1);
      }
  }
  const declaredNotSeen: Drift["declaredNotSeen"] = [];
  const notRunning: string[] = [];
  for (const c of components.values()) {
    const running = (m.byComponent.get(c.id)?.length ?? 0) > 0;
    if (!running && c.lifecycle !== "retired") notRunning.push(c.id);
    for (const d of c.dependsOn) {
      if (!running || !m.byComponent.get(d)?.length) continue;
      if (!seen.has(`${c.id}\u0000${d}`)) declaredNotSeen.push({ from: c.id, to: d });
    }
  }
  const seenNotDeclared: Drift["seenNotDeclared"] = [];
  for (const [k, edges] of seen) {
    const [a, b] = k.split("\u0000") as [string, string];
    if (!components.get(a)?.dependsOn.includes(b)) seenNotDeclared.push({ from: a, to: b, edges });
  }
  const unregistered: Drift["unregistered"] = [];
  for (const n of g.nodes.values()) if (n.kind === "process" && !m.byService.has(n.id)) unregistered.push({ id: n.id, name: n.name, host: hostOf(n) });
  const byPair = (x: { from: string; to: string }, y: { from: string; to: string }) => x.from.localeCompare(y.from) || x.to.localeCompare(y.to);
  return {
    schema: "registry.drift.v1",
    at: o.now,
    topologyRev: g.rev,
    windowMs: o.windowMs,
    declaredNotSeen: declaredNotSeen.sort(byPair).slice(0, max),
    seenNotDeclared: seenNotDeclared.sort(byPair).slice(0, max),
    notRunning: notRunning.sort().slice(0, max),
    unregistered: unregistered.sort((x, y) => x.id.localeCompare(y.id)).slice(0, max),
  };
}

/** What makes two drifts the same finding (their times aside): a drift event goes out only when this changes. */
export function driftKey(d: Drift): string {
  return JSON.stringify([d.declaredNotSeen, d.seenNotDeclared.map((p) => [p.from, p.to]), d.notRunning, d.unregistered.map((u) => u.id)]);
}
