/**
 * Runs whose worker dies under them, on a real nats-server with real worker processes: the job kills its own worker
 * (SIGKILL) on its first `crashes` deliveries, and a fresh worker takes the run after ack_wait. JetStream never gives
 * a run up (max_deliver -1); the worker does, past its maxAttempts (5 by default): a run that took its worker down 5
 * times ends in the dead-letter stream with the reason and a final failed status, never silently; one that did so 4
 * times completes on its 5th delivery.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { decode } from "../../../pipelines/codec.ts";
import { JobStatus } from "../../../pipelines/contracts/jobs.ts";
import { jobsTopology } from "../../../pipelines/streams.ts";
import { submitRun } from "../../../services/jobs/client.ts";
import { connectBus, DEFAULT_MAX_ATTEMPTS, type Bus } from "../../../services/shared/bus.ts";
import { spawnJobsProcess, type WorkerProc } from "../../helpers/jobs.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

let nats: NatsServer;
let bus: Bus;
const tmp = tempDir("orrery-job-crash-");
const procs: WorkerProc[] = [];
const statuses: JobStatus[] = [];
let stopping = false;

beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  stopping = true;
  for (const p of procs) if (p.proc.exitCode === null) p.proc.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.proc.exited));
  await bus?.close();
  await nats?.stop();
  tmp.cleanup();
});

/** A job that counts its deliveries in a file and SIGKILLs its own worker on the first `crashes` of them. */
function writeCrashJob(dir: string, workerType: string): string {
  const pkg = join(dir, `crash-${workerType}`);
  mkdirSync(pkg, { recursive: true });
  writeFileSync(
    join(pkg, "job.json"),
    JSON.stringify({
      name: `crash-${workerType}`,
      version: "0.1.0",
      workerType,
      schedule: null,
      params: { type: "object", required: ["crashes", "counter"], properties: { crashes: { type: "integer", minimum: 0 }, counter: { type: "string" } } },
    }),
  );
  writeFileSync(
    join(pkg, "job.ts"),
    `import { appendFileSync, readFileSync } from "node:fs";
export async function* run(ctx) {
  appendFileSync(ctx.params.counter, "x");
  if (readFileSync(ctx.params.counter, "utf8").length <= ctx.params.crashes) process.kill(process.pid, "SIGKILL");
  yield { key: "survived", samples: [{ entity: "host:crash", metric: "survived", ts: Date.now(), value: 1 }] };
}
`,
  );
  return dir;
}

/** Keeps one worker process of `type` alive, as a supervisor would: a new one as soon as the last died. */
function keepWorker(type: string, env: Record<string, string>) {
  void (async () => {
    for (let i = 0; !stopping; i++) {
      const p = await spawnJobsProcess(`${type}-${i}`, { ...env, ORRERY_WORKER_TYPES: type });
      procs.push(p);
      await p.proc.exited;
    }
  })();
}

test("a run that kills its worker on every delivery is given up with the reason and a failed status; one that kills it fewer times completes", async () => {
  const prefix = uniquePrefix("jobc");
  bus = await connectBus({ url: nats.url, prefix, name: "test" });
  const jt = jobsTopology(prefix);
  bus.nc.subscribe(jt.subjects.statuses, { callback: (_e, m) => void statuses.push(decode(JobStatus, "job.status.v1", m.data)) });
  const pkgs = join(tmp.dir, "pkgs");
  writeCrashJob(pkgs, "doomed");
  writeCrashJob(pkgs, "lucky");
  const env = { NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_JOBS_MODE: "worker", ORRERY_JOB_PACKAGES: pkgs, ORRERY_JOB_ACK_WAIT_MS: "1000", ORRERY_WORKER_CONCURRENCY: "1" };
  keepWorker("doomed", env);
  keepWorker("lucky", env);

  const N = DEFAULT_MAX_ATTEMPTS;
  const counter = (name: string) => join(tmp.dir, `${name}.count`);
  for (const name of ["doomed", "lucky"]) writeFileSync(counter(name), "");
  // the work-queue stream keeps the runs until a worker's durable takes them, so no need to wait for the workers
  const doomed = await submitRun(bus, { job: "crash-doomed", workerType: "doomed", params: { crashes: N, counter: counter("doomed") } });
  const lucky = await submitRun(bus, { job: "crash-lucky", workerType: "lucky", params: { crashes: N - 1, counter: counter("lucky") } });

  const finished = await waitFor(() => statuses.find((s) => s.runId === lucky.runId && s.state === "finished"), "the run that crashed its worker N-1 times finished", 90_000, 200);
  expect(finished).toMatchObject({ attempt: N, items: 1 });
  expect(readFileSync(counter("lucky"), "utf8").length).toBe(N);

  const failed = await waitFor(() => statuses.find((s) => s.runId === doomed.runId && s.state === "failed"), "the run that crashed its worker N times failed", 90_000, 200);
  expect(failed).toMatchObject({ attempt: N + 1, final: true, items: 0 });
  expect(failed.error).toContain(`no outcome after ${N} deliveries`);
  // given up without being run a sixth time
  expect(readFileSync(counter("doomed"), "utf8").length).toBe(N);

  // the run is in the dead-letter stream, with the reason and where it came from
  const dlq = bus.topo.subjects.dlq("jobs-doomed");
  const info = await bus.jsm.consumers.add(bus.topo.streams.dlq.name, { filter_subject: dlq, ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All, inactive_threshold: 60_000_000_000 });
  const m = await (await bus.js.consumers.get(bus.topo.streams.dlq.name, info.name)).next({ expires: 3000 });
  expect(m).not.toBeNull();
  expect(m!.headers!.get("Orrery-Reason")).toBe(failed.error!);
  expect(m!.headers!.get("Orrery-Original-Subject")).toBe(jt.subjects.queue("doomed"));
  expect(JSON.parse(new TextDecoder().decode(m!.data)).runId).toBe(doomed.runId);
  expect((await bus.jsm.streams.info(bus.topo.streams.dlq.name)).state.messages).toBe(1);

  // both runs are off the queue, and JetStream's own limit is not what ended either
  await waitFor(async () => (await bus.jsm.streams.info(jt.stream)).state.messages === 0, "the work queue empty", 10_000);
  const durable = await bus.jsm.consumers.info(jt.stream, jt.durable.shared("doomed"));
  expect(durable.config.max_deliver).toBe(-1);
}, 150_000);
