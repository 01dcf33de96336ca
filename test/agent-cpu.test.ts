// Per-process CPU as the agent publishes it: cores used between two scans (a rate), plus the cumulative seconds.
// The pure diff on hand-made scans, then two real scans of a child that spins and one that idles.
import { describe, expect, test } from "bun:test";
import { emptyAgentState, scanToBatches } from "../services/agent/diff.ts";
import { scanHost, type HostScan, type ProcessInfo } from "../services/agent/scan.ts";

const proc = (pid: number, cpuTicks: number, startTime = 5): ProcessInfo => ({
  pid,
  ppid: 1,
  comm: "api",
  exe: "/usr/bin/api",
  cmdline: ["api"],
  uid: 0,
  user: "root",
  startTime,
  containerId: null,
  cpuTicks,
  rssBytes: 4096,
});
const scanAt = (at: number, ...ps: ProcessInfo[]): HostScan => ({
  at,
  facts: { hostname: "h", os: "Linux", kernel: "6", cpus: 2, memTotalBytes: 1, memAvailableBytes: 1, load1: 0, ips: ["10.0.0.1"] },
  sockets: ps.map((p, i) => ({ proto: "tcp", family: 4, localIp: "0.0.0.0", localPort: 8000 + i, remoteIp: "0.0.0.0", remotePort: 0, state: "listen", inode: 100 + i, uid: 0, pid: p.pid })),
  processes: new Map(ps.map((p) => [p.pid, p])),
  unreadablePids: [],
});
const o = (scanId: number) => ({ source: "agent:h", host: "h", scanId, full: scanId === 0 });
const metric = (r: ReturnType<typeof scanToBatches>, name: string) =>
  Object.fromEntries(r.samples.filter((s) => s.metric === name).map((s) => [s.labels.pid, s.value]));

describe("process CPU between scans", () => {
  test("cores = delta ticks / CLK_TCK / seconds; none on the first scan; cumulative seconds always", () => {
    const r0 = scanToBatches(emptyAgentState(), scanAt(10_000, proc(10, 100), proc(11, 40)), o(0));
    expect(metric(r0, "process_cpu_cores")).toEqual({});
    expect(metric(r0, "process_cpu_seconds_total")).toEqual({ "10": 1, "11": 0.4 });

    // 5 s later: pid 10 used 150 ticks = 1.5 s of CPU = 0.3 cores; pid 11 nothing
    const r1 = scanToBatches(r0.state, scanAt(15_000, proc(10, 250), proc(11, 40)), o(1));
    expect(metric(r1, "process_cpu_cores")).toEqual({ "10": 0.3, "11": 0 });
    expect(metric(r1, "process_cpu_seconds_total")).toEqual({ "10": 2.5, "11": 0.4 });
    expect(r1.samples.some((s) => s.metric === "process_cpu_ticks")).toBe(false);
  });

  test("a pid reused by a new process (other start time) or a process new since the last scan has no rate yet", () => {
    const r0 = scanToBatches(emptyAgentState(), scanAt(0, proc(10, 500)), o(0));
    const r1 = scanToBatches(r0.state, scanAt(2000, proc(10, 20, 999), proc(12, 30)), o(1));
    expect(metric(r1, "process_cpu_cores")).toEqual({});
    // and the next scan rates both against what r1 saw
    const r2 = scanToBatches(r1.state, scanAt(4000, proc(10, 120, 999), proc(12, 30)), o(2));
    expect(metric(r2, "process_cpu_cores")).toEqual({ "10": 0.5, "12": 0 });
  });

  test("the rate spans from the last published scan: a scan whose publish failed is not a baseline", () => {
    const r0 = scanToBatches(emptyAgentState(), scanAt(0, proc(10, 0)), o(0));
    scanToBatches(r0.state, scanAt(5000, proc(10, 100)), o(1)); // not published: its state is dropped
    const r2 = scanToBatches(r0.state, scanAt(10_000, proc(10, 400)), o(2));
    expect(metric(r2, "process_cpu_cores")).toEqual({ "10": 0.4 });
  });
});

describe("on this machine", () => {
  test("a spinning process uses about one core, an idle one about none", async () => {
    const child = (spin: boolean) =>
      Bun.spawn(
        [process.execPath, "-e", `require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log("up"); ${spin ? "for (;;) {}" : "setInterval(() => {}, 1000);"} });`],
        { stdout: "pipe", stderr: "inherit" },
      );
    const busy = child(true);
    const idle = child(false);
    try {
      for (const c of [busy, idle]) await c.stdout.getReader().read();
      await Bun.sleep(300); // past bun's own start-up work
      const s0 = await scanHost();
      await Bun.sleep(1500);
      const s1 = await scanHost();
      const r0 = scanToBatches(emptyAgentState(), s0, o(0));
      const r1 = scanToBatches(r0.state, s1, o(1));
      const cores = metric(r1, "process_cpu_cores");
      console.log(`busy child ${cores[String(busy.pid)]?.toFixed(2)} cores, idle child ${cores[String(idle.pid)]?.toFixed(2)} cores`);
      // 2 cores shared with other work: the spinner may be starved some, but not to an idle process's level.
      expect(cores[String(busy.pid)]).toBeGreaterThan(0.4);
      expect(cores[String(busy.pid)]).toBeLessThan(1.2);
      expect(cores[String(idle.pid)]).toBeLessThan(0.1);
    } finally {
      busy.kill();
      idle.kill();
      await Promise.all([busy.exited, idle.exited]);
    }
  }, 20_000);
});
