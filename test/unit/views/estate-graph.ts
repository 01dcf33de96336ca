/**
 * A simulated estate's topology graph, through the real topology stage (services/simulator/estate.ts →
 * applyDiscovery), as the gateway's mirror would hold it; and its next ticks as topology deltas. Deterministic for a
 * seed. Used by the view tests and `bench views`.
 */
import type { TopologyDelta } from "../../../pipelines/contracts/topology.ts";
import { applyDelta, type Mirror } from "../../../pipelines/stages/apply-delta.ts";
import { applyDiscovery, emptyModel, type TopologyModel } from "../../../pipelines/stages/topology/index.ts";
import { DEFAULT_CHURN, type Churn, makeEstate, NO_CHURN, scanEstate, type Estate } from "../../../services/simulator/estate.ts";

export interface EstateGraph {
  estate: Estate;
  model: TopologyModel;
  mirror: Mirror;
  /** one more scan of every host: its changes as the next topology delta (null when nothing changed), applied to the mirror */
  tick(): TopologyDelta | null;
}

const T0 = 1_700_000_000_000;
const INTERVAL = 5000;

/** The estate after `warmTicks` scans (2 confirm its calls), without churn unless asked. */
export function estateGraph(hosts: number, o: { seed?: number; warmTicks?: number; churn?: Churn } = {}): EstateGraph {
  const estate = makeEstate(hosts, { seed: o.seed ?? 1, churn: { ...(o.churn ?? NO_CHURN) } });
  const model = emptyModel();
  let t = 0;
  const scan = () => {
    t++;
    const now = T0 + t * INTERVAL;
    return applyDiscovery(model, scanEstate(estate, now).batches, now);
  };
  for (let i = 0; i < (o.warmTicks ?? 3); i++) scan();
  const mirror: Mirror = { rev: 1, nodes: new Map(model.nodes), edges: new Map(model.edges) };
  return {
    estate,
    model,
    mirror,
    tick() {
      const c = scan();
      if (!c.nodesUpserted.length && !c.nodesRemoved.length && !c.edgesUpserted.length && !c.edgesRemoved.length) return null;
      const d: TopologyDelta = {
        schema: "topology.delta.v1",
        rev: mirror.rev + 1,
        at: T0 + t * INTERVAL,
        nodesUpserted: c.nodesUpserted.map((n) => ({ ...n })),
        nodesRemoved: c.nodesRemoved,
        edgesUpserted: c.edgesUpserted.map((e) => ({ ...e })),
        edgesRemoved: c.edgesRemoved.map((e) => e.id),
      };
      applyDelta(mirror, d);
      return d;
    },
  };
}

export { DEFAULT_CHURN };
