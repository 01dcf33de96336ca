/**
 * Alert history on a real ClickHouse owner (chDB, a child process) and nats-server:
 * - an outage of a minute: the owner is killed while alerts keep arriving; health keeps flowing (ClickHouse is not on
 *   the health path); the history consumer holds its batch (runConsumer, in place with capped backoff, well past the
 *   5 tries an error of unknown kind would get; the durable never gives a message up) and, once the owner is back on
 *   the same port and data, every event is in `alerts_history` exactly once, nothing dead-lettered;
 * - a row ClickHouse refuses (a summary ending in half a UTF-16 surrogate pair) goes to the dead-letter stream with
 *   ClickHouse's reason at once, and the events around it are stored, those that shared its message included.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
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
import { makeLogger, type Logger } from "../../../services/shared/log.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const OUTAGE_MS = 60_000;
/** attempt numbers of the service's "holding … retrying" lines (warnings are otherwise dropped) */
const holds: number[] = [];
const log: Logger = {
  ...makeLogger("test", true),
  warn: (msg, f) => {
    if (msg.includes("holding")) holds.push(Number(f?.attempt));
  },
};
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

async function dlq(): Promise<{ reason: string; data: string }[]> {
  const info = await bus.jsm.consumers.add(bus.topo.streams.dlq.name, { ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All, inactive_threshold: 60_000_000_000 });
  const c = await bus.js.consumers.get(bus.topo.streams.dlq.name, info.name);
  const out: { reason: string; data: string }[] = [];
  for (;;) {
    const m = await c.next({ expires: 1000 });
    if (!m) return out;
    out.push({ reason: m.headers?.get("Orrery-Reason") ?? "", data: new TextDecoder().decode(m.data) });
  }
}

test("a ClickHouse outage of a minute delays history, never loses it: held until the owner is back; health kept flowing", async () => {
  const info = await bus.jsm.consumers.info(bus.topo.streams.alerts.name, alertSubjects(bus.topo).historyConsumer.durable);
  expect(info.config.max_deliver).toBe(-1);
  const pub = alertPublisher(bus);
  const t0 = Date.now();
  await pub([alert("before", t0)]);
  await waitFor(async () => (await historyCount(["before"])) === 1, "history row before the outage");

  const port = Number(new URL(owner.url).port);
  owner.proc!.kill("SIGKILL");
  await owner.proc!.exited;
  // alerts keep arriving through the outage, one every 2 s
  const during: string[] = [];
  const down = Date.now();
  for (let i = 0; Date.now() - down < OUTAGE_MS; i++) {
    during.push(`during-${i}`);
    await pub([alert(`during-${i}`, t0 + 1000 + i)]);
    await Bun.sleep(2000);
  }
  // health does not wait for ClickHouse
  await waitFor(() => during.every((fp) => deltas.some((d) => d.entities.some((e) => e.alerts.includes(fp)))), "health deltas during the outage");
  const pending = await bus.jsm.consumers.info(bus.topo.streams.alerts.name, alertSubjects(bus.topo).historyConsumer.durable);
  expect(pending.num_pending + pending.num_ack_pending).toBe(during.length);
  // held in place, not nak'ed: an outage of any length burns no deliveries, and the hold outlasted the 5 tries an
  // error of unknown kind gets before it is dead-lettered
  expect(pending.num_redelivered).toBe(0);
  expect(Math.max(...holds)).toBeGreaterThanOrEqual(5);

  owner = await startClickHouse(join(tmp.dir, "ch"), { embedded: true, port });
  expect(owner.url).toContain(`:${port}`);
  await waitFor(async () => (await historyCount(during)) === during.length, "history rows after the outage", 60_000, 500);
  expect(await historyCount(["before", ...during])).toBe(1 + during.length);
  expect(await dlq()).toEqual([]);
  const after = await bus.jsm.consumers.info(bus.topo.streams.alerts.name, alertSubjects(bus.topo).historyConsumer.durable);
  expect(after.num_pending + after.num_ack_pending).toBe(0);
}, OUTAGE_MS + 120_000);

test("a row ClickHouse refuses is dead-lettered at once with the reason; the events around it are stored, in its message too", async () => {
  const pub = alertPublisher(bus);
  const t0 = Date.now();
  const bad = { ...alert("bad-row", t0 + 1), summary: "cut in half: \ud83d" };
  const good = ["good-0", "good-1", "good-2", "good-3"];
  // in one turn: the publisher sends the three in one message (as it does with webhooks that arrive together)
  await Promise.all([pub([alert(good[0]!, t0)]), pub([bad]), pub([alert(good[1]!, t0 + 2)])]);
  await pub([alert(good[2]!, t0 + 3)]);
  await pub([alert(good[3]!, t0 + 4)]);
  await waitFor(async () => (await historyCount(good)) === good.length, "the good events stored", 30_000, 250);
  const dead = await waitFor(async () => {
    const d = await dlq();
    return d.length ? d : null;
  }, "the bad event dead-lettered", 30_000, 250);
  expect(dead.length).toBe(1);
  expect(dead[0]!.reason).toContain(`ClickHouse refused 1 of 3 events (the others are stored): generic/bad-row (${bad.id}): alert history insert failed: Cannot parse escape sequence`);
  expect(JSON.parse(dead[0]!.data).alerts.map((a: { fingerprint: string }) => a.fingerprint)).toEqual([good[0], "bad-row", good[1]]);
  expect(await historyCount(["bad-row"])).toBe(0);
  // health is not ClickHouse's business: the bad event was folded like any other
  expect(alerts.book().entries.has("bad-row")).toBe(true);
}, 60_000);
