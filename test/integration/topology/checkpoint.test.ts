/** The topology service asks the graph store to checkpoint once writes pause (a real nats-server and Kuzu). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { DiscoveryBatch as DiscoveryBatchSchema, type DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startTopologyService, type TopologyService } from "../../../services/topology/service.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const IDLE_MS = 1500;

/** Records the service's rev at each checkpoint (and still checkpoints). */
class CountingStore extends KuzuGraphStore {
  at: number[] = [];
  rev = () => -1;
  override async checkpoint(): Promise<void> {
    await super.checkpoint();
    this.at.push(this.rev());
  }
}

let nats: NatsServer;
let bus: Bus;
let store: CountingStore;
let svc: TopologyService;
let tmp: { dir: string; cleanup: () => void };

beforeAll(async () => {
  nats = await startNats();
  tmp = tempDir();
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("ckpt"), name: "test" });
  store = new CountingStore(join(tmp.dir, "kuzu"));
  svc = await startTopologyService({ bus, store, log: makeLogger("test", true), checkpointIdleMs: IDLE_MS });
  store.rev = () => svc.rev();
});
afterAll(async () => {
  await svc.stop();
  await store.close();
  await bus.close();
  await nats.stop();
  tmp.cleanup();
});

let scan = 0;
const publish = (host: string, port: number) => {
  const events: DiscoveryBatch["events"] = [{ type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port, process: null }];
  scan++;
  return publishEvent(bus, bus.topo.subjects.discovery(host), DiscoveryBatchSchema, "discovery.v1", { schema: "discovery.v1", source: `agent:${host}`, host, scanId: scan, part: 0, parts: 1, full: false, at: Date.now(), events }, `${host}:${scan}`);
};

test("one checkpoint once writes pause, after the last of them; none while nothing is written", async () => {
  expect(store.at).toEqual([]); // nothing written yet: no checkpoint
  await publish("a", 1);
  await waitFor(() => store.at.length === 1, "a checkpoint after the first write", 30_000);
  expect(store.at[0]).toBe(svc.rev());

  // three writes closer together than the idle time: one checkpoint, after all three
  for (const port of [2, 3, 4]) {
    await publish("a", port);
    await waitFor(() => svc.model().nodes.has(`listener:a:tcp:0.0.0.0:${port}`), `port ${port} folded in`);
    await Bun.sleep(100);
  }
  const lastRev = svc.rev();
  await waitFor(() => store.at.length === 2, "a checkpoint once the writes paused", 30_000);
  expect(store.at[1]).toBe(lastRev);
  await Bun.sleep(IDLE_MS * 2);
  expect(store.at.length).toBe(2);

  // what was written before each checkpoint is what the store holds
  const stored = await store.query("MATCH (n:Entity) WHERE n.kind = 'listener' RETURN n.port AS port ORDER BY port");
  expect(stored.map((r) => Number(r.port))).toEqual([1, 2, 3, 4]);
});
