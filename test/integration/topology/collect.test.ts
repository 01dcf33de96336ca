/** The topology service collects garbage after a bulk change set only (a real nats-server and Kuzu). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { DiscoveryBatch as DiscoveryBatchSchema, type DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startTopologyService, type TopologyService } from "../../../services/topology/service.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

let nats: NatsServer;
let bus: Bus;
let store: KuzuGraphStore;
let svc: TopologyService;
let tmp: { dir: string; cleanup: () => void };
/** the rev at each collection */
const collectedAt: number[] = [];
const AFTER = 100;

beforeAll(async () => {
  nats = await startNats();
  tmp = tempDir();
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("collect"), name: "test" });
  store = new KuzuGraphStore(join(tmp.dir, "kuzu"));
  svc = await startTopologyService({ bus, store, log: makeLogger("test", true), collect: () => collectedAt.push(svc.rev()), collectAfterItems: AFTER });
});
afterAll(async () => {
  await svc.stop();
  await store.close();
  await bus.close();
  await nats.stop();
  tmp.cleanup();
});

const publish = (host: string, events: DiscoveryBatch["events"]) =>
  publishEvent(bus, bus.topo.subjects.discovery(host), DiscoveryBatchSchema, "discovery.v1", { schema: "discovery.v1", source: `agent:${host}`, host, scanId: 1, part: 0, parts: 1, full: false, at: Date.now(), events }, `${host}:1`);

test("a change set of collectAfterItems or more is followed by one collection; a smaller one by none", async () => {
  // a listener node and its LISTENS edge each, plus the host: just over the threshold
  const n = AFTER / 2;
  const listeners = (from: number) => Array.from({ length: n }, (_, i) => ({ type: "listener.seen" as const, proto: "tcp" as const, ip: "0.0.0.0", port: from + i, process: null }));
  await publish("big", listeners(1));
  await waitFor(() => collectedAt.length === 1, "a collection after the bulk batch", 60_000);
  expect(svc.model().nodes.size).toBe(n + 1);
  const afterBig = collectedAt[0]!;
  await publish("small", [{ type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 22, process: null }]);
  await waitFor(() => svc.model().nodes.has("listener:small:tcp:0.0.0.0:22"), "the small batch folded in");
  await publish("big2", listeners(1));
  await waitFor(() => collectedAt.length >= 2, "a collection after the second bulk batch", 60_000);
  // one delta each: the small batch wrote afterBig + 1 without a collection, the second bulk one afterBig + 2
  expect(collectedAt).toEqual([afterBig, afterBig + 2]);
});
