/** Helpers for the job tests: a slow test job package, and the jobs service as a real child process. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { spawnUntilReady } from "./process.ts";

const ROOT = join(import.meta.dir, "../..");

/** A job that reports one listener per item, slowly, so it can be killed in the middle. */
export function writeSlowJob(dir: string, workerType: string, schedule: { every: string; params: Record<string, unknown> } | null = null): string {
  const pkg = join(dir, "slow-items");
  mkdirSync(pkg, { recursive: true });
  writeFileSync(
    join(pkg, "job.json"),
    JSON.stringify({
      name: "slow-items",
      version: "0.1.0",
      workerType,
      schedule,
      params: {
        type: "object",
        required: ["items", "delayMs", "host"],
        properties: { items: { type: "integer", minimum: 1 }, delayMs: { type: "integer", minimum: 0 }, host: { type: "string" } },
      },
    }),
  );
  writeFileSync(
    join(pkg, "job.ts"),
    `export async function* run(ctx) {
  for (let i = 0; i < ctx.params.items; i++) {
    await Bun.sleep(ctx.params.delayMs);
    yield {
      key: "item-" + i,
      host: ctx.params.host,
      full: false,
      events: [{ type: "listener.seen", proto: "tcp", ip: "127.0.0.1", port: 20000 + i, process: null }],
      samples: [{ entity: "host:" + ctx.params.host, metric: "slow_item", ts: Date.now(), value: i, labels: { worker: ctx.workerId } }],
    };
  }
}
`,
  );
  return dir;
}

export interface WorkerProc {
  id: string;
  proc: Subprocess;
  stderr: () => string;
}

/** Starts `services/jobs/main.ts` as a real child process and waits for its ready line. */
export async function spawnJobsProcess(id: string, env: Record<string, string>): Promise<WorkerProc> {
  const { proc, stderr } = await spawnUntilReady([process.execPath, "run", join(ROOT, "services/jobs/main.ts")], {
    cwd: ROOT,
    env: { ...process.env, ORRERY_LOG_QUIET: "1", ORRERY_WORKER_ID: id, ...env },
    ready: /"event":"ready"/,
    timeoutMs: 20_000,
    name: id,
  });
  return { id, proc, stderr };
}


export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `orrery <args>` (cli/main.ts) as a real process and collects its output. */
export async function runCli(args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<CliResult> {
  const proc = Bun.spawn([process.execPath, "run", join(ROOT, "cli/main.ts"), ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Runs `services/jobs/main.ts` expecting it to refuse to start; returns its exit code and stderr. */
export async function jobsProcessFails(env: Record<string, string>, timeoutMs = 20_000): Promise<CliResult> {
  const proc = Bun.spawn([process.execPath, "run", join(ROOT, "services/jobs/main.ts")], { cwd: ROOT, env: { ...process.env, ORRERY_LOG_QUIET: "1", ...env }, stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}
