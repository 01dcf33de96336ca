/**
 * Ctrl-C while the topology service writes a large change set: it exits 0 within its shutdown deadline, the write in
 * flight is abandoned (rolled back, its messages redelivered), and a restart on the same data directory ends with the
 * graph that was published, its deltas on the stream consecutive and folding to the stored graph. The service runs as
 * its own process (services/topology/main.ts), against a real nats-server and Kuzu.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { decode } from "../../../pipelines/codec.ts";
import { DiscoveryBatch as DiscoveryBatchSchema, type DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { TopologyDelta } from "../../../pipelines/contracts/topology.ts";
import { applyDiscovery, emptyModel } from "../../../pipelines/stages/topology/index.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startTopologyService } from "../../../services/topology/service.ts";
import { proc } from "../../helpers/discovery.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { spawnUntilReady } from "../../helpers/process.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

let nats: NatsServer;
let bus: Bus;
let tmp: { dir: string; cleanup: () => void };
const prefix = uniquePrefix("stop");

beforeAll(async () => {
  nats = await startNats();
  tmp = tempDir("orrery-topo-stop-");
  bus = await connectBus({ url: nats.url, prefix, name: "test" });
});
afterAll(async () => {
  await bus.close();
  await nats.stop();
  tmp.cleanup();
});

const HOSTS = 1000;
const PORTS = 8;
/** services/shared/lifecycle.ts's deadline */
const DEADLINE_MS = 9000;

const scan = (h: number): DiscoveryBatch => ({
  schema: "discovery.v1",
  source: `agent:h${h}`,
  host: `h${h}`,
  scanId: 1,
  part: 0,
  parts: 1,
  full: false,
  at: Date.now(),
  events: Array.from({ length: PORTS }, (_, i) => ({ type: "listener.seen" as const, proto: "tcp" as const, ip: "0.0.0.0", port: 8000 + i, process: proc(100 + i, `svc${i}`) })),
});
/** Every listener of a host annotated: thousands of updates of existing entities, which a store writes row by row. */
const annotations = (h: number): DiscoveryBatch => ({
  schema: "discovery.v1",
  source: "job:inventory",
  host: `h${h}`,
  scanId: 1,
  part: 0,
  parts: 1,
  full: false,
  at: Date.now(),
  events: Array.from({ length: PORTS }, (_, i) => ({ type: "entity.annotated" as const, match: { host: `h${h}`, port: 8000 + i }, props: { team: `team-${i}` } })),
});
const publish = (b: DiscoveryBatch, id: string) => publishEvent(bus, bus.topo.subjects.discovery(b.host), DiscoveryBatchSchema, "discovery.v1", b, id);

const consumerIdle = async () => {
  const c = bus.topo.consumers.topology;
  const i = await bus.jsm.consumers.info(c.stream, c.durable);
  return i.num_pending === 0 && i.num_ack_pending === 0;
};

test("Ctrl-C during a large write: exit 0 within the deadline; a restart ends with the published graph and consistent deltas", async () => {
  const dataDir = join(tmp.dir, "data");
  const env = {
    ...process.env,
    NATS_URL: nats.url,
    ORRERY_PREFIX: prefix,
    ORRERY_DATA_DIR: dataDir,
    // nothing ages out while the test runs
    ORRERY_AGENT_INTERVAL_MS: "3600000",
  };
  const child = await spawnUntilReady([process.execPath, "services/topology/main.ts"], { ready: /"event":"ready","service":"topology"/, timeoutMs: 60_000, env, name: "topology" });
  let exited = false;
  try {
    const batches = [...Array.from({ length: HOSTS }, (_, h) => scan(h)), ...Array.from({ length: HOSTS }, (_, h) => annotations(h))];
    for (let h = 0; h < HOSTS; h++) await publish(batches[h]!, `scan:${h}`);
    await waitFor(consumerIdle, "the first scan written", 120_000, 200);
    for (let h = 0; h < HOSTS; h++) await publish(batches[HOSTS + h]!, `ann:${h}`);
    // the annotations are being written (delivered, not acked); SIGINT a moment into that write
    await waitFor(async () => {
      const c = bus.topo.consumers.topology;
      return (await bus.jsm.consumers.info(c.stream, c.durable)).num_ack_pending > 0;
    }, "the annotations' write under way", 60_000, 20);
    await Bun.sleep(300);
    const t0 = performance.now();
    child.proc.kill("SIGINT");
    const code = await Promise.race([child.proc.exited, Bun.sleep(DEADLINE_MS + 3000).then(() => "still running")]);
    const stopMs = performance.now() - t0;
    exited = code !== "still running";
    expect(code).toBe(0);
    expect(stopMs).toBeLessThan(DEADLINE_MS);
    // the write was in flight and abandoned, not waited for (its batch goes back to the stream)
    expect(child.log()).toMatch(/abandoned|stopping/);
    expect(await consumerIdle()).toBe(false);

    // The restart (in-process here): the store as committed, the rest redelivered.
    const store = new KuzuGraphStore(join(dataDir, "graph", "kuzu"));
    const svc = await startTopologyService({ bus, store, log: makeLogger("test", true), aging: { intervalMs: 3_600_000 } });
    try {
      await waitFor(consumerIdle, "the redelivered batches written", 120_000, 200);
      const expected = emptyModel();
      applyDiscovery(expected, batches, Date.now());
      const g = await store.load();
      const ids = (xs: Iterable<{ id: string }>) => [...xs].map((x) => x.id).sort();
      expect(ids(g.nodes)).toEqual(ids(expected.nodes.values()));
      expect(ids(g.edges)).toEqual(ids(expected.edges.values()));
      // the annotations (the abandoned write's content) are there, on the entities they name
      const teams = (xs: Iterable<{ id: string; props: Record<string, unknown> }>) =>
        [...xs].filter((n) => typeof n.props.team === "string").map((n) => `${n.id}=${n.props.team}`).sort();
      expect(teams(g.nodes).length).toBeGreaterThanOrEqual(HOSTS * PORTS);
      expect(teams(g.nodes)).toEqual(teams(expected.nodes.values()));
      expect(svc.rev()).toBe(g.rev);

      // The deltas on the stream: revs 1..rev, each once, folding to the stored graph.
      const stream = bus.topo.streams.topology.name;
      await waitFor(async () => {
        const last = (await bus.jsm.streams.info(stream)).state.last_seq;
        const m = last > 0 ? await bus.jsm.streams.getMessage(stream, { seq: last }) : null;
        return m ? decode(TopologyDelta, "topology.delta.v1", m.data).rev === g.rev : false;
      }, "every delta published");
      const info = await bus.jsm.streams.info(stream);
      const nodes = new Map<string, true>();
      const edges = new Map<string, true>();
      const revs: number[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await bus.jsm.streams.getMessage(stream, { seq });
        if (!m) continue;
        const d = decode(TopologyDelta, "topology.delta.v1", m.data);
        revs.push(d.rev);
        for (const n of d.nodesUpserted) nodes.set(n.id, true);
        for (const e of d.edgesUpserted) edges.set(e.id, true);
        for (const id of d.edgesRemoved) edges.delete(id);
        for (const id of d.nodesRemoved) nodes.delete(id);
      }
      expect(revs).toEqual(Array.from({ length: g.rev }, (_, i) => i + 1));
      expect([...nodes.keys()].sort()).toEqual(ids(g.nodes));
      expect([...edges.keys()].sort()).toEqual(ids(g.edges));
    } finally {
      await svc.stop();
      await store.close();
    }
  } finally {
    if (!exited) child.proc.kill("SIGKILL");
  }
}, 300_000);
