import { expect, test } from "bun:test";
import { DiscoveryBatch } from "../pipelines/contracts/discovery.ts";
import { applyDiscovery, emptyModel } from "../pipelines/stages/topology.ts";
import { makeEstate, scanEstate } from "../services/simulator/estate.ts";

test("the simulated estate is valid discovery whose calls all resolve to listeners of the next tier", () => {
  const e = makeEstate(40);
  const m = emptyModel();
  for (let i = 0; i < 3; i++) {
    const { batches, samples } = scanEstate(e, 1_000 + i);
    for (const b of batches) expect(DiscoveryBatch.safeParse(b).success).toBe(true);
    expect(samples.length).toBe(2 * e.hosts.length);
    applyDiscovery(m, batches, 1_000 + i);
  }
  const kinds = new Map<string, number>();
  for (const n of m.nodes.values()) kinds.set(n.kind, (kinds.get(n.kind) ?? 0) + 1);
  expect(kinds.get("host")).toBe(e.hosts.length);
  expect(kinds.get("listener")).toBe(e.hosts.length);
  expect(kinds.get("external") ?? 0).toBe(0);
  const connects = [...m.edges.values()].filter((x) => x.kind === "CONNECTS");
  expect(connects.length).toBeGreaterThan(e.hosts.length);
  // lb calls web only, app calls cache/db/queue only
  for (const c of connects) {
    const from = m.nodes.get(c.src)!.props.host as string;
    const to = m.nodes.get(c.dst)!.props.host as string;
    if (from.startsWith("sim-lb")) expect(to).toStartWith("sim-web");
    if (from.startsWith("sim-app")) expect(to).toMatch(/^sim-(cache|db|queue)/);
  }
});
