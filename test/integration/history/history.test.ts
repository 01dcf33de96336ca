/**
 * Topology time travel against real servers: nats-server (JetStream), the ClickHouse owner as a child process, and the
 * history service consuming a scripted sequence of deltas with known timestamps. stateAt / diff / replay are checked
 * exactly against a mirror folded from the same script; redelivered deltas must not duplicate rows. The gateway's
 * graph routes are served by Bun.serve over the same store.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { ClickHouseClient } from "@clickhouse/client";
import { TopologyDelta, type EdgeKind, type NodeKind, type TopoEdge, type TopologySnapshot, type TopoNode } from "../../../pipelines/contracts/topology.ts";
import { applyDelta, emptyMirror, type Mirror } from "../../../pipelines/stages/apply-delta.ts";
import { changeRows, HistoryRowError, parseEdgeId, toEdge, toNode, type ChangeRow } from "../../../pipelines/stages/history.ts";
import { edgeId } from "../../../pipelines/stages/topology/ids.ts";
import { graphRoutes } from "../../../services/gateway/routes/graph.ts";
import type { TopologyMirror } from "../../../services/topology/client.ts";
import { ClickHouseHistoryStore } from "../../../services/history/clickhouse.ts";
import { historyConsumer, startHistoryService, type HistoryService } from "../../../services/history/service.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { httpErrors } from "../../../services/shared/http.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const log = makeLogger("test", true);


// ---------------------------------------------------------------------------------------------------------------
// The script: six deltas at known times (two share a timestamp), with a change, removals and a re-creation.

const T0 = Date.UTC(2030, 0, 1);
const node = (id: string, kind: NodeKind, name = id, props: TopoNode["props"] = {}): TopoNode => ({ id, kind, name, source: "agent:h1", props, firstSeen: T0, lastSeen: T0 });
const edge = (kind: EdgeKind, src: string, dst: string, props: TopoEdge["props"] = {}): TopoEdge => ({ id: edgeId(kind, src, dst), kind, src, dst, source: "agent:h1", props, firstSeen: T0, lastSeen: T0 });
const delta = (rev: number, dt: number, d: Partial<TopologyDelta>): TopologyDelta => ({
  schema: "topology.delta.v1",
  rev,
  at: T0 + dt,
  nodesUpserted: [],
  nodesRemoved: [],
  edgesUpserted: [],
  edgesRemoved: [],
  ...d,
});

const H = "host:h1";
const P1 = "process:h1:10:5";
const P2 = "process:h1:11:5";
const L1 = "listener:h1:tcp:0.0.0.0:5432";
const X = "external:8.8.8.8:53";
const SCRIPT: TopologyDelta[] = [
  delta(1, 1000, {
    nodesUpserted: [node(H, "host", "h1", { ips: "10.0.0.1" }), node(P1, "process", "postgres", { pid: 10, exe: "/usr/bin/postgres" }), node(L1, "listener", "tcp/5432", { port: 5432 })],
    edgesUpserted: [edge("RUNS", H, P1), edge("LISTENS", P1, L1)],
  }),
  delta(2, 2000, { nodesUpserted: [node(P2, "process", "app", { pid: 11, note: "it's \"quoted\"\ttab" })], edgesUpserted: [edge("RUNS", H, P2), edge("CONNECTS", P2, L1, { proto: "tcp", port: 5432 })] }),
  delta(3, 3000, { nodesUpserted: [node(P1, "process", "postgres", { pid: 10, exe: "/usr/lib/postgresql/16/bin/postgres" })] }),
  delta(4, 3000, { edgesRemoved: [edge("CONNECTS", P2, L1).id, edge("RUNS", H, P2).id], nodesRemoved: [P2] }),
  delta(5, 5000, { nodesUpserted: [node(P2, "process", "app2", { pid: 11 }), node(X, "external", "8.8.8.8:53", { port: 53 })], edgesUpserted: [edge("RUNS", H, P2), edge("CONNECTS", P1, X, { proto: "udp", port: 53 })] }),
  delta(6, 6000, { edgesRemoved: [edge("LISTENS", P1, L1).id], nodesRemoved: [L1] }),
];

/** The oracle: fold the script's deltas with at ≤ t into a mirror. */
function oracleAt(t: number): Mirror {
  const m = emptyMirror();
  for (const d of SCRIPT) if (d.at <= t) applyDelta(m, d);
  return m;
}
const byId = <T extends { id: string }>(a: T[]) => [...a].sort((x, y) => x.id.localeCompare(y.id));
const stateOf = (s: Pick<TopologySnapshot, "nodes" | "edges">) => ({ nodes: byId(s.nodes), edges: byId(s.edges) });
const fromMirror = (m: Mirror) => stateOf({ nodes: [...m.nodes.values()], edges: [...m.edges.values()] });
/** State without the hot stamps: what a diff compares. */
const core = (x: TopoNode | TopoEdge) => JSON.stringify({ ...x, firstSeen: 0, lastSeen: 0 });

function oracleDiff(from: number, to: number) {
  const a = oracleAt(from);
  const b = oracleAt(to);
  const cls = <T extends TopoNode | TopoEdge>(before: Map<string, T>, after: Map<string, T>) => ({
    added: [...after.keys()].filter((id) => !before.has(id)).sort(),
    removed: [...before.keys()].filter((id) => !after.has(id)).sort(),
    changed: [...after.keys()].filter((id) => before.has(id) && core(before.get(id)!) !== core(after.get(id)!)).sort(),
  });
  return { nodes: cls(a.nodes, b.nodes), edges: cls(a.edges, b.edges) };
}
const diffIds = (d: Awaited<ReturnType<ClickHouseHistoryStore["diff"]>>) => ({
  nodes: { added: d.nodes.added.map((n) => n.id).sort(), removed: d.nodes.removed.map((n) => n.id).sort(), changed: d.nodes.changed.map((c) => c.after.id).sort() },
  edges: { added: d.edges.added.map((n) => n.id).sort(), removed: d.edges.removed.map((n) => n.id).sort(), changed: d.edges.changed.map((c) => c.after.id).sort() },
});

const TIMES = [T0, T0 + 999, T0 + 1000, T0 + 1500, T0 + 2000, T0 + 2999, T0 + 3000, T0 + 4000, T0 + 5000, T0 + 6000, T0 + 60_000];

describe("change rows (pure)", () => {
  test("a delta becomes one row per change, removals keep what their ids say", () => {
    const rows = changeRows(SCRIPT[3]!);
    expect(rows.map((r) => [r.seq, r.op, r.entity, r.kind, r.src, r.dst, r.id])).toEqual([
      [0, "remove", "edge", "CONNECTS", P2, L1, edge("CONNECTS", P2, L1).id],
      [1, "remove", "edge", "RUNS", H, P2, edge("RUNS", H, P2).id],
      [2, "remove", "node", "process", "", "", P2],
    ]);
    expect(parseEdgeId("LISTENS:process:h:1:2->listener:h:tcp:[::1]:53")).toEqual({ kind: "LISTENS", src: "process:h:1:2", dst: "listener:h:tcp:[::1]:53" });
    expect(parseEdgeId("nonsense")).toBeNull();
  });

  test("rows coming back from the store are checked: kinds and props", () => {
    const row = { entity: "node" as const, id: "n", kind: "process", src: "", dst: "", name: "n", source: "s", props: '{"a":1,"b":"x","c":null,"d":true}', firstSeen: 1, lastSeen: 2 };
    expect(toNode(row).props).toEqual({ a: 1, b: "x", c: null, d: true });
    expect(() => toNode({ ...row, kind: "router" })).toThrow(HistoryRowError);
    expect(() => toEdge({ ...row, entity: "edge", kind: "process" })).toThrow(/edge kind "process"/);
    expect(() => toNode({ ...row, props: '{"a":[1]}' })).toThrow(/props.a/);
    expect(() => toNode({ ...row, props: "[]" })).toThrow(/not an object/);
    expect(() => toNode({ ...row, props: "{" })).toThrow(/not JSON/);
  });
});

let nats: NatsServer;
let owner: TestClickHouse;
const chDir = tempDir("orrery-history-ch-");
beforeAll(async () => {
  [nats, owner] = await Promise.all([startNats(), startClickHouse(chDir.dir)]);
});
afterAll(async () => {
  await nats?.stop();
  const code = await owner?.stop();
  chDir.cleanup();
  expect(code).toBe(0);
});

describe("history service", () => {
  let bus: Bus;
  let ch: ClickHouseClient;
  let store: ClickHouseHistoryStore;
  let svc: HistoryService;
  const database = uniquePrefix("hist_");
  const countRows = async (where = "1") => {
    const rs = await ch.query({ query: `SELECT count() AS n FROM ${database}.topology_changes WHERE ${where}`, format: "JSONEachRow" });
    return Number((await rs.json<{ n: number }>())[0]!.n);
  };
  const drained = async () => {
    const spec = historyConsumer(bus.topo);
    const i = await bus.jsm.consumers.info(spec.stream, spec.durable);
    return i.num_pending === 0 && i.num_ack_pending === 0;
  };

  beforeAll(async () => {
    bus = await connectBus({ url: nats.url, prefix: uniquePrefix("hist"), name: "test" });
    ch = owner.client({ logErrors: false });
    store = new ClickHouseHistoryStore(owner.client({ logErrors: false }), { database, ttlDays: 45 });
    svc = await startHistoryService({ bus, store, log });
    for (const d of SCRIPT) await publishEvent(bus, bus.topo.subjects.topologyDelta, TopologyDelta, "topology.delta.v1", d, `${bus.topo.prefix}:delta:${d.rev}`);
    await waitFor(async () => svc.rev() === 6 && (await drained()), "history service to store all six deltas");
  });
  afterAll(async () => {
    await svc?.stop();
    await store?.close();
    await ch?.close();
    await bus?.close();
  });

  test("every node/edge change is one row; the table is a MergeTree with the configured TTL", async () => {
    expect(await countRows()).toBe(SCRIPT.reduce((n, d) => n + changeRows(d).length, 0));
    const rs = await ch.query({ query: "SELECT engine, sorting_key, create_table_query AS q FROM system.tables WHERE database = {db:String} AND name = 'topology_changes'", query_params: { db: database }, format: "JSONEachRow" });
    const [t] = await rs.json<{ engine: string; sorting_key: string; q: string }>();
    expect(t!.engine).toBe("MergeTree");
    expect(t!.sorting_key).toBe("entity, id, rev, seq");
    expect(t!.q).toContain("TTL toDateTime(ts) + toIntervalDay(45)");
  });

  test("stateAt(T) equals the script folded up to T, at every step (same-timestamp revs included)", async () => {
    for (const t of TIMES) {
      const s = await store.stateAt(t);
      const want = oracleAt(t);
      expect({ t, rev: s.rev, ...stateOf(s) }).toEqual({ t, rev: want.rev, ...fromMirror(want) });
    }
    // spot checks that the oracle itself says what the script means
    expect((await store.stateAt(T0 + 2000)).nodes.find((n) => n.id === P2)?.props).toEqual({ pid: 11, note: "it's \"quoted\"\ttab" });
    expect((await store.stateAt(T0 + 3000)).nodes.map((n) => n.id)).not.toContain(P2);
    expect((await store.stateAt(T0 + 5000)).nodes.find((n) => n.id === P2)?.name).toBe("app2");
  });

  test("diff(T1, T2) lists added, removed and changed entities exactly", async () => {
    const d = await store.diff(T0 + 1000, T0 + 3000);
    // p2 came and went inside the window: not in the diff; postgres's exe changed
    expect(diffIds(d)).toEqual({ nodes: { added: [], removed: [], changed: [P1] }, edges: { added: [], removed: [], changed: [] } });
    expect(d.nodes.changed[0]!.before.props.exe).toBe("/usr/bin/postgres");
    expect(d.nodes.changed[0]!.after.props.exe).toBe("/usr/lib/postgresql/16/bin/postgres");
    const d2 = await store.diff(T0 + 2000, T0 + 6000);
    expect(diffIds(d2)).toEqual({
      nodes: { added: [X], removed: [L1], changed: [P1, P2] },
      edges: { added: [edge("CONNECTS", P1, X).id], removed: [edge("CONNECTS", P2, L1).id, edge("LISTENS", P1, L1).id], changed: [] },
    });
    for (const [i, a] of TIMES.entries()) for (const b of TIMES.slice(i + 1)) expect({ a, b, ...diffIds(await store.diff(a, b)) }).toEqual({ a, b, ...oracleDiff(a, b) });
  });

  test("replay(T1, T2) is the ordered change rows in (T1, T2], and stateAt(T1) + replay = stateAt(T2)", async () => {
    const r = await store.replay(T0 + 1500, T0 + 5000, 1000);
    const want = SCRIPT.filter((d) => d.at > T0 + 1500 && d.at <= T0 + 5000).flatMap(changeRows);
    expect(r.changes).toEqual(want);
    expect(r.truncated).toBe(false);
    expect(r.changes.map((c) => c.rev)).toEqual([2, 2, 2, 3, 4, 4, 4, 5, 5, 5, 5]);
    const m = oracleAt(T0 + 1500);
    const apply = (c: ChangeRow) => {
      const map = (c.entity === "node" ? m.nodes : m.edges) as Map<string, unknown>;
      if (c.op === "remove") map.delete(c.id);
      else
        map.set(
          c.id,
          c.entity === "node"
            ? { id: c.id, kind: c.kind, name: c.name, source: c.source, props: JSON.parse(c.props), firstSeen: c.firstSeen, lastSeen: c.lastSeen }
            : { id: c.id, kind: c.kind, src: c.src, dst: c.dst, source: c.source, props: JSON.parse(c.props), firstSeen: c.firstSeen, lastSeen: c.lastSeen },
        );
    };
    r.changes.forEach(apply);
    expect(fromMirror(m)).toEqual(stateOf(await store.stateAt(T0 + 5000)));
    const cut = await store.replay(T0, T0 + 60_000, 4);
    expect(cut.truncated).toBe(true);
    expect(cut.changes.map((c) => [c.rev, c.seq])).toEqual([[1, 0], [1, 1], [1, 2], [1, 3]]);
  });

  test("a redelivered delta does not duplicate rows (JetStream redelivery and a direct re-insert alike)", async () => {
    const before = await countRows();
    const rev3 = await countRows("rev = 3");
    expect(rev3).toBe(1);
    // Stored twice in the stream (different Nats-Msg-Id), so the history consumer receives it twice.
    await publishEvent(bus, bus.topo.subjects.topologyDelta, TopologyDelta, "topology.delta.v1", SCRIPT[2]!, "redelivery-of-rev-3");
    await publishEvent(bus, bus.topo.subjects.topologyDelta, TopologyDelta, "topology.delta.v1", SCRIPT[4]!, "redelivery-of-rev-5");
    const stream = await bus.jsm.streams.info(bus.topo.streams.topology.name);
    expect(stream.state.messages).toBe(8);
    await waitFor(async () => (await bus.jsm.consumers.info(historyConsumer(bus.topo).stream, "history")).delivered.stream_seq === 8 && (await drained()), "redelivered deltas handled");
    expect(await store.insert([SCRIPT[0]!, SCRIPT[5]!])).toBe(changeRows(SCRIPT[0]!).length + changeRows(SCRIPT[5]!).length);
    expect(await countRows()).toBe(before);
    expect(await countRows("rev = 3")).toBe(1);
    expect(fromMirror(oracleAt(T0 + 60_000))).toEqual(stateOf(await store.stateAt(T0 + 60_000)));
  });

  test("a delta that is not topology.delta.v1 goes to the dead-letter stream with the reason", async () => {
    await bus.js.publish(bus.topo.subjects.topologyDelta, new TextEncoder().encode(JSON.stringify({ schema: "topology.delta.v1", rev: -1 })), { msgID: "bad-delta" });
    const dlq = await bus.js.consumers.get(bus.topo.streams.dlq.name);
    const m = await dlq.next({ expires: 10_000 });
    expect(m?.subject).toBe(bus.topo.subjects.dlq("history"));
    expect(m?.headers?.get("Orrery-Reason")).toContain("rev");
    expect(await countRows()).toBe(SCRIPT.reduce((n, d) => n + changeRows(d).length, 0));
  });
});

const sortById = <T extends { id: string }>(xs: T[]) => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

describe("state at T: what the store holds comes back as it went in", () => {
  const database = uniquePrefix("hist_text_");
  let store: ClickHouseHistoryStore;
  let ch: ClickHouseClient;
  beforeAll(async () => {
    store = new ClickHouseHistoryStore(owner.client({ logErrors: false }), { database, ttlDays: 45 });
    ch = owner.client({ logErrors: false });
    await store.init();
  });
  afterAll(async () => {
    await store?.close();
    await ch?.close();
  });

  test("names, props and ids with quotes, backslashes, tabs, newlines, slashes, control and non-ASCII characters; an edge id that is not kind:src->dst; first and last seen far apart", async () => {
    const odd = 'a "q" \\ b\tc\nd / e \u0001 ü 漢 😀 \\N';
    const n1 = { ...node("process:h1:1:odd\t\"x\"", "process", odd, { s: odd, n: -1.5e300, b: false, z: null, "/k\\": "v" }), firstSeen: T0 - 86_400_000 * 40, lastSeen: T0 + 999 };
    const n2 = node("host:h漢", "host", "h漢", {});
    const e1 = { ...edge("RUNS", n2.id, n1.id, { note: odd }), firstSeen: 1, lastSeen: T0 - 1 };
    const e2: TopoEdge = { ...edge("CONNECTS", n1.id, n2.id), id: "CONNECTS:legacy id, not built by the stage" };
    await store.insert([delta(1, 1000, { nodesUpserted: [n1, n2], edgesUpserted: [e1, e2] })]);
    const s = await store.stateAt(T0 + 1000);
    expect({ rev: s.rev, nodes: sortById(s.nodes), edges: sortById(s.edges) }).toEqual({ rev: 1, nodes: sortById([n1, n2]), edges: sortById([e1, e2]) });
  });

  test("a stored row whose props are not JSON fails the read with a bad_row error naming the row", async () => {
    await ch.insert({
      table: `${database}.topology_changes`,
      values: [{ rev: 2, seq: 0, ts: T0 + 2000, op: "upsert", entity: "node", id: "process:h1:2:bad", kind: "process", src: "", dst: "", name: "bad", source: "agent:h1", props: "{not json", firstSeen: T0, lastSeen: T0 }],
      format: "JSONEachRow",
    });
    const e = await store.stateAt(T0 + 2000).catch((err: unknown) => err);
    expect(e).toMatchObject({ code: "bad_row" });
    expect(String((e as Error).message)).toContain("history row process:h1:2:bad: props is not JSON");
    // before that row was written the state is still readable
    expect((await store.stateAt(T0 + 1000)).nodes).toHaveLength(2);
  });
});

describe("retention checkpoint", () => {
  test("after a checkpoint, dropping every older row (what TTL does) leaves stateAt exact from the checkpoint on", async () => {
    const database = uniquePrefix("histcp_");
    const ch = owner.client({ logErrors: false });
    const store = new ClickHouseHistoryStore(owner.client({ logErrors: false }), { database, ttlDays: 1 });
    try {
      await store.init();
      await store.insert(SCRIPT);
      expect(await store.lastCheckpoint()).toBeNull();
      const C = T0 + 5500;
      // alive at C: host, postgres, listener, app2, external + RUNS×2, LISTENS, CONNECTS
      expect(await store.checkpoint(C)).toBe(9);
      expect(await store.checkpoint(C)).toBe(9); // the same checkpoint twice is stored once
      expect(await store.lastCheckpoint()).toBe(C);
      await ch.command({ query: `ALTER TABLE ${database}.topology_changes DELETE WHERE ts < fromUnixTimestamp64Milli({c:Int64})`, query_params: { c: C }, clickhouse_settings: { mutations_sync: "1" } });
      for (const t of [C, T0 + 6000, T0 + 60_000]) {
        const s = await store.stateAt(t);
        expect(stateOf(s)).toEqual(fromMirror(oracleAt(t)));
      }
      // checkpoint rows are not changes: replay and diff do not report them
      expect((await store.replay(T0 + 5000, T0 + 60_000, 100)).changes.map((c) => c.rev)).toEqual([6, 6]);
      expect(diffIds(await store.diff(C, T0 + 60_000))).toEqual(oracleDiff(C, T0 + 60_000));
    } finally {
      await store.close();
      await ch.close();
    }
  });
});

describe("graph routes", () => {
  let server: ReturnType<typeof Bun.serve>;
  let store: ClickHouseHistoryStore;
  let base: string;
  let live: Mirror;
  const frames: ((f: TopologyDelta | TopologySnapshot) => void)[] = [];

  beforeAll(async () => {
    store = new ClickHouseHistoryStore(owner.client({ logErrors: false }), { database: uniquePrefix("histr_"), ttlDays: 30 });
    await store.init();
    await store.insert(SCRIPT);
    live = oracleAt(T0 + 5000);
    // The gateway's mirror interface over an in-memory mirror: the routes only read it and follow its frames.
    const mirror: TopologyMirror = { mirror: () => live, synced: () => true, onFrame: (f) => void frames.push(f), stop: async () => undefined };
    server = Bun.serve({ port: 0, hostname: "127.0.0.1", routes: graphRoutes({ mirror, history: store }), error: httpErrors(log), fetch: () => new Response("not found", { status: 404 }) } as Parameters<typeof Bun.serve>[0]);
    base = `http://127.0.0.1:${server.port}`;
  });
  afterAll(async () => {
    await server?.stop(true);
    await store?.close();
  });
  const get = async (path: string) => {
    const r = await fetch(base + path);
    return { status: r.status, body: (await r.json()) as any };
  };

  test("GET /api/impact walks the live mirror and follows its deltas", async () => {
    const r = await get(`/api/impact?id=${encodeURIComponent(H)}&direction=up&hops=3`);
    expect(r.status).toBe(200);
    expect(Object.fromEntries(r.body.upstream.map((a: any) => [a.id, a.hops]))).toEqual({ [P1]: 1, [P2]: 1, [L1]: 2 });
    const k = await get(`/api/impact?id=${encodeURIComponent(P1)}&direction=down&kind=host,external`);
    expect(k.body.downstream.map((a: any) => a.id).sort()).toEqual([X, H].sort());
    // a delta arrives through the mirror: the listener goes, and with it the host's second hop
    applyDelta(live, SCRIPT[5]!);
    frames.forEach((f) => f(SCRIPT[5]!));
    const after = await get(`/api/impact?id=${encodeURIComponent(H)}&direction=up&hops=3`);
    expect(after.body.rev).toBe(6);
    expect(Object.fromEntries(after.body.upstream.map((a: any) => [a.id, a.hops]))).toEqual({ [P1]: 1, [P2]: 1 });
  });

  test("GET /api/topology/at, /diff and /replay answer from ClickHouse; times as epoch ms or ISO 8601", async () => {
    const at = await get(`/api/topology/at?t=${new Date(T0 + 2000).toISOString()}`);
    expect(at.status).toBe(200);
    expect(at.body.schema).toBe("topology.snapshot.v1");
    expect(stateOf(at.body)).toEqual(fromMirror(oracleAt(T0 + 2000)));
    const diff = await get(`/api/topology/diff?from=${T0 + 1000}&to=${T0 + 3000}`);
    expect(diff.body.nodes.changed.map((c: any) => c.after.id)).toEqual([P1]);
    const replay = await get(`/api/topology/replay?from=${T0}&to=${T0 + 2000}&limit=3`);
    expect(replay.body.changes.length).toBe(3);
    expect(replay.body.truncated).toBe(true);
  });

  test("times may be relative to now: `now`, `-15m`, `-1d` (the script is in 2030, so now is before all of it)", async () => {
    const now = await get("/api/topology/at?t=now");
    expect(now.status).toBe(200);
    expect([now.body.nodes.length, now.body.edges.length]).toEqual([0, 0]);
    const day = await get("/api/topology/diff?from=-1d&to=now");
    expect(day.status).toBe(200);
    expect(day.body.nodes.added).toEqual([]);
    const whole = await get(`/api/topology/diff?from=-15m&to=${T0 + 3000}`);
    expect(whole.body.nodes.added.length).toBeGreaterThan(0);
  });

  test("bad input gets 400 with the reason; an unknown entity 404", async () => {
    const cases: [string, RegExp][] = [
      ["/api/impact", /id: /],
      [`/api/impact?id=${H}&direction=sideways`, /direction/],
      [`/api/impact?id=${H}&hops=0`, /hops/],
      [`/api/impact?id=${H}&kind=router`, /kind/],
      ["/api/topology/at", /t: /],
      ["/api/topology/at?t=yesterday", /epoch milliseconds, an ISO 8601 time, "now" or "-<n>s\|m\|h\|d"/],
      ["/api/topology/at?t=-5w", /got "-5w"/],
      [`/api/topology/diff?from=${T0 + 10}&to=${T0}`, /from must be before to/],
      [`/api/topology/replay?from=${T0}&to=${T0 + 10}&limit=0`, /limit/],
    ];
    for (const [path, reason] of cases) {
      const r = await get(path);
      expect({ path, status: r.status }).toEqual({ path, status: 400 });
      expect(r.body.error).toMatch(reason);
    }
    const missing = await get("/api/impact?id=process:nowhere");
    expect(missing.status).toBe(404);
    expect(missing.body.error).toContain("process:nowhere");
  });
});
