/**
 * Alert history through a ClickHouse outage: the chDB owner (a child process) is killed while alerts keep arriving;
 * health keeps flowing (ClickHouse is not on the health path); the history consumer keeps retrying the same batch
 * (in place, with backoff; the durable never gives a message up) and, once the owner is back on the same port and
 * data, every event is in `alerts_history` exactly once, nothing dead-lettered.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { decode } from "../../../pipelines/codec.ts";
import { HealthDelta } from "../../../pipelines/contracts/health.ts";
import type { TopoNode } from "../../../pipelines/contracts/topology.ts";
import { normalizeGeneric } from "../../../pipelines/stages/alerts/generic.ts";
import { AlertRules } from "../../../pipelines/stages/alerts/mapping.ts";
import { GenericAlert } from "../../../pipelines/contracts/alerts.ts";
import { ClickHouseAlertHistory } from "../../../services/alerts/history.ts";
import { alertPublisher } from "../../../services/alerts/publish.ts";
import { startAlertsService, type AlertsService } from "../../../services/alerts/service.ts";
import { alertSubjects } from "../../../pipelines/streams.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const log = makeLogger("test", true);
const tmp = tempDir("orrery-alert-history-");
const db = uniquePrefix("ah").replace(/-/g, "_");

let nats: NatsServer;
let bus: Bus;
let owner: TestClickHouse;
let history: ClickHouseAlertHistory;
let alerts: AlertsService;
const deltas: HealthDelta[] = [];

const node = (id: string, kind: TopoNode["kind"], props: TopoNode["props"]): TopoNode => ({ id, kind, name: id, source: "test", props, firstSeen: 1, lastSeen: 1 });
const nodes = new Map([["host:db1", node("host:db1", "host", { hostname: "db1" })]]);

beforeAll(async () => {
  nats = await startNats();
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("ah"), name: "test" });
  owner = await startClickHouse(join(tmp.dir, "ch"), { embedded: true });
  history = new ClickHouseAlertHistory(owner.client(), { database: db, ttlDays: 7 });
  alerts = await startAlertsService({
    bus,
    topology: { synced: () => true, rev: () => 1, nodes: () => nodes.values() },
    rules: AlertRules.parse({}),
    history,
    log,
    tickMs: 200,
    historyLingerMs: 50,
  });
  bus.nc.subscribe(alertSubjects(bus.topo).health, { callback: (_e, m) => void deltas.push(decode(HealthDelta, "health.delta.v1", m.data)) });
}, 60_000);

afterAll(async () => {
  await alerts?.stop();
  await history?.close();
  await owner?.stop();
  await bus?.close();
  await nats?.stop();
  tmp.cleanup();
});

const alert = (fp: string, at: number) => normalizeGeneric(GenericAlert.parse({ fingerprint: fp, severity: "warning", target: { host: "db1" }, at }), at);

async function historyCount(fps: string[]): Promise<number> {
  const ch = owner.client();
  try {
    const r = await (await ch.query({ query: `SELECT count() AS n FROM ${history.table} FINAL WHERE has({fps:Array(String)}, fingerprint)`, query_params: { fps }, format: "JSONEachRow" })).json<{ n: string }>();
    return Number(r[0]!.n);
  } finally {
    await ch.close();
  }
}

test("a ClickHouse outage delays history, never loses it: retried until the owner is back; health kept flowing", async () => {
  const info = await bus.jsm.consumers.info(bus.topo.streams.alerts.name, alertSubjects(bus.topo).historyConsumer.durable);
  expect(info.config.max_deliver).toBe(-1);
  const pub = alertPublisher(bus);
  const t0 = Date.now();
  await pub([alert("before", t0)]);
  await waitFor(async () => (await historyCount(["before"])) === 1, "history row before the outage");

  const port = Number(new URL(owner.url).port);
  owner.proc!.kill("SIGKILL");
  await owner.proc!.exited;
  const during = Array.from({ length: 5 }, (_, i) => `during-${i}`);
  for (const [i, fp] of during.entries()) await pub([alert(fp, t0 + 1000 + i)]);
  // health does not wait for ClickHouse
  await waitFor(() => during.every((fp) => deltas.some((d) => d.entities.some((e) => e.alerts.includes(fp)))), "health deltas during the outage");
  // several failed attempts (the consumer logs and backs off; it does not nak the batch away)
  await Bun.sleep(4000);
  const pending = await bus.jsm.consumers.info(bus.topo.streams.alerts.name, alertSubjects(bus.topo).historyConsumer.durable);
  expect(pending.num_pending + pending.num_ack_pending).toBeGreaterThan(0);
  // retried in place, not by redelivery: an outage of any length burns no deliveries
  expect(pending.num_redelivered).toBe(0);

  owner = await startClickHouse(join(tmp.dir, "ch"), { embedded: true, port });
  expect(owner.url).toContain(`:${port}`);
  await waitFor(async () => (await historyCount(during)) === during.length, "history rows after the outage", 60_000, 500);
  expect(await historyCount(["before", ...during])).toBe(1 + during.length);
  const dlq = await bus.jsm.streams.info(bus.topo.streams.dlq.name);
  expect(dlq.state.messages).toBe(0);
}, 120_000);
