/**
 * ensureStreams / ensureStream / ensureConsumer against a real nats-server: they create what is missing, are
 * idempotent (a second call, or five at once, changes nothing and loses no position), bring an existing stream or
 * durable to its declaration, and let every other JetStream failure through, recognised by its API code.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { AckPolicy, jetstream, JetStreamApiError, jetstreamManager, RetentionPolicy, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { topologyFor, type ConsumerSpec } from "../../../pipelines/streams.ts";
import { ensureConsumer, ensureStream, ensureStreams, JsApiCode, jsApiCode } from "../../../services/shared/bus.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix } from "../../helpers/tmp.ts";

const ns = (ms: number) => ms * 1_000_000;

let nats: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  jsm = await jetstreamManager(nc);
});
afterAll(async () => {
  await nc.close();
  await nats.stop();
});

describe("ensureStream", () => {
  test("creates a missing stream as declared; a second call keeps it and its messages", async () => {
    const s = topologyFor(uniquePrefix("es")).streams.alerts;
    await ensureStream(jsm, s);
    const info = await jsm.streams.info(s.name);
    expect(info.config.subjects).toEqual(s.subjects);
    expect(info.config.retention).toBe(RetentionPolicy.Limits);
    expect(info.config.max_age).toBe(ns(s.maxAgeMs));
    expect(info.config.max_bytes).toBe(s.maxBytes);
    expect(info.config.duplicate_window).toBe(ns(s.duplicateWindowMs));
    await jetstream(nc).publish(s.subjects[0]!.replace(">", "x"), new Uint8Array([1]));
    await ensureStream(jsm, s);
    const again = await jsm.streams.info(s.name);
    expect(again.created).toBe(info.created);
    expect(again.state.messages).toBe(1);
  });

  test("the job queue is a work-queue stream: an acked run is gone", async () => {
    const t = topologyFor(uniquePrefix("eq"));
    await ensureStream(jsm, t.streams.jobs);
    expect((await jsm.streams.info(t.streams.jobs.name)).config.retention).toBe(RetentionPolicy.Workqueue);
    const spec = t.jobConsumers.shared("net", { ackWaitMs: 5000, maxAttempts: 3 });
    await ensureConsumer(jsm, spec);
    await jetstream(nc).publish(t.subjects.jobs.queue("net"), new Uint8Array([1]));
    const m = await (await jetstream(nc).consumers.get(spec.stream, spec.durable)).next({ expires: 2000 });
    expect(m?.subject).toBe(t.subjects.jobs.queue("net"));
    await m!.ackAck();
    expect((await jsm.streams.info(t.streams.jobs.name)).state.messages).toBe(0);
  });

  test("brings a stream created with other settings to its declaration", async () => {
    const s = topologyFor(uniquePrefix("eu")).streams.metrics;
    await jsm.streams.add({ name: s.name, subjects: s.subjects, max_age: ns(60_000), max_bytes: 1024 ** 2 });
    await ensureStream(jsm, s);
    const info = await jsm.streams.info(s.name);
    expect([info.config.max_age, info.config.max_bytes, info.config.duplicate_window]).toEqual([ns(s.maxAgeMs), s.maxBytes, ns(s.duplicateWindowMs)]);
  });

  test("five services at once: all succeed, one stream", async () => {
    const s = topologyFor(uniquePrefix("ec")).streams.discovery;
    const conns = await Promise.all([0, 1, 2, 3, 4].map(() => connect({ servers: nats.url })));
    try {
      const managers = await Promise.all(conns.map((c) => jetstreamManager(c)));
      await Promise.all(managers.map((m) => ensureStream(m, s)));
      expect((await jsm.streams.info(s.name)).config.name).toBe(s.name);
    } finally {
      await Promise.all(conns.map((c) => c.close()));
    }
  });

  test("a failure other than 'not found' is thrown with its code, not swallowed", async () => {
    const t = topologyFor(uniquePrefix("ef"));
    // a subject another stream already stores: JetStream refuses the overlap
    await ensureStream(jsm, t.streams.alerts);
    const err = await ensureStream(jsm, { ...t.streams.alerts, name: `${t.streams.alerts.name}_TWIN` }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(JetStreamApiError);
    expect(jsApiCode(err)).not.toBe(JsApiCode.StreamNotFound);
    expect(jsApiCode(new Error("stream not found"))).toBeUndefined();
  });
});

describe("ensureConsumer", () => {
  test("creates a missing durable as declared; a second call keeps its position", async () => {
    const t = topologyFor(uniquePrefix("ecn"));
    await ensureStream(jsm, t.streams.alerts);
    const c = t.consumers.alerts;
    await ensureConsumer(jsm, c);
    const info = await jsm.consumers.info(c.stream, c.durable);
    expect(info.config.ack_policy).toBe(AckPolicy.Explicit);
    expect(info.config.filter_subject).toBe(c.filterSubject);
    expect([info.config.ack_wait, info.config.max_deliver, info.config.max_ack_pending]).toEqual([ns(c.ackWaitMs), c.maxDeliver, 10_000]);

    const js = jetstream(nc);
    for (let i = 0; i < 3; i++) await js.publish(t.subjects.alerts("am"), new Uint8Array([i]));
    const m = await (await js.consumers.get(c.stream, c.durable)).next({ expires: 2000 });
    await m!.ackAck();
    await ensureConsumer(jsm, c);
    const again = await jsm.consumers.info(c.stream, c.durable);
    expect(again.created).toBe(info.created);
    expect([again.ack_floor.stream_seq, again.num_pending]).toEqual([1, 2]);
  });

  test("brings an existing durable's ack_wait, max_deliver and max_ack_pending to its declaration", async () => {
    const t = topologyFor(uniquePrefix("ecu"));
    await ensureStream(jsm, t.streams.jobs);
    const before = t.jobConsumers.placed("net", "w1", { ackWaitMs: 30_000, maxAttempts: 5 });
    await ensureConsumer(jsm, before);
    const after: ConsumerSpec = { ...before, ackWaitMs: 60_000, maxDeliver: 9, maxAckPending: 50 };
    await ensureConsumer(jsm, after);
    const info = await jsm.consumers.info(after.stream, after.durable);
    expect([info.config.ack_wait, info.config.max_deliver, info.config.max_ack_pending]).toEqual([ns(60_000), 9, 50]);
  });

  test("five workers of one type at once: all succeed, one durable", async () => {
    const t = topologyFor(uniquePrefix("ecc"));
    await ensureStream(jsm, t.streams.jobs);
    const spec = t.jobConsumers.shared("net", { ackWaitMs: 30_000, maxAttempts: 5 });
    const conns = await Promise.all([0, 1, 2, 3, 4].map(() => connect({ servers: nats.url })));
    try {
      const managers = await Promise.all(conns.map((c) => jetstreamManager(c)));
      await Promise.all(managers.map((m) => ensureConsumer(m, spec)));
      const names: string[] = [];
      for await (const c of jsm.consumers.list(spec.stream)) names.push(c.name);
      expect(names).toEqual([spec.durable]);
    } finally {
      await Promise.all(conns.map((c) => c.close()));
    }
  });

  test("a durable of a missing stream: the stream-not-found error is thrown", async () => {
    const t = topologyFor(uniquePrefix("ecm"));
    const err = await ensureConsumer(jsm, t.consumers.metrics).then(
      () => null,
      (e: unknown) => e,
    );
    expect(jsApiCode(err)).toBe(JsApiCode.StreamNotFound);
  });
});

describe("ensureStreams", () => {
  test("creates every declared stream and fixed durable; a second run changes nothing", async () => {
    const t = topologyFor(uniquePrefix("all"));
    await ensureStreams(jsm, t);
    const streams: string[] = [];
    for await (const s of jsm.streams.list()) if (s.config.name.startsWith(`${t.prefix.toUpperCase()}_`)) streams.push(s.config.name);
    expect(streams.sort()).toEqual(Object.values(t.streams).map((s) => s.name).sort());
    const created = new Map<string, string>();
    for (const c of Object.values(t.consumers)) created.set(`${c.stream}/${c.durable}`, (await jsm.consumers.info(c.stream, c.durable)).created);
    await ensureStreams(jsm, t);
    for (const c of Object.values(t.consumers)) expect((await jsm.consumers.info(c.stream, c.durable)).created).toBe(created.get(`${c.stream}/${c.durable}`)!);
  });
});
