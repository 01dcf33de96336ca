/**
 * What the gateway's tests feed it: a generated estate answered over the topology service's snapshot RPC (in the
 * same parts the service sends) and topology deltas published to the TOPOLOGY stream, so the gateway runs its real
 * mirror over a real nats-server.
 */
import type { TopoEdge, TopologyDelta, TopoNode } from "../../../pipelines/contracts/topology.ts";
import { applyDelta, type Mirror } from "../../../pipelines/stages/apply-delta.ts";
import type { Bus } from "../../../services/shared/bus.ts";

const T0 = 1_750_000_000_000;

/** `hosts` hosts, each with `procs` processes listening on one port each and calling the next host's first listener. */
export function estate(opts: { hosts: number; procs: number; rev: number; pad?: number }): Mirror {
  const pad = "x".repeat(opts.pad ?? 0);
  const nodes = new Map<string, TopoNode>();
  const edges = new Map<string, TopoEdge>();
  const node = (id: string, kind: TopoNode["kind"], name: string, props: TopoNode["props"]) =>
    nodes.set(id, { id, kind, name, source: `agent:${name}`, props, firstSeen: T0, lastSeen: T0 });
  const edge = (kind: TopoEdge["kind"], src: string, dst: string) =>
    edges.set(`${kind}:${src}->${dst}`, { id: `${kind}:${src}->${dst}`, kind, src, dst, source: "agent", props: {}, firstSeen: T0, lastSeen: T0 });
  for (let h = 0; h < opts.hosts; h++) {
    const host = `host:h${h}`;
    node(host, "host", `h${h}`, { hostname: `h${h}`, os: "Debian 12" });
    for (let p = 0; p < opts.procs; p++) {
      const proc = `process:h${h}:${1000 + p}`;
      const listener = `listener:h${h}:tcp:0.0.0.0:${8000 + p}`;
      node(proc, "process", `svc${p}`, { pid: 1000 + p, cmdline: `/usr/bin/svc${p} --serve ${pad}` });
      node(listener, "listener", `tcp/${8000 + p}`, { host: `h${h}`, proto: "tcp", port: 8000 + p });
      edge("RUNS", host, proc);
      edge("LISTENS", proc, listener);
      edge("CONNECTS", proc, `listener:h${(h + 1) % opts.hosts}:tcp:0.0.0.0:8000`);
    }
  }
  return { rev: opts.rev, nodes, edges };
}

/** A delta at `rev`: one new host, and the previous delta's host (if any) removed again. */
export function churnDelta(rev: number): TopologyDelta {
  const id = (r: number) => `host:churn${r}`;
  return {
    schema: "topology.delta.v1",
    rev,
    at: T0 + rev,
    nodesUpserted: [{ id: id(rev), kind: "host", name: `churn${rev}`, source: "agent:churn", props: { rev }, firstSeen: T0, lastSeen: T0 }],
    nodesRemoved: rev > 1 ? [id(rev - 1)] : [],
    edgesUpserted: [],
    edgesRemoved: [],
  };
}

/**
 * Answers the snapshot RPC with `m` as it stands (the topology service's part format), and publishes deltas that the
 * responder applies to `m` first, as the service does.
 */
export function fakeTopologyService(bus: Bus, m: Mirror) {
  const sub = bus.nc.subscribe(bus.topo.subjects.snapshotRpc, {
    callback: (err, msg) => {
      if (err || !msg.reply) return;
      const items = [...m.nodes.values(), ...m.edges.values()];
      const PART = 1000;
      const parts = Math.max(1, Math.ceil(items.length / PART));
      const nodeIds = m.nodes;
      for (let p = 0; p < parts; p++) {
        const slice = items.slice(p * PART, (p + 1) * PART);
        const nodes = slice.filter((x): x is TopoNode => nodeIds.get(x.id) === x);
        const edges = slice.filter((x): x is TopoEdge => nodeIds.get(x.id) !== x);
        msg.respond(new TextEncoder().encode(JSON.stringify({ schema: "topology.snapshot.v1", rev: m.rev, at: T0, nodes, edges, part: p, parts })));
      }
    },
  });
  return {
    async publish(d: TopologyDelta) {
      applyDelta(m, d);
      await bus.js.publish(bus.topo.subjects.topologyDelta, new TextEncoder().encode(JSON.stringify(d)));
    },
    stop: () => sub.unsubscribe(),
  };
}
