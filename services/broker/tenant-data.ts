/**
 * A tenant's data on the bus: what its agents published under its subjects in the DISCOVERY and METRICS streams,
 * removed with a filtered purge. What the topology and metrics services already took from there (graph entities of
 * the tenant's source, samples in ClickHouse) is not removed by this: graph entities the tenant's agents stop
 * reporting age out with their source, and samples expire with ORRERY_METRICS_TTL_DAYS.
 */
import type { Tenant } from "../../pipelines/contracts/broker.ts";
import type { Bus } from "../shared/bus.ts";

export async function purgeTenant(bus: Bus, t: Pick<Tenant, "subjects">): Promise<void> {
  await bus.jsm.streams.purge(bus.topo.streams.discovery.name, { filter: `${t.subjects.discovery}.>` });
  await bus.jsm.streams.purge(bus.topo.streams.metrics.name, { filter: `${t.subjects.metrics}.>` });
}
