/**
 * Restart safety of the alerts service, as a child process (services/alerts/main.ts) against real nats-server, the
 * real topology service (Kuzu) and the chDB owner: alerts fire (one of them changing state every 2.2 s — never
 * flapping live, with a 4 s / 2-change flap window); the service is killed with SIGKILL; more alerts are POSTed to
 * the ingest while it is down; it starts again. While it replays it answers not_ready (never a partial or empty state);
 * once ready its state holds every alert, its impact, and nothing is flapping. A gateway-like health overlay never
 * loses what it showed.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { AlertsList, type AlertsQuery } from "../../../pipelines/contracts/alerts.ts";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { HealthState, NotReady } from "../../../pipelines/contracts/health.ts";
import { alertPublisher } from "../../../services/alerts/publish.ts";
import { alertSubjects } from "../../../pipelines/streams.ts";
import { startHealthOverlay, type HealthOverlay } from "../../../services/gateway/health.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { startIngestServer } from "../../../services/ingest/server.ts";
// ORRERY_AUTH=off explicitly: these tests are not about who may pass (test/integration/identity/ is)
import { ingestAuthOff } from "../../../services/identity/client.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startTopologyService, type TopologyService } from "../../../services/topology/service.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { spawnUntilReady } from "../../helpers/process.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";
import { z } from "zod";

const ROOT = resolve(import.meta.dir, "../../..");
const log = makeLogger("test", true);
const tmp = tempDir("orrery-alerts-restart-");
const prefix = uniquePrefix("arst");

let nats: NatsServer;
let owner: TestClickHouse;
let bus: Bus;
let store: KuzuGraphStore;
let topo: TopologyService;
let ingest: ReturnType<typeof startIngestServer>;
let overlay: HealthOverlay;
let child: Subprocess | null = null;

/** The alerts service as `npm run demo` runs it; resolves once it printed its ready line (replay done). */
async function startAlertsChild(): Promise<Subprocess> {
  const { proc } = await spawnUntilReady([process.execPath, "services/alerts/main.ts"], {
    cwd: ROOT,
    env: {
      ...process.env,
      NATS_URL: nats.url,
      ORRERY_PREFIX: prefix,
      CLICKHOUSE_URL: owner.url,
      CLICKHOUSE_DATABASE: prefix.replace(/-/g, "_"),
      ORRERY_LOG_QUIET: "1",
      ORRERY_ALERT_FLAP_WINDOW_S: "4",
      ORRERY_ALERT_FLAP_THRESHOLD: "2",
    },
    ready: /"event":"ready"/,
    timeoutMs: 60_000,
    name: "the alerts service",
  });
  return proc;
}

const Reply = z.union([HealthState, NotReady, AlertsList]);
async function ask(q: AlertsQuery) {
  const r = await bus.nc.request(alertSubjects(bus.topo).rpc, new TextEncoder().encode(JSON.stringify(q)), { timeout: 3000 });
  return Reply.parse(JSON.parse(new TextDecoder().decode(r.data)));
}

const proc = (pid: number, comm: string) => ({ pid, exe: `/usr/bin/${comm}`, comm, cmdline: [comm], user: "app", uid: 1000, startTime: 7, containerId: null });
const hostSeen = (host: string, ip: string) => ({ type: "host.seen" as const, hostname: host, os: "Debian", kernel: "6.1", cpus: 2, memTotalBytes: 1e9, ips: [ip] });

beforeAll(async () => {
  nats = await startNats();
  owner = await startClickHouse(join(tmp.dir, "ch"));
  bus = await connectBus({ url: nats.url, prefix, name: "test" });
  store = new KuzuGraphStore(join(tmp.dir, "kuzu"));
  topo = await startTopologyService({ bus, store, log });
  const scan = (host: string, scanId: number, events: DiscoveryBatch["events"]) =>
    publishEvent(bus, bus.topo.subjects.discovery(host), DiscoveryBatch, "discovery.v1", { schema: "discovery.v1", source: `agent:${host}`, host, scanId, part: 0, parts: 1, full: false, at: Date.now(), events }, `${host}:${scanId}`);
  for (const scanId of [1, 2]) {
    await scan("db1", scanId, [hostSeen("db1", "10.0.0.5"), { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 5432, process: proc(10, "postgres") }]);
    await scan("app1", scanId, [
      hostSeen("app1", "10.0.0.6"),
      { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 8080, process: proc(20, "orders") },
      { type: "connection.seen", proto: "tcp", localIp: "10.0.0.6", localPort: 41000, remoteIp: "10.0.0.5", remotePort: 5432, process: proc(20, "orders") },
    ]);
    await scan("web1", scanId, [hostSeen("web1", "10.0.0.7")]);
  }
  await waitFor(() => topo.rev() >= 2, "estate in the topology");
  ingest = startIngestServer({ auth: ingestAuthOff(), publishAlerts: alertPublisher(bus), log, host: "127.0.0.1", port: 0 });
  overlay = startHealthOverlay(bus, log, { retryMs: 100 });
}, 90_000);

afterAll(async () => {
  child?.kill("SIGKILL");
  await child?.exited;
  overlay?.stop();
  await ingest?.stop(true);
  await topo?.stop();
  await store?.close();
  await bus?.close();
  await owner?.stop();
  await nats?.stop();
  tmp.cleanup();
});

const DB_L = "listener:db1:tcp:0.0.0.0:5432";
const ORDERS = "service:app1:orders:8080";

async function post(body: unknown) {
  const r = await fetch(`http://127.0.0.1:${ingest.port}/api/alerts/generic`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  expect(r.status).toBe(202);
}

test("kill -9 with firing alerts, more alerts while down, restart → every alert in the state, impact kept, nothing flapping, never an empty state", async () => {
  child = await startAlertsChild();
  const frames: HealthState[] = [];
  overlay.onFrame((f) => {
    if (f.schema === "health.state.v1") frames.push(f);
  });

  await post({ fingerprint: "pg-down", severity: "critical", target: { host: "db1", service: "PostgreSQL" } });
  // one alert that changes state twice, 2.2 s apart: with 2 changes in 4 s being flapping, it never flaps live
  const states = ["firing", "resolved", "firing"] as const;
  for (const [i, state] of states.entries()) {
    if (i) await Bun.sleep(2200);
    await post({ fingerprint: "orders-slow", state, severity: state === "firing" ? "warning" : "ok", target: { host: "app1", service: "orders" } });
  }
  const before = await waitFor(async () => {
    const s = await ask({ op: "health" });
    return "schema" in s && s.entities.some((e) => e.id === DB_L) && s.entities.some((e) => e.id === ORDERS && e.health === "warning") ? s : null;
  }, "both alerts in the health state");
  expect(before.impact.find((e) => e.id === ORDERS)).toMatchObject({ hops: 1, causes: [{ id: DB_L, hops: 1 }] });
  const live = await ask({ op: "list", limit: 100 });
  expect("alerts" in live && live.alerts.map((a) => [a.fingerprint, a.flapping]).sort()).toEqual([["orders-slow", false], ["pg-down", false]]);
  await waitFor(() => overlay.synced() && overlay.state().entities.some((e) => e.id === DB_L), "the overlay shows the db alert");

  // SIGKILL: no shutdown hook runs
  child.kill("SIGKILL");
  await child.exited;
  child = null;
  // while it is down, more alerts arrive (stored by JetStream, answered 202 by the ingest)
  await post({ fingerprint: "web1-disk", severity: "warning", target: { host: "web1", service: "Disk /var" } });
  await post({ fingerprint: "pg-replication", severity: "critical", target: { host: "db1", service: "check_tcp!5432" } });
  expect("error" in (await ask({ op: "health" }).catch((e) => ({ error: String(e) })))).toBe(true); // nobody answers

  const restarting = startAlertsChild();
  // poll while it starts: every answer is not_ready or the complete state, never a partial one
  const answers: ("not_ready" | "complete" | "partial")[] = [];
  const partials: unknown[] = [];
  const wanted = ["pg-down", "orders-slow", "web1-disk", "pg-replication"];
  let done = false;
  const poll = (async () => {
    while (!done) {
      const r = await ask({ op: "health" }).catch(() => null);
      if (r && "code" in r) answers.push("not_ready");
      else if (r && "schema" in r) {
        const fps = new Set(r.entities.flatMap((e) => e.alerts));
        const missing = wanted.filter((f) => !fps.has(f));
        answers.push(missing.length ? "partial" : "complete");
        // what a partial answer lacked, and when it came relative to the ready line, for the failure message
        if (missing.length) partials.push({ missing, at: Date.now(), entities: r.entities.map((e) => [e.id, e.health, e.alerts]) });
      }
      await Bun.sleep(20);
    }
  })();
  child = await restarting;
  const after = await waitFor(async () => {
    const s = await ask({ op: "health" });
    return "schema" in s ? s : null;
  }, "health state after the restart");
  done = true;
  await poll;
  expect(partials).toEqual([]);
  expect(Object.fromEntries(after.entities.map((e) => [e.id, [e.health, e.alerts]]))).toEqual({
    [DB_L]: ["critical", ["pg-down", "pg-replication"]],
    [ORDERS]: ["warning", ["orders-slow"]],
    "host:web1": ["warning", ["web1-disk"]],
  });
  expect(after.impact.find((e) => e.id === ORDERS)).toMatchObject({ hops: 1, causes: [{ id: DB_L, hops: 1 }] });
  expect(after.edges.map((e) => [e.dst, e.health])).toEqual([[DB_L, "critical"]]);

  // replayed at the times JetStream stored them: the two 2.2 s-apart changes are not a burst (folded at "now" they
  // would be two changes within the window: flapping, and damped for 4 s)
  const list = await ask({ op: "list", limit: 100 });
  if (!("alerts" in list)) throw new Error(`list: ${JSON.stringify(list)}`);
  expect(list.alerts.map((a) => [a.fingerprint, a.state, a.flapping]).sort()).toEqual([
    ["orders-slow", "firing", false],
    ["pg-down", "firing", false],
    ["pg-replication", "firing", false],
    ["web1-disk", "firing", false],
  ]);

  // the gateway-side overlay picks the new state up (a jump in seq) and never showed the db alert gone
  await waitFor(() => overlay.synced() && overlay.state().entities.some((e) => e.id === "host:web1"), "overlay has the alerts that arrived while the service was down");
  const firstWithDb = frames.findIndex((f) => f.entities.some((e) => e.id === DB_L));
  expect(firstWithDb).toBeGreaterThanOrEqual(0);
  expect(frames.slice(firstWithDb).every((f) => f.entities.some((e) => e.id === DB_L))).toBe(true);
}, 120_000);
