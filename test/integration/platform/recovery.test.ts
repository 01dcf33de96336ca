/**
 * Restart recovery with kill -9 mid-stream: the topology service runs as a child process (`bun services/topology/main.ts`,
 * as the supervisor starts it) against a real nats-server; many discovery batches are published, the service is
 * SIGKILLed while it works through them and started again on the same data directory. Afterwards the graph (the
 * service's snapshot RPC and its Kuzu store through the Cypher RPC) must equal the same batches folded into a fresh
 * in-memory model, and the delta stream must carry consecutive revs with no duplicates that fold into that graph.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { DeliverPolicy } from "@nats-io/jetstream";
import { decode } from "../../../pipelines/codec.ts";
import type { ProcessIdentity } from "../../../pipelines/contracts/common.ts";
import { CypherResponse } from "../../../pipelines/contracts/cypher.ts";
import { DiscoveryBatch, type DiscoveryEvent } from "../../../pipelines/contracts/discovery.ts";
import { TopologyDelta, type TopoEdge, type TopoNode } from "../../../pipelines/contracts/topology.ts";
import { applyDelta, emptyMirror } from "../../../pipelines/stages/apply-delta.ts";
import { applyDiscovery, emptyModel } from "../../../pipelines/stages/topology/index.ts";
import { fetchSnapshot } from "../../../services/topology/client.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { spawnUntilReady } from "../../helpers/process.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const HOSTS = 6;
const ROUNDS = 30;
const ip = (h: number) => `10.9.0.${h + 1}`;
const proc = (pid: number, comm: string, startTime: number): ProcessIdentity => ({ pid, exe: `/usr/bin/${comm}`, comm, cmdline: [comm, "--serve"], user: "app", uid: 1000, startTime, containerId: null });

/**
 * A churning estate: every round each host sends a full scan (services restart every 10 rounds, one listener comes and
 * goes, client connections move between peers and local ports), followed by a partial batch (a call to an outside
 * endpoint, which the next full scan no longer lists).
 */
function script(): DiscoveryBatch[] {
  const out: DiscoveryBatch[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (let h = 0; h < HOSTS; h++) {
      const gen = Math.floor((r + h) / 10);
      const a = proc(100 + gen, "svc-a", 1000 + gen);
      const b = proc(200, "svc-b", 2000);
      const client = proc(300, "client", 3000);
      const events: DiscoveryEvent[] = [
        { type: "host.seen", hostname: `h${h}`, os: "Debian 12", kernel: "6.1", cpus: 2, memTotalBytes: 4e9, ips: [ip(h)] },
        { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 8000, process: a },
      ];
      if ((r + h) % 4 !== 0) events.push({ type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 9000, process: b });
      for (let k = 1; k <= 2; k++) {
        const peer = (h + k + r) % HOSTS;
        if (peer === h) continue;
        events.push({ type: "connection.seen", proto: "tcp", localIp: ip(h), localPort: 40000 + ((r + k) % 5), remoteIp: ip(peer), remotePort: k === 1 ? 8000 : 9000, process: k === 1 ? client : a });
      }
      events.push({ type: "connection.seen", proto: "tcp", localIp: "127.0.0.1", localPort: 45000, remoteIp: "127.0.0.1", remotePort: 8000, process: client });
      out.push({ schema: "discovery.v1", source: `agent:h${h}`, host: `h${h}`, scanId: r, part: 0, parts: 1, full: true, at: 1_700_000_000_000 + r, events });
    }
    for (let h = 0; h < HOSTS; h++) {
      if (r === ROUNDS - 1) continue; // the stream ends on a complete round of full scans
      out.push({
        schema: "discovery.v1",
        source: `agent:h${h}`,
        host: `h${h}`,
        scanId: 10_000 + r,
        part: 0,
        parts: 1,
        full: false,
        at: 1_700_000_000_000 + r,
        events: [{ type: "connection.seen", proto: "tcp", localIp: ip(h), localPort: 50000 + r, remoteIp: "93.184.216.34", remotePort: 443, process: proc(300, "client", 3000) }],
      });
    }
  }
  return out;
}

interface TopologyProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  stderr: () => string;
}

async function startTopology(env: Record<string, string>): Promise<TopologyProcess> {
  const { proc, stderr } = await spawnUntilReady([process.execPath, "services/topology/main.ts"], {
    cwd: `${import.meta.dir}/../../..`,
    env: { ...process.env, ...env },
    ready: /"ready"/,
    timeoutMs: 60_000,
    name: "the topology service",
  });
  return { proc, stderr };
}

const nodeKey = (n: Pick<TopoNode, "id" | "kind" | "name" | "source" | "props">) => JSON.stringify([n.id, n.kind, n.name, n.source, n.props]);
const edgeKey = (e: Pick<TopoEdge, "id" | "kind" | "src" | "dst" | "source" | "props">) => JSON.stringify([e.id, e.kind, e.src, e.dst, e.source, e.props]);

let nats: NatsServer;
const tmp = tempDir("orrery-recovery-");
let bus: Bus;
let running: TopologyProcess | undefined;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  running?.proc.kill("SIGKILL");
  await running?.proc.exited;
  await bus?.close();
  await nats?.stop();
  tmp.cleanup();
});

async function cypher(query: string): Promise<Record<string, unknown>[]> {
  const reply = await bus.nc.request(bus.topo.subjects.cypherRpc, new TextEncoder().encode(JSON.stringify({ query, maxRows: 100_000 })), { timeout: 30_000 });
  const r = decode(CypherResponse, "cypher.v1", reply.data, 256 * 1024 * 1024);
  if (!r.ok) throw new Error(`cypher failed: ${r.code}: ${r.error}`);
  return r.rows;
}

async function storedGraph(): Promise<{ nodes: string[]; edges: string[] }> {
  const nodes = (await cypher("MATCH (n:Entity) RETURN n.id AS id, n.kind AS kind, n.name AS name, n.source AS source, n.props AS props")).map((r) =>
    nodeKey({ ...(r as unknown as TopoNode), props: JSON.parse(String(r.props)) }),
  );
  const edges: string[] = [];
  for (const kind of ["RUNS", "LISTENS", "CONNECTS", "DEPENDS_ON"] as const)
    for (const r of await cypher(`MATCH (a:Entity)-[e:${kind}]->(b:Entity) RETURN e.id AS id, a.id AS src, b.id AS dst, e.source AS source, e.props AS props`))
      edges.push(edgeKey({ ...(r as unknown as TopoEdge), kind, props: JSON.parse(String(r.props)) }));
  return { nodes: nodes.sort(), edges: edges.sort() };
}

function expected(batches: DiscoveryBatch[]): { nodes: string[]; edges: string[] } {
  const model = emptyModel();
  for (const b of batches) applyDiscovery(model, b, 1);
  return { nodes: [...model.nodes.values()].map(nodeKey).sort(), edges: [...model.edges.values()].map(edgeKey).sort() };
}

const prefix = uniquePrefix("rec");
const batches = script();
/** The graph as the snapshot RPC served it once the restarted service had handled the whole stream. */
let afterStream: { nodes: string[]; edges: string[] };
let killedAfter = -1;
let revAtKill = 0;
let snapRev = 0;

async function drained(total: number) {
  const spec = bus.topo.consumers.topology;
  const i = await bus.jsm.consumers.info(spec.stream, spec.durable);
  return i.num_pending === 0 && i.num_ack_pending === 0 && i.ack_floor.stream_seq === total;
}

beforeAll(async () => {
  const env = { NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_DATA_DIR: tmp.dir, ORRERY_LOG_QUIET: "1" };
  bus = await connectBus({ url: nats.url, prefix, name: "recovery-test" });
  const spec = bus.topo.consumers.topology;
  running = await startTopology(env);
  // Publish at a steady pace. Once the service has durably handled a quarter of the stream it is frozen (SIGSTOP), so
  // the next batches are delivered to it but never handled, then killed (SIGKILL); the rest arrives while it is down.
  let frozenAt = -1;
  for (const [i, b] of batches.entries()) {
    await publishEvent(bus, bus.topo.subjects.discovery(b.host), DiscoveryBatch, "discovery.v1", b, `b${i}`);
    await Bun.sleep(3);
    if (frozenAt < 0 && i % 4 === 0 && (await bus.jsm.consumers.info(spec.stream, spec.durable)).ack_floor.stream_seq >= batches.length / 4) {
      running.proc.kill("SIGSTOP");
      frozenAt = i;
    }
    if (frozenAt >= 0 && killedAfter < 0 && i === frozenAt + 2 * HOSTS) {
      running.proc.kill("SIGKILL");
      expect(await running.proc.exited).not.toBe(0);
      killedAfter = i + 1;
      revAtKill = (await bus.jsm.streams.info(bus.topo.streams.topology.name)).state.last_seq;
    }
  }
  expect(killedAfter).toBeGreaterThan(0);
  expect(killedAfter).toBeLessThan(batches.length);

  running = await startTopology(env);
  // Batches the killed process had fetched but not acked come back only after the consumer's ack wait.
  await waitFor(() => drained(batches.length), "the restarted service to handle every batch", spec.ackWaitMs + 60_000, 200);
  const snap = await fetchSnapshot(bus);
  snapRev = snap.rev;
  afterStream = { nodes: snap.nodes.map(nodeKey).sort(), edges: snap.edges.map(edgeKey).sort() };
}, 180_000);

// After a restart the service replays what its killed predecessor left unacked, in stream order
// (rewindToAckFloor), so the graph is the whole stream folded in order.
test("after the restart the graph equals the whole stream folded in order into a fresh model", () => {
  expect(afterStream).toEqual(expected(batches));
});

async function readDeltas(): Promise<TopologyDelta[]> {
  const info = await bus.jsm.streams.info(bus.topo.streams.topology.name);
  const consumer = await bus.js.consumers.get(bus.topo.streams.topology.name, { deliver_policy: DeliverPolicy.All });
  const out: TopologyDelta[] = [];
  for (let i = 0; i < info.state.messages; i++) {
    const m = await consumer.next({ expires: 10_000 });
    if (!m) break;
    out.push(decode(TopologyDelta, "topology.delta.v1", m.data));
  }
  expect(out.length).toBe(info.state.messages);
  return out;
}

test("kill -9 mid-stream and restart: the store holds exactly the live model; revs continue with no duplicates", async () => {
  expect(afterStream.nodes.length).toBeGreaterThan(HOSTS * 4);
  // The graph store, through the Cypher RPC, holds exactly the live model (the snapshot RPC).
  expect(await storedGraph()).toEqual(afterStream);
  const revs = (await readDeltas()).map((d) => d.rev);
  expect(revAtKill).toBeGreaterThan(0);
  expect(revs.length).toBeGreaterThan(revAtKill);
  expect(new Set(revs).size).toBe(revs.length);
  expect(revs).toEqual([...revs].sort((a, b) => a - b));
  expect(revs.at(-1)).toBe(snapRev);
}, 60_000);

// The deltas are committed with the graph (the store's outbox) and re-published after a restart, so a kill between
// commit and publish leaves no gap in the delta stream.
test("kill -9 mid-stream and restart: revs are consecutive and folding the delta stream gives the live graph", async () => {
  const deltas = await readDeltas();
  expect(deltas.map((d) => d.rev)).toEqual(Array.from({ length: deltas.length }, (_, i) => i + 1));
  const mirror = emptyMirror();
  for (const d of deltas) expect(applyDelta(mirror, d)).toBe(true);
  expect({ nodes: [...mirror.nodes.values()].map(nodeKey).sort(), edges: [...mirror.edges.values()].map(edgeKey).sort() }).toEqual(afterStream);
}, 60_000);
