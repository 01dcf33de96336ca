// The agent folds worker processes into the process that owns the listening socket they share (nginx master and
// workers), and the metrics it sends hang on the same service ids the topology stage makes.
import { expect, test } from "bun:test";
import type { HostScan } from "../../../pipelines/contracts/host-scan.ts";
import { emptyAgentState, scanToBatches } from "../../../pipelines/stages/agent-diff.ts";
import { workerLeaders } from "../../../services/agent/scan.ts";
import { applyDiscovery, emptyModel } from "../../../pipelines/stages/topology/index.ts";

test("a process holding a listening socket a lower pid owns is that pid's worker; unrelated sockets do not fold", () => {
  const rows = [
    { state: "listen", inode: 100 }, // :80, held by master 10 and workers 11, 12
    { state: "established", inode: 200 }, // held by 30 and (via fork) 31 — not a listener
  ];
  const owners = new Map([
    [100, 10],
    [200, 30],
    [300, 11],
  ]);
  const inodesByPid = new Map([
    [10, [100]],
    [11, [100, 300]],
    [12, [100]],
    [30, [200]],
    [31, [200]],
  ]);
  expect([...workerLeaders(rows, owners, inodesByPid)].sort()).toEqual([
    [11, 10],
    [12, 10],
  ]);
});

test("process metrics and connection counts use the service id the topology stage gives the process", () => {
  const proc = (pid: number, comm: string) => ({ pid, ppid: 1, comm, exe: `/usr/bin/${comm}`, cmdline: [comm], uid: 0, user: "root", startTime: 5, containerId: null, cpuTicks: 7, rssBytes: 4096 });
  const scan: HostScan = {
    at: 1000,
    facts: { hostname: "h", os: "Linux", kernel: "6", cpus: 2, memTotalBytes: 1, memAvailableBytes: 1, load1: 0, ips: ["10.0.0.1"] },
    sockets: [
      { proto: "tcp", family: 4, localIp: "0.0.0.0", localPort: 8080, remoteIp: "0.0.0.0", remotePort: 0, state: "listen", inode: 1, uid: 0, pid: 10 },
      { proto: "tcp", family: 4, localIp: "10.0.0.1", localPort: 40000, remoteIp: "10.0.0.9", remotePort: 5432, state: "established", inode: 2, uid: 0, pid: 10 },
    ],
    processes: new Map([[10, proc(10, "api")]]),
    unreadablePids: [],
  };
  let state = emptyAgentState();
  const m = emptyModel({ confirmScans: 1 });
  const r = scanToBatches(state, scan, { source: "agent:h", host: "h", scanId: 0, full: true });
  state = r.state;
  applyDiscovery(m, r.batches, 1000);
  const entities = new Set(r.samples.filter((s) => s.metric === "process_rss_bytes" || s.metric === "connections").map((s) => s.entity));
  expect([...entities]).toEqual(["service:h:api:8080"]);
  expect(m.nodes.has("service:h:api:8080")).toBe(true);
});

test("inbound connections count per client IP (not per client port); outbound ones per remote endpoint", () => {
  const proc = { pid: 10, ppid: 1, comm: "api", exe: "/usr/bin/api", cmdline: ["api"], uid: 0, user: "root", startTime: 5, containerId: null, cpuTicks: 7, rssBytes: 4096 };
  const sock = (localIp: string, localPort: number, remoteIp: string, remotePort: number, state: "listen" | "established", inode: number) =>
    ({ proto: "tcp" as const, family: 4 as const, localIp, localPort, remoteIp, remotePort, state, inode, uid: 0, pid: 10 });
  const scan: HostScan = {
    at: 1000,
    facts: { hostname: "h", os: "Linux", kernel: "6", cpus: 2, memTotalBytes: 1, memAvailableBytes: 1, load1: 0, ips: ["10.0.0.1"] },
    sockets: [
      sock("0.0.0.0", 8080, "0.0.0.0", 0, "listen", 1),
      sock("10.0.0.1", 8080, "10.0.0.7", 50001, "established", 2),
      sock("10.0.0.1", 8080, "10.0.0.7", 50002, "established", 3),
      sock("10.0.0.1", 8080, "10.0.0.8", 41000, "established", 4),
      sock("10.0.0.1", 40000, "10.0.0.9", 5432, "established", 5),
      sock("10.0.0.1", 40001, "10.0.0.9", 5432, "established", 6),
    ],
    processes: new Map([[10, proc]]),
    unreadablePids: [],
  };
  const r = scanToBatches(emptyAgentState(), scan, { source: "agent:h", host: "h", scanId: 0, full: true });
  const counts = r.samples.filter((s) => s.metric.startsWith("connections")).map((s) => [s.entity, s.metric, s.labels, s.value]);
  expect(counts.sort()).toEqual(
    [
      ["service:h:api:8080", "connections_in", { client: "10.0.0.7" }, 2],
      ["service:h:api:8080", "connections_in", { client: "10.0.0.8" }, 1],
      ["service:h:api:8080", "connections", { remote: "10.0.0.9:5432" }, 2],
    ].sort(),
  );
});
