/**
 * What another process (the CLI, tests, benches) may use of the jobs service: its NATS client (on-demand submits,
 * the placement table, worker heartbeats, run status events) and the catalog both sides read from disk (job packages
 * and schedules). Everything else under services/jobs/ is the service's own.
 */
import { readFileSync } from "node:fs";
import { RequestError, TimeoutError, type Subscription } from "@nats-io/transport-node";
import { decode, encode } from "../../pipelines/codec.ts";
import { JobRun, JobStatus, PlacementTable, SubmitReply, SubmitRequest, WorkerHeartbeat } from "../../pipelines/contracts/jobs.ts";
import { publishEvent, type Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import { BUILTIN_PACKAGES, loadPackages, type JobPackage, type PackageProblem } from "./packages.ts";
import { checkSchedulesText, manifestSchedules, mergeSchedules, type Schedule } from "./schedules.ts";

export type { JobPackage, PackageProblem, Schedule };

export const adhocRunId = (job: string, now = Date.now()) => `${job}@adhoc-${now.toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

/**
 * Publishes an on-demand run straight to the shared queue of its worker type, bypassing the scheduler (no parameter
 * check, no placement). The run id doubles as the message id.
 */
export async function submitRun(bus: Bus, r: { job: string; workerType: string; params: Record<string, unknown>; runId?: string }): Promise<JobRun> {
  const now = Date.now();
  const run: JobRun = { schema: "job.run.v1", runId: r.runId ?? adhocRunId(r.job, now), job: r.job, workerType: r.workerType, params: r.params, slot: 0, requestedAt: now, assignee: null };
  await publishEvent(bus, bus.topo.subjects.jobs.queue(r.workerType), JobRun, "job.run.v1", run, `run:${run.runId}`);
  return run;
}

/** No scheduler subscribes to the subject: expected when none runs, so a value, not an error. */
const noResponders = (e: unknown) => e instanceof RequestError && e.isNoResponders();

/**
 * Asks the scheduler to run a job (checked and queued like a scheduled run). `no_scheduler` when none listens; a
 * scheduler that is slow to answer may still queue the run, so a timeout is thrown, not taken for `no_scheduler`.
 */
export async function requestRun(bus: Bus, req: SubmitRequest, timeoutMs = 5000): Promise<{ kind: "reply"; reply: SubmitReply } | { kind: "no_scheduler"; subject: string }> {
  const subject = bus.topo.subjects.jobs.submitRpc;
  try {
    const m = await bus.nc.request(subject, encode(SubmitRequest, "job.submit.v1", req), { timeout: timeoutMs });
    return { kind: "reply", reply: decode(SubmitReply, "job.submitted.v1", m.data) };
  } catch (e) {
    if (noResponders(e)) return { kind: "no_scheduler", subject };
    throw e;
  }
}

/** The scheduler's placement table; null when no scheduler answers (none runs, or it runs without a strategy). */
export async function fetchPlacements(bus: Bus, timeoutMs = 2000): Promise<PlacementTable | null> {
  try {
    const m = await bus.nc.request(bus.topo.subjects.jobs.placementsRpc, new Uint8Array(), { timeout: timeoutMs });
    return decode(PlacementTable, "placement.v1", m.data);
  } catch (e) {
    if (noResponders(e) || e instanceof TimeoutError) return null;
    throw e;
  }
}

/** Workers heard during `listenMs` (a worker that said it is leaving is dropped), sorted by id. */
export async function listenWorkers(bus: Bus, listenMs: number, log?: Logger): Promise<WorkerHeartbeat[]> {
  const heard = new Map<string, WorkerHeartbeat>();
  const sub = bus.nc.subscribe(bus.topo.subjects.jobs.heartbeats, {
    callback: (_err, m) => {
      try {
        const hb = decode(WorkerHeartbeat, "worker.heartbeat.v1", m.data);
        if (hb.leaving) heard.delete(hb.workerId);
        else heard.set(hb.workerId, hb);
      } catch (e) {
        log?.warn("bad heartbeat", { subject: m.subject, error: String(e) });
      }
    },
  });
  await Bun.sleep(listenMs);
  sub.unsubscribe();
  return [...heard.values()].sort((a, b) => a.workerId.localeCompare(b.workerId));
}

/** Every run status event (job.status.v1) from now on; a status this version cannot read is skipped. */
export async function watchStatuses(bus: Bus, onStatus: (s: JobStatus) => void): Promise<Subscription> {
  const sub = bus.nc.subscribe(bus.topo.subjects.jobs.statuses, {
    callback: (_err, m) => {
      let s: JobStatus;
      try {
        s = decode(JobStatus, "job.status.v1", m.data);
      } catch {
        return;
      }
      onStatus(s);
    },
  });
  // subscribed on the server before the caller submits, so no early status is missed
  await bus.nc.flush();
  return sub;
}

export interface JobCatalog {
  packages: Map<string, JobPackage>;
  problems: PackageProblem[];
  schedules: Schedule[];
  /** problems of the schedules file, each "file: path: message" */
  scheduleErrors: string[];
}

/** The job packages (built-ins plus `packageDirs`) and schedules (manifests plus `schedulesFile`) an install loads. */
export async function loadCatalog(o: { packageDirs: string[]; schedulesFile?: string }): Promise<JobCatalog> {
  const { packages, problems } = await loadPackages([BUILTIN_PACKAGES, ...o.packageDirs]);
  let schedules = manifestSchedules(packages);
  const scheduleErrors: string[] = [];
  if (o.schedulesFile) {
    let text: string | null = null;
    try {
      text = readFileSync(o.schedulesFile, "utf8");
    } catch (err) {
      scheduleErrors.push(`${o.schedulesFile}: cannot read: ${(err as Error).message}`);
    }
    if (text !== null) {
      const r = checkSchedulesText(text, packages);
      if (r.ok) schedules = mergeSchedules(schedules, r.schedules);
      else for (const x of r.errors) scheduleErrors.push(`${o.schedulesFile}: ${x.path}: ${x.message}`);
    }
  }
  return { packages, problems, schedules, scheduleErrors };
}
