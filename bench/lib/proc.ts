/** What a bench reads about its child processes from /proc (Linux): where the cores and the memory went. */
import { readFileSync } from "node:fs";

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
