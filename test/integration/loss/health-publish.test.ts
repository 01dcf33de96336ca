/**
 * The alerts consumer when its health deltas cannot be stored, on a real nats-server: the HEALTH stream is deleted
 * under the running service (every publish to it then finds no responders, as with JetStream unavailable). The alert
 * batch whose delta cannot be stored is held — tried again in place well past the 5 tries an error of unknown kind gets
 * before it is dead-lettered — and once the stream is back its delta is stored with the next seq (no gap), the batch
 * is acked, and nothing is dead-lettered.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { decode } from "../../../pipelines/codec.ts";
import { GenericAlert } from "../../../pipelines/contracts/alerts.ts";
import { HealthDelta } from "../../../pipelines/contracts/health.ts";
import type { TopoNode } from "../../../pipelines/contracts/topology.ts";
import { normalizeGeneric } from "../../../pipelines/stages/alerts/generic.ts";
import { AlertRules } from "../../../pipelines/stages/alerts/mapping.ts";
import type { AlertHistory } from "../../../services/alerts/history.ts";
import { alertPublisher } from "../../../services/alerts/publish.ts";
import { natsUnavailable, startAlertsService, type AlertsService } from "../../../services/alerts/service.ts";
import { connectBus, DEFAULT_MAX_ATTEMPTS, ensureStream, MAX_BACKOFF_MS, type Bus } from "../../../services/shared/bus.ts";
import type { Logger } from "../../../services/shared/log.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";

let nats: NatsServer;
let bus: Bus;
let alerts: AlertsService;
const holds: number[] = [];
const log: Logger = {
  info: () => undefined,
  warn: (msg, f) => {
    if (msg.includes("holding")) holds.push(Number(f?.attempt));
  },
  error: () => undefined,
};
// history is not what this test is about: an in-memory port that takes everything
const history: AlertHistory = { init: async () => undefined, insert: async () => undefined, close: async () => undefined };
const node = (id: string): TopoNode => ({ id, kind: "host", name: id, source: "test", props: { hostname: id.slice(5) }, firstSeen: 1, lastSeen: 1 });
const nodes = new Map([["host:web1", node("host:web1")]]);
const alert = (fp: string, at: number) => normalizeGeneric(GenericAlert.parse({ fingerprint: fp, severity: "critical", target: { host: "web1" }, at }), at);

beforeAll(async () => {
  nats = await startNats();
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("lossh"), name: "test" });
  alerts = await startAlertsService({ bus, topology: { synced: () => true, rev: () => 1, nodes: () => nodes.values() }, rules: AlertRules.parse({}), history, log, tickMs: 200 });
}, 30_000);

afterAll(async () => {
  await alerts?.stop();
  await bus?.close();
  await nats?.stop();
});

/** the health deltas the HEALTH stream holds, in order */
async function storedDeltas(): Promise<HealthDelta[]> {
  const c = await bus.js.consumers.get(bus.topo.streams.health.name);
  const out: HealthDelta[] = [];
  for (;;) {
    const m = await c.next({ expires: 1000 });
    if (!m) return out;
    out.push(decode(HealthDelta, "health.delta.v1", m.data));
  }
}

test("health deltas that cannot be stored hold their alert batch until they can: stored without a gap, nothing dead-lettered", async () => {
  const pub = alertPublisher(bus);
  const c = bus.topo.consumers.alerts;
  await pub([alert("first", Date.now())]);
  const before = await waitFor(async () => (await storedDeltas()).find((d) => d.entities.some((e) => e.alerts.includes("first"))), "the first alert's delta");

  await bus.jsm.streams.delete(bus.topo.streams.health.name);
  // what the publish then fails with is recognised as NATS being unavailable, not as a fault of the batch
  expect(natsUnavailable(await bus.js.publish(bus.topo.subjects.health, new Uint8Array([1])).catch((e: unknown) => e))).toBe(true);
  await pub([alert("second", Date.now())]);
  await waitFor(() => Math.max(0, ...holds) > DEFAULT_MAX_ATTEMPTS, `the batch held past ${DEFAULT_MAX_ATTEMPTS} tries`, 90_000, 500);
  const held = await bus.jsm.consumers.info(c.stream, c.durable);
  expect(held.num_ack_pending).toBe(1);
  expect(held.num_redelivered).toBe(0);
  expect((await bus.jsm.streams.info(bus.topo.streams.dlq.name)).state.messages).toBe(0);

  await ensureStream(bus.jsm, bus.topo.streams.health);
  const after = await waitFor(async () => {
    const d = await storedDeltas();
    return d.some((x) => x.entities.some((e) => e.alerts.includes("second"))) ? d : null;
  }, "the held delta stored once the stream is back", 60_000, 500);
  // the first delta stored after the outage is the next in seq: none was skipped while the stream was gone
  expect(after[0]!.seq).toBe(before.seq + 1);
  expect(after.map((d) => d.seq)).toEqual(after.map((_, i) => before.seq + 1 + i));
  // the hold tries again once per backoff (at most MAX_BACKOFF_MS apart)
  await waitFor(async () => (await bus.jsm.consumers.info(c.stream, c.durable)).num_ack_pending === 0, "the held batch acked", MAX_BACKOFF_MS + 15_000, 500);
  expect((await bus.jsm.streams.info(bus.topo.streams.dlq.name)).state.messages).toBe(0);
  expect(alerts.handled()).toBe(2);
}, 180_000);
