/** What a bench reads about its child processes from /proc (Linux): where the cores and the memory went. */
import { readdirSync, readFileSync } from "node:fs";

/** user + system CPU seconds of a process so far; NaN once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/** kB values of /proc/<pid>/status: VmRSS now, VmHWM the peak. */
export async function rssOf(pid: number): Promise<{ rssMiB: number; peakMiB: number }> {
  const s = await Bun.file(`/proc/${pid}/status`).text();
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
  return { rssMiB: Math.round(kb("VmRSS") / 1024), peakMiB: Math.round(kb("VmHWM") / 1024) };
}

/** The service a child of the supervisor is, from its command line: `bun run …/services/<name>/main.ts` → name. */
export function serviceOf(cmdline: readonly string[]): string {
  for (const a of cmdline) {
    const m = /(?:^|\/)services\/([^/]+)\/main\.ts$/.exec(a);
    if (m) return m[1]!;
  }
  if (cmdline.some((a) => a.split("/").pop() === "nats-server")) return "nats";
  return (cmdline[0] ?? "?").split("/").pop()!;
}

function readProc(pid: number, what: "stat" | "status" | "cmdline"): string | null {
  try {
    return readFileSync(`/proc/${pid}/${what}`, "utf8");
  } catch {
    return null;
  }
}

/** Every live process's parent, from /proc/<pid>/stat (zombies left out). */
function parentsNow(): Map<number, number> {
  const out = new Map<number, number>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const s = readProc(Number(d), "stat");
    if (!s) continue;
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    if (f[0] !== "Z") out.set(Number(d), Number(f[1]));
  }
  return out;
}

export interface ServiceUsage {
  name: string;
  /** user + system CPU seconds over the sampled time (of every process it ran, restarts included) */
  cpuSeconds: number;
  /** the highest cores used over any `windowS` window */
  peakCores: number;
  /** the highest RSS sampled (its process and theirs, summed), and the kernel's high-water mark of its own process */
  peakRssMiB: number;
  /** pids it ran under: more than one means the supervisor restarted it */
  pids: number[];
}

interface Usage {
  /** every pid seen under the service → its CPU seconds when last sampled */
  pids: Map<number, number>;
  /** the service's own pids (the supervisor's children) */
  mains: Set<number>;
  history: { t: number; cpu: number }[];
  peakRssMiB: number;
}

/**
 * Samples a supervisor's children (and theirs) from /proc: CPU and RSS per service, by the service's name. A child
 * restarted under a new pid stays the same service; the CPU of a process that ended counts as last sampled.
 */
export class ServiceSampler {
  private byName = new Map<string, Usage>();
  private timer: ReturnType<typeof setInterval> | null = null;
  constructor(
    private readonly root: number,
    private readonly windowS = 5,
  ) {}

  start(everyMs = 1000): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  sample(): void {
    const parents = parentsNow();
    const kids = (p: number) => [...parents].filter(([, pp]) => pp === p).map(([c]) => c);
    const t = performance.now() / 1000;
    for (const child of kids(this.root)) {
      const cmd = readProc(child, "cmdline");
      if (!cmd) continue;
      const name = serviceOf(cmd.split("\0").filter(Boolean));
      const tree = [child];
      for (let i = 0; i < tree.length; i++) tree.push(...kids(tree[i]!));
      const s: Usage = this.byName.get(name) ?? { pids: new Map(), mains: new Set(), history: [], peakRssMiB: 0 };
      this.byName.set(name, s);
      s.mains.add(child);
      let rssKb = 0;
      for (const pid of tree) {
        const cpu = cpuSeconds(pid);
        if (!Number.isNaN(cpu)) s.pids.set(pid, cpu);
        const st = readProc(pid, "status");
        rssKb += Number(/VmRSS:\s+(\d+)/.exec(st ?? "")?.[1] ?? 0);
        if (pid === child) s.peakRssMiB = Math.max(s.peakRssMiB, Number(/VmHWM:\s+(\d+)/.exec(st ?? "")?.[1] ?? 0) / 1024);
      }
      s.peakRssMiB = Math.max(s.peakRssMiB, rssKb / 1024);
      s.history.push({ t, cpu: [...s.pids.values()].reduce((a, b) => a + b, 0) });
    }
  }

  /** CPU seconds per service so far (for a phase: the difference of two readings). */
  cpuNow(): Record<string, number> {
    return Object.fromEntries([...this.byName].map(([n, s]) => [n, s.history.at(-1)?.cpu ?? 0]));
  }

  report(): ServiceUsage[] {
    return [...this.byName].map(([name, s]) => {
      let peak = 0;
      for (let i = 0, j = 0; i < s.history.length; i++) {
        while (s.history[i]!.t - s.history[j]!.t > this.windowS) j++;
        const dt = s.history[i]!.t - s.history[j]!.t;
        if (dt >= this.windowS / 2) peak = Math.max(peak, (s.history[i]!.cpu - s.history[j]!.cpu) / dt);
      }
      return { name, cpuSeconds: +(s.history.at(-1)?.cpu ?? 0).toFixed(1), peakCores: +peak.toFixed(2), peakRssMiB: Math.round(s.peakRssMiB), pids: [...s.mains] };
    });
  }
}
