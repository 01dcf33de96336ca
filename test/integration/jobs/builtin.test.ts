/**
 * Built-in jobs against the test's own loopback listeners only (TCP, HTTP, HTTPS with a throwaway certificate,
 * localhost DNS), then the tcp-scan and inventory jobs end to end through a worker on a real nats-server.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { decode } from "../../../pipelines/codec.ts";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { JobStatus } from "../../../pipelines/contracts/jobs.ts";
import { MetricBatch } from "../../../pipelines/contracts/metrics.ts";
import { applyDiscovery, emptyModel } from "../../../pipelines/stages/topology/index.ts";
import { BUILTIN_PACKAGES, loadPackages, type JobPackage } from "../../../services/jobs/packages.ts";
import { submitRun } from "../../../services/jobs/client.ts";
import type { JobContext, JobItem } from "../../../services/jobs/sdk.ts";
import { jobsTopology } from "../../../pipelines/streams.ts";
import { startWorker, type Worker } from "../../../services/jobs/worker.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const log = makeLogger("test", !process.env.JOBS_DEBUG);
let packages: Map<string, JobPackage>;
const tmp = tempDir();

async function collect(job: string, params: Record<string, unknown>): Promise<JobItem[]> {
  const ctx: JobContext = { runId: `${job}@t`, job, workerId: "t", params, signal: new AbortController().signal, log };
  const out: JobItem[] = [];
  for await (const i of packages.get(job)!.module.run(ctx)) out.push(i);
  return out;
}

/** A loopback port nobody listens on (bound, then released). */
function closedPort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = s.port;
  s.stop(true);
  return p;
}

const tcp = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
const http = Bun.serve({ hostname: "127.0.0.1", port: 0 as number, fetch: () => new Response("teapot", { status: 418, headers: { server: "orrery-test/1" } }) });
let https: ReturnType<typeof Bun.serve>;

beforeAll(async () => {
  packages = (await loadPackages([BUILTIN_PACKAGES])).packages;
  // a 30-day self-signed certificate for the HTTPS probe
  const key = join(tmp.dir, "key.pem");
  const cert = join(tmp.dir, "cert.pem");
  const ossl = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=localhost"], { stderr: "pipe" });
  if (ossl.exitCode !== 0) throw new Error(`openssl failed (apt-get install openssl): ${ossl.stderr.toString()}`);
  https = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: { cert: Bun.file(cert), key: Bun.file(key) }, fetch: () => new Response("ok", { headers: { server: "orrery-tls/2" } }) });
});
afterAll(() => {
  tcp.stop(true);
  http.stop(true);
  https?.stop(true);
  tmp.cleanup();
});

describe("built-in jobs on loopback", () => {
  test("tcp-scan: the open port is a listener with its connect latency; the closed one is absent", async () => {
    const closed = closedPort();
    const items = await collect("tcp-scan", { targets: ["127.0.0.1"], ports: [tcp.port, closed], timeoutMs: 2000 });
    expect(items.length).toBe(1);
    expect(items[0]!).toMatchObject({ key: "127.0.0.1", host: "127.0.0.1", full: true, events: [{ type: "listener.seen", proto: "tcp", ip: "127.0.0.1", port: tcp.port, process: null }] });
    expect(items[0]!.samples!.map((s) => [s.entity, s.metric])).toEqual([[`listener:127.0.0.1:tcp:127.0.0.1:${tcp.port}`, "tcp_connect_ms"]]);
    expect(items[0]!.samples![0]!.value).toBeGreaterThan(0);
  });

  test("http-probe: status, latency, server header; a refused endpoint is gone", async () => {
    const closed = closedPort();
    const items = await collect("http-probe", { urls: [`http://127.0.0.1:${http.port}/health`, `http://127.0.0.1:${closed}/`] });
    const ok = items.find((i) => i.key.includes(String(http.port)))!;
    expect(ok.events).toEqual([{ type: "listener.seen", proto: "tcp", ip: "127.0.0.1", port: http.port!, process: null }]);
    const m = Object.fromEntries(ok.samples!.map((s) => [s.metric, s]));
    expect(m.http_status_code!.value).toBe(418);
    expect(m.http_up!.value).toBe(1);
    expect(m.http_latency_ms!.value).toBeGreaterThan(0);
    expect(m.http_up!.labels!.server).toBe("orrery-test/1");
    const refused = items.find((i) => i.key.includes(String(closed)))!;
    expect(refused.events).toEqual([{ type: "listener.gone", proto: "tcp", ip: "127.0.0.1", port: closed }]);
    expect(refused.samples!.find((s) => s.metric === "http_up")!.value).toBe(0);
  });

  test("http-probe over TLS: certificate days left (self-signed, so unverified)", async () => {
    const items = await collect("http-probe", { urls: [`https://localhost:${https.port}/`], insecure: true });
    const m = Object.fromEntries(items[0]!.samples!.map((s) => [s.metric, s]));
    expect(m.http_status_code!.value).toBe(200);
    expect(m.http_up!.labels!.server).toBe("orrery-tls/2");
    expect(m.tls_cert_days_left!.value).toBeGreaterThan(29);
    expect(m.tls_cert_days_left!.value).toBeLessThanOrEqual(30);
    expect(m.tls_cert_days_left!.labels).toMatchObject({ subject: "localhost", verified: "false" });
    // verification on (the default): the self-signed endpoint is not "up", but its certificate is still measured
    const strict = await collect("http-probe", { urls: [`https://localhost:${https.port}/`] });
    const s = Object.fromEntries(strict[0]!.samples!.map((x) => [x.metric, x]));
    expect(s.http_up!.value).toBe(0);
    expect(s.tls_cert_days_left!.value).toBeGreaterThan(29);
  });

  test("dns: each resolved address is a name.seen; announceHosts adds a host node that claims no addresses; PTR names", async () => {
    const [item] = await collect("dns", { names: ["localhost"] });
    const m = Object.fromEntries(item!.samples!.map((s) => [s.metric, s]));
    expect(m.dns_up!.value).toBe(1);
    expect(m.dns_addresses!.labels!.addresses).toContain("127.0.0.1");
    expect(item).toMatchObject({ key: "localhost", host: "localhost", full: true });
    expect(item!.events).toContainEqual({ type: "name.seen", ip: "127.0.0.1", name: "localhost" });
    expect(item!.events!.every((e) => e.type === "name.seen")).toBe(true);
    const [announced] = await collect("dns", { names: ["localhost"], announceHosts: true });
    expect(announced!.events![0]).toEqual({ type: "host.seen", hostname: "localhost", os: "", kernel: "", cpus: 0, memTotalBytes: 0, ips: [] });
    // PTR of an address (getnameinfo reads /etc/hosts first: 127.0.0.1 is localhost here); an address with no name has no event
    const [ptr, none] = await collect("dns", { addresses: ["127.0.0.1", "192.0.2.254"] });
    expect(ptr).toMatchObject({ key: "ptr:127.0.0.1", host: "127.0.0.1", full: true, events: [{ type: "name.seen", ip: "127.0.0.1" }] });
    expect((ptr!.events![0] as { name: string }).name.length).toBeGreaterThan(0);
    expect(none!.events).toBeUndefined();
    expect(none!.samples!.find((s) => s.metric === "dns_up")!.value).toBe(0);
    // an unresolvable name reports dns_up 0 and no events: a resolver hiccup does not erase names
    const [bad] = await collect("dns", { names: ["no-such-name.invalid"] });
    expect(bad!.events).toBeUndefined();
    expect(bad!.samples![0]).toMatchObject({ metric: "dns_up", value: 0 });
    expect(packages.get("dns")!.validateParams({})).toEqual(["params/names: is required", "params/addresses: is required", "params/: must match a schema in anyOf"]);
  });
});

describe("jobs through a worker on a real nats-server", () => {
  let nats: NatsServer;
  let bus: Bus;
  let worker: Worker;
  const statuses: JobStatus[] = [];
  beforeAll(async () => {
    nats = await startNats();
    bus = await connectBus({ url: nats.url, prefix: uniquePrefix("jobb"), name: "test" });
    worker = await startWorker(bus, log, { workerId: "w1", workerTypes: ["net", "import"], pool: "", labels: {}, packages, concurrency: 2, ackWaitMs: 5000, heartbeatMs: 1000 });
    bus.nc.subscribe(jobsTopology(bus.topo.prefix).subjects.statuses, { callback: (_e, m) => void statuses.push(decode(JobStatus, "job.status.v1", m.data)) });
  });
  afterAll(async () => {
    await worker.stop();
    await bus.close();
    await nats.stop();
  });
  const fetchAll = async <T>(stream: string, subject: string, schema: import("zod").ZodType<T>, name: string): Promise<T[]> => {
    // an ephemeral consumer per read (filter_subjects on ordered consumers needs nats-server 2.10; Debian has 2.9)
    const info = await bus.jsm.consumers.add(stream, { filter_subject: subject, ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All, inactive_threshold: 60_000_000_000 });
    const c = await bus.js.consumers.get(stream, info.name);
    const out: T[] = [];
    for (;;) {
      const m = await c.next({ expires: 1000 });
      if (!m) return out;
      out.push(decode(schema, name, m.data));
    }
  };

  test("tcp-scan run → discovery.v1 (source job:tcp-scan:<host>) the topology stage turns into a listener, and metrics.v1", async () => {
    const run = await submitRun(bus, { job: "tcp-scan", workerType: "net", params: { targets: ["127.0.0.1"], ports: [tcp.port, closedPort()] } });
    const done = await waitFor(() => statuses.find((s) => s.runId === run.runId && s.state !== "started"), "tcp-scan run done");
    expect(done).toMatchObject({ state: "finished", items: 1, workerId: "w1" });
    const batches = await fetchAll(bus.topo.streams.discovery.name, bus.topo.subjects.discovery("127.0.0.1"), DiscoveryBatch, "discovery.v1");
    expect(batches.length).toBe(1);
    expect(batches[0]).toMatchObject({ source: "job:tcp-scan:127.0.0.1", host: "127.0.0.1", full: true });
    const model = emptyModel();
    const changes = applyDiscovery(model, batches, Date.now());
    expect(changes.nodesUpserted.map((n) => n.id).sort()).toEqual(["host:127.0.0.1", `listener:127.0.0.1:tcp:127.0.0.1:${tcp.port}`]);
    const metrics = await fetchAll(bus.topo.streams.metrics.name, bus.topo.subjects.metrics("job:tcp-scan"), MetricBatch, "metrics.v1");
    expect(metrics.flatMap((b) => b.samples.map((s) => s.metric))).toEqual(["tcp_connect_ms"]);
  });

  test("inventory-csv run → one full discovery batch per host", async () => {
    const csv = "host,ips,os,owner,team,ports\ninv-a,10.9.0.1,Debian,alice,payments,22;5432@dba\ninv-b,10.9.0.2,,,,80\n";
    const run = await submitRun(bus, { job: "inventory-csv", workerType: "import", params: { csv } });
    await waitFor(() => statuses.find((s) => s.runId === run.runId && s.state === "finished"), "inventory run finished");
    const a = await fetchAll(bus.topo.streams.discovery.name, bus.topo.subjects.discovery("inv-a"), DiscoveryBatch, "discovery.v1");
    expect(a.length).toBe(1);
    expect(a[0]!.source).toBe("job:inventory-csv:inv-a");
    expect(a[0]!.events.map((e) => (e.type === "listener.seen" ? e.port : e.type))).toEqual(["host.seen", 22, 5432, "entity.annotated", "entity.annotated", "name.seen"]);
    expect(a[0]!.events.filter((e) => e.type === "entity.annotated")).toEqual([
      { type: "entity.annotated", match: { host: "inv-a" }, props: { owner: "alice", team: "payments" } },
      { type: "entity.annotated", match: { host: "inv-a", port: 5432, proto: "tcp" }, props: { owner: "dba" } },
    ]);
  });

  test("bad parameters and bad CSV are dead-lettered with the reason, not retried", async () => {
    const bad = await submitRun(bus, { job: "tcp-scan", workerType: "net", params: { targets: [], ports: ["x"] } });
    const badCsv = await submitRun(bus, { job: "inventory-csv", workerType: "import", params: { csv: "host,ports\n,22\n" } });
    const f1 = await waitFor(() => statuses.find((s) => s.runId === bad.runId && s.state === "failed"), "bad params failed");
    expect(f1.error).toContain("job tcp-scan: bad parameters: params/targets: must NOT have fewer than 1 items");
    const f2 = await waitFor(() => statuses.find((s) => s.runId === badCsv.runId && s.state === "failed"), "bad csv failed");
    expect(f2.error).toBe("csv record 2: host is empty");
    const dlq = await bus.js.consumers.get(bus.topo.streams.dlq.name);
    const reasons: string[] = [];
    for (let i = 0; i < 2; i++) reasons.push((await dlq.next({ expires: 3000 }))!.headers!.get("Orrery-Reason"));
    expect(reasons.some((r) => r.includes("bad parameters"))).toBe(true);
    expect(reasons).toContain("csv record 2: host is empty");
    await Bun.sleep(300);
    expect(statuses.filter((s) => s.runId === bad.runId && s.state === "failed").length).toBe(1);
    expect((await bus.jsm.streams.info(jobsTopology(bus.topo.prefix).stream)).state.messages).toBe(0);
  }, 20_000);

  test("a job that ignores its timeout is cut off: the run fails with the reason and is dead-lettered after its last attempt", async () => {
    const hang: JobPackage = {
      manifest: { name: "hang", version: "1.0.0", workerType: "hang", entry: "job.ts", schedule: null, params: { type: "object" }, timeout: "1s" },
      dir: "(test)",
      module: {
        run: async function* () {
          yield { key: "first" };
          await new Promise(() => undefined); // never ends, never looks at its signal
        },
      },
      validateParams: () => [],
      intervalMs: null,
      timeoutMs: 1000,
    };
    const w = await startWorker(bus, log, { workerId: "w-hang", workerTypes: ["hang"], pool: "", labels: {}, packages: new Map([["hang", hang]]), concurrency: 1, ackWaitMs: 5000, heartbeatMs: 1000, maxAttempts: 1 });
    try {
      const run = await submitRun(bus, { job: "hang", workerType: "hang", params: {} });
      const failed = await waitFor(() => statuses.find((s) => s.runId === run.runId && s.state === "failed"), "hung run cut off", 10_000);
      expect(failed).toMatchObject({ error: "run timed out after 1000 ms", items: 1, attempt: 1 });
      await waitFor(async () => (await bus.jsm.streams.info(jobsTopology(bus.topo.prefix).stream)).state.messages === 0, "run off the queue", 5000);
      expect(w.running()).toBe(0);
    } finally {
      await w.stop();
    }
  }, 20_000);
});
