/**
 * The store's outbox: deltas committed with the graph but not confirmed published are published by the next run of the
 * topology service, whether written compressed (now) or as plain JSON (data dirs from before). Real nats-server, Kuzu.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { decode } from "../../../pipelines/codec.ts";
import { TopologyDelta, type TopoNode } from "../../../pipelines/contracts/topology.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { deltaFromOutbox, outboxBody, startTopologyService } from "../../../services/topology/service.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

let nats: NatsServer;
let bus: Bus;
let tmp: { dir: string; cleanup: () => void };

beforeAll(async () => {
  nats = await startNats();
  tmp = tempDir();
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("outbox"), name: "test" });
});
afterAll(async () => {
  await bus.close();
  await nats.stop();
  tmp.cleanup();
});

const node = (h: string): TopoNode => ({ id: `host:${h}`, kind: "host", name: h, source: `agent:${h}`, props: { os: "Debian 12", note: 'quotes " and \\ and ünïcode' }, firstSeen: 1_700_000_000_000, lastSeen: 1_700_000_005_000 });
const delta = (rev: number, n: TopoNode): TopologyDelta => ({ schema: "topology.delta.v1", rev, at: n.lastSeen, nodesUpserted: [n], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] });

test("an outbox body is compressed and reads back as the same delta; a plain JSON body still reads", () => {
  const d = delta(3, node("a"));
  const body = outboxBody(d);
  expect(body.startsWith("gz1:")).toBe(true);
  expect(deltaFromOutbox(body)).toEqual(d);
  expect(deltaFromOutbox(JSON.stringify(d))).toEqual(d);
  // a large delta shrinks: what the store is handed at a first scan's commit
  const big: TopologyDelta = { ...d, nodesUpserted: Array.from({ length: 1500 }, (_, i) => node(`h${i}`)) };
  expect(outboxBody(big).length).toBeLessThan(JSON.stringify(big).length / 4);
  expect(() => deltaFromOutbox(outboxBody({ ...d, rev: 0 }))).toThrow(/rev/);
});

test("a restarted service publishes the deltas its predecessor committed but did not send, compressed or plain", async () => {
  const path = join(tmp.dir, "kuzu");
  const first = new KuzuGraphStore(path);
  await first.init();
  const [a, b] = [node("a"), node("b")];
  const sent = [delta(1, a), delta(2, b)];
  // What a run killed between its commit and its publish leaves: the graph at rev 2, both deltas in the outbox (the
  // first written by a version that stored plain JSON).
  await first.apply({ nodesUpserted: [a, b], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [], created: new Set([a.id, b.id]) }, 2, {
    entries: [
      { rev: 1, body: JSON.stringify(sent[0]) },
      { rev: 2, body: outboxBody(sent[1]!) },
    ],
    sentUpTo: 0,
  });
  await first.close();

  const store = new KuzuGraphStore(path);
  const svc = await startTopologyService({ bus, store, log: makeLogger("test", true) });
  try {
    expect(svc.rev()).toBe(2);
    const stream = bus.topo.streams.topology.name;
    await waitFor(async () => (await bus.jsm.streams.info(stream)).state.messages === 2, "both deltas published");
    const got: TopologyDelta[] = [];
    for (const seq of [1, 2]) {
      const m = await bus.jsm.streams.getMessage(stream, { seq });
      if (!m) throw new Error(`no delta at seq ${seq}`);
      got.push(decode(TopologyDelta, "topology.delta.v1", m.data));
    }
    expect(got).toEqual(sent);
  } finally {
    await svc.stop();
    await store.close();
  }
});

test("an outbox entry that cannot be read stops the start with an error naming its rev, and the graph stays as it was", async () => {
  const path = join(tmp.dir, "kuzu-bad");
  const first = new KuzuGraphStore(path);
  await first.init();
  const a = node("a");
  await first.apply({ nodesUpserted: [a], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [], created: new Set([a.id]) }, 1, { entries: [{ rev: 1, body: "gz1:bm90IGd6aXA=" }], sentUpTo: 0 });
  await first.close();
  const store = new KuzuGraphStore(path);
  try {
    await expect(startTopologyService({ bus, store, log: makeLogger("test", true) })).rejects.toThrow(/outbox entry for rev 1 cannot be read/);
    expect((await store.load()).nodes.map((n) => n.id)).toEqual([a.id]);
  } finally {
    await store.close();
  }
});
