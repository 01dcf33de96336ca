/**
 * `bun run bench views [--hosts 1000,10000] [--reps 7] [--seed 1]`
 *
 * Levels of detail as the gateway computes them (pipelines/stages/views), on the discovery bench's simulated estate
 * (services/simulator/estate.ts at --hosts; written straight from the simulator's plan with the topology stage's ids,
 * test/unit/views/estate-graph.ts, since building 10k hosts through the stage itself takes minutes on this machine).
 * For each estate size, each number beside the raw cost of one pass over the same nodes and edges in the same run
 * (ratios are of CPU time: wall time on a shared 2-core machine mostly measures the neighbours):
 *   - index: building the view graph's adjacency over the mirror (once per gateway, and after a resync);
 *   - views: compute time (median and p90 of --reps, wall and CPU) of the groups view (by tier, by team), one group
 *     opened (db), the hosts level, a focus (2 hops around a db host, services level); marks, links and the snapshot
 *     frame's bytes, beside the raw topology snapshot's bytes a browser would otherwise be sent;
 *   - delta: applying one churn delta (50 restarts, 50 calls moved, a host replaced) to the view graph and computing
 *     the groups view again with its diff, the gateway's work per coalesced tick; and 10 deltas folded into one tick;
 *     the view delta frame's bytes;
 *   - page: the JS heap a page holding the groups and hosts views would need (the frame parsed here, in Bun: an
 *     estimate of a browser's, which the dashboard bench measures).
 * Left out: a browser (parsing, layout, drawing: `bench dashboard`), the WebSocket itself and the gateway's CPU per
 * connected wallboard (the hub computes each spec once per tick whatever the number of sockets sharing it), NATS and
 * the topology service (the mirror is filled in-process), health overlays (the views are computed with no alert open;
 * health adds two map lookups per entity when there are alerts).
 */
import { parseArgs } from "node:util";
import { ViewSpec, type ViewSpecInput } from "../pipelines/contracts/view.ts";
import { computeView, HealthMaps, ViewDiffer, ViewGraph } from "../pipelines/stages/views/index.ts";
import { churnDelta, plannedEstateGraph } from "../test/unit/views/estate-graph.ts";
import { median, pct } from "./lib/stats.ts";

const t0 = performance.now();
const step = (msg: string) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${msg}\n`);
const cpuMs = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};
const r1 = (x: number) => Math.round(x * 10) / 10;

/** Runs `f` --reps times after two warm-up runs; wall and CPU milliseconds. */
function timed<T>(reps: number, f: () => T): { wall: { p50: number; p90: number }; cpu: number; last: T } {
  let last = f();
  f();
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < reps; i++) {
    const c0 = cpuMs();
    const w0 = performance.now();
    last = f();
    wall.push(performance.now() - w0);
    cpu.push(cpuMs() - c0);
  }
  return { wall: { p50: r1(median(wall)), p90: r1(pct(wall, 90)) }, cpu: r1(median(cpu)), last };
}

const VIEWS: Record<string, ViewSpecInput> = {
  "groups by tier": {},
  "groups by team": { groupBy: "team" },
  "db group opened": { open: ["group:tier:db"] },
  "hosts level": { level: "hosts" },
  "focus 2 hops, services": { level: "services", focus: { id: "host:sim-db-1", hops: 2, dir: "both" } },
};

export async function benchViews(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { hosts: { type: "string", default: "1000,10000" }, reps: { type: "string", default: "7" }, seed: { type: "string", default: "1" } } });
  const sizes = values.hosts!.split(",").map(Number);
  const reps = Number(values.reps);
  const report: Record<string, unknown>[] = [];
  for (const hosts of sizes) {
    step(`estate of ${hosts} hosts`);
    const { mirror } = plannedEstateGraph(hosts, { seed: Number(values.seed) });
    const health = new HealthMaps();
    const now = Date.now();

    // the raw reference: one pass over every node and edge, reading what a view reads of each (kind, a prop, both ends)
    const raw = timed(reps, () => {
      let n = 0;
      for (const x of mirror.nodes.values()) if (x.kind === "host" || x.props.health === "stale") n++;
      for (const e of mirror.edges.values()) if (mirror.nodes.get(e.src) !== undefined && mirror.nodes.get(e.dst) !== undefined) n++;
      return n;
    });
    const index = timed(Math.min(reps, 3), () => ViewGraph.fromMirror(mirror));
    const graph = index.last;
    step(`raw pass ${raw.wall.p50} ms (CPU ${raw.cpu}), index ${index.wall.p50} ms`);
    const rawSnapshotBytes = Buffer.byteLength(JSON.stringify({ schema: "topology.snapshot.v1", rev: mirror.rev, at: now, nodes: [...mirror.nodes.values()], edges: [...mirror.edges.values()] }));

    const views: Record<string, unknown> = {};
    const frames: Record<string, string> = {};
    for (const [name, input] of Object.entries(VIEWS)) {
      const spec = ViewSpec.parse(input);
      const t = timed(reps, () => computeView({ graph, health, spec, now }));
      const frame = JSON.stringify({ schema: "view.snapshot.v1", seq: 0, rev: graph.rev, at: now, spec, ...t.last });
      frames[name] = frame;
      views[name] = {
        wall_ms: t.wall,
        cpu_ms: t.cpu,
        ratio_to_raw_pass: r1(t.cpu / raw.cpu),
        marks: t.last.marks.length,
        links: t.last.links.length,
        marks_with_note: t.last.marks.filter((m) => m.note).length,
        frame_bytes: Buffer.byteLength(frame),
      };
      step(`${name}: ${t.wall.p50} ms (CPU ${t.cpu}), ${t.last.marks.length} marks`);
    }

    // per tick: the deltas since the last one applied, then the groups view again and its diff
    const spec = ViewSpec.parse({});
    const differ = new ViewDiffer();
    differ.reset(computeView({ graph, health, spec, now }));
    let rev = mirror.rev;
    const tick = (deltas: number) => {
      const ds = Array.from({ length: deltas }, () => churnDelta(mirror, ++rev)); // (made and applied to the mirror outside the clock)
      const c0 = cpuMs();
      const w0 = performance.now();
      for (const d of ds) graph.applyDelta(d);
      const change = differ.diff(computeView({ graph, health, spec, now }));
      return { wall: performance.now() - w0, cpu: cpuMs() - c0, bytes: change ? Buffer.byteLength(JSON.stringify(change)) : 0 };
    };
    const one = Array.from({ length: reps }, () => tick(1));
    const ten = Array.from({ length: Math.max(3, Math.floor(reps / 2)) }, () => tick(10));
    const page = (frame: string) => {
      Bun.gc(true);
      const before = process.memoryUsage().heapUsed;
      const held = JSON.parse(frame);
      Bun.gc(true);
      const bytes = process.memoryUsage().heapUsed - before;
      return held ? Math.max(0, Math.round(bytes / 1024)) : 0;
    };
    report.push({
      hosts,
      nodes: mirror.nodes.size,
      edges: mirror.edges.size,
      raw_pass_ms: { wall: raw.wall, cpu: raw.cpu },
      index_build_ms: index.wall.p50,
      raw_snapshot_bytes: rawSnapshotBytes,
      views,
      delta_tick: {
        one_delta_wall_ms: r1(median(one.map((x) => x.wall))),
        one_delta_cpu_ms: r1(median(one.map((x) => x.cpu))),
        ratio_to_raw_pass: r1(median(one.map((x) => x.cpu)) / raw.cpu),
        ten_deltas_wall_ms: r1(median(ten.map((x) => x.wall))),
        view_delta_frame_bytes: median(one.map((x) => x.bytes)),
      },
      page_heap_kib: { "groups by tier": page(frames["groups by tier"]!), "hosts level": page(frames["hosts level"]!) },
    });
  }
  console.log(JSON.stringify(report, null, 2));
}
