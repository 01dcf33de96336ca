/**
 * NATS credentials on a real nats-server whose authorization block is rendered by services/shared/nats-auth.ts: an
 * agent publishes its own host's subjects and nothing else, and cannot read the topology stream; a service cannot
 * publish where it should not.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { MetricBatch } from "../../../pipelines/contracts/metrics.ts";
import { encode } from "../../../pipelines/codec.ts";
import { topologyFor } from "../../../pipelines/streams.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { agentInboxPrefix, generateCredentials, renderAuthorization, usersOf, type NatsCredentials } from "../../../services/shared/nats-auth.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix } from "../../helpers/tmp.ts";

const prefix = uniquePrefix("auth");
const topo = topologyFor(prefix);
let nats: NatsServer;
let creds: NatsCredentials;
let admin: Bus;

beforeAll(async () => {
  creds = generateCredentials(["host-a", "host-b"]);
  nats = await startNats({ config: renderAuthorization(await usersOf(topo, creds)) });
  admin = await connectBus({ url: nats.url, prefix, name: "admin", user: creds.admin.user, pass: creds.admin.password });
});
afterAll(async () => {
  await admin?.close();
  await nats?.stop();
});

const discovery = (host: string) =>
  encode(DiscoveryBatch, "discovery.v1", { schema: "discovery.v1", source: `agent:${host}`, host, scanId: 1, part: 0, parts: 1, full: false, at: Date.now(), events: [] });
const metrics = (host: string) =>
  encode(MetricBatch, "metrics.v1", { schema: "metrics.v1", source: `agent:${host}`, batchId: "b1", samples: [{ entity: `host:${host}`, metric: "m", ts: Date.now(), value: 1, labels: {} }] });
const count = async (stream: string) => (await admin.jsm.streams.info(stream)).state.messages;
/** a publish awaiting JetStream's ack: true when stored, the error's name when refused */
const tryPublish = (bus: Bus, subject: string, data: Uint8Array) =>
  bus.js.publish(subject, data, { timeout: 3000 }).then(
    () => true,
    (e: Error) => e.name,
  );

const agentBus = (host: string, password?: string) =>
  connectBus({ url: nats.url, prefix, name: `agent-${host}`, user: creds.agents[host]!.user, pass: password ?? creds.agents[host]!.password, declare: false, inboxPrefix: agentInboxPrefix(host) });

test("an agent publishes its own host's discovery and metrics, and nothing for another host", async () => {
  const a = await agentBus("host-a");
  try {
    const d0 = await count(topo.streams.discovery.name);
    const m0 = await count(topo.streams.metrics.name);
    expect(await tryPublish(a, topo.subjects.discovery("host-a"), discovery("host-a"))).toBe(true);
    expect(await tryPublish(a, topo.subjects.metrics("agent:host-a"), metrics("host-a"))).toBe(true);
    // another host's subjects, and a subject of the alerts stream
    expect(await tryPublish(a, topo.subjects.discovery("host-b"), discovery("host-b"))).not.toBe(true);
    expect(await tryPublish(a, topo.subjects.metrics("agent:host-b"), metrics("host-b"))).not.toBe(true);
    expect(await tryPublish(a, topo.subjects.alerts("x"), metrics("host-a"))).not.toBe(true);
    expect(await count(topo.streams.discovery.name)).toBe(d0 + 1);
    expect(await count(topo.streams.metrics.name)).toBe(m0 + 1);
  } finally {
    await a.close();
  }
}, 60_000);

test("an agent cannot read the topology stream, nor declare or purge a stream", async () => {
  const a = await agentBus("host-a");
  try {
    await expect(a.jsm.consumers.add(topo.streams.topology.name, { durable_name: "spy" })).rejects.toThrow();
    await expect(a.jsm.streams.info(topo.streams.topology.name)).rejects.toThrow();
    await expect(a.jsm.streams.purge(topo.streams.discovery.name)).rejects.toThrow();
    // core subscription to the deltas' subject: the server refuses it and the subscription ends with the violation
    const sub = a.nc.subscribe(topo.subjects.topologyDelta);
    const closed = await Promise.race([sub.closed, Bun.sleep(5000).then(() => "still open")]);
    expect(closed).toBeInstanceOf(Error);
    expect(String(closed)).toMatch(/permission/i);
    expect((await admin.jsm.consumers.list(topo.streams.topology.name).next()).map((c) => c.name)).not.toContain("spy");
  } finally {
    await a.close();
  }
}, 60_000);

test("a wrong password is refused", async () => {
  await expect(agentBus("host-a", "not-the-password-at-all")).rejects.toThrow(/authorization/i);
}, 30_000);

test("a service publishes what it writes and nothing else", async () => {
  const c = creds.services.metrics!;
  const m = await connectBus({ url: nats.url, prefix, name: "metrics", user: c.user, pass: c.password });
  const t = creds.services.topology!;
  const tp = await connectBus({ url: nats.url, prefix, name: "topology", user: t.user, pass: t.password });
  try {
    const d0 = await count(topo.streams.discovery.name);
    expect(await tryPublish(m, topo.subjects.discovery("host-a"), discovery("host-a"))).not.toBe(true);
    expect(await tryPublish(m, topo.subjects.topologyDelta, discovery("host-a"))).not.toBe(true);
    expect(await tryPublish(m, topo.subjects.health, discovery("host-a"))).not.toBe(true);
    expect(await count(topo.streams.discovery.name)).toBe(d0);
    // what each does write: the metrics service dead-letters, the topology service publishes deltas
    expect(await tryPublish(m, topo.subjects.dlq("metrics"), discovery("host-a"))).toBe(true);
    const t0 = await count(topo.streams.topology.name);
    expect(await tryPublish(tp, topo.subjects.topologyDelta, discovery("host-a"))).toBe(true);
    expect(await count(topo.streams.topology.name)).toBe(t0 + 1);
    expect(await tryPublish(tp, topo.subjects.discovery("host-a"), discovery("host-a"))).not.toBe(true);
  } finally {
    await m.close();
    await tp.close();
  }
}, 60_000);
