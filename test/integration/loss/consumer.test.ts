/**
 * runConsumer when its handler throws, against a real nats-server: a store outage (transient) holds the batch and
 * retries it in place for as long as it lasts, never dead-letters it and never burns deliveries; a bad message is
 * found by bisection and only it is retried, then dead-lettered after its attempts; a permanent error goes to the DLQ
 * at once. Each test has its own durable; every consumer is declared with max_deliver -1 (the app counts attempts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DeliverPolicy } from "@nats-io/jetstream";
import { z } from "zod";
import { connectBus, ensureConsumer, PermanentError, runConsumer, TransientError, type Bus, type ConsumerPolicy } from "../../../services/shared/bus.ts";
import { GraphStoreError } from "../../../services/graph/port.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const Item = z.object({ n: z.number().int() });
type Item = z.infer<typeof Item>;

let nats: NatsServer;
let bus: Bus;
beforeAll(async () => {
  nats = await startNats();
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("fail"), name: "test" });
});
afterAll(async () => {
  await bus.close();
  await nats.stop();
});

type Handle = (items: { n: number; delivery: number }[]) => void | Promise<void>;

/** publishes items 0..count-1 on their own subject, then consumes them with `handle` on a durable of their own */
async function run(name: string, count: number, maxAttempts: number, handle: Handle) {
  // The first message is handed over alone as soon as it arrives; a slow first call lets the rest queue up, so
  // they come as one batch (as under load).
  const subject = bus.topo.subjects.discovery(name);
  const spec: ConsumerPolicy = { stream: bus.topo.streams.discovery.name, durable: name, filterSubject: subject, ackWaitMs: 30_000, maxDeliver: -1, maxAttempts };
  await ensureConsumer(bus.jsm, spec);
  for (let n = 0; n < count; n++) await bus.js.publish(subject, new TextEncoder().encode(JSON.stringify({ n })), { msgID: `${name}:${n}` });
  const calls: number[][] = [];
  const start = (h: Handle) =>
    runConsumer(
      bus,
      spec,
      Item,
      "item.v1",
      async (batch: { msg: { info: { deliveryCount: number } }; value: Item }[]) => {
        calls.push(batch.map((b) => b.value.n));
        if (calls.length === 1) await Bun.sleep(300);
        await h(batch.map((b) => ({ n: b.value.n, delivery: b.msg.info.deliveryCount })));
      },
      { maxBatch: 100 },
    );
  let c = await start(handle);
  const info = () => bus.jsm.consumers.info(spec.stream, spec.durable);
  // (a message nak'ed as a consumer stops may go to that consumer's last pull request, still open on the server,
  // and come back only after ack_wait)
  const settled = () =>
    waitFor(async () => {
      const i = await info();
      return i.num_pending === 0 && i.num_ack_pending === 0 && i.delivered.stream_seq > 0;
    }, `${name}: everything acked`, 60_000);
  return {
    calls,
    spec,
    subject,
    settled,
    info,
    stop: () => c.stop(),
    /** stops this consumer and starts another on the same durable (a restart of the service) */
    restart: async (h: Handle) => {
      await c.stop();
      c = await start(h);
    },
  };
}

/** what the dead-letter stream holds for one consumer (the server here is 2.9: no multi-filter consumers) */
async function deadLetters(origin: string, expected: number) {
  const subject = bus.topo.subjects.dlq(origin);
  const read = async () => {
    const dlq = await bus.js.consumers.get(bus.topo.streams.dlq.name, { deliver_policy: DeliverPolicy.All, filter_subjects: subject });
    const out: { n: number; reason: string; subject: string }[] = [];
    while (true) {
      const m = await dlq.next({ expires: 1000 });
      if (!m) break;
      out.push({ n: JSON.parse(new TextDecoder().decode(m.data)).n, reason: m.headers!.get("Orrery-Reason"), subject: m.headers!.get("Orrery-Original-Subject") });
      if (m.info.pending === 0) break;
    }
    return out;
  };
  let out = await read();
  if (out.length < expected) out = await waitFor(async () => ((await read()).length >= expected ? await read() : null), `${expected} dead letters of ${origin}`, 10_000);
  expect(out.length).toBe(expected); // and no more than that
  return out;
}

describe("runConsumer when the handler throws", () => {
  test("one poison message: the rest of its batch is acked on the first delivery; it alone is retried, then dead-lettered after maxAttempts", async () => {
    const ok = new Map<number, number>();
    const r = await run("poison", 40, 3, (items) => {
      const bad = items.find((i) => i.n === 17);
      if (bad) throw new Error(`cannot handle item 17 (delivery ${bad.delivery})`);
      for (const i of items) ok.set(i.n, (ok.get(i.n) ?? 0) + 1);
    });
    await r.settled();
    await r.stop();
    const firstWith17 = r.calls.find((c) => c.includes(17))!;
    expect(firstWith17.length).toBeGreaterThan(20); // it came in a batch with many others
    expect([...ok.keys()].sort((a, b) => a - b)).toEqual([...Array(40).keys()].filter((n) => n !== 17));
    expect([...ok.values()].every((v) => v === 1)).toBe(true); // each handled once, on its first delivery
    // 17 was tried alone on each of its 3 deliveries, and no good message was retried after the first one
    expect(r.calls.filter((c) => c.length === 1 && c[0] === 17).length).toBe(3);
    const dl = await deadLetters("poison", 1);
    expect(dl).toEqual([{ n: 17, subject: r.subject, reason: "handler: Error: cannot handle item 17 (delivery 3) (attempt 3 of 3)" }]);
  }, 60_000);

  test("a permanent error goes to the dead-letter stream at once; two poison messages in different halves are both isolated", async () => {
    const ok: number[] = [];
    const r = await run("permanent", 30, 10, (items) => {
      const bad = items.find((i) => i.n === 3 || i.n === 25);
      if (bad) throw new PermanentError(`item ${bad.n} refers to nothing`);
      ok.push(...items.map((i) => i.n));
    });
    await r.settled();
    await r.stop();
    expect(ok.sort((a, b) => a - b)).toEqual([...Array(30).keys()].filter((n) => n !== 3 && n !== 25));
    const dl = await deadLetters("permanent", 2);
    expect(dl.map((d) => d.n).sort((a, b) => a - b)).toEqual([3, 25]);
    expect(dl.find((d) => d.n === 3)!.reason).toBe("handler: PermanentError: item 3 refers to nothing");
    expect(r.calls.filter((c) => c.includes(3) && c.length === 1).length).toBe(1); // never redelivered
  }, 60_000);

  test("an error of unknown kind on every message: none is dead-lettered before it has failed alone, each after maxAttempts", async () => {
    const r = await run("unknown", 12, 2, () => {
      throw new Error("something is wrong");
    });
    await r.settled();
    await r.stop();
    const dl = await deadLetters("unknown", 12);
    expect(dl.map((d) => d.n).sort((a, b) => a - b)).toEqual([...Array(12).keys()]);
    expect(new Set(dl.map((d) => d.reason))).toEqual(new Set(["handler: Error: something is wrong (attempt 2 of 2)"]));
    for (let n = 0; n < 12; n++) expect(r.calls.some((c) => c.length === 1 && c[0] === n)).toBe(true);
  }, 60_000);

  test("a store outage holds the batch whole and retries it in place (no split, no redelivery); handled once the store is back", async () => {
    let failures = 0;
    const ok: number[] = [];
    const r = await run("transient", 25, 2, (items) => {
      // the first message goes through; the store is down for the first 3 tries of the 24 behind it (more tries
      // than maxAttempts: a store outage does not count against the message)
      if (items.length > 1 && failures < 3) {
        failures++;
        throw new GraphStoreError("unavailable", "graph store is down");
      }
      ok.push(...items.map((i) => i.n));
    });
    await r.settled();
    await r.stop();
    expect(ok.sort((a, b) => a - b)).toEqual([...Array(25).keys()]);
    // never split: every call was the first message alone or the other 24 together
    expect(r.calls.every((c) => (c.length === 1 && c[0] === 0) || c.length === 24)).toBe(true);
    expect(r.calls.filter((c) => c.length === 24).length).toBe(4); // 3 failed tries, then handled
    // retried in place, kept in progress: JetStream never redelivered anything
    expect((await r.info()).num_redelivered).toBe(0);
    await deadLetters("transient", 0);
  }, 120_000);

  test("a store that never comes back: nothing is dead-lettered; after a restart the next run handles every message", async () => {
    const r = await run("down", 12, 2, () => {
      throw new TransientError("store is down", 100);
    });
    // far more tries than maxAttempts (2), and than the old max_deliver: the messages are still held, not given up
    await waitFor(() => r.calls.length >= 25, "25 tries of the held batch", 30_000);
    expect((await r.info()).num_ack_pending).toBeGreaterThan(0);
    await deadLetters("down", 0);
    const handled = new Map<number, number>();
    await r.restart((items) => {
      for (const i of items) handled.set(i.n, i.delivery);
    });
    await r.settled();
    await r.stop();
    expect([...handled.keys()].sort((a, b) => a - b)).toEqual([...Array(12).keys()]);
    // the held and queued messages came back as redeliveries
    expect(Math.max(...handled.values())).toBeGreaterThanOrEqual(2);
    await deadLetters("down", 0);
  }, 120_000);
});
