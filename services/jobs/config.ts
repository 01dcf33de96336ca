/** The jobs service's own settings (read once in main.ts, validated with the key's name like services/shared/config.ts). */
import { hostname } from "node:os";
import { z } from "zod";
import { MAX_JOB_ACK_WAIT_MS, Token } from "../../pipelines/contracts/jobs.ts";
import { parseEnv } from "../shared/config.ts";

const Env = z.object({
  /** worker: run jobs; scheduler: publish runs and keep placements; all: both in one process */
  ORRERY_JOBS_MODE: z.enum(["worker", "scheduler", "all"]).default("all"),
  ORRERY_WORKER_ID: Token.optional(),
  ORRERY_WORKER_TYPES: z
    .string()
    .default("net,import")
    .transform((s) => s.split(",").map((t) => t.trim()).filter(Boolean))
    .pipe(z.array(Token).min(1)),
  ORRERY_WORKER_POOL: z.string().max(64).default(""),
  /** k=v,k=v */
  ORRERY_WORKER_LABELS: z
    .string()
    .default("")
    .transform((s, ctx) => {
      const out: Record<string, string> = {};
      for (const kv of s.split(",").map((x) => x.trim()).filter(Boolean)) {
        const i = kv.indexOf("=");
        if (i <= 0) ctx.addIssue({ code: "custom", message: `"${kv}" is not key=value` });
        else out[kv.slice(0, i)] = kv.slice(i + 1);
      }
      return out;
    }),
  ORRERY_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(4),
  /** extra package dirs, separated by ':' */
  ORRERY_JOB_PACKAGES: z
    .string()
    .default("")
    .transform((s) => s.split(":").filter(Boolean)),
  /** capped so that timeout + ack_wait fits in the result streams' dedup window (pipelines/streams.ts) */
  ORRERY_JOB_ACK_WAIT_MS: z.coerce.number().int().min(500).max(MAX_JOB_ACK_WAIT_MS).default(30_000),
  /** path of a JSON file of schedules (deploy/schedules.example.json) */
  ORRERY_JOB_SCHEDULES: z.string().optional(),
  ORRERY_HEARTBEAT_MS: z.coerce.number().int().min(100).max(60_000).default(2000),
  /** default 3 heartbeats */
  ORRERY_WORKER_DEAD_MS: z.coerce.number().int().min(300).max(600_000).optional(),
  /** path of a placement strategy JSON file (deploy/strategy.example.json) */
  ORRERY_STRATEGY: z.string().optional(),
});
export type JobsConfig = z.infer<typeof Env> & { workerId: string; deadAfterMs: number };

export function loadJobsConfig(env: Record<string, string | undefined> = process.env): JobsConfig {
  const e = parseEnv(Env, env);
  const workerId = e.ORRERY_WORKER_ID ?? `${hostname().replace(/[^a-zA-Z0-9_-]/g, "_").slice(0, 40)}-${process.pid}`;
  return { ...e, workerId, deadAfterMs: e.ORRERY_WORKER_DEAD_MS ?? 3 * e.ORRERY_HEARTBEAT_MS };
}
