/**
 * A message just under the server's max_payload that a consumer cannot read still reaches the dead-letter stream:
 * with the dead letter's headers it would no longer fit, the server would refuse it on every try, and the message
 * would be redelivered forever, holding its consumer (found by the hostile-input suite). Its head is kept and the
 * cut is said in a header; the consumer moves on to what follows.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { z } from "zod";
import { connectBus, ensureConsumer, runConsumer, type Bus, type ConsumerPolicy } from "../../../services/shared/bus.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";

let nats: NatsServer;
let bus: Bus;
beforeAll(async () => {
  nats = await startNats();
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("dlqsize"), name: "test" });
});
afterAll(async () => {
  await bus.close();
  await nats.stop();
});

test("an unreadable message at the payload limit is dead-lettered (its head kept, the cut said) and the consumer goes on", async () => {
  const subject = bus.topo.subjects.discovery("big");
  const spec: ConsumerPolicy = { stream: bus.topo.streams.discovery.name, durable: "big", filterSubject: subject, ackWaitMs: 30_000, maxDeliver: -1 };
  await ensureConsumer(bus.jsm, spec);
  const max = bus.nc.info!.max_payload;
  // the largest body the server takes on this subject (less the publish's own Nats-Msg-Id header), not JSON
  const big = new Uint8Array(max - 128).fill(0x41);
  await bus.js.publish(subject, big, { msgID: "big:1" });
  await bus.js.publish(subject, new TextEncoder().encode(JSON.stringify({ n: 1 })), { msgID: "big:2" });
  const seen: number[] = [];
  const c = await runConsumer(bus, spec, z.object({ n: z.number() }), "item.v1", async (batch) => void seen.push(...batch.map((b) => b.value.n)));
  try {
    await waitFor(() => seen.includes(1), "the message after the big one handled", 20_000);
    const dead = await bus.jsm.streams.getMessage(bus.topo.streams.dlq.name, { last_by_subj: bus.topo.subjects.dlq("big") });
    if (!dead) throw new Error("no dead letter for the big message");
    expect(dead.header?.get("Orrery-Truncated")).toContain(`${big.byteLength} bytes`);
    expect(dead.header?.get("Orrery-Reason")).toBeTruthy();
    expect(dead.data.byteLength).toBeLessThan(big.byteLength);
    expect(dead.data.subarray(0, 16)).toEqual(big.subarray(0, 16));
    const i = await bus.jsm.consumers.info(spec.stream, spec.durable);
    expect([i.num_pending, i.num_ack_pending]).toEqual([0, 0]);
  } finally {
    await c.stop();
  }
});
