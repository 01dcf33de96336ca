/** A service under bench as its own process (as the supervisor runs it), started once its ready line is out. */
import { resolve } from "node:path";
import { spawnUntilReady, type PipedProcess } from "../../test/helpers/process.ts";

const ROOT = resolve(import.meta.dir, "../..");

export interface BenchChild {
  proc: PipedProcess<"ignore">;
  /** its ready line: the JSON object every service prints first on stdout */
  ready: Record<string, unknown>;
  /** the tail of its stderr (empty when it goes to a file) */
  logs(): string;
}

/**
 * `bun <args>` from the repository root with `env` over the bench's own environment. `cpuProfDir`: it writes a
 * markdown CPU profile there when it exits; `stderrFile`: its log goes to that file instead of memory.
 */
export async function startChild(args: string[], o: { env?: Record<string, string>; cpuProfDir?: string | null; stderrFile?: string; timeoutMs?: number; name?: string } = {}): Promise<BenchChild> {
  const prof = o.cpuProfDir ? ["--cpu-prof-md", `--cpu-prof-dir=${o.cpuProfDir}`, `--cpu-prof-name=${args[0]!.split("/")[1]}.md`] : [];
  const c = await spawnUntilReady([process.execPath, ...prof, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...o.env },
    ready: /^(.*)\n/,
    timeoutMs: o.timeoutMs ?? 60_000,
    name: o.name ?? args.join(" "),
    stderrFile: o.stderrFile,
  });
  return { proc: c.proc, ready: JSON.parse(c.match[1]!) as Record<string, unknown>, logs: () => c.stderr().slice(-20_000) };
}
