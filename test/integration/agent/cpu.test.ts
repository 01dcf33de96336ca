// Per-process CPU as the agent publishes it: cores used between two scans (a rate), plus the cumulative seconds.
// The pure diff on hand-made scans, then two real scans of a child that spins and one that idles.
import { describe, expect, test } from "bun:test";
import type { HostScan, ProcessInfo } from "../../../pipelines/contracts/host-scan.ts";
import { emptyAgentState, scanToBatches } from "../../../pipelines/stages/agent-diff.ts";
import { scanHost } from "../../../services/agent/scan.ts";
import { spawnUntilReady } from "../../helpers/process.ts";

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
  test("a spinning process's cores match what it measures itself (process.cpuUsage); an idle one uses about none", async () => {
    // The spinner yields between 20 ms slices so it can answer "how much CPU have you used" on stdin.
    const child = (spin: boolean) =>
      spawnUntilReady(
        [
          process.execPath,
          "-e",
          `require("node:net").createServer().listen(0, "127.0.0.1", () => {
            const spin = () => { const t = Date.now(); while (Date.now() - t < 20); setImmediate(spin); };
            ${spin ? "spin();" : ""}
            process.stdin.on("data", () => { const u = process.cpuUsage(); console.log(u.user + u.system); });
            console.log("up");
          });`,
        ],
        { stdin: "pipe", ready: /^up\n/, timeoutMs: 10_000, name: spin ? "the spinner" : "the idle child" },
      );
    const [b, i] = await Promise.all([child(true), child(false)]);
    const busy = b.proc;
    const idle = i.proc;
    try {
      const usage = async () => {
        const from = b.stdout().length;
        busy.stdin.write("?\n");
        await busy.stdin.flush();
        return Number((await b.until(/^(\d+)\n/, { from, timeoutMs: 5000 }))[1]);
      };
      await Bun.sleep(300); // past bun's own start-up work
      const u0 = await usage();
      const s0 = await scanHost();
      await Bun.sleep(1500);
      const s1 = await scanHost();
      const u1 = await usage();
      const r0 = scanToBatches(emptyAgentState(), s0, o(0));
      const r1 = scanToBatches(r0.state, s1, o(1));
      const cores = metric(r1, "process_cpu_cores");
      const self = (u1 - u0) / 1e6 / ((s1.at - s0.at) / 1000);
      console.log(`busy child: agent says ${cores[String(busy.pid)]?.toFixed(3)} cores, the child measured ${self.toFixed(3)}; idle child ${cores[String(idle.pid)]?.toFixed(3)}`);
      // The machine is shared (the spinner gets what it gets), so compare with the child's own account of the same
      // window; the windows differ by a scan's duration and the ticks are 10 ms.
      expect(cores[String(busy.pid)]).toBeGreaterThan(0.02);
      expect(Math.abs(cores[String(busy.pid)]! - self)).toBeLessThan(0.1);
      expect(cores[String(idle.pid)]).toBeLessThan(0.05);
    } finally {
      busy.kill();
      idle.kill();
      await Promise.all([busy.exited, idle.exited]);
    }
  }, 20_000);
});

describe("a process's cost includes its folded workers", () => {
  const w = (leader: number, cpuTicks: number, startTime = 7, rssBytes = 1000) => ({ leader, cpuTicks, startTime, rssBytes });
  test("cores, cumulative seconds and RSS sum the leader and its workers; a new worker adds from its next scan", () => {
    const s0 = { ...scanAt(0, proc(10, 100)), workers: new Map([[11, w(10, 1000)], [12, w(10, 2000)]]) };
    const r0 = scanToBatches(emptyAgentState(), s0, o(0));
    expect(metric(r0, "process_workers")).toEqual({ "10": 2 });
    expect(metric(r0, "process_rss_bytes")).toEqual({ "10": 4096 + 2000 });
    expect(metric(r0, "process_cpu_seconds_total")).toEqual({ "10": 31 });
    // 2 s later: leader +10 ticks, worker 11 +100, worker 12 exited, worker 13 is new (its 50 ticks are not "since")
    const s1 = { ...scanAt(2000, proc(10, 110)), workers: new Map([[11, w(10, 1100)], [13, w(10, 50)]]) };
    const r1 = scanToBatches(r0.state, s1, o(1));
    expect(metric(r1, "process_cpu_cores")).toEqual({ "10": 0.55 });
    const s2 = { ...scanAt(4000, proc(10, 110)), workers: new Map([[11, w(10, 1100)], [13, w(10, 250)]]) };
    expect(metric(scanToBatches(r1.state, s2, o(2)), "process_cpu_cores")).toEqual({ "10": 1 });
  });

  const python = Bun.which("python3");
  test.skipIf(!python)("on this machine: a pre-fork server whose two workers spin is reported busy under its master", async () => {
    // The master listens and forks two workers that inherit the listener and spin; it idles. Workers exit when
    // the master is gone.
    const py = [
      "import os, socket, sys, time",
      "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(16)",
      "me = os.getpid(); kids = []",
      "for i in range(2):",
      "    k = os.fork()",
      "    if k == 0:",
      "        n = 0",
      "        while True:",
      "            n += 1",
      "            if n % 1000000 == 0 and os.getppid() != me: os._exit(0)",
      "    kids.append(k)",
      "print(s.getsockname()[1], *kids, flush=True)",
      "sys.stdin.read()",
    ].join("\n");
    // stdin stays open (the server exits when it closes)
    const { proc: master, match } = await spawnUntilReady([python!, "-c", py], { stdin: "pipe", ready: /^(.*)\n/, timeoutMs: 15_000, name: "the pre-fork server" });
    let kids: number[] = [];
    try {
      const [port, ...k] = match[1]!.trim().split(" ").map(Number);
      kids = k;
      await Bun.sleep(200);
      const s0 = await scanHost();
      await Bun.sleep(1500);
      const s1 = await scanHost();
      expect(s1.sockets.find((s) => s.state === "listen" && s.localPort === port)?.pid).toBe(master.pid);
      expect([...(s1.workers ?? [])].filter(([, x]) => x.leader === master.pid).map(([pid]) => pid).sort()).toEqual([...kids].sort());
      const r1 = scanToBatches(scanToBatches(emptyAgentState(), s0, o(0)).state, s1, o(1));
      const cores = metric(r1, "process_cpu_cores")[String(master.pid)]!;
      // from the raw scans: the master's own ticks, and those of the whole group
      const ticks = (s: HostScan, pid: number) => (pid === master.pid ? s.processes.get(pid)!.cpuTicks : s.workers!.get(pid)!.cpuTicks);
      const secs = (s1.at - s0.at) / 1000;
      const own = (ticks(s1, master.pid) - ticks(s0, master.pid)) / 100 / secs;
      const group = [master.pid, ...kids].reduce((n, pid) => n + ticks(s1, pid) - ticks(s0, pid), 0) / 100 / secs;
      console.log(`pre-fork master with 2 spinning workers: ${cores.toFixed(2)} cores (the master alone ${own.toFixed(2)})`);
      expect(metric(r1, "process_workers")[String(master.pid)]).toBe(2);
      expect(cores).toBeCloseTo(group, 6);
      expect(own).toBeLessThan(0.05);
      expect(cores).toBeGreaterThan(own + 0.05); // the workers' share is in it, however loaded the machine is
    } finally {
      for (const k of kids) {
        try {
          process.kill(k, "SIGKILL");
        } catch {
          // already gone
        }
      }
      master.kill();
      await master.exited;
    }
  }, 20_000);
});
