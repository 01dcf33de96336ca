/**
 * Health on the topology, through the real pieces: discovery → topology service (Kuzu) → gateway mirror; an alert
 * POSTed to the ingest → JetStream → alerts service → health.delta.v1 with impact and edge state on the HEALTH stream
 * → gateway health overlay → WebSocket (deltas to connected browsers, the full state to a new one) and
 * GET /api/impact?alert=. Then restart safety: the alerts service as a child process, killed with SIGKILL while alerts
 * fire, more alerts POSTed while it is down, started again: its state holds every alert, nothing flaps, and until it
 * is ready it says so (never an empty state).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DeliverPolicy } from "@nats-io/jetstream";
import { decode } from "../../../pipelines/codec.ts";
import { AlertsList } from "../../../pipelines/contracts/alerts.ts";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { HealthDelta, HealthState, type ImpactEntry } from "../../../pipelines/contracts/health.ts";
import { WsFrame, type TopoEdge, type TopoNode } from "../../../pipelines/contracts/topology.ts";
import { applyDelta, emptyMirror } from "../../../pipelines/stages/apply-delta.ts";
import { AlertRules } from "../../../pipelines/stages/alerts/mapping.ts";
import { edgeId } from "../../../pipelines/stages/topology/ids.ts";
import { startGatewayServer } from "../../../services/gateway/http.ts";
// ORRERY_AUTH=off explicitly: these tests are not about who may pass (test/integration/identity/ is)
import { ingestAuthOff, openGate } from "../../../services/identity/client.ts";
import { startHealthOverlay, type HealthOverlay } from "../../../services/gateway/health.ts";
import { startMirror, type TopologyMirror } from "../../../services/topology/client.ts";
import { graphRoutes } from "../../../services/gateway/routes/graph.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { ClickHouseHistoryStore } from "../../../services/history/clickhouse.ts";
import { ClickHouseAlertHistory } from "../../../services/alerts/history.ts";
import { alertPublisher } from "../../../services/alerts/publish.ts";
import { alertEntitiesOf, fetchHealthState } from "../../../services/alerts/client.ts";
import { alertRoutes } from "../../../services/gateway/routes/alerts.ts";
import { mirrorView, startAlertsService, type AlertsService } from "../../../services/alerts/service.ts";
import { alertSubjects } from "../../../pipelines/streams.ts";
import { startIngestServer } from "../../../services/ingest/server.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startTopologyService, type TopologyService } from "../../../services/topology/service.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const log = makeLogger("test", true);
const tmp = tempDir("orrery-impact-");

let nats: NatsServer;
let owner: TestClickHouse;

beforeAll(async () => {
  nats = await startNats();
  owner = await startClickHouse(join(tmp.dir, "ch"));
}, 60_000);

afterAll(async () => {
  await owner?.stop();
  await nats?.stop();
  tmp.cleanup();
});

const proc = (pid: number, comm: string) => ({ pid, exe: `/usr/bin/${comm}`, comm, cmdline: [comm], user: "app", uid: 1000, startTime: 7, containerId: null });
const hostSeen = (host: string, ip: string) => ({ type: "host.seen" as const, hostname: host, os: "Debian", kernel: "6.1", cpus: 2, memTotalBytes: 1e9, ips: [ip] });

/** The estate: web1 nginx (:443) → app1 orders (:8080) → db1 postgres (:5432), each call seen in two scans. */
async function publishEstate(bus: Bus) {
  const scan = async (host: string, scanId: number, events: DiscoveryBatch["events"]) =>
    publishEvent(bus, bus.topo.subjects.discovery(host), DiscoveryBatch, "discovery.v1", { schema: "discovery.v1", source: `agent:${host}`, host, scanId, part: 0, parts: 1, full: false, at: Date.now(), events }, `${host}:${scanId}`);
  for (const scanId of [1, 2]) {
    await scan("db1", scanId, [hostSeen("db1", "10.0.0.5"), { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 5432, process: proc(10, "postgres") }]);
    await scan("app1", scanId, [
      hostSeen("app1", "10.0.0.6"),
      { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 8080, process: proc(20, "orders") },
      { type: "connection.seen", proto: "tcp", localIp: "10.0.0.6", localPort: 41000, remoteIp: "10.0.0.5", remotePort: 5432, process: proc(20, "orders") },
    ]);
    await scan("web1", scanId, [
      hostSeen("web1", "10.0.0.7"),
      { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 443, process: proc(30, "nginx") },
      { type: "connection.seen", proto: "tcp", localIp: "10.0.0.7", localPort: 42000, remoteIp: "10.0.0.6", remotePort: 8080, process: proc(30, "nginx") },
    ]);
  }
}

const DB_L = "listener:db1:tcp:0.0.0.0:5432";
const ORDERS = "service:app1:orders:8080";
const APP_L = "listener:app1:tcp:0.0.0.0:8080";
const NGINX = "service:web1:nginx:443";
const WEB_L = "listener:web1:tcp:0.0.0.0:443";
const DB_EDGE = edgeId("CONNECTS", ORDERS, DB_L);

const hopsOf = (impact: ImpactEntry[]) => Object.fromEntries(impact.map((e) => [e.id, e.hops]));

async function post(url: string, body: unknown) {
  const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  expect(r.status).toBe(202);
}

/** Every health.delta.v1 in the HEALTH stream, in order. */
async function storedDeltas(bus: Bus): Promise<HealthDelta[]> {
  const s = alertSubjects(bus.topo).healthStream;
  const info = await bus.jsm.streams.info(s.name);
  if (!info.state.messages) return [];
  const c = await bus.js.consumers.get(s.name, { deliver_policy: DeliverPolicy.All });
  const out: HealthDelta[] = [];
  while (out.length < info.state.messages) {
    const m = await c.next({ expires: 2000 });
    if (!m) break;
    out.push(decode(HealthDelta, "health.delta.v1", m.data));
  }
  return out;
}

describe("impact published on health change", () => {
  let bus: Bus;
  let store: KuzuGraphStore;
  let topo: TopologyService;
  let mirror: TopologyMirror;
  let alerts: AlertsService;
  let overlay: HealthOverlay;
  let ingest: ReturnType<typeof startIngestServer>;
  let gateway: ReturnType<typeof startGatewayServer>;
  let history: ClickHouseAlertHistory;
  let topoHistory: ClickHouseHistoryStore;
  const db = uniquePrefix("imp").replace(/-/g, "_");

  beforeAll(async () => {
    bus = await connectBus({ url: nats.url, prefix: uniquePrefix("imp"), name: "test" });
    store = new KuzuGraphStore(join(tmp.dir, "kuzu-impact"));
    topo = await startTopologyService({ bus, store, log });
    await publishEstate(bus);
    mirror = await startMirror(bus, log);
    await waitFor(() => mirror.synced() && mirror.mirror().edges.has(DB_EDGE) && mirror.mirror().edges.has(edgeId("CONNECTS", NGINX, APP_L)), "the estate's calls in the mirror", 30_000);
    history = new ClickHouseAlertHistory(owner.client(), { database: db, ttlDays: 7 });
    alerts = await startAlertsService({ bus, topology: mirrorView(mirror), rules: AlertRules.parse({}), history, log, tickMs: 200 });
    overlay = startHealthOverlay(bus, log, { retryMs: 200 });
    ingest = startIngestServer({ auth: ingestAuthOff(), publishAlerts: alertPublisher(bus), log, host: "127.0.0.1", port: 0 });
    topoHistory = new ClickHouseHistoryStore(owner.client(), { database: db, ttlDays: 7 });
    mkdirSync(join(tmp.dir, "dist"), { recursive: true });
    gateway = startGatewayServer({
      auth: openGate(),
      bus,
      mirror,
      log,
      host: "127.0.0.1",
      port: 0,
      dashboardDir: join(tmp.dir, "dist"),
      health: overlay,
      extraRoutes: { ...alertRoutes(bus), ...graphRoutes({ mirror, history: topoHistory, log, alertEntities: alertEntitiesOf(bus) }) },
    });
    await waitFor(() => overlay.synced(), "gateway health overlay synced");
  }, 90_000);

  afterAll(async () => {
    await gateway?.stop(true);
    await ingest?.stop(true);
    overlay?.stop();
    await alerts?.stop();
    await mirror?.stop();
    await topo?.stop();
    await store?.close();
    await history?.close();
    await topoHistory?.close();
    await bus?.close();
  });

  /** A browser: the frames the gateway sends it, validated as the dashboard does. */
  function browser() {
    const frames: WsFrame[] = [];
    const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}/ws`);
    ws.onmessage = (ev) => frames.push(WsFrame.parse(JSON.parse(String(ev.data))));
    return { frames, close: () => ws.close(), open: () => waitFor(() => frames.some((f) => f.schema === "topology.snapshot.v1"), "snapshot on the socket") };
  }

  test("an alert on the db listener → impact lists its callers with hops, the call into it is critical; resolve → cleared", async () => {
    const a = browser();
    await a.open();
    const ingestUrl = `http://127.0.0.1:${ingest.port}/api/alerts/generic`;
    await post(ingestUrl, { fingerprint: "pg-down", severity: "critical", summary: "postgres refuses connections", target: { host: "db1", service: "PostgreSQL" } });

    // on JetStream, for ITSM subscribers
    const fired = await waitFor(async () => (await storedDeltas(bus)).find((d) => d.impact.some((e) => e.id === ORDERS)), "impact delta on the HEALTH stream");
    expect(fired.entities).toEqual([{ id: DB_L, health: "critical", alerts: ["pg-down"] }]);
    expect(hopsOf(fired.impact)).toEqual({ [ORDERS]: 1, [APP_L]: 2, [NGINX]: 3, [WEB_L]: 4 });
    expect(fired.impact.find((e) => e.id === NGINX)).toEqual({ id: NGINX, health: "critical", hops: 3, causes: [{ id: DB_L, health: "critical", hops: 3 }], causesTotal: 1 });
    expect(fired.edges).toEqual([{ id: DB_EDGE, src: ORDERS, dst: DB_L, health: "critical", cause: DB_L }]);

    // the same delta reached the connected browser
    const live = await waitFor(() => a.frames.find((f): f is HealthDelta => f.schema === "health.delta.v1" && f.seq === fired.seq), "impact delta on the WebSocket");
    expect(hopsOf(live.impact)).toEqual(hopsOf(fired.impact));
    // a browser that connects now gets it in the full state, right after the snapshot
    const b = browser();
    await b.open();
    const state = await waitFor(() => b.frames.find((f): f is HealthState => f.schema === "health.state.v1"), "health state for a new browser");
    expect(b.frames[0]!.schema).toBe("topology.snapshot.v1");
    expect(hopsOf(state.impact)).toEqual({ [ORDERS]: 1, [APP_L]: 2, [NGINX]: 3, [WEB_L]: 4 });
    expect(state.edges.map((e) => e.id)).toEqual([DB_EDGE]);
    b.close();

    // impact by alert
    const r = await fetch(`http://127.0.0.1:${gateway.port}/api/impact?alert=pg-down&direction=up`);
    expect(r.status).toBe(200);
    const body = (await r.json()) as { roots: string[]; upstream: { id: string; hops: number }[]; alerts: Record<string, string[]> };
    expect(body.roots).toEqual([DB_L]);
    expect(body.alerts).toEqual({ "pg-down": [DB_L] });
    expect(hopsOf(body.upstream as ImpactEntry[])).toEqual({ [ORDERS]: 1, [APP_L]: 2, [NGINX]: 3, [WEB_L]: 4 });
    expect((await fetch(`http://127.0.0.1:${gateway.port}/api/impact?alert=nope`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${gateway.port}/api/impact`)).status).toBe(400);

    // the topology moves under a standing alert: a new caller of the database is impacted as soon as its call counts
    for (const scanId of [3, 4]) {
      await publishEvent(bus, bus.topo.subjects.discovery("app1"), DiscoveryBatch, "discovery.v1", {
        schema: "discovery.v1", source: "agent:app1", host: "app1", scanId, part: 0, parts: 1, full: false, at: Date.now(),
        events: [{ type: "connection.seen", proto: "tcp", localIp: "10.0.0.6", localPort: 43000, remoteIp: "10.0.0.5", remotePort: 5432, process: proc(40, "reports") }],
      }, `app1:${scanId}`);
    }
    const REPORTS = "service:app1:reports:client";
    const moved = await waitFor(() => a.frames.find((f): f is HealthDelta => f.schema === "health.delta.v1" && f.impact.some((e) => e.id === REPORTS)), "impact of a new caller");
    expect(moved.impact.find((e) => e.id === REPORTS)).toMatchObject({ hops: 1, causes: [{ id: DB_L, hops: 1 }] });
    expect(moved.edges.map((e) => e.id)).toEqual([edgeId("CONNECTS", REPORTS, DB_L)]);

    // resolved: impact and edge state are cleared, on the stream and on the socket
    const seenBefore = a.frames.length;
    await post(ingestUrl, { fingerprint: "pg-down", state: "resolved", severity: "ok", target: { host: "db1", service: "PostgreSQL" } });
    const cleared = await waitFor(() => a.frames.slice(seenBefore).find((f): f is HealthDelta => f.schema === "health.delta.v1" && f.impactCleared.length > 0), "impact cleared");
    expect(cleared.entities).toEqual([{ id: DB_L, health: "ok", alerts: [] }]);
    expect(cleared.impactCleared.sort()).toEqual([APP_L, NGINX, REPORTS, ORDERS, WEB_L].sort());
    expect(cleared.edgesCleared.sort()).toEqual([DB_EDGE, edgeId("CONNECTS", REPORTS, DB_L)].sort());
    expect(cleared.impact).toEqual([]);
    const after = HealthState.parse(await (await fetch(`http://127.0.0.1:${gateway.port}/api/health`)).json());
    expect(after.impact).toEqual([]);
    expect(after.edges).toEqual([]);
    expect(after.entities).toEqual([]);
    // the stored deltas are numbered without gaps
    const seqs = (await storedDeltas(bus)).map((d) => d.seq);
    expect(seqs.length).toBeGreaterThanOrEqual(3);
    expect(seqs.slice(1).every((s, i) => s === seqs[i]! + 1)).toBe(true);
    a.close();
  }, 90_000);
});

describe("a large blast radius", () => {
  test("8000 callers of a failing listener: the health state is answered in parts and read back whole", async () => {
    const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("big"), name: "test" });
    const history = new ClickHouseAlertHistory(owner.client(), { database: uniquePrefix("big").replace(/-/g, "_"), ttlDays: 7 });
    const m = emptyMirror();
    const n = (id: string, kind: TopoNode["kind"], props: TopoNode["props"] = {}): TopoNode => ({ id, kind, name: id, source: "test", props, firstSeen: 1, lastSeen: 1 });
    const e = (kind: TopoEdge["kind"], src: string, dst: string): TopoEdge => ({ id: edgeId(kind, src, dst), kind, src, dst, source: "test", props: {}, firstSeen: 1, lastSeen: 1 });
    const L = "listener:db9:tcp:0.0.0.0:5432";
    const nodes = [n("host:db9", "host", { hostname: "db9" }), n(L, "listener", { host: "db9", port: 5432, proto: "tcp", ip: "0.0.0.0" })];
    const edges: TopoEdge[] = [];
    for (let i = 0; i < 8000; i++) {
      nodes.push(n(`service:client${i}:worker-with-a-long-name:client`, "process", { host: `client${i}` }));
      edges.push(e("CONNECTS", `service:client${i}:worker-with-a-long-name:client`, L));
    }
    applyDelta(m, { rev: 1, nodesUpserted: nodes, nodesRemoved: [], edgesUpserted: edges, edgesRemoved: [] });
    const alerts = await startAlertsService({
      bus,
      topology: { synced: () => true, rev: () => m.rev, nodes: () => m.nodes.values(), mirror: () => m },
      rules: AlertRules.parse({}),
      history,
      log,
      tickMs: 200,
    });
    try {
      await alertPublisher(bus)([
        { id: "big-1", source: "generic", fingerprint: "db9-down", severity: "critical", state: "firing", summary: "", labels: {}, target: { host: "db9", service: "PostgreSQL" }, startsAt: Date.now(), endsAt: null, at: Date.now() },
      ]);
      const state = await waitFor(async () => {
        const s = await fetchHealthState(bus);
        return "schema" in s && s.impact.length === 8000 ? s : null;
      }, "the whole impact in the state", 30_000, 250);
      expect(state.entities).toEqual([{ id: L, health: "critical", alerts: ["db9-down"] }]);
      expect(new Set(state.impact.map((i) => i.id)).size).toBe(8000);
      expect(state.impact.every((i) => i.hops === 1 && i.causes[0]!.id === L)).toBe(true);
      expect(state.edges.length).toBe(8000);
      // it does not fit one message: a reader that cannot take parts is told why
      const single = await bus.nc.request(alertSubjects(bus.topo).rpc, new TextEncoder().encode(JSON.stringify({ op: "health" })), { timeout: 5000 });
      expect(JSON.parse(new TextDecoder().decode(single.data)).error).toContain("parts: true");
      // and the deltas that carried it were split to fit too, in consecutive seqs
      const stored = await waitFor(async () => {
        const all = await storedDeltas(bus);
        return all.flatMap((d) => d.impact).length === 8000 ? all : null;
      }, "every impact entry on the HEALTH stream");
      expect(stored.length).toBeGreaterThan(1);
      expect(stored.every((d) => d.impact.length + d.edges.length + d.entities.length <= 2000)).toBe(true);
      expect(stored.every((d, i) => i === 0 || d.seq === stored[i - 1]!.seq + 1)).toBe(true);
    } finally {
      await alerts.stop();
      await history.close();
      await bus.close();
    }
  }, 60_000);
});
