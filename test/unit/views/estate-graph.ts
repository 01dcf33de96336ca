/**
 * A simulated estate's topology graph (services/simulator/estate.ts, deterministic for a seed), as the gateway's mirror
 * holds it, two ways:
 *   - estateGraph: through the real topology stage (scans → applyDiscovery), with its next ticks as topology deltas;
 *     faithful, but a 10k-host estate takes ~30 s of CPU and 2.5 GB to build that way;
 *   - plannedEstateGraph: the same estate written straight from its plan (hosts, their services, listeners, planned
 *     calls, owner/team annotations) with the stage's ids and names — what the stage converges to without churn — in
 *     about a second at 10k hosts; and `churnDelta`, a delta of the kind churn makes (restarts, calls moving, a host
 *     replaced), for update costs.
 * Used by the view tests and `bench views`.
 */
import type { ProcessIdentity } from "../../../pipelines/contracts/common.ts";
import type { TopoEdge, TopologyDelta, TopoNode } from "../../../pipelines/contracts/topology.ts";
import { applyDelta, type Mirror } from "../../../pipelines/stages/apply-delta.ts";
import { applyDiscovery, edgeId, emptyModel, externalId, fingerprint, hostId, identityPorts, listenerId, type TopologyModel } from "../../../pipelines/stages/topology/index.ts";
import { DEFAULT_CHURN, type Churn, makeEstate, NO_CHURN, ownership, scanEstate, type Estate } from "../../../services/simulator/estate.ts";

export interface EstateGraph {
  estate: Estate;
  model: TopologyModel;
  mirror: Mirror;
  /** one more scan of every host: its changes as the next topology delta (null when nothing changed), applied to the mirror */
  tick(): TopologyDelta | null;
}

const T0 = 1_700_000_000_000;
const INTERVAL = 5000;

/** The estate after `warmTicks` scans (2 confirm its calls), without churn unless asked. */
export function estateGraph(hosts: number, o: { seed?: number; warmTicks?: number; churn?: Churn } = {}): EstateGraph {
  const estate = makeEstate(hosts, { seed: o.seed ?? 1, churn: { ...(o.churn ?? NO_CHURN) } });
  const model = emptyModel();
  let t = 0;
  const scan = () => {
    t++;
    const now = T0 + t * INTERVAL;
    return applyDiscovery(model, scanEstate(estate, now).batches, now);
  };
  for (let i = 0; i < (o.warmTicks ?? 3); i++) scan();
  const mirror: Mirror = { rev: 1, nodes: new Map(model.nodes), edges: new Map(model.edges) };
  return {
    estate,
    model,
    mirror,
    tick() {
      const c = scan();
      if (!c.nodesUpserted.length && !c.nodesRemoved.length && !c.edgesUpserted.length && !c.edgesRemoved.length) return null;
      const d: TopologyDelta = {
        schema: "topology.delta.v1",
        rev: mirror.rev + 1,
        at: T0 + t * INTERVAL,
        nodesUpserted: c.nodesUpserted.map((n) => ({ ...n })),
        nodesRemoved: c.nodesRemoved,
        edgesUpserted: c.edgesUpserted.map((e) => ({ ...e })),
        edgesRemoved: c.edgesRemoved.map((e) => e.id),
      };
      applyDelta(mirror, d);
      return d;
    },
  };
}

export { DEFAULT_CHURN };

/** The estate as the topology stage converges on it without churn, written straight from its plan. */
export function plannedEstateGraph(hosts: number, o: { seed?: number } = {}): { estate: Estate; mirror: Mirror } {
  const estate = makeEstate(hosts, { seed: o.seed ?? 1, churn: { ...NO_CHURN } });
  const nodes = new Map<string, TopoNode>();
  const edges = new Map<string, TopoEdge>();
  const node = (id: string, kind: TopoNode["kind"], name: string, source: string, props: TopoNode["props"]) =>
    nodes.set(id, { id, kind, name, source, props, firstSeen: T0, lastSeen: T0 });
  const edge = (kind: TopoEdge["kind"], src: string, dst: string, source: string, props: TopoEdge["props"] = {}) => {
    const id = edgeId(kind, src, dst);
    edges.set(id, { id, kind, src, dst, source, props, firstSeen: T0, lastSeen: T0 });
  };
  const serviceOf = new Map<string, string>(); // host|pid → service id
  for (const h of estate.hosts) {
    const source = `agent:${h.name}`;
    const ann = ownership(estate, h);
    const hostAnn = ann.find((a) => a.type === "entity.annotated" && a.match.port === undefined);
    const hid = hostId(h.name);
    node(hid, "host", h.name, source, { hostname: h.name, os: "Debian GNU/Linux 12 (bookworm)", cpus: 4, ips: h.ip, ...(hostAnn?.type === "entity.annotated" ? hostAnn.props : {}) });
    for (const p of h.procs) {
      const ident: ProcessIdentity = { pid: p.pid, exe: p.exe, comm: p.comm, cmdline: p.cmdline, user: p.user, uid: p.uid, startTime: p.startTime, containerId: p.container?.id ?? null, containerImage: p.container?.image };
      const listens = [...p.ports.map((port) => ({ proto: "tcp", port })), ...(p.udp ?? []).map((port) => ({ proto: "udp", port }))];
      const ports = identityPorts(listens);
      const fp = fingerprint(ident);
      const sid = `service:${h.name}:${fp}:${ports}`;
      serviceOf.set(`${h.slot}|${p.pid}`, sid);
      const own = ann.find((a) => a.type === "entity.annotated" && listens.some((l) => l.port === a.match.port && l.proto === a.match.proto));
      node(sid, "process", fp, source, { host: h.name, service: fp, ports, pid: p.pid, processes: 1, exe: p.exe, comm: p.comm, cmdline: p.cmdline.join(" "), user: p.user, startTime: p.startTime, containerId: ident.containerId, ...(p.container ? { containerImage: p.container.image } : {}), ...(own?.type === "entity.annotated" ? own.props : {}) });
      edge("RUNS", hid, sid, source);
      for (const l of listens) {
        const lid = listenerId(h.name, l.proto, "0.0.0.0", l.port);
        node(lid, "listener", `${l.proto}/${l.port}`, source, { host: h.name, proto: l.proto, ip: "0.0.0.0", port: l.port });
        edge("LISTENS", sid, lid, source);
      }
    }
  }
  for (const h of estate.hosts) {
    const source = `agent:${h.name}`;
    for (const c of h.calls) {
      const src = serviceOf.get(`${h.slot}|${h.procs[c.from]!.pid}`)!;
      if (c.slot < 0) {
        const xid = externalId(c.ip, c.port);
        if (!nodes.has(xid)) node(xid, "external", `${c.ip}:${c.port}`, source, { ip: c.ip, port: c.port, proto: "tcp" });
        edge("CONNECTS", src, xid, source, { proto: "tcp", port: c.port });
        continue;
      }
      const t = estate.hosts[c.slot]!;
      const lid = listenerId(t.name, "tcp", "0.0.0.0", c.port);
      if (!nodes.has(lid)) continue;
      edge("CONNECTS", src, lid, source, { proto: "tcp", port: c.port });
      const server = t.procs.find((p) => p.ports.includes(c.port));
      if (server) edge("DEPENDS_ON", src, serviceOf.get(`${t.slot}|${server.pid}`)!, source);
    }
  }
  return { estate, mirror: { rev: 1, nodes, edges } };
}

/**
 * A delta of the kind churn makes, applied to `m`: `restarts` main services restarted (a new pid: the node rewritten),
 * `moves` calls moved to another listener of the same kind (an edge gone, one new), and one host replaced by a new
 * one (its node and everything under it removed, a new host with one service added). Deterministic for `rev`.
 */
export function churnDelta(m: Mirror, rev: number, o: { restarts?: number; moves?: number } = {}): TopologyDelta {
  const services = [...m.nodes.values()].filter((n) => n.kind === "process");
  const calls = [...m.edges.values()].filter((e) => e.kind === "CONNECTS" && e.dst.startsWith("listener:"));
  const pick = <T>(xs: T[], k: number) => xs[(rev * 7919 + k * 104729) % xs.length]!;
  const d: TopologyDelta = { schema: "topology.delta.v1", rev, at: T0 + rev * INTERVAL, nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] };
  for (let k = 0; k < (o.restarts ?? 50); k++) {
    const s = pick(services, k);
    d.nodesUpserted.push({ ...s, props: { ...s.props, pid: Number(s.props.pid ?? 0) + 1 }, lastSeen: d.at });
  }
  for (let k = 0; k < (o.moves ?? 50); k++) {
    const e = pick(calls, k);
    const other = pick(calls, k + 1000);
    if (e.src === other.src || d.edgesRemoved.includes(e.id)) continue;
    d.edgesRemoved.push(e.id);
    const id = edgeId("CONNECTS", e.src, other.dst);
    if (!m.edges.has(id)) d.edgesUpserted.push({ ...e, id, dst: other.dst, firstSeen: d.at, lastSeen: d.at });
  }
  const hosts = [...m.nodes.values()].filter((n) => n.kind === "host");
  const gone = pick(hosts, 3);
  const under = new Set([gone.id]);
  for (const e of m.edges.values()) if ((e.kind === "RUNS" || e.kind === "LISTENS") && under.has(e.src)) under.add(e.dst);
  for (const e of m.edges.values()) if ((e.kind === "RUNS" || e.kind === "LISTENS") && under.has(e.src)) under.add(e.dst);
  for (const e of m.edges.values()) if (under.has(e.src) || under.has(e.dst)) if (!d.edgesRemoved.includes(e.id)) d.edgesRemoved.push(e.id);
  d.edgesUpserted = d.edgesUpserted.filter((e) => !under.has(e.src) && !under.has(e.dst));
  d.nodesUpserted = d.nodesUpserted.filter((n) => !under.has(n.id));
  d.nodesRemoved.push(...under);
  const name = `${gone.name}-r${rev}`;
  const hid = hostId(name);
  const sid = `service:${name}:sshd:22`;
  d.nodesUpserted.push({ ...gone, id: hid, name, props: { ...gone.props, hostname: name }, firstSeen: d.at, lastSeen: d.at });
  d.nodesUpserted.push({ id: sid, kind: "process", name: "sshd", source: `agent:${name}`, props: { host: name, service: "sshd", ports: "22" }, firstSeen: d.at, lastSeen: d.at });
  d.edgesUpserted.push({ id: edgeId("RUNS", hid, sid), kind: "RUNS", src: hid, dst: sid, source: `agent:${name}`, props: {}, firstSeen: d.at, lastSeen: d.at });
  applyDelta(m, d);
  return d;
}
