/**
 * A graph store holding props that are not JSON (a real nats-server and Kuzu). bench soak left a Kuzu database whose
 * nodes had props '' after its buffer pool ran out mid-write and the process crashed; every later start failed on
 * JSON.parse and the map stayed frozen. The service now starts, says which entities it could not read, and the
 * sources' next scans write their props again.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { DiscoveryBatch as DiscoveryBatchSchema, type DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import type { Logger } from "../../../services/shared/log.ts";
import { startTopologyService } from "../../../services/topology/service.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

let nats: NatsServer;
let bus: Bus;
let tmp: { dir: string; cleanup: () => void };

beforeAll(async () => {
  nats = await startNats();
  tmp = tempDir();
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("damaged"), name: "test" });
});
afterAll(async () => {
  await bus?.close();
  await nats?.stop();
  tmp?.cleanup();
});

const scan = (scanId: number): DiscoveryBatch => ({
  schema: "discovery.v1",
  source: "agent:a",
  host: "a",
  scanId,
  part: 0,
  parts: 1,
  full: false,
  at: Date.now(),
  events: [
    { type: "host.seen", hostname: "a", os: "Debian 12", kernel: "6.1", cpus: 2, memTotalBytes: 1e9, ips: ["10.9.0.1"] },
    { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 22, process: null },
  ],
});
const publish = (b: DiscoveryBatch) => publishEvent(bus, bus.topo.subjects.discovery("a"), DiscoveryBatchSchema, "discovery.v1", b, `a:${b.scanId}`);

test("props that are not JSON in the store: the service starts, names the entities, and the next scan writes them again", async () => {
  const path = join(tmp.dir, "kuzu");
  const warnings: { msg: string; fields?: Record<string, unknown> }[] = [];
  const log: Logger = { info: () => undefined, warn: (msg, fields) => void warnings.push({ msg, fields }), error: (msg, fields) => void warnings.push({ msg, fields }) };

  let store = new KuzuGraphStore(path);
  let svc = await startTopologyService({ bus, store, log });
  await publish(scan(1));
  await waitFor(() => svc.model().nodes.has("host:a"), "the first scan folded", 30_000);
  const hostProps = svc.model().nodes.get("host:a")!.props;
  expect(hostProps.os).toBe("Debian 12");
  await svc.stop();
  await store.close();

  // what the soak's database held: empty props on a node. Written by a child process, so no raw Kuzu handle lives in
  // this one (a query result left open when its connection closed crashed Bun later, in its finalizer)
  const damage = Bun.spawn(
    [process.execPath, "-e", `const k = require("kuzu"); const db = new k.Database(${JSON.stringify(path)}); const c = new k.Connection(db); const r = await c.query("MATCH (n:Entity {id: 'host:a'}) SET n.props = ''"); r.close(); await c.close(); await db.close();`],
    { cwd: join(import.meta.dir, "../../.."), stdout: "ignore", stderr: "pipe" },
  );
  expect({ code: await damage.exited, stderr: await new Response(damage.stderr).text() }).toEqual({ code: 0, stderr: "" });

  store = new KuzuGraphStore(path);
  svc = await startTopologyService({ bus, store, log });
  try {
    expect(svc.model().nodes.get("host:a")?.props).toEqual({});
    expect(warnings.find((w) => w.msg.startsWith("the graph store held entities whose props are not JSON"))?.fields).toEqual({ entities: 1, examples: ["host:a"] });
    await publish(scan(2));
    await waitFor(() => svc.model().nodes.get("host:a")?.props.os === "Debian 12", "the next scan's props", 30_000);
    await waitFor(async () => (await store.load()).unreadable.length === 0, "the props written again", 30_000);
    expect((await store.load()).nodes.find((n) => n.id === "host:a")?.props).toEqual(svc.model().nodes.get("host:a")!.props);
  } finally {
    await svc.stop();
    await store.close();
  }
}, 90_000);
