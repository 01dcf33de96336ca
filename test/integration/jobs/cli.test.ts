/**
 * `orrery jobs list` and `orrery jobs run` as real processes against a real nats-server and real jobs services:
 * runs submitted through the scheduler (no strategy: the shared queue; with a strategy: the placed worker), the
 * fallback to the shared queue when no scheduler answers, and the errors (bad params, unknown job, failed run).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { decode } from "../../../pipelines/codec.ts";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { runCli, spawnJobsProcess, writeSlowJob, type WorkerProc } from "../../helpers/jobs.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix } from "../../helpers/tmp.ts";

let nats: NatsServer;
const tmp = tempDir();
const procs: WorkerProc[] = [];
const buses: Bus[] = [];
const tcp = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
const pkgs = writeSlowJob(join(tmp.dir, "pkgs"), "slowtest");
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  for (const p of procs) if (p.proc.exitCode === null) p.proc.kill("SIGTERM");
  await Promise.all(procs.map((p) => p.proc.exited));
  for (const b of buses) await b.close();
  await nats.stop();
  tcp.stop(true);
  tmp.cleanup();
});

async function discoveryOf(bus: Bus, host: string): Promise<DiscoveryBatch[]> {
  const info = await bus.jsm.consumers.add(bus.topo.streams.discovery.name, { filter_subject: bus.topo.subjects.discovery(host), ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All });
  const c = await bus.js.consumers.get(bus.topo.streams.discovery.name, info.name);
  const out: DiscoveryBatch[] = [];
  for (;;) {
    const m = await c.next({ expires: 1000 });
    if (!m) return out;
    out.push(decode(DiscoveryBatch, "discovery.v1", m.data));
  }
}

describe("orrery jobs list", () => {
  test("packages, worker types and schedules from the same configuration as the service; live workers with --live", async () => {
    const prefix = uniquePrefix("cliL");
    const file = join(tmp.dir, "list-schedules.json");
    writeFileSync(file, JSON.stringify({ schedules: [{ name: "office-scan", job: "tcp-scan", every: "5m", params: { targets: ["10.0.0.0/24"], ports: [22] } }] }));
    const env = { NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_JOB_PACKAGES: pkgs, ORRERY_JOB_SCHEDULES: file };
    const r = await runCli(["jobs", "list"], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^tcp-scan\s+1\.0\.0\s+net\s+30m/m);
    expect(r.stdout).toMatch(/^slow-items\s+0\.1\.0\s+slowtest/m);
    expect(r.stdout).toMatch(/^net\s+dns,http-probe,tcp-scan$/m);
    expect(r.stdout).toMatch(/^office-scan\s+tcp-scan\s+5m\s+ORRERY_JOB_SCHEDULES\s+\{"targets":\["10\.0\.0\.0\/24"\],"ports":\[22\]\}$/m);

    procs.push(await spawnJobsProcess("lw1", { NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_JOBS_MODE: "worker", ORRERY_WORKER_TYPES: "net,slowtest", ORRERY_WORKER_POOL: "pa", ORRERY_JOB_PACKAGES: pkgs, ORRERY_HEARTBEAT_MS: "300" }));
    const live = await runCli(["jobs", "list", "--live", "--listen", "1s", "--json"], env);
    expect(live.code).toBe(0);
    const j = JSON.parse(live.stdout);
    expect(j.workers.map((w: { workerId: string }) => w.workerId)).toEqual(["lw1"]);
    expect(j.workerTypes).toContainEqual({ type: "slowtest", jobs: ["slow-items"], workers: ["lw1"] });
    expect(j.workerTypes).toContainEqual({ type: "import", jobs: ["inventory-csv"], workers: [] });
    expect(j.schedules).toEqual([{ name: "office-scan", job: "tcp-scan", every: "5m", params: { targets: ["10.0.0.0/24"], ports: [22] }, origin: "file" }]);

    const bad = await runCli(["jobs", "list"], { ...env, ORRERY_JOB_SCHEDULES: join(tmp.dir, "nope.json") });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("schedule error:");
  }, 60_000);
});

describe("orrery jobs run, through the scheduler (no strategy)", () => {
  const prefix = uniquePrefix("cliR");
  let env: Record<string, string>;
  let bus: Bus;
  beforeAll(async () => {
    const schedules = join(tmp.dir, "run-schedules.json");
    writeFileSync(schedules, JSON.stringify({ schedules: [{ name: "cli-sched", job: "slow-items", every: "1h", params: { items: 2, delayMs: 0, host: "from-schedule" } }] }));
    env = { NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_JOB_PACKAGES: pkgs, ORRERY_JOB_SCHEDULES: schedules };
    bus = await connectBus({ url: nats.url, prefix, name: "test" });
    buses.push(bus);
    procs.push(await spawnJobsProcess("rw1", { ...env, ORRERY_JOBS_MODE: "all", ORRERY_WORKER_TYPES: "net,import,slowtest" }));
  });

  test("--wait prints the outcome; the results are in the discovery stream", async () => {
    const r = await runCli(["jobs", "run", "tcp-scan", "--params", JSON.stringify({ targets: ["127.0.0.1"], ports: [tcp.port] }), "--wait", "--timeout", "30s"], env);
    expect(r.stderr).toContain("(via the scheduler, shared queue)");
    expect(r.stderr).toMatch(/tcp-scan@adhoc-\S+: started on rw1 \(attempt 1\)/);
    expect(r.stdout).toMatch(/^tcp-scan@adhoc-\S+: finished on rw1, 1 item\(s\), attempt 1$/m);
    expect(r.code).toBe(0);
    const batches = await discoveryOf(bus, "127.0.0.1");
    expect(batches.map((b) => b.events)).toContainEqual([{ type: "listener.seen", proto: "tcp", ip: "127.0.0.1", port: tcp.port, process: null }]);
  }, 60_000);

  test("without --wait it prints the run id; --json with --wait prints the final status", async () => {
    const r = await runCli(["jobs", "run", "slow-items", "--params", '{"items":2,"delayMs":10,"host":"cli-json"}'], env);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^slow-items@adhoc-\S+$/);
    const j = await runCli(["jobs", "run", "slow-items", "--params", '{"items":3,"delayMs":10,"host":"cli-json2"}', "--wait", "--json"], env);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject([{ state: "finished", items: 3, workerId: "rw1", job: "slow-items" }]);
  }, 60_000);

  test("a schedule's name runs that schedule now: its job and parameters (or --params)", async () => {
    const r = await runCli(["jobs", "run", "cli-sched", "--wait", "--json"], env);
    expect(r.code).toBe(0);
    const [st] = JSON.parse(r.stdout);
    expect(st).toMatchObject({ job: "slow-items", state: "finished", items: 2 });
    expect(st.runId).toMatch(/^cli-sched@adhoc-/);
    const over = await runCli(["jobs", "run", "cli-sched", "--params", '{"items":1,"delayMs":0,"host":"from-schedule"}', "--wait", "--json"], env);
    expect(JSON.parse(over.stdout)[0]).toMatchObject({ job: "slow-items", state: "finished", items: 1 });
    const bad = await runCli(["jobs", "run", "cli-sched", "--params", '{"items":0}'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("job cli-sched: params/delayMs: is required");
  }, 60_000);

  test("bad params are refused with their path before anything is queued; unknown jobs and failed runs exit 1", async () => {
    const bad = await runCli(["jobs", "run", "tcp-scan", "--params", '{"targets":[]}'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("job tcp-scan: params/targets: must NOT have fewer than 1 items");
    expect(bad.stderr).toContain("job tcp-scan: params/ports: is required");
    const notJson = await runCli(["jobs", "run", "tcp-scan", "--params", "{targets"], env);
    expect(notJson.code).toBe(2);
    expect(notJson.stderr).toContain("--params is not JSON");
    // not a local package: the scheduler says it does not know it either
    const unknown = await runCli(["jobs", "run", "nosuch"], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('job nosuch: unknown_job: unknown job "nosuch" (the scheduler has: dns, http-probe, inventory-csv, slow-items, tcp-scan; schedules: cli-sched)');
    // a run that fails on the worker (bad CSV: given up at once) → its reason, exit 1
    const failed = await runCli(["jobs", "run", "inventory-csv", "--params", JSON.stringify({ csv: "host,ports\n,22\n" }), "--wait"], env);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/^inventory-csv@adhoc-\S+: failed on rw1 \(attempt 1\): csv record 2: host is empty$/m);
  }, 60_000);
});

describe("orrery jobs run with no scheduler, and with a placement strategy", () => {
  test("no scheduler answers: straight to the shared queue, said on stderr, still finished by a worker", async () => {
    const prefix = uniquePrefix("cliN");
    const env = { NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_JOB_PACKAGES: pkgs };
    procs.push(await spawnJobsProcess("nw1", { ...env, ORRERY_JOBS_MODE: "worker", ORRERY_WORKER_TYPES: "slowtest" }));
    const r = await runCli(["jobs", "run", "slow-items", "--params", '{"items":1,"delayMs":0,"host":"noshed"}', "--wait", "--timeout", "20s"], env);
    expect(r.stderr).toContain("to the shared slowtest queue (no scheduler answered, so no placement strategy applied)");
    expect(r.stdout).toMatch(/finished on nw1, 1 item\(s\)/);
    expect(r.code).toBe(0);
  }, 60_000);

  test("with a strategy the on-demand run goes to the worker the strategy picks (pick first: the first pool's)", async () => {
    const prefix = uniquePrefix("cliS");
    const env = { NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_JOB_PACKAGES: pkgs };
    const strategy = join(tmp.dir, "strategy.json");
    writeFileSync(
      strategy,
      JSON.stringify({
        version: 1,
        pick: "first",
        redundancy: "+0",
        pools: [
          { name: "pb", site: "s2", provider: "cloud", cost: 2, capacity: 5 },
          { name: "pa", site: "s1", provider: "onprem", cost: 1, capacity: 5 },
        ],
      }),
    );
    const w = { ...env, ORRERY_JOBS_MODE: "worker", ORRERY_WORKER_TYPES: "slowtest", ORRERY_HEARTBEAT_MS: "300" };
    procs.push(await spawnJobsProcess("sa1", { ...w, ORRERY_WORKER_POOL: "pa" }), await spawnJobsProcess("sb1", { ...w, ORRERY_WORKER_POOL: "pb" }));
    procs.push(await spawnJobsProcess("ssched", { ...env, ORRERY_JOBS_MODE: "scheduler", ORRERY_STRATEGY: strategy, ORRERY_HEARTBEAT_MS: "300" }));
    await Bun.sleep(800); // the scheduler hears both workers' heartbeats
    for (let i = 0; i < 3; i++) {
      const r = await runCli(["jobs", "run", "slow-items", "--params", `{"items":1,"delayMs":0,"host":"placed${i}"}`, "--wait", "--timeout", "20s"], env);
      expect(r.stderr).toMatch(/→ sb1 \(via the scheduler, placed per the strategy\)/);
      expect(r.stdout).toMatch(/finished on sb1, 1 item\(s\)/);
      expect(r.code).toBe(0);
    }
    // the strategy cannot place a worker type nobody runs: refused with the reason, nothing queued
    const none = await runCli(["jobs", "run", "tcp-scan", "--params", '{"targets":["127.0.0.1"],"ports":[1]}'], env);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("job tcp-scan: not_placed: no worker of type net can take it under the strategy:");
  }, 90_000);
});
