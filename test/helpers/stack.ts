/** Starts the whole platform the way `npm run demo` does (the supervisor as a child process), isolated per test. */
import { expect } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { spawnUntilReady } from "./process.ts";
import { tempDir, uniquePrefix, waitFor } from "./tmp.ts";

export interface Stack {
  dashboard: string;
  nats: string;
  clickhouse: string;
  ingest: string;
  dataDir: string;
  proc: Subprocess;
  logs: () => string;
  /** pids of every process below the supervisor (its children and theirs), from /proc */
  descendants(): number[];
  /** Ctrl-C as a terminal sends it: SIGINT to the supervisor's whole process group; resolves with its exit code */
  stop(): Promise<number>;
}

/** parent pid of every live process, from /proc/<pid>/stat */
function parents(): Map<number, number> {
  const out = new Map<number, number>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] !== "Z") out.set(Number(d), Number(fields[1]));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export function descendantsOf(root: number): number[] {
  const pp = parents();
  const found: number[] = [];
  const walk = (p: number) => {
    for (const [pid, ppid] of pp) if (ppid === p) (found.push(pid), walk(pid));
  };
  walk(root);
  return found;
}

/** whether a process is still running (a zombie is not) */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

const ROOT = resolve(import.meta.dir, "../..");

export async function startStack(env: Record<string, string> = {}, dataDir?: string): Promise<Stack & { cleanup: () => void }> {
  const tmp = dataDir ? { dir: dataDir, cleanup: () => {} } : tempDir("orrery-stack-");
  const { proc, match, stderr } = await spawnUntilReady([process.execPath, "run", join(ROOT, "services/supervisor/main.ts")], {
    cwd: ROOT,
    env: {
      ...process.env,
      ORRERY_DATA_DIR: tmp.dir,
      ORRERY_PREFIX: uniquePrefix("e2e"),
      ORRERY_GATEWAY_PORT: "0",
      ORRERY_NATS_PORT: "0",
      CLICKHOUSE_OWNER_PORT: "0",
      ORRERY_INGEST_PORT: "0",
      ORRERY_AGENT_INTERVAL_MS: "500",
      ORRERY_LOG_QUIET: "1",
      ORRERY_SIM_HOSTS: "20",
      ORRERY_SIM_INTERVAL_MS: "1000",
      // explicitly off: stacks test everything but who may pass (test/integration/identity/ starts its own with auth on)
      ORRERY_AUTH: "off",
      // NATS credentials off too (explicitly): tests connect to the stack's NATS as they please; scaleout/ tests them on
      ORRERY_NATS_AUTH: "off",
      ...env,
    },
    // its own process group, like a demo started from a terminal: stop() sends SIGINT to the group as Ctrl-C does
    detached: true,
    // the supervisor's banner line
    ready: /^(.*"service":"orrery".*)\n/m,
    timeoutMs: 120_000,
    name: "the stack",
  });
  const r = JSON.parse(match[1]!);
  return {
    dashboard: r.dashboard,
    nats: r.nats,
    clickhouse: r.clickhouse,
    ingest: r.ingest,
    dataDir: tmp.dir,
    proc,
    logs: stderr,
    descendants: () => descendantsOf(proc.pid),
    stop: async () => {
      if (proc.exitCode === null) process.kill(-proc.pid, "SIGINT");
      return await proc.exited;
    },
    cleanup: tmp.cleanup,
  };
}

/**
 * Ctrl-C as a terminal sends it, and what a clean stop means: exit 0, no child SIGKILLed, every process of the stack
 * gone, and no service that lost nats-server while it was still draining.
 */
export async function expectCleanCtrlC(stack: Stack): Promise<void> {
  const children = stack.descendants();
  expect(children.length).toBeGreaterThanOrEqual(10); // nats-server, chDB owner, the services, agent, simulator
  expect(await stack.stop()).toBe(0);
  const logs = stack.logs();
  expect(logs).not.toContain("did not stop");
  // a service that lost nats-server while draining logs its failed pulls/acks with this reason
  expect(logs).not.toMatch(/server shutdown|CONNECTION_CLOSED|connection closed/i);
  // one at a time in reverse start order: the services, then the ClickHouse owner, nats-server last
  const order = [...logs.matchAll(/\[supervisor\] stopped (\S+)/g)].map((m) => m[1]);
  expect(order.length).toBeGreaterThanOrEqual(10);
  expect(order.slice(-2)).toEqual(["clickhouse", "nats"]);
  expect(order.indexOf("gateway")).toBeLessThan(order.indexOf("topology"));
  await waitFor(() => children.every((p) => !alive(p)), "every child of the supervisor gone", 5000).catch(() => {
    throw new Error(`left running: ${children.filter(alive).join(", ")}`);
  });
}
