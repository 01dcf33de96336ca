/**
 * How the alerts service numbers its first health delta at start, on a real nats-server: past the last delta a
 * predecessor stored; from the clock when none is stored (an expected value, not an error); and a failure to read
 * the HEALTH stream stops the start with JetStream's error instead of being taken for "nothing stored".
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { encode } from "../../../pipelines/codec.ts";
import { HealthDelta, type HealthDeltaInput } from "../../../pipelines/contracts/health.ts";
import { AlertRules } from "../../../pipelines/stages/alerts/mapping.ts";
import type { AlertHistory } from "../../../services/alerts/history.ts";
import { startAlertsService } from "../../../services/alerts/service.ts";
import { connectBus, JsApiCode, jsApiCode, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix } from "../../helpers/tmp.ts";

const log = makeLogger("test", true);
/** History is not what this test is about: nothing is written to it. */
const history: AlertHistory = { init: async () => undefined, insert: async () => undefined, close: async () => undefined };
const NOW = 1_700_000_000_000;

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats.stop();
});

async function withBus(name: string, f: (bus: Bus) => Promise<void>) {
  const bus = await connectBus({ url: nats.url, prefix: uniquePrefix(name), name: "test" });
  try {
    await f(bus);
  } finally {
    await bus.close();
  }
}

const start = (bus: Bus) => startAlertsService({ bus, topology: { synced: () => true, rev: () => 1, nodes: () => [] }, rules: AlertRules.parse({}), history, log, now: () => NOW, tickMs: 60_000 });

test("no delta stored yet: the service starts and numbers from its clock", async () => {
  await withBus("as0", async (bus) => {
    const svc = await start(bus);
    try {
      expect(svc.seq()).toBe(NOW);
    } finally {
      await svc.stop();
    }
  });
});

test("a predecessor's delta numbered past the clock: numbering goes on past it (a gap, so every reader fetches the state)", async () => {
  await withBus("as1", async (bus) => {
    const last: HealthDeltaInput = { schema: "health.delta.v1", seq: NOW + 500, at: NOW, entities: [] };
    await bus.js.publish(bus.topo.subjects.health, encode(HealthDelta, "health.delta.v1", last));
    const svc = await start(bus);
    try {
      expect(svc.seq()).toBe(NOW + 501);
    } finally {
      await svc.stop();
    }
  });
});

test("the HEALTH stream cannot be read: the start fails with JetStream's error, not taken for an empty stream", async () => {
  await withBus("as2", async (bus) => {
    await bus.jsm.streams.delete(bus.topo.streams.health.name);
    const err = await start(bus).then(
      async (svc) => (await svc.stop(), null),
      (e: unknown) => e,
    );
    expect(jsApiCode(err)).toBe(JsApiCode.StreamNotFound);
  });
});
