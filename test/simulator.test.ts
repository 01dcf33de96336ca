import { expect, test } from "bun:test";
import { DiscoveryBatch } from "../pipelines/contracts/discovery.ts";
import { MetricBatch } from "../pipelines/contracts/metrics.ts";
import { ageModel, applyDiscovery, emptyModel, type Changes } from "../pipelines/stages/topology.ts";
import { DEFAULT_CHURN, makeEstate, NO_CHURN, scanEstate } from "../services/simulator/estate.ts";

const changed = (c: Changes) => c.nodesUpserted.length + c.nodesRemoved.length + c.edgesUpserted.length + c.edgesRemoved.length;
const hostOf = (m: ReturnType<typeof emptyModel>, id: string) => String(m.nodes.get(id)!.props.host ?? m.nodes.get(id)!.name);

test("the simulated estate is valid discovery whose calls resolve to listeners of the right tiers, and settles to no changes", () => {
  const e = makeEstate(60, { churn: NO_CHURN });
  const m = emptyModel();
  const changes: number[] = [];
  for (let i = 0; i < 4; i++) {
    const { batches, samples } = scanEstate(e, 1_000 * (i + 1));
    for (const b of batches) expect(DiscoveryBatch.safeParse(b).success).toBe(true);
    expect(MetricBatch.safeParse({ schema: "metrics.v1", source: "sim", batchId: "x", samples: samples.slice(0, 1000) }).success).toBe(true);
    expect(batches.filter((b) => b.full).length).toBe(i === 0 ? e.hosts.length : 0); // full state first, then deltas
    changes.push(changed(applyDiscovery(m, batches, 1_000 * (i + 1))));
  }
  expect(changes[2]).toBe(0);
  expect(changes[3]).toBe(0);
  const kinds = new Map<string, number>();
  for (const n of m.nodes.values()) kinds.set(n.kind, (kinds.get(n.kind) ?? 0) + 1);
  expect(kinds.get("host")).toBe(e.hosts.length);
  expect(kinds.get("process")).toBe(5 * e.hosts.length); // main service, sshd, node_exporter, filebeat, chronyd
  expect(kinds.get("external")).toBeGreaterThan(0); // third-party APIs the apps call
  const connects = [...m.edges.values()].filter((x) => x.kind === "CONNECTS");
  expect(connects.length).toBeGreaterThan(5 * e.hosts.length);
  for (const c of connects) {
    const from = hostOf(m, c.src);
    const dst = m.nodes.get(c.dst)!;
    if (dst.kind === "external") {
      expect(from).toStartWith("sim-app");
      continue;
    }
    expect(dst.kind).toBe("listener");
    const to = String(dst.props.host);
    const svc = m.nodes.get(c.src)!.props.service;
    if (svc === "filebeat") expect(to).toStartWith("sim-queue");
    else if (from.startsWith("sim-lb")) expect(to).toStartWith("sim-web");
    else if (from.startsWith("sim-web")) expect(to).toStartWith("sim-app");
    else if (from.startsWith("sim-app")) expect(to).toMatch(/^sim-(cache|db|queue)/);
    else expect(from).toStartWith("sim-monitor");
  }
});

test("with churn: restarts keep services, cron jobs never show, deploys reuse IPs without phantom edges, and aging removes the retired", () => {
  const e = makeEstate(80, { seed: 7, churn: { ...DEFAULT_CHURN, restart: 0.05, cron: 0.2, deploy: 0.02, failure: 0.01, crash: 0.01 } });
  const m = emptyModel();
  const aging = { intervalMs: 1000, staleAfter: 3, removeAfter: 6 };
  let restartsSeen = 0;
  for (let i = 0; i < 48; i++) {
    if (i === 40) e.opts.churn = { ...NO_CHURN }; // let the last retired hosts age out
    const now = 1_000 * (i + 1);
    const { batches } = scanEstate(e, now);
    applyDiscovery(m, batches, now);
    const c = ageModel(m, now, aging);
    restartsSeen += c.nodesUpserted.filter((n) => n.kind === "process").length;
  }
  expect(e.retired.length).toBeGreaterThan(0);
  // cron curls live one scan: never a node
  expect([...m.nodes.values()].some((n) => n.props.service === "curl")).toBe(false);
  // every service node is one per (host, service): restarts did not multiply them
  const live = e.hosts.filter((h) => h.silent === 0);
  for (const h of live) {
    const svcs = [...m.nodes.values()].filter((n) => n.kind === "process" && n.props.host === h.name);
    expect(svcs.length).toBeLessThanOrEqual(5);
    expect(new Set(svcs.map((n) => n.props.service)).size).toBe(svcs.length);
  }
  // no CONNECTS edge leads to a retired host: their IPs were taken over, their sources aged out
  const retired = new Set(e.retired);
  for (const edge of m.edges.values()) {
    if (edge.kind !== "CONNECTS") continue;
    const dst = m.nodes.get(edge.dst)!;
    if (dst.kind === "listener") expect(retired.has(String(dst.props.host))).toBe(false);
  }
  const hosts = [...m.nodes.values()].filter((n) => n.kind === "host").map((n) => n.name);
  for (const r of e.retired) expect(hosts).not.toContain(r);
  expect(restartsSeen).toBeGreaterThan(0);
});
