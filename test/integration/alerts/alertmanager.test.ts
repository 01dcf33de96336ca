/**
 * A real Alertmanager (Debian's prometheus-alertmanager) posting its webhook to the ingest service:
 * alerts POSTed to Alertmanager's API as Prometheus would → webhook → ingest → JetStream (alert.v1) → alerts service
 * → mapped onto a topology built by the real topology service (Kuzu) → health deltas (critical, then ok), history in
 * ClickHouse (the chDB owner as a child process), current/unmapped alerts over the routes module.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { DeliverPolicy } from "@nats-io/jetstream";
import type { Subprocess } from "bun";
import { decode } from "../../../pipelines/codec.ts";
import { AlertBatch, AlertsList, RejectedAlerts, type Alert } from "../../../pipelines/contracts/alerts.ts";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { HealthDelta, HealthState } from "../../../pipelines/contracts/health.ts";
import { AlertRules } from "../../../pipelines/stages/alerts/mapping.ts";
import { startMirror, type TopologyMirror } from "../../../services/topology/client.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { ClickHouseAlertHistory } from "../../../services/alerts/history.ts";
import { alertPublisher } from "../../../services/alerts/publish.ts";
import { alertRoutes } from "../../../services/gateway/routes/alerts.ts";
import { mirrorView, startAlertsService, type AlertsService } from "../../../services/alerts/service.ts";
import { alertSubjects } from "../../../pipelines/streams.ts";
import { startIngestServer } from "../../../services/ingest/server.ts";
// ORRERY_AUTH=off explicitly: these tests are not about who may pass (test/integration/identity/ is)
import { ingestAuthOff } from "../../../services/identity/client.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startTopologyService, type TopologyService } from "../../../services/topology/service.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const AM_BIN = "/usr/bin/prometheus-alertmanager";
const log = makeLogger("test", true);
const tmp = tempDir("orrery-am-");
const db = uniquePrefix("am").replace(/-/g, "_");

let nats: NatsServer;
let bus: Bus;
let store: KuzuGraphStore;
let topo: TopologyService;
let mirror: TopologyMirror;
let owner: TestClickHouse;
let history: ClickHouseAlertHistory;
let alerts: AlertsService;
let ingest: ReturnType<typeof startIngestServer>;
let am: Subprocess;
let amUrl: string;
const deltas: HealthDelta[] = [];

async function freePort(): Promise<number> {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const p = s.port!;
  await s.stop(true);
  return p;
}

const proc = (pid: number, comm: string) => ({ pid, exe: `/usr/lib/postgresql/15/bin/${comm}`, comm, cmdline: [comm], user: "postgres", uid: 110, startTime: 7, containerId: null });

beforeAll(async () => {
  nats = await startNats();
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("am"), name: "test" });
  store = new KuzuGraphStore(join(tmp.dir, "kuzu"));
  topo = await startTopologyService({ bus, store, log });
  // the estate: db1 (10.0.0.5) runs postgres on 5432
  await publishEvent(bus, bus.topo.subjects.discovery("db1"), DiscoveryBatch, "discovery.v1", {
    schema: "discovery.v1", source: "agent:db1", host: "db1", scanId: 1, part: 0, parts: 1, full: false, at: Date.now(),
    events: [
      { type: "host.seen", hostname: "db1", os: "Debian", kernel: "6.1", cpus: 2, memTotalBytes: 1e9, ips: ["10.0.0.5"] },
      { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 5432, process: proc(4242, "postgres") },
    ],
  }, "db1:1");
  mirror = await startMirror(bus, log);
  await waitFor(() => mirror.synced() && mirror.mirror().nodes.has("listener:db1:tcp:0.0.0.0:5432"), "topology mirror with db1's listener");

  owner = await startClickHouse(join(tmp.dir, "ch"));
  history = new ClickHouseAlertHistory(owner.client(), { database: db, ttlDays: 7 });
  alerts = await startAlertsService({ bus, topology: mirrorView(mirror), rules: AlertRules.parse({}), history, log, tickMs: 200 });
  bus.nc.subscribe(alertSubjects(bus.topo).health, { callback: (_e, m) => void deltas.push(decode(HealthDelta, "health.delta.v1", m.data)) });
  ingest = startIngestServer({ auth: ingestAuthOff(), publishAlerts: alertPublisher(bus), log, host: "127.0.0.1", port: 0, extraRoutes: alertRoutes(bus) });

  const amPort = await freePort();
  amUrl = `http://127.0.0.1:${amPort}`;
  mkdirSync(join(tmp.dir, "am"));
  writeFileSync(
    join(tmp.dir, "am", "alertmanager.yml"),
    [
      "route:",
      "  receiver: orrery",
      "  group_by: ['alertname', 'instance']",
      "  group_wait: 0s",
      "  group_interval: 1s",
      "  repeat_interval: 1h",
      "receivers:",
      "  - name: orrery",
      "    webhook_configs:",
      `      - url: http://127.0.0.1:${ingest.port}/api/alerts/alertmanager`,
      "        send_resolved: true",
      "",
    ].join("\n"),
  );
  am = Bun.spawn(
    [AM_BIN, `--config.file=${join(tmp.dir, "am", "alertmanager.yml")}`, `--storage.path=${join(tmp.dir, "am", "data")}`, `--web.listen-address=127.0.0.1:${amPort}`, "--cluster.listen-address="],
    { stdout: "ignore", stderr: "pipe" },
  );
  await waitFor(async () => (await fetch(`${amUrl}/-/ready`)).ok, "alertmanager ready", 20_000, 200);
}, 120_000);

afterAll(async () => {
  am?.kill("SIGTERM");
  await am?.exited;
  await ingest?.stop(true);
  await alerts?.stop();
  await mirror?.stop();
  await topo?.stop();
  await store?.close();
  await history?.close();
  await owner?.stop();
  await bus?.close();
  await nats?.stop();
  tmp.cleanup();
});

/** What a Prometheus server sends to Alertmanager's API (endsAt in the future while firing, in the past to resolve). */
const prometheusAlert = (labels: Record<string, string>, startsAt: number, endsAt: number) => ({
  labels,
  annotations: { summary: `${labels.alertname} on ${labels.instance}` },
  startsAt: new Date(startsAt).toISOString(),
  endsAt: new Date(endsAt).toISOString(),
  generatorURL: "http://prometheus:9090/graph?g0.expr=pg_up+%3D%3D+0",
});
const postToAlertmanager = async (body: unknown) => {
  const r = await fetch(`${amUrl}/api/v2/alerts`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  expect(r.status).toBe(200);
};

async function streamAlerts(): Promise<Alert[]> {
  const c = await bus.js.consumers.get(bus.topo.streams.alerts.name, { deliver_policy: DeliverPolicy.All });
  const info = await bus.jsm.streams.info(bus.topo.streams.alerts.name);
  const out: Alert[] = [];
  if (!info.state.messages) return out;
  const msgs = await c.fetch({ max_messages: info.state.messages, expires: 2000 });
  for await (const m of msgs) {
    out.push(...decode(AlertBatch, "alert.v1", m.data).alerts);
    if (m.info.pending === 0) break;
  }
  return out;
}

const LISTENERS = ["listener:db1:tcp:0.0.0.0:5432"];

test("Alertmanager firing → JetStream → mapped to db1's postgres listener → critical; resolved → ok; history in ClickHouse", async () => {
  const t0 = Date.now() - 60_000;
  const pg = { alertname: "PostgresDown", instance: "10.0.0.5:9187", job: "postgres", severity: "critical" };
  const ghost = { alertname: "DiskFull", instance: "ghost-host:9100", job: "node", severity: "warning" };
  await postToAlertmanager([prometheusAlert(pg, t0, Date.now() + 5 * 60_000), prometheusAlert(ghost, t0, Date.now() + 5 * 60_000)]);

  // normalized on the stream
  const firing = await waitFor(async () => (await streamAlerts()).find((a) => a.labels.alertname === "PostgresDown" && a.state === "firing"), "firing alert on JetStream", 20_000, 250);
  expect(firing).toMatchObject({ source: "alertmanager", severity: "critical", target: { address: "10.0.0.5", port: 9187, service: "PostgresDown" }, endsAt: null });
  expect(firing.fingerprint).toMatch(/^alertmanager:[0-9a-f]+$/);

  // mapped and coloured
  const crit = await waitFor(() => deltas.flatMap((d) => d.entities).find((e) => e.id === LISTENERS[0] && e.health === "critical"), "critical health delta");
  expect(crit.alerts).toEqual([firing.fingerprint]);
  const list = AlertsList.parse(await (await fetch(`http://127.0.0.1:${ingest.port}/api/alerts?entity=${encodeURIComponent(LISTENERS[0]!)}`)).json());
  expect(list.alerts.map((a) => ({ fp: a.fingerprint, state: a.state, via: a.via, entities: a.entities }))).toEqual([
    { fp: firing.fingerprint, state: "firing", via: "rule:postgresql", entities: LISTENERS },
  ]);
  // a host nobody discovered: kept and listed, not dropped
  const unmapped = await waitFor(async () => {
    const u = AlertsList.parse(await (await fetch(`http://127.0.0.1:${ingest.port}/api/alerts/unmapped`)).json());
    return u.alerts.find((a) => a.labels.alertname === "DiskFull");
  }, "unmapped alert listed");
  expect(unmapped).toMatchObject({ target: { host: "ghost-host", port: 9100 }, entities: [], severity: "warning" });

  // a restarted alerts service rebuilds its state from the stream (nothing acked is lost)
  await alerts.stop();
  alerts = await startAlertsService({ bus, topology: mirrorView(mirror), rules: AlertRules.parse({}), history, log, tickMs: 200 });
  const health = await waitFor(async () => {
    const h = HealthState.parse(await (await fetch(`http://127.0.0.1:${ingest.port}/api/health`)).json());
    return h.entities.find((e) => e.id === LISTENERS[0] && e.health === "critical");
  }, "health after restart");
  expect(health.alerts).toEqual([firing.fingerprint]);

  // resolve as Prometheus does: the same alert with endsAt in the past
  const seenBefore = deltas.length;
  await postToAlertmanager([prometheusAlert(pg, t0, Date.now() - 1000)]);
  const resolved = await waitFor(async () => (await streamAlerts()).find((a) => a.fingerprint === firing.fingerprint && a.state === "resolved"), "resolved alert on JetStream", 20_000, 250);
  expect(resolved.endsAt).toBeGreaterThan(t0);
  const ok = await waitFor(() => deltas.slice(seenBefore).flatMap((d) => d.entities).find((e) => e.id === LISTENERS[0] && e.health === "ok"), "ok health delta");
  expect(ok.alerts).toEqual([]);
  // deltas are numbered, increasing across the restart
  const seqs = deltas.map((d) => d.seq);
  expect(seqs.slice(1).every((s, i) => s > seqs[i]!)).toBe(true);

  const ch = owner.client();
  const rows = await waitFor(async () => {
    const r = await (await ch.query({ query: `SELECT state, entities FROM ${db}.alerts_history WHERE fingerprint = {fp:String} ORDER BY at`, query_params: { fp: firing.fingerprint }, format: "JSONEachRow" })).json<{ state: string; entities: string[] }>();
    return r.some((x) => x.state === "resolved") ? r : null;
  }, "history rows");
  expect(rows.map((r) => r.state)).toEqual(["firing", "resolved"]);
  expect(rows.every((r) => r.entities.join() === LISTENERS.join())).toBe(true);
  await ch.close();
}, 90_000);

test("unknown sources and malformed webhooks are refused with the reason; nothing is published", async () => {
  const before = (await bus.jsm.streams.info(bus.topo.streams.alerts.name)).state.messages;
  const post = (path: string, body: string) => fetch(`http://127.0.0.1:${ingest.port}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body });
  const unknown = await post("/api/alerts/zabbix", "{}");
  expect(unknown.status).toBe(404);
  expect((await unknown.json()).error).toContain('unknown alert source "zabbix"');
  const notJson = await post("/api/alerts/alertmanager", "{nope");
  expect(notJson.status).toBe(400);
  expect((await notJson.json()).error).toMatch(/^body is not JSON/);
  const wrong = await post("/api/alerts/alertmanager", JSON.stringify({ version: "4", status: "firing", alerts: [{ status: "firing" }] }));
  expect(wrong.status).toBe(400);
  expect((await wrong.json()).error).toMatch(/alertmanager webhook: .*groupKey.*|alerts\.0\.labels/);
  const generic = await post("/api/alerts/generic", JSON.stringify({ severity: "critical" }));
  expect(generic.status).toBe(400);
  expect((await generic.json()).error).toContain("give a fingerprint or at least one of target.host");
  expect((await bus.jsm.streams.info(bus.topo.streams.alerts.name)).state.messages).toBe(before);
});

/** Alertmanager's count of failed webhook notifications (it does not retry a 4xx: a failure there is a lost group). */
async function failedNotifications(): Promise<number> {
  const text = await (await fetch(`${amUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("alertmanager_notifications_failed_total") && l.includes('integration="webhook"'));
  return line ? Number(line.split(" ").pop()) : 0;
}

test.each([
  ["30 s behind", -30_000],
  ["30 s ahead", 30_000],
])("a Prometheus whose clock is %s: the resolve reaches the alerts service and resolves the alert", async (_name, skew) => {
  const alertname = `Skewed${skew < 0 ? "Behind" : "Ahead"}`;
  const labels = { alertname, instance: "skew-host:9100", job: "node", severity: "critical" };
  const senderNow = () => Date.now() + skew;
  const startsAt = senderNow() - 60_000;
  const ignoredBefore = alerts.book().ignored.total;
  await postToAlertmanager([prometheusAlert(labels, startsAt, senderNow() + 5 * 60_000)]);
  const firing = await waitFor(async () => (await streamAlerts()).find((a) => a.labels.alertname === alertname && a.state === "firing"), "firing alert on JetStream", 20_000, 250);
  // stamped with the sender's startsAt, not with when we received it
  expect(firing.at).toBe(startsAt);
  await waitFor(() => alerts.book().entries.get(firing.fingerprint)?.published.state === "firing", "firing in the alerts service");

  // Resolved at once, well within 30 s of the firing's arrival. Alertmanager takes a resolve only when its endsAt has
  // passed on Alertmanager's own clock (until then the firing's later endsAt wins the merge), so the sender that runs
  // ahead reports one that ended 35 s ago by its clock.
  const endsAt = skew < 0 ? senderNow() : senderNow() - 35_000;
  await postToAlertmanager([prometheusAlert(labels, startsAt, endsAt)]);
  const resolved = await waitFor(async () => (await streamAlerts()).find((a) => a.fingerprint === firing.fingerprint && a.state === "resolved"), "resolved alert on JetStream", 30_000, 250);
  expect(resolved.at).toBe(endsAt);
  if (skew < 0) expect(resolved.at).toBeLessThan(Date.now() - 20_000);
  await waitFor(() => alerts.book().entries.get(firing.fingerprint)?.published.state === "resolved", "resolved in the alerts service", 20_000);
  expect(alerts.book().ignored.total).toBe(ignoredBefore);
}, 60_000);

test("a group with one oversized label: Alertmanager's webhook gets a 2xx, the other alerts are stored, the bad one is listed as rejected", async () => {
  const failedBefore = await failedNotifications();
  const now = Date.now();
  // one group (alertname + instance), three alerts; one label value over alert.v1's 4096 characters
  const labels = (disk: string, extra: Record<string, string> = {}) => ({ alertname: "GroupWithBadAlert", instance: "db1:9100", job: "node", severity: "warning", disk, ...extra });
  await postToAlertmanager([
    prometheusAlert(labels("sda"), now - 10_000, now + 5 * 60_000),
    prometheusAlert(labels("sdb", { note: "n".repeat(5000) }), now - 10_000, now + 5 * 60_000),
    prometheusAlert(labels("sdc"), now - 10_000, now + 5 * 60_000),
  ]);
  const got = await waitFor(async () => {
    const s = (await streamAlerts()).filter((a) => a.labels.alertname === "GroupWithBadAlert");
    return s.length >= 2 ? s : null;
  }, "the group's valid alerts on JetStream", 20_000, 250);
  expect(got.map((a) => a.labels.disk).sort()).toEqual(["sda", "sdc"]);
  const rejected = await waitFor(async () => {
    const r = RejectedAlerts.parse(await (await fetch(`http://127.0.0.1:${ingest.port}/api/alerts/rejected`)).json());
    return r.alerts.find((a) => a.source === "alertmanager" && a.reason.includes("labels.note"));
  }, "the oversized alert listed as rejected");
  expect(rejected.reason).toMatch(/^alerts\.\d: alert\.v1: labels\.note: Too big/);
  expect(await failedNotifications()).toBe(failedBefore);
}, 60_000);
