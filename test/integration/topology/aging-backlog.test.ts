/**
 * Aging while discovery waits (a real nats-server and Kuzu): a source whose next scans are already in the stream, or
 * fetched into the service's pull buffer behind a long write, is not silent. bench soak found a 2,000-host estate
 * removed whole after a long write: the last batch had read `pending: 0` (the rest sat in the client's buffer), so
 * the ager judged every source by the clock.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { DiscoveryBatch as DiscoveryBatchSchema, type DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import type { Changes } from "../../../pipelines/stages/topology/model.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startTopologyService, type TopologyService } from "../../../services/topology/service.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

/** Kuzu with a write that can be made slow, recording every node removal it is asked to write. */
class SlowStore extends KuzuGraphStore {
  slowMs = 0;
  removed: string[] = [];
  override async apply(c: Changes, ...rest: Parameters<KuzuGraphStore["apply"]> extends [unknown, ...infer R] ? R : never): Promise<void> {
    this.removed.push(...c.nodesRemoved);
    if (this.slowMs) await Bun.sleep(this.slowMs);
    return super.apply(c, ...rest);
  }
}

let nats: NatsServer;
let bus: Bus;
let store: SlowStore;
let svc: TopologyService;
let tmp: { dir: string; cleanup: () => void };

// a source silent for 4 intervals of 100 ms is removed; the ager looks every 100 ms
const AGING = { intervalMs: 100, staleAfter: 2, removeAfter: 4, everyMs: 100 };

beforeAll(async () => {
  nats = await startNats();
  tmp = tempDir();
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("agebl"), name: "test" });
  store = new SlowStore(join(tmp.dir, "kuzu"));
  svc = await startTopologyService({ bus, store, log: makeLogger("test", true), aging: AGING });
});
afterAll(async () => {
  await svc?.stop();
  await store?.close();
  await bus?.close();
  await nats?.stop();
  tmp?.cleanup();
});

const scan = (scanId: number, ports: number[]): DiscoveryBatch => ({
  schema: "discovery.v1",
  source: "agent:a",
  host: "a",
  scanId,
  part: 0,
  parts: 1,
  full: false,
  at: Date.now(),
  events: [{ type: "host.seen", hostname: "a", os: "Debian 12", kernel: "6.1", cpus: 2, memTotalBytes: 1e9, ips: ["10.9.0.1"] }, ...ports.map((port) => ({ type: "listener.seen" as const, proto: "tcp" as const, ip: "0.0.0.0", port, process: null }))],
});
const publish = (b: DiscoveryBatch) => publishEvent(bus, bus.topo.subjects.discovery("a"), DiscoveryBatchSchema, "discovery.v1", b, `a:${b.scanId}`);

test("a source whose scans wait behind a long write is not aged out; once nothing waits, silence ages it as before", async () => {
  await publish(scan(1, [22]));
  await waitFor(() => svc.model().nodes.has("host:a"), "the first scan folded", 30_000);

  // the next write (a new listener) takes 2 s (20 intervals); the source keeps scanning every 100 ms meanwhile
  store.slowMs = 2000;
  await publish(scan(2, [22, 23]));
  await waitFor(() => svc.model().nodes.has("listener:a:tcp:0.0.0.0:23"), "scan 2 being written", 5_000);
  for (let i = 3; i <= 20; i++) {
    await publish(scan(i, i === 20 ? [22, 23, 9999] : [22, 23]));
    await Bun.sleep(100);
  }
  store.slowMs = 0;
  await waitFor(() => svc.model().nodes.has("listener:a:tcp:0.0.0.0:9999"), "the last scan folded", 30_000);
  expect(store.removed.filter((id) => id === "host:a")).toEqual([]);

  // nothing waits any more: 4 silent intervals later the source goes, as aging says
  await waitFor(() => !svc.model().nodes.has("host:a"), "the silent source aged out", 10_000);
  expect(store.removed).toContain("host:a");
}, 60_000);
