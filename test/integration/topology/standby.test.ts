/**
 * One active topology writer and a standby, by the writer lease in JetStream KV (services/topology/lease.ts): a holder
 * that cannot renew fences itself before anyone else may take the lease; and kill -9 of the active process during
 * sustained discovery: the standby takes over within 10 s, the revs on the topology stream go on with no gap and no
 * repeat, and the graph ends with every published change. Real nats-server, Kuzu in a temp dir, the service run as
 * its own processes (services/topology/main.ts), sharing one data directory (the standby opens it only on takeover).
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
import { acquireLease, leaseTiming } from "../../../services/topology/lease.ts";
import { runTopologyWriter, type WriterState } from "../../../services/topology/writer.ts";
import { proc } from "../../helpers/discovery.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { spawnUntilReady, type ReadyProcess } from "../../helpers/process.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";
import { mkdirSync } from "node:fs";
import { connect as connectTcp, createServer, type Socket } from "node:net";

let nats: NatsServer;
let tmp: { dir: string; cleanup: () => void };
const log = makeLogger("test", true);

beforeAll(async () => {
  nats = await startNats();
  tmp = tempDir("orrery-topo-standby-");
});
afterAll(async () => {
  await nats.stop();
  tmp.cleanup();
});

/** A TCP relay in front of the nats-server: `cut()` drops every connection through it and refuses new ones, as a
 * partition of one process (all of its connections, the lease renewer's too) would look. */
function relay(port: number) {
  const sockets = new Set<Socket>();
  const server = createServer((c) => {
    const u = connectTcp(port, "127.0.0.1");
    for (const s of [c, u]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => sockets.delete(s));
    }
    c.pipe(u);
    u.pipe(c);
  });
  const listening = new Promise<number>((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port)));
  return {
    url: async () => `nats://127.0.0.1:${await listening}`,
    cut: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

test("a holder that cannot renew fences itself before a standby may take the lease", async () => {
  const prefix = uniquePrefix("lease");
  const path = relay(nats.port);
  const a = await connectBus({ url: await path.url(), prefix, name: "a" });
  const b = await connectBus({ url: nats.url, prefix, name: "b" });
  try {
    const timing = leaseTiming(1500);
    const held = await acquireLease({ bus: a, key: "w", holder: "a", timing, log });
    // a second holder waits while the first renews: well past the TTL
    const waiting = new AbortController();
    let bAt = 0;
    const bLease = acquireLease({ bus: b, key: "w", holder: "b", timing, log, signal: waiting.signal }).then((l) => ((bAt = performance.now()), l));
    await Bun.sleep(3 * timing.ttlMs);
    expect(bAt).toBe(0);
    expect(held.lost.aborted).toBe(false);

    // every connection of a's dies without a word (as a partition would look): its renewals fail
    let lostAt = 0;
    held.lost.addEventListener("abort", () => (lostAt = performance.now()));
    const cut = performance.now();
    path.cut();
    const taken = await bLease;
    expect(lostAt).toBeGreaterThan(0);
    // a gave up before b took over, by at least most of the margin
    expect(bAt - lostAt).toBeGreaterThan(timing.marginMs / 2);
    expect(bAt - cut).toBeLessThan(timing.ttlMs + timing.renewMs + 4 * timing.pollMs + 500);
    expect(held.check()).toBe(false);
    // released, it is free at once for the next one
    await taken.release();
    const t = performance.now();
    const again = await acquireLease({ bus: b, key: "w", holder: "c", timing, log });
    expect(performance.now() - t).toBeLessThan(timing.pollMs + 500);
    await again.release();
  } finally {
    await a.close();
    await b.close();
  }
});

test("a holder whose event loop stalls for longer than its TTL keeps its lease: renewals run on a thread of their own", async () => {
  const prefix = uniquePrefix("stall");
  const a = await connectBus({ url: nats.url, prefix, name: "a" });
  const b = await connectBus({ url: nats.url, prefix, name: "b" });
  try {
    const timing = leaseTiming(1000);
    const held = await acquireLease({ bus: a, key: "w", holder: "a", timing, log });
    const waiting = new AbortController();
    let bAt = 0;
    const bLease = acquireLease({ bus: b, key: "w", holder: "b", timing, log, signal: waiting.signal }).then((l) => ((bAt = performance.now()), l));
    await Bun.sleep(timing.renewMs * 2);
    // a long synchronous step (a 100k-node model load): neither this thread's timers nor its NATS client run meanwhile
    Bun.sleepSync(3 * timing.ttlMs);
    expect(held.check()).toBe(true);
    expect(held.lost.aborted).toBe(false);
    await Bun.sleep(2 * timing.ttlMs);
    expect(bAt).toBe(0);
    expect(held.check()).toBe(true);
    // the renewals moved the key on while this thread slept
    expect(held.revision()).toBeGreaterThan(3);
    await held.release();
    const taken = await bLease;
    expect(bAt).toBeGreaterThan(0);
    await taken.release();
  } finally {
    await a.close();
    await b.close();
  }
});

const freePort = () => {
  const s = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const p = s.port!;
  void s.stop(true);
  return p;
};

const scan = (h: number): DiscoveryBatch => ({
  schema: "discovery.v1",
  source: `agent:h${h}`,
  host: `h${h}`,
  scanId: 1,
  part: 0,
  parts: 1,
  full: false,
  at: Date.now(),
  events: [{ type: "listener.seen" as const, proto: "tcp" as const, ip: "0.0.0.0", port: 8000 + (h % 50), process: proc(100 + h, `svc${h % 7}`) }],
});

test("kill -9 of the active writer during discovery: the standby takes over within 10 s, revs go on without gap or repeat, nothing lost", async () => {
  const prefix = uniquePrefix("standby");
  const bus: Bus = await connectBus({ url: nats.url, prefix, name: "test" });
  const dataDir = join(tmp.dir, "data");
  const spawn = (name: string, port: number, ready: RegExp) =>
    spawnUntilReady([process.execPath, "services/topology/main.ts"], {
      ready,
      timeoutMs: 60_000,
      name,
      env: {
        ...process.env,
        NATS_URL: nats.url,
        ORRERY_PREFIX: prefix,
        ORRERY_DATA_DIR: dataDir,
        ORRERY_TOPOLOGY_METRICS_PORT: String(port),
        ORRERY_METRICS_HOST: "127.0.0.1",
        // nothing ages out while the test runs
        ORRERY_AGENT_INTERVAL_MS: "3600000",
      },
    });
  const readyz = async (port: number) => (await fetch(`http://127.0.0.1:${port}/readyz`)).text().then((t) => t.trim());
  const procs: ReadyProcess[] = [];
  const published: DiscoveryBatch[] = [];
  let publishing = true;
  const publisher = (async () => {
    for (let h = 0; publishing; h++) {
      const b = scan(h);
      await publishEvent(bus, bus.topo.subjects.discovery(b.host), DiscoveryBatchSchema, "discovery.v1", b, `scan:${h}`);
      published.push(b);
      await Bun.sleep(15);
    }
  })();
  const stream = bus.topo.streams.topology.name;
  const deltaCount = async () => (await bus.jsm.streams.info(stream)).state.messages;
  try {
    const [portA, portB, portC] = [freePort(), freePort(), freePort()];
    const a = await spawn("topology A", portA, /"event":"ready","service":"topology"/);
    procs.push(a);
    const b = await spawn("topology B", portB, /"event":"standby","service":"topology"/);
    procs.push(b);
    expect(await readyz(portA)).toBe("ready");
    expect(await readyz(portB)).toBe("standby");

    // A writes for a while; B only waits
    await waitFor(async () => (await deltaCount()) >= 20, "the active writing deltas", 30_000, 100);
    await Bun.sleep(1000);
    expect(b.stdout()).not.toContain('"event":"ready"');
    const killedAt = performance.now();
    a.proc.kill("SIGKILL");
    await a.proc.exited;
    const deltasAtKill = await deltaCount();

    await b.until(/lease taken over/, { stream: "either", timeoutMs: 15_000 });
    const leaseMs = performance.now() - killedAt;
    await b.until(/"event":"ready","service":"topology"/, { timeoutMs: 15_000 });
    const takeoverMs = performance.now() - killedAt;
    // B writes the discovery published since (the stream grows again)
    await waitFor(async () => (await deltaCount()) > deltasAtKill + 5, "the new active writing", 15_000, 50);
    const writingMs = performance.now() - killedAt;
    console.log(`takeover: lease ${Math.round(leaseMs)} ms after kill -9, ready ${Math.round(takeoverMs)} ms, writing new deltas after ${Math.round(writingMs)} ms`);
    // where the takeover's time went, in the new active's own log
    for (const l of b.log().split("\n")) if (/lease taken|model loaded|replaying|re-publishing/.test(l)) console.log(l.slice(0, 200));
    expect(takeoverMs).toBeLessThan(10_000);
    expect(await readyz(portB)).toBe("ready");

    // a restarted instance rejoins as a standby
    const c = await spawn("topology C", portC, /"event":"standby","service":"topology"/);
    procs.push(c);
    await Bun.sleep(1500);
    expect(await readyz(portC)).toBe("standby");
    expect(c.stdout()).not.toContain('"event":"ready"');

    publishing = false;
    await publisher;
    const c0 = bus.topo.consumers.topology;
    await waitFor(async () => {
      const i = await bus.jsm.consumers.info(c0.stream, c0.durable);
      return i.num_pending === 0 && i.num_ack_pending === 0;
    }, "every published batch written", 60_000, 200);
    // the standby first (else it would take over the released lease), then the active: both exit cleanly
    c.proc.kill("SIGINT");
    expect(await c.proc.exited).toBe(0);
    b.proc.kill("SIGINT");
    expect(await b.proc.exited).toBe(0);

    // The deltas on the stream: revs 1..n in stream order, each once; folded, the stored graph.
    const info = await bus.jsm.streams.info(stream);
    const revs: number[] = [];
    const nodes = new Set<string>();
    const edges = new Set<string>();
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await bus.jsm.streams.getMessage(stream, { seq });
      if (!m) throw new Error(`no delta at seq ${seq}`);
      const d = decode(TopologyDelta, "topology.delta.v1", m.data);
      revs.push(d.rev);
      for (const n of d.nodesUpserted) nodes.add(n.id);
      for (const e of d.edgesUpserted) edges.add(e.id);
      for (const id of d.edgesRemoved) edges.delete(id);
      for (const id of d.nodesRemoved) nodes.delete(id);
    }
    expect(revs).toEqual(revs.map((_, i) => i + 1));

    const store = new KuzuGraphStore(join(dataDir, "graph", "kuzu"));
    await store.init();
    try {
      const g = await store.load();
      expect(g.rev).toBe(revs.length);
      const expected = emptyModel();
      applyDiscovery(expected, published, Date.now());
      const ids = (xs: Iterable<{ id: string }>) => [...xs].map((x) => x.id).sort();
      expect(published.length).toBeGreaterThan(100);
      expect(ids(g.nodes)).toEqual(ids(expected.nodes.values()));
      expect(ids(g.edges)).toEqual(ids(expected.edges.values()));
      expect([...nodes].sort()).toEqual(ids(g.nodes));
      expect([...edges].sort()).toEqual(ids(g.edges));
      for (let h = 0; h < published.length; h++) expect(nodes.has(`host:h${h}`)).toBe(true);
    } finally {
      await store.close();
    }
  } finally {
    publishing = false;
    await publisher.catch(() => undefined);
    for (const p of procs) if (p.proc.exitCode === null) p.proc.kill("SIGKILL");
    await Promise.all(procs.map((p) => p.proc.exited));
    await bus.close();
  }
}, 180_000);

test("the active cut off from NATS longer than its lease fences itself, then takes its lease back and writes on: revs consecutive", async () => {
  // its own nats-server on a fixed port and directory, so it can be restarted with the streams as they were
  const dir = join(tmp.dir, "nats-outage");
  mkdirSync(dir, { recursive: true });
  let own = await startNats({ dir });
  const port = own.port;
  const prefix = uniquePrefix("outage");
  const bus = await connectBus({ url: own.url, prefix, name: "writer" });
  const states: WriterState[] = [];
  const writer = await runTopologyWriter({
    bus,
    log,
    holder: "only",
    ttlMs: 1500,
    openStore: () => new KuzuGraphStore(join(tmp.dir, "outage-kuzu"), { bufferPoolMiB: 128 }),
    service: { aging: { intervalMs: 3_600_000 } },
    onState: (s) => void states.push(s),
  });
  const test = await connectBus({ url: own.url, prefix, name: "test" });
  const c = test.topo.consumers.topology;
  const idle = async () => {
    const i = await test.jsm.consumers.info(c.stream, c.durable);
    return i.num_pending === 0 && i.num_ack_pending === 0;
  };
  const publish = (h: number) => publishEvent(test, test.topo.subjects.discovery(`h${h}`), DiscoveryBatchSchema, "discovery.v1", scan(h), `scan:${h}`);
  try {
    await waitFor(() => writer.state() === "active", "the writer active", 30_000);
    for (let h = 0; h < 20; h++) await publish(h);
    await waitFor(idle, "the first batches written", 30_000);

    await own.stop();
    // longer than the lease: the writer must have given up writing meanwhile
    await Bun.sleep(3000);
    // fenced, or already standing by again (its service stopped without NATS)
    expect(["fenced", "standby"]).toContain(writer.state());
    expect(writer.service()).toBeUndefined();
    own = await startNats({ dir, port });
    await waitFor(() => writer.state() === "active", "the writer active again", 30_000);
    // its own lease, still at the revision it wrote last: taken back at once, and the service started afresh
    expect(states.slice(states.lastIndexOf("fenced"))).toEqual(["fenced", "standby", "starting", "active"]);
    for (let h = 20; h < 40; h++) await publish(h);
    await waitFor(idle, "the later batches written", 30_000);
    await waitFor(async () => {
      const svc = writer.service();
      return svc && svc.model().nodes.has("host:h39");
    }, "the last host in the model", 10_000);
    const stream = test.topo.streams.topology.name;
    const rev = writer.service()!.rev();
    await waitFor(async () => (await test.jsm.streams.info(stream)).state.messages === rev, "every delta published", 10_000);
    const revs: number[] = [];
    const info = await test.jsm.streams.info(stream);
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await test.jsm.streams.getMessage(stream, { seq });
      if (m) revs.push(decode(TopologyDelta, "topology.delta.v1", m.data).rev);
    }
    expect(revs).toEqual(revs.map((_, i) => i + 1));
  } finally {
    await writer.stop();
    await test.close();
    await bus.close();
    await own.stop();
  }
}, 120_000);
