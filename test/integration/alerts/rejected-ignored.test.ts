/**
 * What the alert path refused or ignored, seen where operators look: the gateway. Real ingest and gateway processes
 * (their main.ts) on a real nats-server: alerts an ingest refused are gathered from every ingest instance over
 * <prefix>.rpc.ingest (GET /api/alerts/rejected), and events the alerts service ignored as older than an alert's
 * last one are listed by GET /api/alerts/ignored. The alerts service runs in the test process, over a fixed topology.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { resolve } from "node:path";
import { AlertsIgnored, RejectedAlertsMerged } from "../../../pipelines/contracts/alerts.ts";
import { AlertRules } from "../../../pipelines/stages/alerts/mapping.ts";
import type { AlertHistory } from "../../../services/alerts/history.ts";
import { startAlertsService } from "../../../services/alerts/service.ts";
import { connectBus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { spawnUntilReady, type ReadyProcess } from "../../helpers/process.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const log = makeLogger("test", true);
/** History is not what this test is about: nothing is written to it. */
const history: AlertHistory = { init: async () => undefined, insert: async () => undefined, close: async () => undefined };

let nats: NatsServer;
const tmp = tempDir("orrery-rej-");
const procs: ReadyProcess[] = [];

beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  for (const p of procs) p.proc.kill("SIGTERM");
  await Promise.all(procs.map((p) => p.proc.exited));
  await nats?.stop();
  tmp.cleanup();
});

/** A service's main.ts as a child process on `prefix`; resolves with its URL once it says it is ready. */
async function service(name: "ingest" | "gateway", prefix: string): Promise<string> {
  const p = await spawnUntilReady([process.execPath, `services/${name}/main.ts`], {
    cwd: ROOT,
    env: {
      ...process.env,
      NATS_URL: nats.url,
      ORRERY_PREFIX: prefix,
      ORRERY_LOG_QUIET: "1",
      ORRERY_AUTH: "off",
      ORRERY_INGEST_PORT: "0",
      ORRERY_GATEWAY_PORT: "0",
      ORRERY_DASHBOARD_DIR: tmp.dir,
      // the routes under test never reach ClickHouse; nothing listens here
      CLICKHOUSE_URL: "http://127.0.0.1:9",
    },
    ready: /"event":"ready".*"url":"([^"]+)"/,
    timeoutMs: 60_000,
    name: `the ${name} service`,
  });
  procs.push(p);
  return p.match[1]!;
}

const post = (url: string, body: unknown) => fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

test("alerts refused by two ingest instances are listed by the gateway with their reasons, newest first", async () => {
  const prefix = uniquePrefix("rej");
  const [gateway, ingestA, ingestB] = await Promise.all([service("gateway", prefix), service("ingest", prefix), service("ingest", prefix)]);

  // A stores the good alert and refuses the bad one (202); B refuses its only alert (400)
  const a = await post(`${ingestA}/api/alerts/generic`, { alerts: [{ fingerprint: "good-1", target: { host: "db1" } }, { severity: "catastrophic", target: { host: "db1" } }] });
  expect(a.status).toBe(202);
  await Bun.sleep(5); // B's refusal is the newer one
  const b = await post(`${ingestB}/api/alerts/generic`, { summary: "nothing to map it by" });
  expect(b.status).toBe(400);

  const res = await fetch(`${gateway}/api/alerts/rejected`);
  expect(res.status).toBe(200);
  const r = RejectedAlertsMerged.parse(await res.json());
  expect(r.note).toBeUndefined();
  expect(r.instances).toHaveLength(2);
  expect(r.total).toBe(2);
  expect(r.bySource).toEqual({ generic: 2 });
  expect(r.alerts.map((x) => ({ index: x.index, source: x.source }))).toEqual([
    { index: 0, source: "generic" },
    { index: 1, source: "generic" },
  ]);
  expect(r.alerts[0]!.reason).toContain("fingerprint or at least one of target.host");
  expect(r.alerts[1]!.reason).toContain("severity");
  expect(r.alerts[0]!.instance).not.toBe(r.alerts[1]!.instance);
  expect(r.alerts[0]!.at).toBeGreaterThanOrEqual(r.alerts[1]!.at);

  // limit keeps the newest; the counts stay whole
  const one = RejectedAlertsMerged.parse(await (await fetch(`${gateway}/api/alerts/rejected?limit=1`)).json());
  expect(one.total).toBe(2);
  expect(one.alerts.map((x) => x.reason)).toEqual([r.alerts[0]!.reason]);

  const bad = await fetch(`${gateway}/api/alerts/rejected?limit=0`);
  expect(bad.status).toBe(400);
  expect(((await bad.json()) as { error: string }).error).toContain("limit");
}, 120_000);

test("no ingest instance answering is an empty list with a note, not an error", async () => {
  const gateway = await service("gateway", uniquePrefix("rej0"));
  const res = await fetch(`${gateway}/api/alerts/rejected`);
  expect(res.status).toBe(200);
  const r = RejectedAlertsMerged.parse(await res.json());
  expect(r).toMatchObject({ total: 0, bySource: {}, alerts: [], instances: [] });
  expect(r.note).toContain("no ingest instance answered");
}, 120_000);

test("an alert event older than the alert's last one is listed by GET /api/alerts/ignored with the reason", async () => {
  const prefix = uniquePrefix("ign");
  const [gateway, ingest] = await Promise.all([service("gateway", prefix), service("ingest", prefix)]);
  const bus = await connectBus({ url: nats.url, prefix, name: "test" });
  const alerts = await startAlertsService({ bus, topology: { synced: () => true, rev: () => 1, nodes: () => [] }, rules: AlertRules.parse({}), history, log, tickMs: 200 });
  try {
    const empty = AlertsIgnored.parse(await (await fetch(`${gateway}/api/alerts/ignored`)).json());
    expect(empty).toEqual({ ignored: 0, events: [] });

    const T = Date.now() - 60_000;
    const alert = (at: number, severity: string) => ({ fingerprint: "disk-db1", severity, startsAt: T, at, target: { host: "db1" } });
    expect((await post(`${ingest}/api/alerts/generic`, alert(T + 2000, "critical"))).status).toBe(202);
    await waitFor(async () => (await (await fetch(`${gateway}/api/alerts`)).json() as { total: number }).total === 1, "the alert folded");
    // a warning stamped before the critical the service holds: it says something else, and is older
    expect((await post(`${ingest}/api/alerts/generic`, alert(T + 1000, "warning"))).status).toBe(202);

    let r = AlertsIgnored.parse({ ignored: 0, events: [] });
    await waitFor(async () => {
      r = AlertsIgnored.parse(await (await fetch(`${gateway}/api/alerts/ignored`)).json());
      return r.ignored === 1;
    }, "the older event ignored");
    expect(r.events).toHaveLength(1);
    expect(r.events[0]).toMatchObject({ fingerprint: "disk-db1", state: "firing", at: T + 1000, lastAt: T + 2000, lastState: "firing" });
    expect(r.events[0]!.reason).toContain("is older than the last event folded");

    expect((await fetch(`${gateway}/api/alerts/ignored?limit=nope`)).status).toBe(400);
  } finally {
    await alerts.stop();
    await bus.close();
  }
}, 120_000);
