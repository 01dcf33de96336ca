/**
 * Horizontally scaled job workers on a real nats-server: two worker processes share the type's work-queue consumer;
 * the one running a job is SIGKILLed mid-job; the other finishes it after ack_wait, and no result is stored twice.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { decode } from "../../../pipelines/codec.ts";
import { JobStatus } from "../../../pipelines/contracts/jobs.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { submitRun } from "../../../services/jobs/client.ts";
import { jobsTopology } from "../../../pipelines/streams.ts";
import { spawnJobsProcess, writeSlowJob, type WorkerProc } from "../../helpers/jobs.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

let nats: NatsServer;
let bus: Bus;
const tmp = tempDir();
const procs: WorkerProc[] = [];
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  for (const p of procs) if (p.proc.exitCode === null) p.proc.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.proc.exited));
  await bus?.close();
  await nats.stop();
  tmp.cleanup();
});

test("a worker killed mid-job: another worker finishes the run, results are stored once", async () => {
  const prefix = uniquePrefix("jobk");
  bus = await connectBus({ url: nats.url, prefix, name: "test" });
  const jt = jobsTopology(prefix);
  const pkgs = writeSlowJob(join(tmp.dir, "pkgs"), "slowtest");
  const env = { NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_JOBS_MODE: "worker", ORRERY_WORKER_TYPES: "slowtest", ORRERY_JOB_PACKAGES: pkgs, ORRERY_JOB_ACK_WAIT_MS: "1500", ORRERY_WORKER_CONCURRENCY: "1" };
  procs.push(await spawnJobsProcess("wa", env), await spawnJobsProcess("wb", env));

  const statuses: JobStatus[] = [];
  const sub = bus.nc.subscribe(jt.subjects.statuses, { callback: (_e, m) => void statuses.push(decode(JobStatus, "job.status.v1", m.data)) });
  const ITEMS = 8;
  const run = await submitRun(bus, { job: "slow-items", workerType: "slowtest", params: { items: ITEMS, delayMs: 400, host: "killtest" } });

  const started = await waitFor(() => statuses.find((s) => s.runId === run.runId && s.state === "started"), "run started");
  const discoveryCount = async () => (await bus.jsm.streams.info(bus.topo.streams.discovery.name)).state.messages;
  await waitFor(async () => (await discoveryCount()) >= 3, "3 items published by the first worker");
  const victim = procs.find((p) => p.id === started.workerId)!;
  victim.proc.kill("SIGKILL");
  await victim.proc.exited;
  const publishedBeforeKill = await discoveryCount();
  expect(publishedBeforeKill).toBeLessThan(ITEMS); // really mid-job

  const finished = await waitFor(() => statuses.find((s) => s.runId === run.runId && s.state === "finished"), "run finished by the other worker", 30_000);
  expect(finished.workerId).not.toBe(started.workerId);
  expect(finished.attempt).toBe(2);
  expect(finished.items).toBe(ITEMS);

  // Each item once, though the first items were published by both workers (same Nats-Msg-Id).
  expect(await discoveryCount()).toBe(ITEMS);
  const seen = new Set<string>();
  const c = await bus.js.consumers.get(bus.topo.streams.discovery.name);
  for (let i = 0; i < ITEMS; i++) {
    const m = await c.next({ expires: 2000 });
    const b = JSON.parse(new TextDecoder().decode(m!.data));
    expect(b.source).toBe("job:slow-items:killtest");
    seen.add(`${b.events[0].port}`);
  }
  expect(seen.size).toBe(ITEMS);
  expect((await bus.jsm.streams.info(bus.topo.streams.metrics.name)).state.messages).toBe(ITEMS);
  // The work queue is empty: the run was acked once, by the survivor.
  expect((await bus.jsm.streams.info(jt.stream)).state.messages).toBe(0);
  sub.unsubscribe();
}, 60_000);
