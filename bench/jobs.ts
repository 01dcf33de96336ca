/**
 * `bun run bench jobs [--runs N --concurrency C]` — job runs through the work queue and a worker (decode, parameter
 * check, status events, in-progress acks, ackAck) vs the raw limit of what it wraps: the same number of messages
 * published to a WorkQueue stream and pulled with next() + ackAck by the same number of loops, in the same run.
 * Also times pure placement of many jobs on many workers.
 */
import { parseArgs } from "node:util";
import { AckPolicy, DeliverPolicy, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { encode } from "../pipelines/codec.ts";
import { JobRun, JobStatus } from "../pipelines/contracts/jobs.ts";
import { place } from "../pipelines/strategy/place.ts";
import type { JobPackage } from "../services/jobs/packages.ts";
import { jobsTopology } from "../pipelines/streams.ts";
import { startWorker } from "../services/jobs/worker.ts";
import { connectBus } from "../services/shared/bus.ts";
import { makeLogger } from "../services/shared/log.ts";
import { decode } from "../pipelines/codec.ts";
import { startNats } from "../test/helpers/nats.ts";
import { uniquePrefix } from "../test/helpers/tmp.ts";

export async function benchJobs(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { runs: { type: "string", default: "3000" }, concurrency: { type: "string", default: "32" } } });
  const N = Number(values.runs);
  const C = Number(values.concurrency);
  const nats = await startNats();
  const log = makeLogger("bench", true);
  try {
    // raw: WorkQueue publish (1000 in flight) + C pull loops of next() + ackAck
    const raw = await connectBus({ url: nats.url, prefix: uniquePrefix("raw"), name: "bench-raw" });
    await raw.jsm.streams.add({ name: "RAWQ", subjects: ["rawq.>"], retention: RetentionPolicy.Workqueue, storage: StorageType.File });
    await raw.jsm.consumers.add("RAWQ", { durable_name: "rawq", ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, filter_subject: "rawq.x" });
    const payload = encode(JobRun, "job.run.v1", { schema: "job.run.v1", runId: "noop@1", job: "noop", workerType: "bench", params: {}, slot: 0, requestedAt: 1, assignee: null });
    const t0 = performance.now();
    const pubs: Promise<unknown>[] = [];
    for (let i = 0; i < N; i++) {
      pubs.push(raw.js.publish("rawq.x", payload, { msgID: `r${i}` }));
      if (pubs.length >= 1000) await Promise.all(pubs.splice(0));
    }
    await Promise.all(pubs);
    const rc = await raw.js.consumers.get("RAWQ", "rawq");
    let got = 0;
    let rawEnd = 0;
    await Promise.all(
      Array.from({ length: C }, async () => {
        while (got < N) {
          const m = await rc.next({ expires: 1000 });
          if (!m) continue;
          decode(JobRun, "job.run.v1", m.data);
          await m.ackAck();
          // stop the clock at the last ack, not when the idle pulls expire
          if (++got === N) rawEnd = performance.now();
        }
      }),
    );
    const rawRate = N / ((rawEnd - t0) / 1000);
    await raw.close();

    // jobs: the same count of runs of a no-op job through a worker with concurrency C
    const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("jobs"), name: "bench-jobs" });
    const jt = jobsTopology(bus.topo.prefix);
    const noop: JobPackage = {
      manifest: { name: "noop", version: "1.0.0", workerType: "bench", entry: "job.ts", schedule: null, params: { type: "object" }, timeout: "1m" },
      dir: "(bench)",
      module: { run: async function* () {} },
      validateParams: () => [],
      intervalMs: null,
      timeoutMs: 60_000,
    };
    const worker = await startWorker(bus, log, { workerId: "bench", workerTypes: ["bench"], pool: "", labels: {}, packages: new Map([["noop", noop]]), concurrency: C, ackWaitMs: 30_000, heartbeatMs: 5000 });
    let finished = 0;
    const all = Promise.withResolvers<void>();
    bus.nc.subscribe(jt.subjects.statuses, {
      callback: (_e, m) => {
        if (decode(JobStatus, "job.status.v1", m.data).state === "finished" && ++finished === N) all.resolve();
      },
    });
    const t1 = performance.now();
    for (let i = 0; i < N; i++) {
      const run = encode(JobRun, "job.run.v1", { schema: "job.run.v1", runId: `noop@${i}`, job: "noop", workerType: "bench", params: {}, slot: 0, requestedAt: i, assignee: null });
      pubs.push(bus.js.publish(jt.subjects.queue("bench"), run, { msgID: `run:noop@${i}` }));
      if (pubs.length >= 1000) await Promise.all(pubs.splice(0));
    }
    await Promise.all(pubs);
    await all.promise;
    const jobsRate = N / ((performance.now() - t1) / 1000);
    await worker.stop();
    await bus.close();

    // pure placement: 10k jobs, 500 workers in 5 pools, 1:1, least-loaded; then one worker dies
    const strategy = { version: 1 as const, pick: "least-loaded" as const, redundancy: "1:1" as const, pools: Array.from({ length: 5 }, (_, i) => ({ name: `p${i}`, site: `s${i}`, provider: "x", cost: i, capacity: 100 })) };
    const workers = Array.from({ length: 500 }, (_, i) => ({ id: `w${i}`, types: ["net"], pool: `p${i % 5}`, labels: {} }));
    const requests = Array.from({ length: 10_000 }, (_, i) => ({ job: `j${i}`, workerType: "net" }));
    const t2 = performance.now();
    const first = place({ strategy, workers, requests });
    const placeMs = performance.now() - t2;
    const t3 = performance.now();
    place({ strategy, workers: workers.slice(1), requests, previous: first });
    const replaceMs = performance.now() - t3;

    console.log(
      JSON.stringify(
        {
          bench: "jobs",
          runs: N,
          concurrency: C,
          raw_workqueue_msgs_per_s: Math.round(rawRate),
          job_runs_per_s: Math.round(jobsRate),
          ratio_to_raw: Number((jobsRate / rawRate).toFixed(3)),
          place_10k_jobs_500_workers_ms: Math.round(placeMs),
          replace_after_one_death_ms: Math.round(replaceMs),
        },
        null,
        2,
      ),
    );
  } finally {
    await nats.stop();
  }
}
