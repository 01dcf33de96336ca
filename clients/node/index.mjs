// Orrery's subscriber client for Node 20+ (plain ESM, no build). The event contract is the AsyncAPI document the
// gateway serves at /api/asyncapi.json.
//
// followWebSocket: the gateway's /ws feed. A snapshot comes first (one frame, or begin/chunks/end), then topology
// deltas numbered by rev. A delta is applied only when its rev is exactly one past the last one applied; a gap (a lost
// frame) or a dropped connection ends the socket and a new one starts with a fresh snapshot, so the copy never drifts.
//
// followJetStream: a durable pull consumer on the TOPOLOGY stream; JetStream remembers how far it got, so a restarted
// subscriber continues where it stopped. A message is acked only after `onDelta` resolves.
import WebSocket from "ws";

/**
 * @typedef {{ id: string, kind: string, name: string, source: string, props: Record<string, unknown>, firstSeen: number, lastSeen: number }} TopoNode
 * @typedef {{ id: string, kind: string, src: string, dst: string, source: string, props: Record<string, unknown> }} TopoEdge
 * @typedef {{ schema: "topology.delta.v1", rev: number, at: number, nodesUpserted: TopoNode[], nodesRemoved: string[], edgesUpserted: TopoEdge[], edgesRemoved: string[] }} TopologyDelta
 * @typedef {{ rev: number, nodes: Map<string, TopoNode>, edges: Map<string, TopoEdge> }} Topology
 */

/** @param {Topology} t @param {TopologyDelta} d */
export function applyDelta(t, d) {
  for (const n of d.nodesUpserted) t.nodes.set(n.id, n);
  for (const e of d.edgesUpserted) t.edges.set(e.id, e);
  for (const id of d.edgesRemoved) t.edges.delete(id);
  for (const id of d.nodesRemoved) t.nodes.delete(id);
  t.rev = d.rev;
}

/**
 * Follows the topology over the gateway's WebSocket, reconnecting (with a fresh snapshot) on a gap or a dropped
 * connection. Returns { stop(), topology() }.
 * @param {{ url: string, token?: string, onSnapshot?: (t: Topology) => void, onDelta?: (d: TopologyDelta, t: Topology) => void, onResync?: (why: string) => void, reconnectMs?: number }} o
 */
export function followWebSocket(o) {
  /** @type {Topology} */
  let topo = { rev: 0, nodes: new Map(), edges: new Map() };
  let stopped = false;
  /** @type {WebSocket | null} */
  let ws = null;
  const open = () => {
    if (stopped) return;
    const url = new URL("/ws", o.url.replace(/^http/, "ws"));
    ws = new WebSocket(url, { headers: o.token ? { authorization: `Bearer ${o.token}` } : {} });
    /** @type {Topology | null} */
    let building = null;
    let synced = false;
    /** deltas that arrive while a chunked snapshot is still coming */
    let held = [];
    const resync = (why) => {
      o.onResync?.(why);
      ws?.terminate();
    };
    const deliver = (d) => {
      if (d.rev <= topo.rev) return;
      if (d.rev !== topo.rev + 1) return resync(`gap: have rev ${topo.rev}, got ${d.rev}`);
      applyDelta(topo, d);
      o.onDelta?.(d, topo);
    };
    ws.on("message", (raw) => {
      const f = JSON.parse(String(raw));
      switch (f.schema) {
        case "topology.snapshot.v1":
          topo = { rev: f.rev, nodes: new Map(f.nodes.map((n) => [n.id, n])), edges: new Map(f.edges.map((e) => [e.id, e])) };
          synced = true;
          o.onSnapshot?.(topo);
          break;
        case "topology.snapshot.begin.v1":
          building = { rev: f.rev, nodes: new Map(), edges: new Map() };
          held = [];
          break;
        case "topology.snapshot.chunk.v1":
          if (building && f.rev === building.rev) {
            for (const n of f.nodes ?? []) building.nodes.set(n.id, n);
            for (const e of f.edges ?? []) building.edges.set(e.id, e);
          }
          break;
        case "topology.snapshot.end.v1":
          if (building && f.rev === building.rev) {
            topo = building;
            building = null;
            synced = true;
            o.onSnapshot?.(topo);
            for (const d of held.sort((a, b) => a.rev - b.rev)) deliver(d);
            held = [];
          }
          break;
        case "topology.delta.v1":
          if (!synced || building) held.push(f);
          else deliver(f);
          break;
        default:
          break; // health frames: not followed here
      }
    });
    ws.on("close", () => {
      if (!stopped) setTimeout(open, o.reconnectMs ?? 1000);
    });
    ws.on("error", () => {}); // close follows; the reconnect is there
  };
  open();
  return {
    topology: () => topo,
    stop: () => {
      stopped = true;
      ws?.close();
    },
  };
}

/**
 * Follows the topology with a JetStream durable consumer (created if missing) on <PREFIX>_TOPOLOGY. Returns { stop() }.
 * @param {{ servers: string, prefix?: string, durable: string, user?: string, pass?: string, token?: string, onDelta: (d: TopologyDelta) => Promise<void> | void }} o
 */
export async function followJetStream(o) {
  const { connect } = await import("@nats-io/transport-node");
  const { jetstream, jetstreamManager, AckPolicy, DeliverPolicy } = await import("@nats-io/jetstream");
  const prefix = o.prefix ?? "orrery";
  const stream = `${prefix.toUpperCase().replace(/-/g, "_")}_TOPOLOGY`;
  const nc = await connect({ servers: o.servers, user: o.user, pass: o.pass, token: o.token });
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.consumers.info(stream, o.durable);
  } catch {
    await jsm.consumers.add(stream, { durable_name: o.durable, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, filter_subject: `${prefix}.topology.delta.v1` });
  }
  const consumer = await jetstream(nc).consumers.get(stream, o.durable);
  const messages = await consumer.consume();
  const loop = (async () => {
    for await (const m of messages) {
      try {
        await o.onDelta(m.json());
        m.ack();
      } catch {
        m.nak(1000);
      }
    }
  })();
  return {
    stop: async () => {
      await messages.close();
      await loop;
      await nc.drain();
    },
  };
}
