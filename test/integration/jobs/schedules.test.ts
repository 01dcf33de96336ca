/**
 * Schedules from configuration (ORRERY_JOB_SCHEDULES): the file is checked against the loaded packages with a JSON
 * path per error; the jobs service refuses to start on a bad file and, given a good one, runs a built-in job on its
 * schedule (tcp-scan of the test's own loopback listener) with no change to the package.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { decode } from "../../../pipelines/codec.ts";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { JobStatus } from "../../../pipelines/contracts/jobs.ts";
import { BUILTIN_PACKAGES, loadPackages, type JobPackage } from "../../../services/jobs/packages.ts";
import { checkSchedules, checkSchedulesText, manifestSchedules, mergeSchedules } from "../../../services/jobs/schedules.ts";
import { jobsTopology } from "../../../pipelines/streams.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { jobsProcessFails, spawnJobsProcess, writeSlowJob, type WorkerProc } from "../../helpers/jobs.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const ROOT = join(import.meta.dir, "../../..");
const tmp = tempDir();
let packages: Map<string, JobPackage>;
beforeAll(async () => {
  packages = (await loadPackages([BUILTIN_PACKAGES, writeSlowJob(join(tmp.dir, "pkgs"), "slowtest", { every: "1h", params: { items: 1, delayMs: 0, host: "m" } })])).packages;
});
afterAll(() => tmp.cleanup());

describe("the schedules file", () => {
  test("the shipped example is valid against the built-in packages", () => {
    const r = checkSchedulesText(readFileSync(join(ROOT, "deploy/schedules.example.json"), "utf8"), packages);
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    expect(r.schedules.map((s) => [s.name, s.job, s.intervalMs])).toEqual([
      ["office-scan", "tcp-scan", 300_000],
      ["public-endpoints", "http-probe", 60_000],
      ["dns", "dns", 600_000],
      ["inventory-csv", "inventory-csv", 3_600_000],
    ]);
  });

  test("every error has its JSON path: shape, durations, unknown jobs, parameters against the job's schema, duplicate names", () => {
    const r = checkSchedules(
      {
        schedules: [
          { job: "tcp-scan", every: "5m", params: { targets: ["10.0.0.0/24"] } },
          { job: "tcp-scan", every: "often", params: { targets: [], ports: [22], colour: "red" } },
          { name: "x.y", job: "nosuch", every: "1m" },
          { job: "dns", every: "10m", params: { names: ["a"] }, extra: 1 },
          { name: "scan2", job: "tcp-scan", every: "1m", params: { targets: ["10.0.0.1"], ports: ["1-2-3"] } },
          { name: "scan2", job: "tcp-scan", every: "1m", params: { targets: ["10.0.0.1"], ports: [22] } },
        ],
      },
      packages,
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    // shape errors come first (zod), and then nothing else is checked
    expect(r.errors.map((e) => `${e.path} ${e.message}`)).toEqual([
      '/schedules/1/every "often" is not a duration: use a number with ms, s, m, h or d, e.g. "30s"',
      "/schedules/2/name letters, digits, _ and - only (it becomes a NATS subject token)",
      '/schedules/3 Unrecognized key: "extra"',
    ]);
    const r2 = checkSchedules(
      {
        schedules: [
          { job: "tcp-scan", every: "5m", params: { targets: ["10.0.0.0/24"] } },
          { job: "tcp-scan", every: "1m", params: { targets: [], ports: [22], colour: "red" } },
          { job: "nosuch", every: "1m" },
          { name: "scan2", job: "tcp-scan", every: "1m", params: { targets: ["10.0.0.1"], ports: ["1-2-3"] } },
          { name: "scan2", job: "tcp-scan", every: "1m", params: { targets: ["10.0.0.1"], ports: [22] } },
        ],
      },
      packages,
    );
    expect(r2.ok).toBe(false);
    if (r2.ok) return;
    const lines = r2.errors.map((e) => `${e.path} ${e.message}`);
    expect(lines).toContain("/schedules/0/params/ports is required");
    expect(lines).toContain('/schedules/1/job duplicate schedule name "tcp-scan" (first at /schedules/0); give each schedule of the same job its own "name"');
    expect(lines).toContain("/schedules/1/params/targets must NOT have fewer than 1 items");
    expect(lines).toContain("/schedules/1/params/colour is not a known parameter");
    expect(lines.find((l) => l.startsWith('/schedules/2/job unknown job "nosuch" (loaded: dns, http-probe, inventory-csv, slow-items, tcp-scan)'))).toBeDefined();
    expect(lines).toContain('/schedules/3/params/ports/0 must match pattern "^\\d+(-\\d+)?$"');
    expect(lines).toContain('/schedules/4/name duplicate schedule name "scan2" (first at /schedules/3); give each schedule of the same job its own "name"');
    expect(checkSchedulesText("{ schedules: ", packages)).toMatchObject({ ok: false, errors: [{ path: "/" }] });
    expect(checkSchedules({ schedules: "none" }, packages)).toMatchObject({ ok: false, errors: [{ path: "/schedules" }] });
  });

  test("a file schedule named like a package's own schedule replaces it; others run beside it", () => {
    const r = checkSchedules({ schedules: [{ job: "slow-items", every: "30s", params: { items: 2, delayMs: 0, host: "f" } }, { name: "other", job: "slow-items", every: "1m", params: { items: 1, delayMs: 0, host: "g" } }] }, packages);
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    const merged = mergeSchedules(manifestSchedules(packages), r.schedules);
    expect(merged.map((s) => [s.name, s.every, s.origin])).toEqual([
      ["slow-items", "30s", "file"],
      ["other", "1m", "file"],
    ]);
  });
});

describe("the jobs service with ORRERY_JOB_SCHEDULES on a real nats-server", () => {
  let nats: NatsServer;
  let bus: Bus;
  const procs: WorkerProc[] = [];
  const tcp = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    for (const p of procs) if (p.proc.exitCode === null) p.proc.kill("SIGTERM");
    await Promise.all(procs.map((p) => p.proc.exited));
    await bus?.close();
    await nats.stop();
    tcp.stop(true);
  });

  test("a bad file stops the service at start, every error with its path", async () => {
    const file = join(tmp.dir, "bad-schedules.json");
    writeFileSync(file, JSON.stringify({ schedules: [{ job: "tcp-scan", every: "5m", params: { targets: ["10.0.0.0/24"] } }, { job: "nosuch", every: "1m" }] }));
    const r = await jobsProcessFails({ NATS_URL: nats.url, ORRERY_PREFIX: uniquePrefix("schbad"), ORRERY_JOB_SCHEDULES: file });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`ORRERY_JOB_SCHEDULES ${file}: /schedules/0/params/ports: is required; /schedules/1/job: unknown job "nosuch"`);
    const missing = await jobsProcessFails({ NATS_URL: nats.url, ORRERY_PREFIX: uniquePrefix("schbad"), ORRERY_JOB_SCHEDULES: join(tmp.dir, "nope.json") });
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain("ORRERY_JOB_SCHEDULES: cannot read");
  }, 30_000);

  test("tcp-scan of the test's loopback listener runs every 2 s from the file, no package edited", async () => {
    const prefix = uniquePrefix("sched");
    bus = await connectBus({ url: nats.url, prefix, name: "test" });
    const jt = jobsTopology(prefix);
    const statuses: JobStatus[] = [];
    bus.nc.subscribe(jt.subjects.statuses, { callback: (_e, m) => void statuses.push(decode(JobStatus, "job.status.v1", m.data)) });
    const file = join(tmp.dir, "schedules.json");
    writeFileSync(file, JSON.stringify({ schedules: [{ name: "loop-scan", job: "tcp-scan", every: "2s", params: { targets: ["127.0.0.1"], ports: [tcp.port], timeoutMs: 2000 } }] }));
    procs.push(await spawnJobsProcess("sched1", { NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_JOBS_MODE: "all", ORRERY_WORKER_TYPES: "net", ORRERY_JOB_SCHEDULES: file }));
    const runs = await waitFor(() => {
      const done = statuses.filter((s) => s.state === "finished");
      return done.length >= 2 ? done : null;
    }, "two scheduled runs", 20_000);
    // runs are named by the schedule, one per 2 s slot
    expect(runs.map((s) => s.runId).every((id) => /^loop-scan@\d+$/.test(id))).toBe(true);
    expect(new Set(runs.map((s) => s.runId)).size).toBe(runs.length);
    const slots = runs.map((s) => Number(s.runId.split("@")[1]));
    expect(slots[1]! - slots[0]!).toBe(1);
    expect(runs[0]).toMatchObject({ job: "tcp-scan", workerId: "sched1", items: 1 });
    const info = await bus.jsm.consumers.add(bus.topo.streams.discovery.name, { filter_subject: bus.topo.subjects.discovery("127.0.0.1"), ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All });
    const c = await bus.js.consumers.get(bus.topo.streams.discovery.name, info.name);
    const b = decode(DiscoveryBatch, "discovery.v1", (await c.next({ expires: 2000 }))!.data);
    expect(b).toMatchObject({ source: "job:tcp-scan:127.0.0.1", full: true, events: [{ type: "listener.seen", port: tcp.port }] });
  }, 40_000);
});
