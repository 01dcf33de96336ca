/**
 * Discovery jobs: the manifest of a job package, a job run (what the scheduler puts on a worker type's work queue),
 * a worker's heartbeat, a run's status events and the placement table. Agentless discovery jobs report through the
 * same discovery.v1 / metrics.v1 contracts as the host agent.
 */
import { z } from "zod";
import { EpochMs, Id, Labels } from "./common.ts";

/** A subject token we also use in consumer names: no dots, wildcards or spaces. */
export const Token = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-zA-Z0-9_-]+$/, "letters, digits, _ and - only (it becomes a NATS subject token)");

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "500ms", "30s", "5m", "1h", "1d" → milliseconds; null when it is not a duration. */
export function parseDuration(s: string): number | null {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(s.trim());
  return m ? Number(m[1]) * UNITS[m[2]!]! : null;
}

export const MIN_INTERVAL_MS = 1000;
export const MAX_INTERVAL_MS = 7 * 86_400_000;

export const Duration = z.string().superRefine((s, ctx) => {
  const ms = parseDuration(s);
  if (ms === null) ctx.addIssue({ code: "custom", message: `"${s}" is not a duration: use a number with ms, s, m, h or d, e.g. "30s"` });
  else if (ms < MIN_INTERVAL_MS || ms > MAX_INTERVAL_MS) ctx.addIssue({ code: "custom", message: `"${s}" is out of range: between 1s and 7d` });
});

/**
 * The longest a run may take. A run redelivered after its worker died is redone from the start and republishes its
 * items with the same message ids; JetStream drops them only within the duplicate window of the discovery and metrics
 * streams (JOB_RESULT_DEDUP_WINDOW_MS in pipelines/streams.ts), which must cover timeout + ack_wait. A manifest with a
 * longer timeout is rejected at package load; the worker's ack_wait is capped at MAX_JOB_ACK_WAIT_MS.
 */
export const MAX_JOB_TIMEOUT_MS = 30 * 60_000;
export const MAX_JOB_ACK_WAIT_MS = 10 * 60_000;

export const JobTimeout = Duration.superRefine((s, ctx) => {
  const ms = parseDuration(s);
  if (ms !== null && ms > MAX_JOB_TIMEOUT_MS)
    ctx.addIssue({
      code: "custom",
      message: `"${s}" is over the ${MAX_JOB_TIMEOUT_MS / 60_000}m maximum: a redelivered run's results are deduplicated only within the streams' duplicate window (timeout + ack_wait must fit in it)`,
    });
});

/** A parameter schema is a JSON Schema object (compiled with ajv when the package loads). */
export const ParamSchema = z.record(z.string(), z.unknown()).refine((s) => s.type === "object", {
  message: 'the parameter schema must be a JSON Schema with "type": "object"',
});

export const JobManifest = z.strictObject({
  name: Token,
  version: z.string().regex(/^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$/, "a semantic version, e.g. 1.0.0"),
  description: z.string().max(1000).optional(),
  /** Workers that list this type in ORRERY_WORKER_TYPES run it. */
  workerType: Token,
  /** The module that exports `run`, relative to the package folder. */
  entry: z.string().regex(/^[^/].*\.(ts|js)$/, "a relative .ts or .js file").default("job.ts"),
  /** null: runs only on demand. Otherwise a run every `every`, with these parameters. */
  schedule: z.strictObject({ every: Duration, params: z.record(z.string(), z.unknown()).default({}) }).nullable().default(null),
  params: ParamSchema,
  /** How long one run may take before the worker gives up on it. */
  timeout: JobTimeout.default("5m"),
});
export type JobManifest = z.infer<typeof JobManifest>;

/**
 * ORRERY_JOB_SCHEDULES: a JSON file of schedules, so an operator schedules a built-in job with its parameters
 * without touching the package. `name` (default: the job's name) names the schedule: its run ids are
 * `<name>@<slot>`, and a schedule named like a package's own `schedule` replaces it.
 */
export const ScheduleEntry = z.strictObject({
  name: Token.optional(),
  job: Token,
  every: Duration,
  params: z.record(z.string(), z.unknown()).default({}),
});
export type ScheduleEntry = z.infer<typeof ScheduleEntry>;

export const ScheduleFile = z.strictObject({
  $schema: z.string().optional(),
  schedules: z.array(ScheduleEntry).max(10_000),
});
export type ScheduleFile = z.infer<typeof ScheduleFile>;

/**
 * An on-demand run asked of the scheduler (core NATS request/reply, `<prefix>.rpc.jobs.submit`): the scheduler
 * checks the job and its parameters and queues the run the way it queues scheduled ones (per the placement strategy).
 */
export const SubmitRequest = z.object({
  schema: z.literal("job.submit.v1"),
  /** a job (package) name, or a schedule's name: that schedule's job, placement and (unless given) parameters */
  job: Token,
  /** absent: the schedule's parameters when `job` names a schedule, else {} */
  params: z.record(z.string(), z.unknown()).optional(),
  /** optional: a caller-chosen id makes a retried submit idempotent */
  runId: Id.optional(),
});
export type SubmitRequest = z.infer<typeof SubmitRequest>;

export const SubmitReply = z.discriminatedUnion("ok", [
  z.object({
    schema: z.literal("job.submitted.v1"),
    ok: z.literal(true),
    /** one run per active worker with a strategy; one run on the shared queue without */
    runs: z.array(z.object({ runId: Id, job: Token, workerType: Token, assignee: Token.nullable() })).min(1),
    via: z.enum(["queue", "placement"]),
  }),
  z.object({ schema: z.literal("job.submitted.v1"), ok: z.literal(false), code: z.enum(["unknown_job", "bad_params", "not_placed", "bad_request"]), error: z.string() }),
]);
export type SubmitReply = z.infer<typeof SubmitReply>;

export const JobRun = z.object({
  schema: z.literal("job.run.v1"),
  /** Stable across redeliveries: result message ids derive from it, so a rerun of the same run is stored once. */
  runId: Id,
  job: Token,
  workerType: Token,
  params: z.record(z.string(), z.unknown()),
  /** Schedule slot (floor(time / interval)); 0 for on-demand runs. */
  slot: z.number().int().nonnegative(),
  requestedAt: EpochMs,
  /** The worker a placed run is for (null: any worker of the type). */
  assignee: Token.nullable().default(null),
  /** A scheduled run's interval (ms): its results declare it, so aging waits for the next run. Absent on demand. */
  everyMs: z.number().int().positive().optional(),
});
export type JobRun = z.infer<typeof JobRun>;

export const JobStatus = z.object({
  schema: z.literal("job.status.v1"),
  runId: Id,
  job: Token,
  workerId: Token,
  state: z.enum(["started", "finished", "failed"]),
  at: EpochMs,
  /** attempt number as JetStream counts deliveries */
  attempt: z.number().int().positive(),
  items: z.number().int().nonnegative().default(0),
  error: z.string().max(4000).nullable().default(null),
  /** on "failed": false when the run goes back on the queue for another attempt, true when it was given up */
  final: z.boolean().optional(),
});
export type JobStatus = z.infer<typeof JobStatus>;

export const WorkerHeartbeat = z.object({
  schema: z.literal("worker.heartbeat.v1"),
  workerId: Token,
  workerTypes: z.array(Token).min(1).max(64),
  /** Pool name the worker declares (ORRERY_WORKER_POOL); empty: matched by labels. */
  pool: z.string().max(64).default(""),
  labels: Labels.default({}),
  running: z.number().int().nonnegative(),
  startedAt: EpochMs,
  at: EpochMs,
  /** true on a graceful stop: the scheduler moves its placements at once */
  leaving: z.boolean().default(false),
});
export type WorkerHeartbeat = z.infer<typeof WorkerHeartbeat>;

export const PlacementEntry = z.object({
  job: z.string(),
  workerType: z.string(),
  active: z.array(z.string()),
  standby: z.array(z.string()),
  /** null when fully placed; otherwise why not (too few workers, no pool outside the actives' …) */
  degraded: z.string().nullable(),
});
export type PlacementEntry = z.infer<typeof PlacementEntry>;

export const PlacementTable = z.object({
  schema: z.literal("placement.v1"),
  /** bumps on every change */
  generation: z.number().int().nonnegative(),
  at: EpochMs,
  workers: z.array(z.string()),
  placements: z.array(PlacementEntry),
});
export type PlacementTable = z.infer<typeof PlacementTable>;
