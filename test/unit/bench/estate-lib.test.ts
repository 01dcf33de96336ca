// bench estate's helpers (bench/lib): the WebSocket client's topology counts, counts against a ground truth, which
// service a child process is, and the summary of the demo's log.
import { expect, test } from "bun:test";
import { allWithin, compareCounts } from "../../../bench/lib/counts.ts";
import { summarizeLog } from "../../../bench/lib/log-summary.ts";
import { serviceOf } from "../../../bench/lib/proc.ts";
import { TopologyCount } from "../../../bench/lib/topology-count.ts";

const sim = (s: string) => s.startsWith("agent:sim-");
const node = (id: string, kind: string, source = "agent:sim-web-1") => ({ id, kind, source });
const edge = (id: string, kind: string, source = "agent:sim-web-1") => ({ id, kind, source });
const delta = (rev: number, d: Partial<{ nodesUpserted: object[]; nodesRemoved: string[]; edgesUpserted: object[]; edgesRemoved: string[] }>) => ({
  schema: "topology.delta.v1",
  rev,
  at: 1,
  nodesUpserted: [],
  nodesRemoved: [],
  edgesUpserted: [],
  edgesRemoved: [],
  ...d,
});

test("a whole snapshot then deltas: counts per kind, in scope and in all; a removal and a re-upsert count once", () => {
  const c = new TopologyCount(sim);
  expect(c.apply({ schema: "topology.snapshot.v1", rev: 3, at: 1, nodes: [node("host:sim-web-1", "host"), node("host:me", "host", "agent:me")], edges: [edge("r1", "RUNS")] })).toBe("snapshot");
  expect(c.counts()).toEqual({ nodes: { host: 1 }, edges: { RUNS: 1 } });
  expect(c.counts("all")).toEqual({ nodes: { host: 2 }, edges: { RUNS: 1 } });
  // a delta at or below the snapshot's rev is already in it
  expect(c.apply(delta(3, { nodesUpserted: [node("x", "process")] }))).toBe("delta");
  expect(c.counts().nodes.process).toBeUndefined();
  c.apply(delta(4, { nodesUpserted: [node("p1", "process"), node("host:sim-web-1", "host")], edgesRemoved: ["r1"] }));
  expect(c.counts()).toEqual({ nodes: { host: 1, process: 1 }, edges: {} });
  expect(c.deltaItems).toBe(3);
  // ignored: health frames
  expect(c.apply({ schema: "health.delta.v1" })).toBeNull();
});

test("a streamed snapshot is built aside; deltas that cross it apply at its end, only past its rev", () => {
  const c = new TopologyCount(sim);
  c.apply({ schema: "topology.snapshot.v1", rev: 1, at: 1, nodes: [node("old", "host")], edges: [] });
  c.apply({ schema: "topology.snapshot.begin.v1", rev: 10, at: 1, nodes: 2, edges: 1 });
  c.apply({ schema: "topology.snapshot.chunk.v1", rev: 10, nodes: [node("a", "host"), node("l", "listener")] });
  c.apply(delta(10, { nodesUpserted: [node("stale", "process")] }));
  c.apply(delta(11, { nodesUpserted: [node("ext:1", "external")] }));
  // the last graph stays until the end
  expect(c.counts().nodes).toEqual({ host: 1 });
  c.apply({ schema: "topology.snapshot.chunk.v1", rev: 10, edges: [edge("e", "LISTENS")] });
  expect(c.apply({ schema: "topology.snapshot.end.v1", rev: 10, chunks: 2 })).toBe("snapshot");
  expect(c.counts()).toEqual({ nodes: { host: 1, listener: 1, external: 1 }, edges: { LISTENS: 1 } });
  expect(c.rev).toBe(11);
  expect(c.snapshots).toBe(2);
  expect(c.anomalies).toEqual([]);
  expect(c.nodeIds("external", (id) => id.startsWith("ext:"))).toEqual(["ext:1"]);
  // an end that counts other chunks than arrived is reported
  c.apply({ schema: "topology.snapshot.begin.v1", rev: 12, at: 1, nodes: 0, edges: 0 });
  c.apply({ schema: "topology.snapshot.end.v1", rev: 12, chunks: 3 });
  expect(c.anomalies).toEqual(["snapshot rev 12: 0 chunks received, end says 3"]);
});

test("counts against a ground truth: relative difference per kind, a tolerance, unexpected kinds", () => {
  const rows = compareCounts({ host: 100, process: 396, external: 3 }, { host: 100, process: 400, listener: 10 }, 0.01);
  expect(rows).toEqual([
    { kind: "host", expected: 100, actual: 100, off: 0, within: true },
    { kind: "process", expected: 400, actual: 396, off: -0.01, within: true },
    { kind: "listener", expected: 10, actual: 0, off: -1, within: false },
    { kind: "external", expected: 0, actual: 3, off: 3, within: false },
  ]);
  expect(allWithin(rows)).toBe(false);
  expect(allWithin(rows.slice(0, 2))).toBe(true);
});

test("which service a supervisor's child is, from its command line", () => {
  expect(serviceOf(["/usr/bin/setpriv", "--pdeathsig", "SIGTERM", "/x/bun", "run", "/w/services/topology/main.ts"])).toBe("topology");
  expect(serviceOf(["/x/bun", "run", "/w/services/gateway/main.ts"])).toBe("gateway");
  expect(serviceOf(["/usr/sbin/nats-server", "-c", "/d/nats.conf"])).toBe("nats");
  expect(serviceOf(["/usr/bin/setpriv", "--pdeathsig", "SIGTERM", "/usr/sbin/nats-server", "-c", "x"])).toBe("nats");
});

test("the demo's log: warnings and errors per service, the most frequent shapes, stop times and kills", () => {
  const line = (service: string, level: string, msg: string) => JSON.stringify({ t: "x", level, service, msg });
  const log = [
    line("simulator", "warn", "tick overran its interval: 200 hosts are scanned every 7000 ms"),
    line("simulator", "warn", "tick overran its interval: 200 hosts are scanned every 9100 ms"),
    line("topology", "error", "graph write failed"),
    line("topology", "info", "converged"),
    "[nats] some server line",
    line("supervisor", "warn", "topology did not stop in 10 s; killing"),
    "[supervisor] stopped gateway (0.3 s)",
    "[supervisor] stopped nats (1 s)",
  ].join("\n");
  const s = summarizeLog(log);
  expect(s.lines).toBe(8);
  expect(s.byService).toEqual({ simulator: { warn: 2, error: 0 }, topology: { warn: 0, error: 1 }, supervisor: { warn: 1, error: 0 } });
  expect(s.top[0]).toEqual({ service: "simulator", level: "warn", msg: "tick overran its interval: N hosts are scanned every N ms", count: 2 });
  expect(s.stopped).toEqual([{ name: "gateway", seconds: 0.3 }, { name: "nats", seconds: 1 }]);
  expect(s.killed).toEqual(["topology"]);
});
