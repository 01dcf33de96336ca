/** Discovery jobs: a worker, a scheduler, or both (ORRERY_JOBS_MODE). Wiring only; the logic is in worker.ts / scheduler.ts. */
import { readFileSync } from "node:fs";
import { checkStrategyText, type Strategy } from "../../pipelines/strategy/schema.ts";
import { connectBus } from "../shared/bus.ts";
import { z } from "zod";
import { BusKeys, ConfigError, LogKeys, natsOptions, onShutdown, parseEnv } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { jobConsumerRef, natsConnected, startObservability } from "../shared/metrics-registry.ts";
import { loadJobsConfig } from "./config.ts";
import { BUILTIN_PACKAGES, loadPackages } from "./packages.ts";
import { startScheduler, type Scheduler } from "./scheduler.ts";
import { checkSchedulesText, manifestSchedules, mergeSchedules, type Schedule } from "./schedules.ts";
import { startWorker, type Worker } from "./worker.ts";

const cfg = parseEnv(z.object({ ...BusKeys, ...LogKeys }), process.env);
const jc = loadJobsConfig();
const log = makeLogger("jobs", cfg.ORRERY_LOG_QUIET === "1");

let strategy: Strategy | null = null;
if (jc.ORRERY_STRATEGY) {
  const r = checkStrategyText(readFileSync(jc.ORRERY_STRATEGY, "utf8"));
  if (!r.ok) throw new ConfigError(`ORRERY_STRATEGY ${jc.ORRERY_STRATEGY}: ${r.errors.map((e) => `${e.path || "/"}: ${e.message}`).join("; ")}`);
  strategy = r.strategy;
}
const { packages, problems } = await loadPackages([BUILTIN_PACKAGES, ...jc.ORRERY_JOB_PACKAGES]);
for (const p of problems) log.error("job package rejected", { file: p.file, errors: p.errors });

let schedules: Schedule[] = manifestSchedules(packages);
if (jc.ORRERY_JOB_SCHEDULES) {
  let text: string;
  try {
    text = readFileSync(jc.ORRERY_JOB_SCHEDULES, "utf8");
  } catch (e) {
    throw new ConfigError(`ORRERY_JOB_SCHEDULES: cannot read ${jc.ORRERY_JOB_SCHEDULES}: ${(e as Error).message}`);
  }
  const r = checkSchedulesText(text, packages);
  if (!r.ok) throw new ConfigError(`ORRERY_JOB_SCHEDULES ${jc.ORRERY_JOB_SCHEDULES}: ${r.errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`);
  schedules = mergeSchedules(schedules, r.schedules);
}

const obs = startObservability("jobs", process.env, log);
const bus = await connectBus(natsOptions(cfg, `orrery-jobs-${jc.workerId}`));
obs.watchDlq(bus);
// the queues this worker takes runs from: one shared durable per worker type, one for runs placed on it
if (jc.ORRERY_JOBS_MODE !== "scheduler")
  obs.watchConsumers(bus, () => jc.ORRERY_WORKER_TYPES.flatMap((type) => [jobConsumerRef(bus, type), jobConsumerRef(bus, type, jc.workerId)]));
let worker: Worker | null = null;
let scheduler: Scheduler | null = null;
if (jc.ORRERY_JOBS_MODE !== "scheduler")
  worker = await startWorker(bus, log, {
    workerId: jc.workerId,
    workerTypes: jc.ORRERY_WORKER_TYPES,
    pool: jc.ORRERY_WORKER_POOL,
    labels: jc.ORRERY_WORKER_LABELS,
    packages,
    concurrency: jc.ORRERY_WORKER_CONCURRENCY,
    ackWaitMs: jc.ORRERY_JOB_ACK_WAIT_MS,
    heartbeatMs: jc.ORRERY_HEARTBEAT_MS,
  });
if (jc.ORRERY_JOBS_MODE !== "worker") scheduler = await startScheduler(bus, log, { packages, schedules, strategy, deadAfterMs: jc.deadAfterMs });

onShutdown(async () => {
  await worker?.stop();
  await scheduler?.stop();
  await bus.close();
  obs.stop();
});
obs.markReady(natsConnected(bus));
ready("jobs", { mode: jc.ORRERY_JOBS_MODE, workerId: jc.workerId, jobs: [...packages.keys()], rejected: problems.length, schedules: schedules.map((s) => `${s.name} every ${s.every}`) });
