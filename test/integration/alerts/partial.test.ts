/**
 * One bad alert does not lose its payload: on the real webhook path (ingest server → publisher → JetStream on a real
 * nats-server) the valid alerts of a payload are stored, each invalid one is refused with the reason, counted and
 * listed at GET /api/alerts/rejected; the answer is 2xx when anything was stored and 4xx only when nothing was.
 * The publisher (also used by the Icinga2 consumer) refuses an invalid alert alone.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { DeliverPolicy } from "@nats-io/jetstream";
import { decode } from "../../../pipelines/codec.ts";
import { AlertBatch, RejectedAlerts, type Alert } from "../../../pipelines/contracts/alerts.ts";
import { alertPublisher } from "../../../services/alerts/publish.ts";
import { startIngestServer } from "../../../services/ingest/server.ts";
// ORRERY_AUTH=off explicitly: these tests are not about who may pass (test/integration/identity/ is)
import { ingestAuthOff } from "../../../services/identity/client.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix } from "../../helpers/tmp.ts";

const log = makeLogger("test", true);
let nats: NatsServer;
const stops: (() => Promise<void>)[] = [];

beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  for (const s of stops.reverse()) await s();
  await nats.stop();
});

/** Its own bus (prefix, streams) and ingest server per test. */
async function fresh(name: string): Promise<{ bus: Bus; url: string }> {
  const bus = await connectBus({ url: nats.url, prefix: uniquePrefix(name), name: "test" });
  const ingest = startIngestServer({ auth: ingestAuthOff(), publishAlerts: alertPublisher(bus), log, host: "127.0.0.1", port: 0 });
  stops.push(async () => {
    await ingest.stop(true);
    await bus.close();
  });
  return { bus, url: `http://127.0.0.1:${ingest.port}` };
}

async function stored(bus: Bus): Promise<Alert[]> {
  const info = await bus.jsm.streams.info(bus.topo.streams.alerts.name);
  if (!info.state.messages) return [];
  const c = await bus.js.consumers.get(bus.topo.streams.alerts.name, { deliver_policy: DeliverPolicy.All });
  const out: Alert[] = [];
  for await (const m of await c.fetch({ max_messages: info.state.messages, expires: 2000 })) {
    out.push(...decode(AlertBatch, "alert.v1", m.data).alerts);
    if (m.info.pending === 0) break;
  }
  return out;
}

const post = (url: string, path: string, body: unknown) => fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
const rejectedList = async (url: string) => RejectedAlerts.parse(await (await fetch(`${url}/api/alerts/rejected`)).json());

const OVERSIZED = "x".repeat(5000);

test("generic: the valid alerts of a payload are stored, the invalid one refused with the reason (202); all invalid is a 400", async () => {
  const { bus, url } = await fresh("partial-generic");
  const r = await post(url, "/api/alerts/generic", {
    alerts: [
      { fingerprint: "g:1", severity: "critical", target: { host: "db1" }, at: 1_700_000_000_000 },
      { fingerprint: "g:2", severity: "critical", target: { host: "db2" }, labels: { note: OVERSIZED } },
      { fingerprint: "g:3", severity: "warning", target: { host: "db3" }, at: 1_700_000_000_000 },
    ],
  });
  expect(r.status).toBe(202);
  const body = (await r.json()) as { accepted: number; ids: string[]; rejected: { index: number; alert: string; reason: string }[] };
  expect(body.accepted).toBe(2);
  expect(body.ids).toHaveLength(2);
  expect(body.rejected).toHaveLength(1);
  expect(body.rejected[0]).toMatchObject({ index: 1, alert: "fingerprint=g:2 target.host=db2" });
  expect(body.rejected[0]!.reason).toMatch(/^alerts\.1\.labels\.note: /);
  expect((await stored(bus)).map((a) => a.fingerprint).sort()).toEqual(["g:1", "g:3"]);

  const none = await post(url, "/api/alerts/generic", { alerts: [{ severity: "critical" }, { fingerprint: "g:4", severity: "loud" }] });
  expect(none.status).toBe(400);
  const nb = (await none.json()) as { error: string; accepted: number; rejected: { index: number; reason: string }[] };
  expect(nb.accepted).toBe(0);
  expect(nb.rejected.map((x) => x.index)).toEqual([0, 1]);
  expect(nb.error).toContain("give a fingerprint or at least one of target.host");
  expect(nb.error).toContain("alerts.1.severity");
  expect((await stored(bus)).length).toBe(2);

  const list = await rejectedList(url);
  expect(list.total).toBe(3);
  expect(list.bySource).toEqual({ generic: 3 });
  expect(list.alerts.map((a) => [a.source, a.index, a.alert])).toEqual([
    ["generic", 1, "fingerprint=g:2 target.host=db2"],
    ["generic", 0, "(nothing to identify it by)"],
    ["generic", 1, "fingerprint=g:4"],
  ]);
  const one = RejectedAlerts.parse(await (await fetch(`${url}/api/alerts/rejected?limit=1`)).json());
  expect(one.alerts.map((a) => a.alert)).toEqual(["fingerprint=g:4"]);
  expect((await fetch(`${url}/api/alerts/rejected?limit=0`)).status).toBe(400);
});

test("alertmanager: a group with one oversized label stores the rest (202) and refuses that alert with the reason", async () => {
  const { bus, url } = await fresh("partial-am");
  const am = (labels: Record<string, string>) => ({
    status: "firing",
    labels: { alertname: "DiskFull", job: "node", severity: "warning", ...labels },
    annotations: {},
    startsAt: "2026-12-06T12:00:00Z",
    endsAt: "0001-01-01T00:00:00Z",
  });
  const r = await post(url, "/api/alerts/alertmanager", {
    version: "4",
    groupKey: '{}:{alertname="DiskFull"}',
    status: "firing",
    receiver: "orrery",
    alerts: [am({ instance: "db1:9100" }), am({ instance: "db2:9100", mountpoint: OVERSIZED }), am({ instance: "db3:9100" }), { status: "firing" }],
  });
  expect(r.status).toBe(202);
  const body = (await r.json()) as { accepted: number; rejected: { index: number; alert: string; reason: string }[] };
  expect(body.accepted).toBe(2);
  expect(body.rejected.map((x) => x.index)).toEqual([1, 3]);
  // refused after normalizing (alert.v1's label limit): named by fingerprint; refused before (no labels): by the payload
  expect(body.rejected[0]!.reason).toMatch(/^alerts\.1: alert\.v1: labels\.mountpoint: /);
  expect(body.rejected[0]!.alert).toMatch(/^fingerprint=alertmanager:/);
  expect(body.rejected[1]!.reason).toMatch(/^alerts\.3\.labels: /);
  expect((await stored(bus)).map((a) => a.target.host).sort()).toEqual(["db1", "db3"]);
  const list = await rejectedList(url);
  expect(list).toMatchObject({ total: 2, bySource: { alertmanager: 2 } });
});

test("the publisher refuses an invalid alert alone: the others are stored, the result says which and why", async () => {
  const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("partial-pub"), name: "test" });
  stops.push(() => bus.close());
  const alert = (i: number, labels: Record<string, string> = {}): Alert => ({
    id: `ev-${i}`, source: "icinga2", fingerprint: `icinga2:h${i}`, severity: "critical", state: "firing", summary: "", labels, target: { host: `h${i}` }, startsAt: 1_700_000_000_000, endsAt: null, at: 1_700_000_000_000,
  });
  const r = await alertPublisher(bus)([alert(0), alert(1, { output: OVERSIZED }), alert(2)]);
  expect(r.stored.map((a) => a.id)).toEqual(["ev-0", "ev-2"]);
  expect(r.refused.map((x) => [x.index, x.alert.id])).toEqual([[1, "ev-1"]]);
  expect(r.refused[0]!.reason).toMatch(/labels\.output/);
  expect((await stored(bus)).map((a) => a.id)).toEqual(["ev-0", "ev-2"]);
  // nothing valid: nothing published, and no error either
  expect(await alertPublisher(bus)([alert(3, { output: OVERSIZED })])).toMatchObject({ stored: [], refused: [{ index: 0 }] });
});
