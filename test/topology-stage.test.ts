import { describe, expect, test } from "bun:test";
import type { DiscoveryBatch, DiscoveryEvent } from "../pipelines/contracts/discovery.ts";
import { applyDiscovery, emptyModel, modelFromGraph } from "../pipelines/stages/topology.ts";

const proc = (pid: number, comm: string) => ({ pid, exe: `/usr/bin/${comm}`, comm, cmdline: [comm], user: "app", uid: 1000, startTime: 1000 + pid, containerId: null });
const batch = (events: DiscoveryEvent[], o: Partial<DiscoveryBatch> = {}): DiscoveryBatch => ({
  schema: "discovery.v1",
  source: "agent:h1",
  host: "h1",
  scanId: 1,
  part: 0,
  parts: 1,
  full: false,
  at: 1,
  events,
  ...o,
});
const hostSeen = (ips: string[]): DiscoveryEvent & { type: "host.seen" } => ({ type: "host.seen", hostname: "h1", os: "Debian", kernel: "6", cpus: 2, memTotalBytes: 1, ips });

describe("topology stage", () => {
  test("listener and a loopback connection to it make process → listener edges; server side is skipped", () => {
    const m = emptyModel();
    const c = applyDiscovery(
      m,
      batch([
        hostSeen(["10.0.0.1"]),
        { type: "listener.seen", proto: "tcp", ip: "127.0.0.1", port: 5432, process: proc(10, "postgres") },
        // client half
        { type: "connection.seen", proto: "tcp", localIp: "127.0.0.1", localPort: 40000, remoteIp: "127.0.0.1", remotePort: 5432, process: proc(20, "app") },
        // server half: local port is the listener → skipped
        { type: "connection.seen", proto: "tcp", localIp: "127.0.0.1", localPort: 5432, remoteIp: "127.0.0.1", remotePort: 40000, process: proc(10, "postgres") },
      ]),
      5,
    );
    const ids = c.nodesUpserted.map((n) => n.id).sort();
    expect(ids).toEqual(["host:h1", "listener:h1:tcp:127.0.0.1:5432", "process:h1:10:1010", "process:h1:20:1020"]);
    const edges = c.edgesUpserted.map((e) => `${e.kind} ${e.src} ${e.dst}`).sort();
    expect(edges).toEqual([
      "CONNECTS process:h1:20:1020 listener:h1:tcp:127.0.0.1:5432",
      "LISTENS process:h1:10:1010 listener:h1:tcp:127.0.0.1:5432",
      "RUNS host:h1 process:h1:10:1010",
      "RUNS host:h1 process:h1:20:1020",
    ]);
    expect(m.nodes.has("external:127.0.0.1:40000")).toBe(false);
  });

  test("seeing the same thing again is not a change (only lastSeen moves)", () => {
    const m = emptyModel();
    const ev: DiscoveryEvent[] = [hostSeen([]), { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 80, process: proc(1, "nginx") }];
    applyDiscovery(m, batch(ev), 1);
    const again = applyDiscovery(m, batch(ev), 2);
    expect(again).toEqual({ nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [], created: new Set() });
    expect(m.nodes.get("listener:h1:tcp:0.0.0.0:80")!.lastSeen).toBe(2);
  });

  test("a connection to an unknown endpoint becomes an external node, then moves onto the listener when it appears", () => {
    const m = emptyModel();
    const b1 = { ...batch([hostSeen(["10.0.0.1"])]), host: "h1" };
    applyDiscovery(m, b1, 1);
    const c1 = applyDiscovery(
      m,
      batch([{ type: "connection.seen", proto: "tcp", localIp: "10.0.0.1", localPort: 50000, remoteIp: "10.0.0.2", remotePort: 6379, process: proc(5, "app") }]),
      2,
    );
    expect(c1.nodesUpserted.some((n) => n.id === "external:10.0.0.2:6379")).toBe(true);
    // host h2 announces 10.0.0.2 and a redis listener
    applyDiscovery(m, batch([{ ...hostSeen(["10.0.0.2"]), hostname: "h2" }], { source: "agent:h2", host: "h2" }), 3);
    const c2 = applyDiscovery(
      m,
      batch([{ type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 6379, process: proc(7, "redis") }], { source: "agent:h2", host: "h2" }),
      4,
    );
    expect(c2.nodesRemoved).toContain("external:10.0.0.2:6379");
    expect(c2.edgesUpserted.some((e) => e.kind === "CONNECTS" && e.dst === "listener:h2:tcp:0.0.0.0:6379")).toBe(true);
  });

  test("connection.gone removes the edge and the process that only it kept; listener.gone removes the listener", () => {
    const m = emptyModel();
    const conn = { proto: "tcp" as const, localIp: "127.0.0.1", localPort: 40001, remoteIp: "127.0.0.1", remotePort: 9000 };
    applyDiscovery(m, batch([hostSeen([]), { type: "listener.seen", proto: "tcp", ip: "127.0.0.1", port: 9000, process: proc(1, "srv") }, { type: "connection.seen", ...conn, process: proc(2, "cli") }]), 1);
    const gone = applyDiscovery(m, batch([{ type: "connection.gone", ...conn }]), 2);
    expect(gone.nodesRemoved).toEqual(["process:h1:2:1002"]);
    expect(gone.edgesRemoved.map((e) => e.kind).sort()).toEqual(["CONNECTS", "RUNS"]);
    const lg = applyDiscovery(m, batch([{ type: "listener.gone", proto: "tcp", ip: "127.0.0.1", port: 9000 }]), 3);
    expect(lg.nodesRemoved.sort()).toEqual(["listener:h1:tcp:127.0.0.1:9000", "process:h1:1:1001"]);
  });

  test("a full scan removes what its source no longer lists, and nothing of another source", () => {
    const m = emptyModel();
    applyDiscovery(m, batch([hostSeen([]), { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 22, process: proc(1, "sshd") }, { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 80, process: proc(2, "nginx") }]), 1);
    applyDiscovery(m, batch([{ ...hostSeen([]), hostname: "h9" }, { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 80, process: proc(3, "x") }], { source: "agent:h9", host: "h9" }), 1);
    // two-part full scan: the removal happens only when both parts are in
    const p0 = applyDiscovery(m, batch([hostSeen([])], { full: true, scanId: 7, part: 0, parts: 2 }), 2);
    expect(p0.nodesRemoved).toEqual([]);
    const p1 = applyDiscovery(m, batch([{ type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 22, process: proc(1, "sshd") }], { full: true, scanId: 7, part: 1, parts: 2 }), 2);
    expect(p1.nodesRemoved.sort()).toEqual(["listener:h1:tcp:0.0.0.0:80", "process:h1:2:1002"]);
    expect(m.nodes.has("listener:h9:tcp:0.0.0.0:80")).toBe(true);
  });

  test("several batches applied together net out: added then removed is no change at all", () => {
    const m = emptyModel();
    applyDiscovery(m, batch([hostSeen([])]), 1);
    const c = applyDiscovery(
      m,
      [batch([{ type: "listener.seen", proto: "tcp", ip: "::", port: 8080, process: null }]), batch([{ type: "listener.gone", proto: "tcp", ip: "::", port: 8080 }])],
      2,
    );
    expect(c.nodesUpserted).toEqual([]);
    expect(c.nodesRemoved).toEqual([]);
    expect(c.edgesUpserted).toEqual([]);
    const d = applyDiscovery(m, batch([{ type: "listener.seen", proto: "tcp", ip: "::", port: 8080, process: null }]), 3);
    expect([...d.created!].sort()).toEqual(["LISTENS:host:h1->listener:h1:tcp:[::]:8080", "listener:h1:tcp:[::]:8080"]);
  });

  test("after a restart, the first full scan confirms what exists and sweeps the rest of that source", () => {
    const m1 = emptyModel();
    applyDiscovery(m1, batch([hostSeen([]), { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 22, process: proc(1, "sshd") }, { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 81, process: proc(2, "old") }]), 1);
    const m2 = modelFromGraph([...m1.nodes.values()], [...m1.edges.values()]);
    const c = applyDiscovery(m2, batch([hostSeen([]), { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 22, process: proc(1, "sshd") }], { full: true, scanId: 1 }), 2);
    expect(c.nodesRemoved.sort()).toEqual(["listener:h1:tcp:0.0.0.0:81", "process:h1:2:1002"]);
    expect(c.nodesUpserted).toEqual([]);
  });
});
