/**
 * Group commit of alert.v1 (services/alerts/publish.ts) against a real nats-server with JetStream, and the ingest's
 * answers on top of it: an idle alert goes out without waiting for a timer, concurrent requests share messages, every
 * 202 comes after JetStream stored the alerts, a failed publish is a 503 and its retry is stored, retries are stored
 * once when published in the same grouping.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { DeliverPolicy } from "@nats-io/jetstream";
import { decode } from "../../../pipelines/codec.ts";
import { AlertBatch, MAX_ALERTS_PER_MESSAGE, type Alert } from "../../../pipelines/contracts/alerts.ts";
import { alertPublisher } from "../../../services/alerts/publish.ts";
import { startIngestServer } from "../../../services/ingest/server.ts";
// ORRERY_AUTH=off explicitly: these tests are not about who may pass (test/integration/identity/ is)
import { ingestAuthOff } from "../../../services/identity/client.ts";
import { connectBus, ensureStreams, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix } from "../../helpers/tmp.ts";

let nats: NatsServer;
const buses: Bus[] = [];
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  for (const b of buses) await b.close();
  await nats.stop();
});

/** Its own prefix (streams, subjects) per test. */
async function freshBus(name: string): Promise<Bus> {
  const bus = await connectBus({ url: nats.url, prefix: uniquePrefix(name), name: "test" });
  buses.push(bus);
  return bus;
}

async function storedMessages(bus: Bus): Promise<AlertBatch[]> {
  const info = await bus.jsm.streams.info(bus.topo.streams.alerts.name);
  if (!info.state.messages) return [];
  const c = await bus.js.consumers.get(bus.topo.streams.alerts.name, { deliver_policy: DeliverPolicy.All });
  const out: AlertBatch[] = [];
  for await (const m of await c.fetch({ max_messages: info.state.messages, expires: 2000 })) {
    out.push(decode(AlertBatch, "alert.v1", m.data));
    if (m.info.pending === 0) break;
  }
  return out;
}

const alert = (i: number, source = "bench"): Alert => ({
  id: `ev-${source}-${i}`,
  source,
  fingerprint: `${source}:${i}`,
  severity: "critical",
  state: "firing",
  summary: "",
  labels: {},
  target: { host: `h${i}` },
  startsAt: 1_700_000_000_000,
  endsAt: null,
  at: 1_700_000_000_000 + i,
});

test("an idle alert goes out at once (no linger), in one message with a deterministic id", async () => {
  const bus = await freshBus("pub-idle");
  const publish = alertPublisher(bus, { lingerMs: 5_000 });
  const t0 = performance.now();
  await publish([alert(1)]);
  // a 5 s linger would show here; idle, nothing waits for a timer
  expect(performance.now() - t0).toBeLessThan(1_000);
  const msgs = await storedMessages(bus);
  expect(msgs.map((m) => m.alerts.map((a) => a.id))).toEqual([["ev-bench-1"]]);

  // another process publishing the same events alone (a restarted ingest, the sender retrying): same Nats-Msg-Id,
  // stored once by JetStream's duplicate window
  await alertPublisher(bus)([alert(1)]);
  const again = await storedMessages(bus);
  expect(again.length).toBe(1);
  expect(again[0]!.batchId).toBe(msgs[0]!.batchId);
});

test("concurrent calls while a publish is in flight share messages; each resolves only once its alerts are stored", async () => {
  const bus = await freshBus("pub-group");
  const publish = alertPublisher(bus, { maxInFlight: 1 });
  const n = 3000;
  const sources = ["am", "generic"];
  const stored = new Set<string>();
  // as each call resolves, its alerts must already be in the stream: check a sample of them right then
  const checks: Promise<void>[] = [];
  const calls = Array.from({ length: n }, (_, i) =>
    publish([alert(i, sources[i % 2])]).then(() => {
      stored.add(`ev-${sources[i % 2]}-${i}`);
      if (i % 500 === 0) {
        checks.push(
          (async () => {
            const msgs = await storedMessages(bus);
            expect(msgs.some((m) => m.alerts.some((a) => a.id === `ev-${sources[i % 2]}-${i}`))).toBe(true);
          })(),
        );
      }
    }),
  );
  await Promise.all(calls);
  await Promise.all(checks);
  expect(stored.size).toBe(n);
  const msgs = await storedMessages(bus);
  const ids = msgs.flatMap((m) => m.alerts.map((a) => a.id));
  expect(ids.length).toBe(n);
  expect(new Set(ids).size).toBe(n);
  // coalesced: far fewer messages than calls, one source per message, within the contract's limit
  expect(msgs.length).toBeLessThan(n / 10);
  for (const m of msgs) {
    expect(m.alerts.length).toBeLessThanOrEqual(MAX_ALERTS_PER_MESSAGE);
    expect(m.alerts.every((a) => a.source === m.source)).toBe(true);
  }
  // arrival order is kept within a source
  for (const s of sources) {
    const order = msgs.filter((m) => m.source === s).flatMap((m) => m.alerts.map((a) => a.at));
    expect(order).toEqual([...order].sort((a, b) => a - b));
  }
});

test("a call over the per-message limit is split; the same events twice in one flush go out once; a retry in other company keeps its event ids", async () => {
  const bus = await freshBus("pub-split");
  const publish = alertPublisher(bus);
  const big = Array.from({ length: MAX_ALERTS_PER_MESSAGE + 200 }, (_, i) => alert(i));
  // handed in together: one flush, each event once
  await Promise.all([publish(big), publish(big.slice(0, 10))]);
  let msgs = await storedMessages(bus);
  expect(msgs.map((m) => m.alerts.length)).toEqual([MAX_ALERTS_PER_MESSAGE, 200]);
  // a retry coalesced with a new neighbour is another message (another Nats-Msg-Id): stored again, same event id,
  // which the alerts service folds as a duplicate and history collapses
  await Bun.sleep(10);
  await Promise.all([publish([alert(5)]), publish([alert(5000)])]);
  msgs = await storedMessages(bus);
  expect(msgs.length).toBe(3);
  expect(msgs[2]!.alerts.map((a) => a.id)).toEqual(["ev-bench-5", "ev-bench-5000"]);
});

test("a publish JetStream does not ack rejects every caller (the ingest answers 503); the retry is stored", async () => {
  const bus = await freshBus("pub-fail");
  const log = makeLogger("test", true);
  const ingest = startIngestServer({ auth: ingestAuthOff(), publishAlerts: alertPublisher(bus), log, host: "127.0.0.1", port: 0 });
  try {
    const url = `http://127.0.0.1:${ingest.port}/api/alerts/generic`;
    const body = (i: number) => JSON.stringify({ source: "bench", fingerprint: `bench:${i}`, severity: "critical", target: { host: `h${i}` }, at: 1_700_000_000_000 });
    // no stream for the subject: JetStream answers no responders
    await bus.jsm.streams.delete(bus.topo.streams.alerts.name);
    const failed = await Promise.all([0, 1, 2].map((i) => fetch(url, { method: "POST", body: body(i) })));
    expect(failed.map((r) => r.status)).toEqual([503, 503, 503]);
    expect(((await failed[0]!.json()) as { error: string }).error).toMatch(/alerts not stored .*retry/);
    // bad input is still a 400 of its own, whatever the bus does
    const bad = await fetch(url, { method: "POST", body: JSON.stringify({ severity: "critical" }) });
    expect(bad.status).toBe(400);

    await ensureStreams(bus.jsm, bus.topo);
    const retried = await Promise.all([0, 1, 2].map((i) => fetch(url, { method: "POST", body: body(i) })));
    expect(retried.map((r) => r.status)).toEqual([202, 202, 202]);
    const msgs = await storedMessages(bus);
    expect(msgs.flatMap((m) => m.alerts.map((a) => a.fingerprint)).sort()).toEqual(["bench:0", "bench:1", "bench:2"]);
  } finally {
    await ingest.stop(true);
  }
});

test("under load (a flush within the linger) an alert waits for company at most the linger; idle again, it goes at once", async () => {
  const bus = await freshBus("pub-linger");
  const publish = alertPublisher(bus, { lingerMs: 1_000 });
  let t = performance.now();
  await publish([alert(1)]);
  expect(performance.now() - t).toBeLessThan(500);
  // right after a flush: waits for the linger to pass, with whatever else arrives meanwhile
  t = performance.now();
  await Promise.all([publish([alert(2)]), Bun.sleep(100).then(() => publish([alert(3)]))]);
  const waited = performance.now() - t;
  expect(waited).toBeGreaterThan(700);
  expect(waited).toBeLessThan(3_000);
  await Bun.sleep(1_200);
  t = performance.now();
  await publish([alert(4)]);
  expect(performance.now() - t).toBeLessThan(500);
  expect((await storedMessages(bus)).map((m) => m.alerts.map((a) => a.id))).toEqual([["ev-bench-1"], ["ev-bench-2", "ev-bench-3"], ["ev-bench-4"]]);
});
