/**
 * Levels of detail over a real gateway: its real mirror and health overlay over a real nats-server (a fake topology
 * service answers the snapshot RPC and publishes deltas, a fake alerts service answers the health RPC), WebSocket
 * clients on /ws and HTTP on /api/view. Time travel reads a HistoryStore that answers one known state (the ClickHouse
 * adapter's stateAt has its own tests in test/integration/history/); what is tested here is that a spec's `at` is
 * asked of it and the view is computed from its answer.
 */
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import type { HealthState } from "../../../pipelines/contracts/health.ts";
import type { TopologyDelta, TopologySnapshot } from "../../../pipelines/contracts/topology.ts";
import { ViewFrame, ViewSnapshot, type ViewDelta, type ViewSpecInput } from "../../../pipelines/contracts/view.ts";
import { snapshotOf } from "../../../pipelines/stages/apply-delta.ts";
import { alertSubjects } from "../../../pipelines/streams.ts";
import { startHealthOverlay } from "../../../services/gateway/health.ts";
import { startGatewayServer } from "../../../services/gateway/http.ts";
import { viewRoutes } from "../../../services/gateway/routes/view.ts";
import { ViewHub } from "../../../services/gateway/views.ts";
import type { HistoryStore } from "../../../services/history/port.ts";
// ORRERY_AUTH=off explicitly: these tests are not about who may pass (test/integration/identity/ is)
import { openGate } from "../../../services/identity/client.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startMirror } from "../../../services/topology/client.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";
import { estate, fakeTopologyService } from "./estate.ts";

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const T_PAST = 1_700_000_000_000;

/** A gateway over a 6-host estate (h0…h5, two services each, each calling the next host), h0's first service critical. */
async function gateway(o: { heartbeatMs?: number } = {}) {
  const log = makeLogger("gateway-test", true);
  const bus: Bus = await connectBus({ url: nats.url, prefix: uniquePrefix("gv"), name: "test" });
  cleanups.push(() => bus.close());
  const truth = estate({ hosts: 6, procs: 2, rev: 3 });
  const topo = fakeTopologyService(bus, truth);
  cleanups.push(() => topo.stop());
  const state: HealthState = {
    schema: "health.state.v1",
    seq: 1,
    at: 1,
    entities: [{ id: "process:h0:1000", health: "critical", alerts: ["fp-1"] }],
    edges: [],
    impact: [{ id: "process:h5:1000", health: "critical", hops: 2, causes: [{ id: "process:h0:1000", health: "critical", hops: 2 }], causesTotal: 1 }],
  };
  const rpc = bus.nc.subscribe(alertSubjects(bus.topo).rpc, {
    callback: (_e, m) => {
      m.respond(new TextEncoder().encode(JSON.stringify(state)));
    },
  });
  cleanups.push(() => rpc.unsubscribe());
  const mirror = await startMirror(bus, log);
  cleanups.push(() => mirror.stop());
  const health = startHealthOverlay(bus, log);
  cleanups.push(() => health.stop());
  // the past: only h0 and h1, as a history store answers it
  const past = estate({ hosts: 2, procs: 1, rev: 1 });
  const asked: number[] = [];
  const history = {
    stateAt: async (t: number): Promise<TopologySnapshot> => {
      asked.push(t);
      return snapshotOf(past, t);
    },
  } as unknown as HistoryStore;
  const views = new ViewHub({ mirror, health, history, log, intervalMs: 50, heartbeatMs: o.heartbeatMs ?? 60_000 });
  cleanups.push(() => views.stop());
  const tmp = tempDir();
  cleanups.push(() => tmp.cleanup());
  const server = startGatewayServer({ auth: openGate(), bus, mirror, log, host: "127.0.0.1", port: 0, dashboardDir: tmp.dir, health, views, extraRoutes: viewRoutes({ views }), healthCoalesceMs: 0 });
  cleanups.push(() => server.stop(true));
  await waitFor(() => mirror.synced() && health.synced(), "mirror and health overlay synced");
  return { bus, topo, server, asked, url: `http://127.0.0.1:${server.port}`, ws: `ws://127.0.0.1:${server.port}/ws` };
}

/** A WebSocket client that keeps every frame it gets. */
async function client(url: string) {
  const frames: Record<string, unknown>[] = [];
  const ws = new WebSocket(url);
  ws.onmessage = (ev) => frames.push(JSON.parse(String(ev.data)));
  await new Promise<void>((res, rej) => {
    ws.onopen = () => res();
    ws.onerror = () => rej(new Error("WebSocket failed to open"));
  });
  cleanups.push(() => ws.close());
  return {
    ws,
    frames,
    send: (m: unknown) => ws.send(typeof m === "string" ? m : JSON.stringify(m)),
    subscribe: (spec: ViewSpecInput, id?: string) => ws.send(JSON.stringify({ type: "view.subscribe", spec, ...(id ? { id } : {}) })),
    next: async <S extends string>(schema: S, pred: (f: Record<string, unknown>) => boolean = () => true, after = 0) =>
      (await waitFor(() => frames.slice(after).find((f) => f.schema === schema && pred(f)), `a ${schema} frame`, 10_000)) as Record<string, unknown>,
  };
}

const hostDelta = (rev: number): TopologyDelta => ({
  schema: "topology.delta.v1",
  rev,
  at: T_PAST + rev,
  nodesUpserted: [
    { id: "host:h6", kind: "host", name: "h6", source: "agent:h6", props: { hostname: "h6" }, firstSeen: T_PAST, lastSeen: T_PAST },
    { id: "process:h6:1000", kind: "process", name: "image:registry.example/orders", source: "agent:h6", props: { host: "h6", service: "image:registry.example/orders" }, firstSeen: T_PAST, lastSeen: T_PAST },
  ],
  nodesRemoved: [],
  edgesUpserted: [
    { id: "RUNS:host:h6->process:h6:1000", kind: "RUNS", src: "host:h6", dst: "process:h6:1000", source: "agent:h6", props: {}, firstSeen: T_PAST, lastSeen: T_PAST },
    { id: "CONNECTS:process:h6:1000->listener:h0:tcp:0.0.0.0:8000", kind: "CONNECTS", src: "process:h6:1000", dst: "listener:h0:tcp:0.0.0.0:8000", source: "agent:h6", props: {}, firstSeen: T_PAST, lastSeen: T_PAST },
  ],
  edgesRemoved: [],
});

test("a subscribed socket gets a view snapshot, then view frames only; a raw socket keeps the raw stream; a second subscribe switches view", async () => {
  const gw = await gateway();
  const raw = await client(gw.ws);
  await raw.next("topology.snapshot.v1");
  const v = await client(gw.ws);
  v.subscribe({ level: "groups", groupBy: "host" }, "a");
  const snap = ViewSnapshot.parse(await v.next("view.snapshot.v1"));
  expect(snap.sub).toBe("a");
  expect(snap.marks.map((m) => m.id).sort()).toEqual([0, 1, 2, 3, 4, 5].map((h) => `group:host:h${h}`));
  const h0 = snap.marks.find((m) => m.id === "group:host:h0")!;
  expect(h0).toMatchObject({ kind: "group", label: "h0", entityId: "host:h0", count: 5, health: "critical", healthCounts: { critical: 1, warning: 0, stale: 0, impacted: 0 } });
  expect(snap.marks.find((m) => m.id === "group:host:h5")!.impacted).toBe(true);
  // two calls from each host to the next: one link with count 2
  expect(snap.links.find((l) => l.id === "calls:group:host:h1->group:host:h2")).toMatchObject({ kind: "calls", count: 2 });
  expect(snap.summary).toMatchObject({ hosts: 6, services: 12, criticals: 1, worst: "critical", impactedServices: 1, healthKnown: true });

  // a discovery change: one view delta with the new group and its call, and the raw socket gets the raw delta
  const before = v.frames.length;
  await gw.topo.publish(hostDelta(4));
  const d = (await v.next("view.delta.v1", () => true, before)) as unknown as ViewDelta;
  expect(ViewFrame.parse(d).schema).toBe("view.delta.v1");
  expect(d.sub).toBe("a");
  expect(d.seq).toBe(snap.seq + 1);
  expect(d.marksUpserted.map((m) => m.id)).toContain("group:host:h6");
  expect(d.linksUpserted.find((l) => l.id === "calls:group:host:h6->group:host:h0")).toMatchObject({ count: 1 });
  expect(d.summary?.hosts).toBe(7);
  await raw.next("topology.delta.v1", (f) => f.rev === 4);
  // (the raw snapshot may have gone out between open and subscribe; nothing raw after the view's snapshot)
  expect(v.frames.slice(v.frames.findIndex((f) => f.schema === "view.snapshot.v1")).filter((f) => !String(f.schema).startsWith("view."))).toEqual([]);

  // subscribe again: a fresh snapshot of the new spec, numbered after the last frame
  const seqBefore = d.seq;
  v.subscribe({ level: "services", groupBy: "tier", open: ["host:h6"] }, "b");
  const s2 = ViewSnapshot.parse(await v.next("view.snapshot.v1", (f) => f.sub === "b"));
  expect(s2.seq).toBe(seqBefore + 1);
  const orders = s2.marks.find((m) => m.id === "process:h6:1000")!;
  expect(orders).toMatchObject({ kind: "service", label: "orders", sublabel: "on h6", parent: "host:h6" });
  // raw frames still reach only the raw socket
  expect(raw.frames.some((f) => String(f.schema).startsWith("view."))).toBe(false);

  // a socket opened as /ws?view is never sent the raw stream: its first frame is its view's snapshot
  const only = await client(`${gw.ws}?view`);
  only.subscribe({ groupBy: "host" }, "c");
  await only.next("view.snapshot.v1", (f) => f.sub === "c");
  expect(only.frames.map((f) => f.schema)).toEqual(["view.snapshot.v1"]);
}, 60_000);

test("a bad message gets a view error frame and the socket stays usable; unsubscribe brings the raw stream back", async () => {
  const gw = await gateway();
  const v = await client(gw.ws);
  await v.next("topology.snapshot.v1");
  v.send("hello");
  const e1 = await v.next("view.error.v1");
  expect(e1).toMatchObject({ code: "bad_request" });
  expect(String(e1.error)).toContain("not JSON");
  v.send({ type: "view.subscribe", id: "x", spec: { level: "nope", focus: { id: "host:h0", hops: 9 } } });
  const e2 = await v.next("view.error.v1", (f) => f.sub === "x");
  expect(String(e2.error)).toContain("spec.level");
  expect(String(e2.error)).toContain("spec.focus.hops");
  v.send({ type: "view.frobnicate" });
  await v.next("view.error.v1", (f) => String(f.error).includes("view.subscribe"), v.frames.indexOf(e2) + 1);
  // still open and still on the raw stream
  expect(v.ws.readyState).toBe(WebSocket.OPEN);
  v.subscribe({ focus: { id: "process:h2:1000", hops: 1, dir: "down" }, level: "services" });
  const s = ViewSnapshot.parse(await v.next("view.snapshot.v1"));
  // down one hop from h2's first service: it, the service on h3 it calls, their hosts and listeners
  expect(s.marks.filter((m) => m.kind === "service").map((m) => m.id).sort()).toEqual(["process:h2:1000", "process:h3:1000"]);
  const after = v.frames.length;
  v.send({ type: "view.unsubscribe" });
  await v.next("topology.snapshot.v1", () => true, after);
}, 60_000);

test("GET /api/view answers the live view, a past one from history with spec.at, and 400 for a bad spec", async () => {
  const gw = await gateway();
  const get = (spec: unknown) => fetch(`${gw.url}/api/view?spec=${encodeURIComponent(typeof spec === "string" ? spec : JSON.stringify(spec))}`);
  const live = await get({ groupBy: "host", filters: { health: ["critical"] } });
  expect(live.status).toBe(200);
  const body = ViewSnapshot.parse(await live.json());
  expect(body.marks.map((m) => m.id)).toEqual(["group:host:h0"]);
  expect(body.marks[0]!.count).toBe(2); // the critical service and its host

  const past = await get({ groupBy: "host", at: T_PAST });
  expect(past.status).toBe(200);
  const p = ViewSnapshot.parse(await past.json());
  expect(gw.asked).toEqual([T_PAST]);
  expect(p.marks.map((m) => m.id).sort()).toEqual(["group:host:h0", "group:host:h1"]);
  expect(p.summary.healthKnown).toBe(false);

  const bad = await get({ groupBy: "planet" });
  expect(bad.status).toBe(400);
  expect(((await bad.json()) as { error: string }).error).toContain("groupBy");
  expect((await get("{not json")).status).toBe(400);
  // no spec: the default view (groups by tier)
  const def = ViewSnapshot.parse(await (await fetch(`${gw.url}/api/view`)).json());
  expect(def.spec).toMatchObject({ level: "groups", groupBy: "tier" });

  const ent = await fetch(`${gw.url}/api/view/entity?id=${encodeURIComponent("process:h0:1000")}`);
  expect(ent.status).toBe(200);
  expect(await ent.json()).toMatchObject({ label: "svc0", sublabel: "on h0", health: "critical", alerts: ["fp-1"] });
  expect((await fetch(`${gw.url}/api/view/entity?id=nope`)).status).toBe(404);
  const found = (await (await fetch(`${gw.url}/api/view/search?q=svc1&limit=3`)).json()) as { total: number; items: { sublabel: string }[] };
  expect(found.total).toBe(6);
  expect(found.items.map((i) => i.sublabel)).toEqual(["on h0", "on h1", "on h2"]);
}, 60_000);

test("a burst of discovery changes comes out coalesced, and a quiet view still says it is alive", async () => {
  const gw = await gateway({ heartbeatMs: 300 });
  const v = await client(`${gw.ws}?view`);
  v.subscribe({ groupBy: "host" });
  const snap = ViewSnapshot.parse(await v.next("view.snapshot.v1"));
  // ten deltas at once: each adds a host; the view gets them in far fewer frames, and ends with all ten
  const at = v.frames.length;
  const burst: TopologyDelta[] = Array.from({ length: 10 }, (_, i) => ({
    schema: "topology.delta.v1",
    rev: 4 + i,
    at: T_PAST,
    nodesUpserted: [{ id: `host:burst${i}`, kind: "host", name: `burst${i}`, source: "agent:burst", props: {}, firstSeen: T_PAST, lastSeen: T_PAST }],
    nodesRemoved: [],
    edgesUpserted: [],
    edgesRemoved: [],
  }));
  for (const d of burst) await gw.topo.publish(d);
  const marks = new Set(snap.marks.map((m) => m.id));
  await waitFor(() => {
    for (const f of v.frames.slice(at)) if (f.schema === "view.delta.v1") for (const m of (f as unknown as ViewDelta).marksUpserted) marks.add(m.id);
    return Array.from({ length: 10 }, (_, i) => `group:host:burst${i}`).every((id) => marks.has(id));
  }, "every burst host in the view");
  const deltas = v.frames.slice(at).filter((f) => f.schema === "view.delta.v1" && (f as unknown as ViewDelta).marksUpserted.length > 0);
  expect(deltas.length).toBeLessThan(10);
  // nothing changes now: a summary-only delta comes within the heartbeat, numbered in sequence
  const quietFrom = v.frames.length;
  const hb = (await v.next("view.delta.v1", (f) => (f as unknown as ViewDelta).marksUpserted.length === 0, quietFrom)) as unknown as ViewDelta;
  expect(hb.summary?.hosts).toBe(16);
  expect(hb.linksUpserted).toEqual([]);
  const seqs = v.frames.filter((f) => String(f.schema).startsWith("view.")).map((f) => f.seq as number);
  expect(seqs).toEqual(seqs.map((_, i) => snap.seq + i));
}, 60_000);
