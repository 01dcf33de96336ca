/**
 * `orrery jobs list` — the job packages this install loads (built-ins plus ORRERY_JOB_PACKAGES), the worker types they
 * need, and the schedules (package manifests plus ORRERY_JOB_SCHEDULES); with --live, the workers heard on NATS.
 *
 * `orrery jobs run NAME --params '{"targets":["10.0.0.0/24"],"ports":[22]}' [--wait]` — an on-demand run (NAME: a job,
 * or a schedule: run now with its job, placement and, without --params, its parameters), asked of
 * the scheduler over NATS (`<prefix>.rpc.jobs.submit`), which checks the parameters and queues the run exactly as
 * it queues scheduled ones (per the placement strategy). When no scheduler answers, the run goes straight to the
 * worker type's shared queue (said on stderr). With --wait it follows the run's status events and prints the outcome.
 *
 * Exit codes: 0 done (or submitted, without --wait), 1 the run failed or was refused, 2 bad arguments or
 * configuration, 3 --wait timed out.
 */
import { readFileSync } from "node:fs";
import { defineCommand, runMain } from "citty";
import { parseDuration, type JobStatus, type PlacementTable, type SubmitRequest, type WorkerHeartbeat } from "../../pipelines/contracts/jobs.ts";
import { fetchPlacements, listenWorkers, loadCatalog, requestRun, submitRun, watchStatuses } from "../../services/jobs/client.ts";
import { connectBus, type Bus } from "../../services/shared/bus.ts";

export class UsageError extends Error {
  override readonly name = "UsageError";
}

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

export interface JobsEnv {
  natsUrl: string;
  prefix: string;
  user?: string;
  pass?: string;
  token?: string;
  packageDirs: string[];
  schedulesFile?: string;
}

/** The CLI reads the same variables as the jobs service (README: Configuration), once, here. */
export function jobsEnv(env: Record<string, string | undefined> = process.env): JobsEnv {
  return {
    natsUrl: env.NATS_URL || "nats://127.0.0.1:4222",
    prefix: env.ORRERY_PREFIX || "orrery",
    user: env.NATS_USER,
    pass: env.NATS_PASS,
    token: env.NATS_TOKEN,
    packageDirs: (env.ORRERY_JOB_PACKAGES ?? "").split(":").filter(Boolean),
    schedulesFile: env.ORRERY_JOB_SCHEDULES || undefined,
  };
}

const loadLocal = (e: JobsEnv) => loadCatalog({ packageDirs: e.packageDirs, schedulesFile: e.schedulesFile });

const connect = (e: JobsEnv, name: string): Promise<Bus> => connectBus({ url: e.natsUrl, prefix: e.prefix, name, user: e.user, pass: e.pass, token: e.token });

const table = (rows: string[][]): string => {
  if (!rows.length) return "";
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join("  ").trimEnd()).join("\n") + "\n";
};

export interface ListOptions {
  live: boolean;
  listenMs: number;
  json: boolean;
}

/** `jobs list`: returns the exit code. */
export async function runJobsList(e: JobsEnv, o: ListOptions, io: Io): Promise<number> {
  const { packages, problems, schedules, scheduleErrors } = await loadLocal(e);
  for (const p of problems) for (const x of p.errors) io.err(`package rejected: ${p.file}: ${x}`);
  for (const x of scheduleErrors) io.err(`schedule error: ${x}`);
  let workers: WorkerHeartbeat[] | null = null;
  let placements: PlacementTable | null = null;
  if (o.live) {
    const bus = await connect(e, "orrery-cli-jobs-list");
    try {
      // listening starts first: the placement request's wait counts toward the listening time
      const heard = listenWorkers(bus, o.listenMs);
      placements = await fetchPlacements(bus, Math.min(2000, o.listenMs));
      workers = await heard;
    } finally {
      await bus.close();
    }
  }
  const pkgs = [...packages.values()].sort((a, b) => a.manifest.name.localeCompare(b.manifest.name));
  const types = new Map<string, string[]>();
  for (const p of pkgs) types.set(p.manifest.workerType, [...(types.get(p.manifest.workerType) ?? []), p.manifest.name]);
  if (o.json) {
    io.out(
      JSON.stringify(
        {
          packages: pkgs.map((p) => ({ name: p.manifest.name, version: p.manifest.version, workerType: p.manifest.workerType, timeout: p.manifest.timeout, dir: p.dir, description: p.manifest.description ?? "" })),
          workerTypes: [...types].map(([type, jobs]) => ({ type, jobs, workers: workers?.filter((w) => w.workerTypes.includes(type)).map((w) => w.workerId) ?? null })),
          schedules: schedules.map(({ name, job, every, params, origin }) => ({ name, job, every, params, origin })),
          workers,
          placements: placements?.placements ?? null,
        },
        null,
        2,
      ),
    );
  } else {
    io.out("PACKAGES\n" + table([["name", "version", "worker type", "timeout", "dir"], ...pkgs.map((p) => [p.manifest.name, p.manifest.version, p.manifest.workerType, p.manifest.timeout, p.dir])]));
    io.out(
      "\nWORKER TYPES\n" +
        table([
          ["type", "jobs", ...(workers ? ["live workers"] : [])],
          ...[...types].map(([type, jobs]) => [type, jobs.join(","), ...(workers ? [workers.filter((w) => w.workerTypes.includes(type)).map((w) => `${w.workerId}${w.pool ? `@${w.pool}` : ""}`).join(",") || "(none)"] : [])]),
        ]),
    );
    io.out(
      "\nSCHEDULES\n" +
        (schedules.length
          ? table([["name", "job", "every", "from", "params"], ...schedules.map((s) => [s.name, s.job, s.every, s.origin === "file" ? "ORRERY_JOB_SCHEDULES" : "manifest", JSON.stringify(s.params)])])
          : "(none: every built-in job runs on demand only; see ORRERY_JOB_SCHEDULES)\n"),
    );
    if (placements?.placements.length)
      io.out("\nPLACEMENTS\n" + table([["schedule", "active", "standby", "degraded"], ...placements.placements.map((p) => [p.job, p.active.join(","), p.standby.join(","), p.degraded ?? ""])]));
  }
  return scheduleErrors.length ? 2 : 0;
}

export interface RunOptions {
  /** a job name, or a schedule's name */
  job: string;
  /** undefined: {} for a job, the schedule's parameters for a schedule */
  params: Record<string, unknown> | undefined;
  wait: boolean;
  waitMs: number;
  json: boolean;
}

/** Parses `--params`: a JSON object, or `@file.json`. */
export function parseRunParams(raw: string | undefined): Record<string, unknown> | undefined {
  if (raw === undefined || raw === "") return undefined;
  let text = raw;
  if (raw.startsWith("@")) {
    try {
      text = readFileSync(raw.slice(1), "utf8");
    } catch (e) {
      throw new UsageError(`--params ${raw}: cannot read: ${(e as Error).message}`);
    }
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--params is not JSON: ${(e as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new UsageError("--params must be a JSON object, e.g. '{\"targets\":[\"10.0.0.1\"],\"ports\":[22]}'");
  return v as Record<string, unknown>;
}

/** `jobs run`: returns the exit code. */
export async function runJobsRun(e: JobsEnv, o: RunOptions, io: Io): Promise<number> {
  const { packages, schedules } = await loadLocal(e);
  const schedule = schedules.find((s) => s.name === o.job);
  const local = packages.get(o.job) ?? (schedule ? packages.get(schedule.job) : undefined);
  const params = o.params ?? schedule?.params ?? {};
  // Checked here too when the package is known locally: the error comes before any NATS round trip.
  if (local) {
    const bad = local.validateParams(params);
    if (bad.length) {
      for (const b of bad) io.err(`job ${o.job}: ${b}`);
      return 1;
    }
  }
  const bus = await connect(e, "orrery-cli-jobs-run");
  try {
    const statuses: JobStatus[] = [];
    let wake: () => void = () => undefined;
    // every job's statuses: a schedule's name is not its job's, and the reply says which runs to follow
    const sub = await watchStatuses(bus, (s) => {
      statuses.push(s);
      wake();
    });
    let runs: { runId: string; assignee: string | null }[];
    const req: SubmitRequest = { schema: "job.submit.v1", job: o.job, ...(o.params ? { params: o.params } : {}) };
    // Only when nobody listens does the CLI queue the run itself: a scheduler that is slow to answer may still queue
    // it, so a timeout is an error, not a reason for a second submit.
    const answer = await requestRun(bus, req);
    if (answer.kind === "reply") {
      const reply = answer.reply;
      if (!reply.ok) {
        io.err(`job ${o.job}: ${reply.code}: ${reply.error}`);
        return 1;
      }
      runs = reply.runs;
      io.err(`submitted ${runs.map((r) => `${r.runId}${r.assignee ? ` → ${r.assignee}` : ""}`).join(", ")} (via the scheduler, ${reply.via === "placement" ? "placed per the strategy" : "shared queue"})`);
    } else {
      if (!local) {
        io.err(`job ${o.job}: no scheduler answered on ${answer.subject}, and no local package "${o.job}" says its worker type (local: ${[...packages.keys()].sort().join(", ")})`);
        return 1;
      }
      const run = await submitRun(bus, { job: local.manifest.name, workerType: local.manifest.workerType, params });
      runs = [{ runId: run.runId, assignee: null }];
      io.err(`submitted ${run.runId} to the shared ${local.manifest.workerType} queue (no scheduler answered, so no placement strategy applied)`);
    }
    if (!o.wait) {
      io.out(o.json ? JSON.stringify({ runs }) : runs.map((r) => r.runId).join("\n"));
      return 0;
    }
    const ids = new Set(runs.map((r) => r.runId));
    const deadline = Date.now() + o.waitMs;
    const final = new Map<string, JobStatus>();
    for (;;) {
      for (const s of statuses.splice(0)) {
        if (!ids.has(s.runId)) continue;
        if (s.state === "started") io.err(`${s.runId}: started on ${s.workerId} (attempt ${s.attempt})`);
        else if (s.state === "failed" && s.final === false) io.err(`${s.runId}: attempt ${s.attempt} failed on ${s.workerId}, will be retried: ${s.error}`);
        else final.set(s.runId, s);
      }
      if (final.size === ids.size) break;
      if (Date.now() > deadline) {
        io.err(`timed out after ${o.waitMs} ms waiting for ${[...ids].filter((id) => !final.has(id)).join(", ")}`);
        sub.unsubscribe();
        return 3;
      }
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 250);
      });
    }
    sub.unsubscribe();
    const results = [...ids].map((id) => final.get(id)!);
    if (o.json) io.out(JSON.stringify(results));
    else
      for (const s of results)
        io.out(s.state === "finished" ? `${s.runId}: finished on ${s.workerId}, ${s.items} item(s), attempt ${s.attempt}` : `${s.runId}: failed on ${s.workerId} (attempt ${s.attempt}): ${s.error}`);
    return results.every((s) => s.state === "finished") ? 0 : 1;
  } finally {
    await bus.close();
  }
}

const exit = async (f: () => Promise<number>) => {
  try {
    process.exitCode = await f();
  } catch (e) {
    console.error(e instanceof UsageError ? e.message : `error: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = e instanceof UsageError ? 2 : 1;
  }
};

const list = defineCommand({
  meta: { name: "list", description: "Job packages, the worker types they need, schedules (and live workers with --live)" },
  args: {
    live: { type: "boolean", description: "also listen on NATS for worker heartbeats and the placement table" },
    listen: { type: "string", description: "with --live: how long to listen, e.g. 3s", default: "3s" },
    json: { type: "boolean", description: "print JSON" },
  },
  async run({ args }) {
    await exit(async () => {
      const listenMs = parseDuration(String(args.listen)) ?? (/^\d+$/.test(String(args.listen)) ? Number(args.listen) : NaN);
      if (!Number.isFinite(listenMs)) throw new UsageError(`--listen must be a duration like 3s (got "${args.listen}")`);
      return runJobsList(jobsEnv(), { live: !!args.live, listenMs, json: !!args.json }, { out: (s) => process.stdout.write(s.endsWith("\n") ? s : s + "\n"), err: (s) => console.error(s) });
    });
  },
});

const run = defineCommand({
  meta: { name: "run", description: "Submit an on-demand run of a job over NATS (through the scheduler, per the placement strategy)" },
  args: {
    name: { type: "positional", required: true, description: "a job, or a schedule (its job, placement and parameters) — see `orrery jobs list`" },
    params: { type: "string", description: "parameters: a JSON object, or @file.json (default: the schedule's, for a schedule)" },
    wait: { type: "boolean", description: "wait for the run to finish and print the outcome" },
    timeout: { type: "string", description: "with --wait: give up after this long, e.g. 10m", default: "30m" },
    json: { type: "boolean", description: "print JSON" },
  },
  async run({ args }) {
    await exit(async () => {
      const waitMs = parseDuration(String(args.timeout));
      if (waitMs === null) throw new UsageError(`--timeout must be a duration like 30s or 10m (got "${args.timeout}")`);
      const params = parseRunParams(args.params === undefined ? undefined : String(args.params));
      return runJobsRun(jobsEnv(), { job: String(args.name), params, wait: !!args.wait, waitMs, json: !!args.json }, { out: (s) => console.log(s), err: (s) => console.error(s) });
    });
  },
});

export const jobs = defineCommand({
  meta: { name: "jobs", description: "Agentless discovery jobs: list packages and schedules, run one now" },
  subCommands: { list, run },
});

if (import.meta.main) await runMain(jobs);
