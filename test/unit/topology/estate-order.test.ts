/**
 * The stage fed a simulated estate's scans in the order the simulator emits them (host by host, each scan cut to fit
 * the bus), against the estate's ground truth (services/simulator/truth.ts).
 */
import { expect, test } from "bun:test";
import type { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { discoveryBatches } from "../../../pipelines/contracts/split.ts";
import { ageModel, applyDiscovery, applyDiscoverySteps, emptyModel, type Changes, type TopologyModel } from "../../../pipelines/stages/topology/index.ts";
import { DEFAULT_CHURN, makeEstate, NO_CHURN, scanEstate, type Estate } from "../../../services/simulator/estate.ts";
import { truthOf, type EstateTruth } from "../../../services/simulator/truth.ts";

const T0 = 1_700_000_000_000;
const INTERVAL = 5000;

function counts(m: TopologyModel) {
  const nodes: Record<string, number> = { host: 0, process: 0, listener: 0, external: 0 };
  const edges: Record<string, number> = { RUNS: 0, LISTENS: 0, CONNECTS: 0, DEPENDS_ON: 0 };
  for (const n of m.nodes.values()) nodes[n.kind] = (nodes[n.kind] ?? 0) + 1;
  for (const e of m.edges.values()) edges[e.kind] = (edges[e.kind] ?? 0) + 1;
  return { nodes, edges };
}

/** External nodes at an address of the estate: one of our own hosts taken for a third party. */
const phantoms = (m: TopologyModel, truth: EstateTruth) => [...m.nodes.values()].filter((n) => n.kind === "external" && truth.ips.has(String(n.props.ip))).map((n) => n.id);

/** One tick: every host's scan as the simulator publishes it (host by host, split to fit), except the silent ones. */
function tick(e: Estate, m: TopologyModel, now: number, silent: (host: string) => boolean = () => false): Changes[] {
  const { batches } = scanEstate(e, now);
  const byHost = new Map<string, DiscoveryBatch[]>();
  for (const b of batches) byHost.set(b.host, [...(byHost.get(b.host) ?? []), b]);
  const out: Changes[] = [];
  for (const [host, scan] of byHost) if (!silent(host)) for (const b of discoveryBatches(scan, { at: now })) out.push(applyDiscovery(m, b, now));
  return out;
}

test("an estate's scans in the simulator's order converge on its ground truth, with no phantom externals", () => {
  const e = makeEstate(300, { seed: 7, churn: NO_CHURN });
  const truth = truthOf(e);
  const m = emptyModel();
  for (let k = 0; k < 4; k++) tick(e, m, T0 + k * INTERVAL);
  expect(counts(m)).toEqual({ nodes: truth.nodes, edges: truth.edges });
  expect(phantoms(m, truth)).toEqual([]);
});

test("hosts aged out and back with deltas: no external at their addresses (callers wait, server halves are not calls), the aging is reported with its cause, and their full scan restores the truth", () => {
  // reconnects only: clients open new sockets every tick, so the servers' deltas carry server halves of new connections
  const e = makeEstate(120, { seed: 3, fullEvery: 12, churn: { ...NO_CHURN, reconnect: 0.3 } });
  const truth = truthOf(e);
  const m = emptyModel();
  const held = new Set(e.hosts.filter((h) => h.slot % 3 === 0).map((h) => h.name));
  const aging = { intervalMs: INTERVAL, staleAfter: 3, removeAfter: 12 };
  const agingRemovals: NonNullable<Changes["removals"]> = [];
  let worst: string[] = [];
  for (let k = 0; k < 30; k++) {
    const now = T0 + k * INTERVAL;
    // silent from tick 2 to 16: long enough to be removed (12 intervals), back before their next full scan (tick 24)
    tick(e, m, now, (h) => k >= 2 && k < 17 && held.has(h));
    const aged = ageModel(m, now, aging);
    agingRemovals.push(...(aged.removals ?? []).filter((r) => r.cause === "aging"));
    if (k >= 17) {
      const p = phantoms(m, truth);
      if (p.length > worst.length) worst = p;
    }
  }
  expect(worst).toEqual([]);
  expect(agingRemovals.map((r) => r.source).sort()).toEqual([...held].map((h) => `agent:${h}`).sort());
  for (const r of agingRemovals) {
    expect(r.nodes).toBeGreaterThan(0);
    expect(r.silentMs).toBeGreaterThanOrEqual(12 * INTERVAL);
  }
  // after the held hosts' full scan (tick 24) and two more scans to confirm their calls
  expect(counts(m)).toEqual({ nodes: truth.nodes, edges: truth.edges });
});

test("under the simulator's default churn (restarts, reconnects, crons, crashes, agent failures, deploys on the same IPs), never an external node at an address a host of the graph holds", () => {
  const e = makeEstate(300, { seed: 11, churn: { ...DEFAULT_CHURN, crash: 0.01, failure: 0.005, deploy: 0.005 } });
  const m = emptyModel();
  const found = new Set<string>();
  for (let k = 0; k < 30; k++) {
    const now = T0 + k * INTERVAL;
    tick(e, m, now);
    ageModel(m, now, { intervalMs: INTERVAL, staleAfter: 3, removeAfter: 4 });
    const held = new Set([...m.nodes.values()].filter((n) => n.kind === "host").flatMap((n) => String(n.props.ips).split(",")));
    for (const n of m.nodes.values()) if (n.kind === "external" && held.has(String(n.props.ip))) found.add(n.id);
  }
  expect(e.retired.length).toBeGreaterThan(0);
  expect([...found]).toEqual([]);
});

test("folded in steps (applyDiscoverySteps), ticks of an estate with churn give the same changes and model as in one go", () => {
  const a = makeEstate(120, { seed: 3, churn: DEFAULT_CHURN });
  const b = makeEstate(120, { seed: 3, churn: DEFAULT_CHURN });
  const whole = emptyModel();
  const stepped = emptyModel();
  const sorted = (c: Changes) => ({
    nodesUpserted: c.nodesUpserted.map((n) => JSON.stringify(n)).sort(),
    edgesUpserted: c.edgesUpserted.map((e) => JSON.stringify(e)).sort(),
    nodesRemoved: [...c.nodesRemoved].sort(),
    edgesRemoved: c.edgesRemoved.map((e) => JSON.stringify(e)).sort(),
  });
  let paused = 0;
  for (let k = 0; k < 6; k++) {
    const now = T0 + k * INTERVAL;
    const one = applyDiscovery(whole, scanEstate(a, now).batches, now);
    const steps = applyDiscoverySteps(stepped, scanEstate(b, now).batches, now, 7);
    let r = steps.next();
    while (!r.done) {
      paused++;
      r = steps.next();
    }
    expect(sorted(r.value)).toEqual(sorted(one));
  }
  expect(paused).toBeGreaterThan(6);
  expect(counts(stepped)).toEqual(counts(whole));
});
