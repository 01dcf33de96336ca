/**
 * An agent run with a broker binding's credentials publishes as that tenant: a real nats-server whose configuration
 * holds the authorization block the broker renders for the binding (plus a service user for the platform), the agent's
 * publish path in-process with the binding's seed and tenant, and the topology service (in-process, Kuzu in a temp
 * dir) folding what it sent.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { HostScan } from "../../../pipelines/contracts/host-scan.ts";
import { makeAgent } from "../../../services/agent/agent.ts";
import { resolveAgentConfig } from "../../../services/agent/config.ts";
import { authorizationBlock, credentialsFor, natsUserFor, tenantFor } from "../../../services/broker/tenant.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startTopologyService, type TopologyService } from "../../../services/topology/service.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const SERVICE = { user: "platform", password: "platform-password-1" };
const prefix = uniquePrefix("tenant");
const tenant = tenantFor({ instanceId: "instance-1", plan: "host-agents", params: {}, prefix, gatewayUrl: "http://gateway" });
const other = tenantFor({ instanceId: "instance-2", plan: "host-agents", params: {}, prefix, gatewayUrl: "http://gateway" });
const user = natsUserFor(tenant, "nats://placeholder");
const ROOT = join(import.meta.dir, "../../..");
const log = makeLogger("tenant-test", true);

let nats: NatsServer;
let platform: Bus;
let agentBus: Bus;
let store: KuzuGraphStore;
let topology: TopologyService;
let tmp: { dir: string; cleanup: () => void };

beforeAll(async () => {
  nats = await startNats({ config: authorizationBlock([user], SERVICE) });
  tmp = tempDir();
  // the platform's services declare the streams; the tenant's user may not call the JetStream API
  platform = await connectBus({ url: nats.url, prefix, name: "platform", user: SERVICE.user, pass: SERVICE.password });
  store = new KuzuGraphStore(join(tmp.dir, "kuzu"));
  topology = await startTopologyService({ bus: platform, store, log });
  // what an agent resolves from the binding's credentials (main.ts passes these to connectBus and makeAgent)
  const creds = credentialsFor({ ...tenant, placement: { active: ["local"], standby: [], degraded: null } }, { ...user, url: nats.url });
  const r = resolveAgentConfig([], { NATS_URL: creds.nats.url, ORRERY_PREFIX: creds.subject_prefix, ORRERY_TENANT: creds.graph_source, NATS_NKEY_SEED_FILE: "/seed" }, (p) => {
    if (p !== "/seed") throw new Error(`unexpected read of ${p}`);
    return `${creds.nats.seed}\n`;
  });
  if (r.help) throw new Error("unexpected help");
  expect(r.config.tenant).toBe(tenant.id);
  agentBus = await connectBus({ url: r.config.natsUrl, prefix: r.config.prefix, name: "tenant-agent", nkeySeed: r.config.natsNkeySeed, declare: false });
});
afterAll(async () => {
  await topology?.stop();
  await store?.close();
  await agentBus?.close();
  await platform?.close();
  await nats?.stop();
  tmp?.cleanup();
});

const proc = (pid: number, comm: string) => ({ pid, ppid: 1, comm, exe: `/usr/bin/${comm}`, cmdline: [comm], uid: 0, user: "root", startTime: 5, containerId: null, cpuTicks: 7, rssBytes: 4096 });
const scan = (at: number): HostScan => ({
  at,
  facts: { hostname: "web01", os: "Linux", kernel: "6", cpus: 2, memTotalBytes: 1, memAvailableBytes: 1, load1: 0, ips: ["10.0.0.1"] },
  sockets: [
    { proto: "tcp", family: 4, localIp: "0.0.0.0", localPort: 8080, remoteIp: "0.0.0.0", remotePort: 0, state: "listen", inode: 1, uid: 0, pid: 10 },
    { proto: "tcp", family: 4, localIp: "127.0.0.1", localPort: 8080, remoteIp: "0.0.0.0", remotePort: 0, state: "listen", inode: 3, uid: 0, pid: 10 },
    { proto: "tcp", family: 4, localIp: "10.0.0.1", localPort: 40000, remoteIp: "10.0.0.9", remotePort: 5432, state: "established", inode: 2, uid: 0, pid: 10 },
  ],
  processes: new Map([[10, proc(10, "api")]]),
  unreadablePids: [],
});

/** subject → message count of the stream, as the platform sees it */
async function subjectsOf(stream: string): Promise<Record<string, number>> {
  const info = await platform.jsm.streams.info(stream, { subjects_filter: ">" });
  return info.state.subjects ?? {};
}

test("the agent publishes a scan as its tenant; the topology folds it and its host and service carry tenant=<id>", async () => {
  let at = Date.now();
  const agent = makeAgent(agentBus, log, { host: "web01", intervalMs: 1000, fullEvery: 1, tenant: tenant.id, scan: async () => scan((at += 1000)) });
  const first = await agent.scanOnce();
  expect(first.batches).toBeGreaterThan(0);
  // a second scan: CPU rates need two, so metrics are published too
  const second = await agent.scanOnce();
  expect(second.samples).toBeGreaterThan(0);

  const discovery = await subjectsOf(platform.topo.streams.discovery.name);
  expect(Object.keys(discovery)).toEqual([`${prefix}.discovery.v1.${tenant.id}.web01`]);
  const metrics = await subjectsOf(platform.topo.streams.metrics.name);
  expect(Object.keys(metrics)).toEqual([`${prefix}.metrics.v1.${tenant.id}.agent:web01`]);

  const host = await waitFor(() => topology.model().nodes.get("host:web01"), "the tenant's host in the graph");
  await waitFor(() => host.props.tenant === tenant.id || undefined, "tenant=<id> on the host", 20_000);
  const service = await waitFor(() => topology.model().nodes.get("service:web01:api:8080"), "the tenant's service in the graph");
  await waitFor(() => service.props.tenant === tenant.id || undefined, "tenant=<id> on the service", 20_000);
  expect(topology.model().nodes.get("service:web01:api:8080")!.props.tenant).toBe(tenant.id);
  expect(topology.model().nodes.get("host:web01")!.props.tenant).toBe(tenant.id);
  // the graph store holds the prop too, as the dashboard view's tag filter (tenant=<id>) reads it
  expect(tenant.view.filters.tag).toBe(`tenant=${tenant.id}`);
  const stored = await waitFor(async () => {
    const g = await store.load();
    const marked = g.nodes.filter((n) => n.props.tenant === tenant.id).map((n) => n.id);
    return marked.includes("host:web01") && marked.includes("service:web01:api:8080") ? marked : undefined;
  }, "tenant=<id> on the host and the service in Kuzu");
  expect(stored).toContain("host:web01");
}, 60_000);

test("the same credentials are refused publishing another tenant's subjects or the plain discovery subject", async () => {
  const forbidden = [
    platform.topo.subjects.tenantDiscovery(other.id, "web01"),
    platform.topo.subjects.discovery("web01"),
    platform.topo.subjects.tenantMetrics(other.id, "agent:web01"),
    platform.topo.subjects.metrics("agent:web01"),
  ];
  for (const subject of forbidden) await expect(agentBus.js.publish(subject, "{}", { timeout: 5000 })).rejects.toThrow(/permission/i);
  const stored = [...Object.keys(await subjectsOf(platform.topo.streams.discovery.name)), ...Object.keys(await subjectsOf(platform.topo.streams.metrics.name))];
  for (const subject of forbidden) expect(stored).not.toContain(subject);
  // and the tenant's user cannot read or change a stream
  await expect(agentBus.jsm.streams.info(platform.topo.streams.discovery.name)).rejects.toThrow();
}, 60_000);

test("orrery-agent run with the binding's settings (tenant, seed file) scans this machine once and publishes as the tenant", async () => {
  const seedFile = join(tmp.dir, "seed");
  writeFileSync(seedFile, `${user.seed}\n`, { mode: 0o600 });
  const p = Bun.spawn([process.execPath, join(ROOT, "services/agent/main.ts"), "--once"], {
    env: { PATH: process.env.PATH ?? "", NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_TENANT: `tenant:${tenant.id}`, NATS_NKEY_SEED_FILE: seedFile, ORRERY_HOST_ID: "tenant-host-2", ORRERY_LOG_QUIET: "1" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => p.kill("SIGKILL"), 60_000);
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  expect({ code, err: err.slice(0, 2000) }).toEqual({ code: 0, err: expect.any(String) });
  expect(out).toContain(`"tenant":"${tenant.id}"`);
  expect(Object.keys(await subjectsOf(platform.topo.streams.discovery.name))).toContain(`${prefix}.discovery.v1.${tenant.id}.tenant-host-2`);
  const host = await waitFor(() => topology.model().nodes.get("host:tenant-host-2"), "the agent's host in the graph");
  await waitFor(() => host.props.tenant === tenant.id || topology.model().nodes.get("host:tenant-host-2")?.props.tenant === tenant.id || undefined, "tenant=<id> on the agent's host", 20_000);
}, 90_000);
