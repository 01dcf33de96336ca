/**
 * A discovery batch about another host than its subject names is dead-lettered with host_mismatch, and the batches
 * around it are folded (a real nats-server and Kuzu). NATS permissions confine an agent to its own host's subject; this
 * confines what it says to that host.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { DeliverPolicy } from "@nats-io/jetstream";
import { DiscoveryBatch as DiscoveryBatchSchema, type DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { discoverySubjectFits, topologyFor } from "../../../pipelines/streams.ts";
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

beforeAll(async () => {
  nats = await startNats();
  tmp = tempDir();
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("hostmm"), name: "test" });
  store = new KuzuGraphStore(join(tmp.dir, "kuzu"));
  svc = await startTopologyService({ bus, store, log: makeLogger("test", true) });
});
afterAll(async () => {
  await svc.stop();
  await store.close();
  await bus.close();
  await nats.stop();
  tmp.cleanup();
});

const scan = (host: string, port: number): DiscoveryBatch => ({
  schema: "discovery.v1",
  source: `agent:${host}`,
  host,
  scanId: 1,
  part: 0,
  parts: 1,
  full: false,
  at: Date.now(),
  events: [{ type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port, process: null }],
});

test("the subject rule: a host's own subject or a tenant's subject for it, nothing else", () => {
  const t = topologyFor("p");
  expect(discoverySubjectFits(t, t.subjects.discovery("web.example.org"), "web.example.org")).toBe(true);
  expect(discoverySubjectFits(t, t.subjects.tenantDiscovery("t01", "web"), "web")).toBe(true);
  expect(discoverySubjectFits(t, t.subjects.discovery("web"), "db")).toBe(false);
  expect(discoverySubjectFits(t, t.subjects.tenantDiscovery("t01", "web"), "db")).toBe(false);
  expect(discoverySubjectFits(t, `${t.subjects.tenantDiscovery("t01", "web")}.x`, "web")).toBe(false);
  expect(discoverySubjectFits(t, "q.discovery.v1.web", "web")).toBe(false);
});

test("a batch about another host is dead-lettered with host_mismatch; the batches before and after it are folded", async () => {
  await publishEvent(bus, bus.topo.subjects.discovery("a"), DiscoveryBatchSchema, "discovery.v1", scan("a", 22), "a:1");
  // host a's subject, host b's body
  await publishEvent(bus, bus.topo.subjects.discovery("a"), DiscoveryBatchSchema, "discovery.v1", scan("b", 5432), "a:spoof");
  await publishEvent(bus, bus.topo.subjects.discovery("c"), DiscoveryBatchSchema, "discovery.v1", scan("c", 80), "c:1");
  await waitFor(() => svc.model().nodes.has("listener:c:tcp:0.0.0.0:80"), "the batch after the stray one folded", 30_000);
  expect(svc.model().nodes.has("listener:a:tcp:0.0.0.0:22")).toBe(true);
  expect([...svc.model().nodes.keys()].some((id) => id.includes(":b:") || id === "host:b")).toBe(false);
  const dlq = await bus.js.consumers.get(bus.topo.streams.dlq.name, { deliver_policy: DeliverPolicy.All, filter_subjects: bus.topo.subjects.dlq("topology") });
  const m = await waitFor(() => dlq.next({ expires: 1000 }), "the stray batch's dead letter", 30_000);
  expect(m.headers!.get("Orrery-Reason")).toMatch(/host_mismatch.*"b"/);
  expect(JSON.parse(new TextDecoder().decode(m.data)).host).toBe("b");
}, 60_000);
